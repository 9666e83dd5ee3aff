"""DuckDB as a federated engine: a peer in its own virtual environment.

``duckdb==1.5.5`` loads the PostgreSQL and SQLite scanners offline from the
``duckdb-extension-postgres``/``-sqlite`` wheels (``INSTALL '<file>'`` into a private
extension directory); DuckDB 2 cannot, and the project's own ``duckdb`` must not be
pinned back, hence ``benchmarks/.venv-duckdb``, created here on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCHMARKS, log

VERSION = "1.5.5"
REQUIREMENTS = (
    f"duckdb=={VERSION}",
    f"duckdb-extension-postgres=={VERSION}",
    f"duckdb-extension-sqlite=={VERSION}",
    "pyarrow>=26,<27",
)
VENV = BENCHMARKS / ".venv-duckdb"
WORKER = BENCHMARKS / "duckdb_worker.py"


class PeerUnavailable(Exception):
    """The peer cannot run here (its environment could not be created)."""


def python(venv: Path = VENV) -> Path:
    """The DuckDB environment's Python, creating the environment when needed."""
    interpreter = venv / "bin" / "python"
    marker = venv / ".requirements"
    wanted = "\n".join(REQUIREMENTS)
    if interpreter.exists() and marker.exists() and marker.read_text() == wanted:
        return interpreter
    log(f"creating the DuckDB peer's environment in {venv} ({', '.join(REQUIREMENTS)})")
    try:
        subprocess.run([_base_python(), "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(interpreter), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        lines = [line for line in str(detail).splitlines() if "is ignored" not in line]
        raise PeerUnavailable(f"cannot create {venv}: {' '.join(lines[-3:]) or error}") from None
    marker.write_text(wanted)
    return interpreter


def _base_python() -> str:
    """The interpreter this virtual environment was made from (a venv inside a venv works too)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def run(spec: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run the worker on ``spec``; returns its report (see :mod:`benchmarks.duckdb_worker`)."""
    interpreter = python()
    with tempfile.TemporaryDirectory(prefix="duckdb-peer-") as scratch:
        spec_path = Path(scratch) / "spec.json"
        out_path = Path(scratch) / "report.json"
        spec = {"extension_dir": str(Path(scratch) / "extensions"), **spec}
        spec_path.write_text(json.dumps(spec))
        budget = timeout * (len(spec["queries"]) + 1) * (int(spec["runs"]) + 1)
        completed = subprocess.run(
            [str(interpreter), str(WORKER), str(spec_path), str(out_path)],
            capture_output=True,
            text=True,
            timeout=budget,
        )
        if completed.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"the DuckDB worker failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(out_path.read_text())
        return report
