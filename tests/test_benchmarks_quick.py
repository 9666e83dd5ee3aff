"""The benchmarks in quick mode (tiny data, one run), so that the harness cannot rot.

Each benchmark runs end to end as ``python -m benchmarks.<name> --quick`` would, writing its
results into a temporary folder; the assertions check what the results say, not timings.
Full benchmarks are not part of the tests (see benchmarks/README.md). TPC-H's quick run checks
22 answers and runs by default; the pushdown, streaming and latency harnesses are marked
``harness`` and run with ``pytest -m harness`` (they check the harness, not Meshgate's answers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import executable


def _run(module: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    import importlib

    main = importlib.import_module(f"benchmarks.{module}").main
    results = tmp_path / "results"
    argv = ["--quick", "--no-plots", "--results-dir", str(results), "--work-dir", str(tmp_path / "data"), *extra]
    assert main(argv) == 0
    payload: dict[str, Any] = json.loads((results / f"{module.split('.')[0]}-quick.json").read_text())
    assert (results / f"{module.split('.')[0]}-quick.md").exists()
    assert payload["machine"]["cores"] >= 1
    return payload


@pytest.mark.skipif(executable("tpchgen-cli") is None, reason="tpchgen-cli is not installed (pip install tpchgen-cli)")
def test_tpch_quick_runs_all_22_queries_correctly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = _run("tpch.run", tmp_path)
    rows = payload["queries"]
    assert [r["query"] for r in rows] == [f"q{i:02d}" for i in range(1, 23)]
    for r in rows:
        assert r["meshgate"]["error"] is None, (r["query"], r["meshgate"]["error"])
        assert r["meshgate"]["correct"] is True, (r["query"], r["meshgate"]["difference"])
        assert r["centralised_seconds"] is not None
        assert r["floor_seconds"] is not None and r["floor_seconds"] > 0, r["query"]
        assert r["fetched"], r["query"]
    duckdb = payload["machine"]["duckdb_peer"]
    if "skipped" in duckdb:  # only when its virtual environment cannot be created here
        assert "cannot create" in duckdb["skipped"]
        assert "DuckDB peer skipped" in capsys.readouterr().err
    else:
        assert all(r["duckdb"] is not None and r["duckdb"]["error"] is None for r in rows)
        assert payload["summary"]["geomean_vs_duckdb"] is not None


@pytest.mark.harness
def test_pushdown_quick(tmp_path: Path) -> None:
    payload = _run("pushdown", tmp_path)
    measurements = {(m["query"], m["domain"]): m for m in payload["measurements"]}
    assert all(m["error"] is None and m["correct"] for m in measurements.values())
    # A primary-key lookup on PostgreSQL fetches exactly the row it needs.
    assert measurements[("point lookup", "sales")]["ratio"] == 1.0
    assert measurements[("LIMIT", "sales")]["fetched"] == 10


@pytest.mark.harness
def test_streaming_quick(tmp_path: Path) -> None:
    payload = _run("streaming", tmp_path)
    systems = {s["name"]: s for s in payload["systems"]}
    for name, system in systems.items():
        if name.startswith("roapi") and executable("roapi") is None:
            assert "not installed" in system["error"]
            continue
        assert system["error"] is None, (name, system["error"])
        assert system["rows_per_second"] > 0


@pytest.mark.harness
def test_latency_quick(tmp_path: Path) -> None:
    payload = _run("latency", tmp_path, "--queries", "20", "--seconds", "0.3")
    assert [s["errors"] for s in payload["sequential"]] == [0, 0, 0]
    assert all(s["errors"] == 0 and s["queries"] > 0 for s in payload["concurrent"])
    assert {s["clients"] for s in payload["concurrent"]} == {1, 4, 16}
    assert {s["target"] for s in payload["concurrent"]} == {"Meshgate (ADBC)", "Meshgate (pyarrow)", "PostgreSQL direct"}
    assert all(s["client_cpu_ms_per_query"] > 0 for s in payload["sequential"])
