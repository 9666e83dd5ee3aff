"""Runs queries in DuckDB, inside DuckDB's own virtual environment (see :mod:`benchmarks.duckdb_peer`).

Only the standard library, ``duckdb`` and ``pyarrow``: this file is run by path with that
environment's Python, never imported by the project. Usage::

    python duckdb_worker.py SPEC.json OUT.json

The spec names the extensions to install offline, the setup statements (ATTACH, views),
the queries, how many timed runs each gets, a per-query timeout and where to write each
result (Arrow IPC). One untimed warm-up run precedes the timed ones and gives the result.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa


def _peak_rss() -> int:
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _extensions() -> list[str]:
    """The .duckdb_extension files shipped by the duckdb-extension-* wheels of this environment."""
    found: list[str] = []
    for path in sys.path:
        found += glob.glob(os.path.join(path, "duckdb_extension_*", "extensions", "*", "*.duckdb_extension"))
    return sorted(set(found))


def _run(connection: Any, sql: str, timeout: float) -> pa.Table:
    timer = threading.Timer(timeout, connection.interrupt)
    timer.start()
    try:
        return connection.execute(sql).to_arrow_table()
    finally:
        timer.cancel()


def main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = {
        "extension_directory": spec["extension_dir"],
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if spec.get("threads"):
        config["threads"] = int(spec["threads"])
    connection = duckdb.connect(config=config)
    for extension in _extensions():
        connection.execute(f"INSTALL '{extension}'")
    for name in spec.get("load", []):
        connection.execute(f"LOAD {name}")
    for statement in spec.get("setup", []):
        connection.execute(statement)
    report: dict[str, Any] = {
        "version": duckdb.__version__,
        "threads": connection.execute("SELECT current_setting('threads')").fetchone()[0],  # type: ignore[index]
        "setup_seconds": time.perf_counter() - started,
        "queries": {},
    }
    runs = int(spec["runs"])
    timeout = float(spec.get("timeout", 600))
    for query in spec["queries"]:
        name, sql = query["name"], query["sql"]
        entry: dict[str, Any] = {"times": [], "error": None, "rows": None, "peak_rss": None}
        _reset_peak()
        try:
            result = _run(connection, sql, timeout)
            entry["rows"] = result.num_rows
            with (
                pa.OSFile(str(out_dir / f"{name}.arrow"), "wb") as sink,
                pa.ipc.new_file(sink, result.schema) as writer,
            ):
                writer.write_table(result)
            for _ in range(runs):
                began = time.perf_counter()
                _run(connection, sql, timeout)
                entry["times"].append(time.perf_counter() - began)
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"
        entry["peak_rss"] = _peak_rss()
        report["queries"][name] = entry
        print(f"duckdb {name}: {entry['times'] or entry['error']}", file=sys.stderr, flush=True)
    connection.close()
    Path(out_path).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
