"""What every benchmark shares: the machine, processes and their peak memory, Flight SQL
clients, EXPLAIN ANALYZE parsing, statistics and the results files.

Everything listens on 127.0.0.1 only, and every process a benchmark starts is stopped by it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
DATA = BENCHMARKS / ".data"

_SERVING = re.compile(r"serving catalog '\w+' at (grpc://[\d.]+:\d+)")


# -- the machine ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel and the versions of what is measured."""
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else ""
    memory = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.MULTILINE)
        memory = int(found.group(1)) * 1024 if found else 0
    packages = {}
    for name in ("meshgate", "datafusion", "pyarrow", "adbc-driver-flightsql", "adbc-driver-postgresql", "sqlglot"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "meshgate_commit": _commit(),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": packages,
    }


def _commit() -> str:
    """The checkout measured: its commit, and whether it had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gateway", "connectors"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (
        " with uncommitted changes to gateway/ or connectors/" if dirty.stdout.strip() else ""
    )


def machine_markdown(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    extra = "".join(f"\n- {key}: {value}" for key, value in info.items() if key not in _MACHINE_KEYS)
    return (
        f"- {info['cores']} cores ({info['cpu'] or 'unknown CPU'}), {info['memory_gib']} GiB memory, "
        f"Linux {info['kernel']}, Python {info['python']}\n- Meshgate at {info.get('meshgate_commit')}; {packages}\n"
        f"- load average (1, 5, 15 min) when the run started: {info.get('load_average_at_start')}"
        " (other work on the machine competes for the same 2 cores)"
        f"{extra}"
    )


_MACHINE_KEYS = {
    "meshgate_commit",
    "cores",
    "cpu",
    "memory_gib",
    "kernel",
    "python",
    "packages",
    "load_average_at_start",
}


# -- processes and their memory ----------------------------------------------------------


def peak_rss(pid: int) -> int:
    """Peak resident memory of ``pid`` in bytes (VmHWM), 0 when unknown."""
    return _status_kib(pid, "VmHWM") * 1024


def current_rss(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid: int) -> None:
    """Start a new peak-memory window (writing 5 to clear_refs resets VmHWM)."""
    with suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_kib(pid: int, key: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


class Process:
    """A child process whose output is kept (the last lines) for error messages."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.lines: deque[str] = deque(maxlen=200)
        self._matched = threading.Event()
        self._pattern: re.Pattern[str] | None = None
        self.match: re.Match[str] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            pattern = self._pattern
            if pattern is not None and not self._matched.is_set():
                found = pattern.search(line)
                if found:
                    self.match = found
                    self._matched.set()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """Wait until a line of output matches ``pattern``."""
        self._pattern = pattern
        for line in list(self.lines):
            found = pattern.search(line)
            if found:
                self.match = found
                return found
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._matched.wait(0.1):
                assert self.match is not None
                return self.match
            if self.popen.poll() is not None:
                self._reader.join(timeout=2)
                break
        self.stop()
        raise RuntimeError(f"{self.argv[0]} did not start:\n" + self.tail())

    def wait_for_port(self, port: int, timeout: float = 60.0) -> None:
        """Wait until something accepts connections on 127.0.0.1:``port``."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.argv[0]} did not listen on port {port}:\n" + self.tail())

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.lines)[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(timeout=2)


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


class Gateway:
    """``meshgate serve`` as a subprocess on a free loopback port.

    ``config`` is a mesh directory; a served mesh requires users, so an ``auth.yaml``
    declaring a benchmark user with a fresh random password is written into it first.
    Connect with :meth:`connect` (or :func:`connect` and :attr:`credentials`).
    """

    def __init__(self, config: Path) -> None:
        self.config = config
        self.credentials = Credentials("bench", secrets.token_urlsafe(16))
        _write_auth(config, self.credentials)
        self.process = self._start()
        self.uri = self._uri

    def connect(self, timeout: float | None = None) -> Any:
        return connect(self.uri, timeout, self.credentials)

    def _start(self) -> Process:
        process = Process(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(self.config),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            env={"MESHGATE_LOG_LEVEL": os.environ.get("MESHGATE_LOG_LEVEL", "INFO")},
            cwd=REPO,
        )
        self._uri = process.wait_for(_SERVING, timeout=120).group(1)
        return process

    @property
    def pid(self) -> int:
        return self.process.pid

    def restart(self) -> None:
        self.process.stop()
        self.process = self._start()
        self.uri = self._uri

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_auth(config: Path, credentials: Credentials) -> None:
    from gateway.auth import hash_password

    if not config.is_dir():
        raise ValueError(f"{config}: the benchmarks serve mesh directories (auth.yaml is added to them)")
    (config / "auth.yaml").write_text(
        f"auth:\n  users:\n    - name: {credentials.user}\n"
        f"      password_hash: '{hash_password(credentials.password)}'\n"
    )


@contextmanager
def gateway(config: Path) -> Iterator[Gateway]:
    server = Gateway(config)
    try:
        yield server
    finally:
        server.stop()


# -- Flight SQL ---------------------------------------------------------------------------


def connect(uri: str, timeout: float | None = None, credentials: Credentials | None = None) -> Any:
    """An ADBC Flight SQL connection; ``timeout`` bounds each RPC (query and fetch) in seconds."""
    options: dict[str, str] = {}
    if timeout is not None:
        options[DatabaseOptions.TIMEOUT_QUERY.value] = str(timeout)
        options[DatabaseOptions.TIMEOUT_FETCH.value] = str(timeout)
    if credentials is not None:
        options["username"] = credentials.user
        options["password"] = credentials.password
    return flightsql.connect(uri, db_kwargs=options, autocommit=True)


@dataclass
class SourceStat:
    """One query a source received, as Meshgate's EXPLAIN ANALYZE reports it."""

    domain: str
    source: str
    sql: str
    rows: int
    batches: int
    seconds: float
    detail: str | None = None  # how the source read it ("read in 2 ctid ranges ..."), when split


@dataclass
class Analyzed:
    route: str
    sources: list[SourceStat]
    plan: str


def explain_analyze(connection: Any, sql: str) -> Analyzed:
    """Run ``EXPLAIN ANALYZE sql`` through Flight SQL and parse its rows."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ANALYZE {sql}")
        table = cursor.fetch_arrow_table()
    route, plan = "", ""
    sources = []
    for plan_type, text in zip(table.column("plan_type").to_pylist(), table.column("plan").to_pylist(), strict=True):
        if plan_type == "route":
            route = text
        elif plan_type == "logical_plan":
            plan = text
        elif plan_type.startswith("source_query["):
            label = plan_type[len("source_query[") : -1]
            domain, _, source = label.partition("/")
            query, _, stats = text.rpartition("\n  rows=")
            stats, _, detail = stats.partition("\n  ")
            values = dict(item.split("=", 1) for item in f"rows={stats}".split())
            counts = int(values["rows"]), int(values["batches"]), float(values["seconds"])
            sources.append(SourceStat(domain, source, query, *counts, detail or None))
    return Analyzed(route, sources, plan)


def adbc_message(error: BaseException) -> str:
    """The server's words from an ADBC error, without the driver's noise."""
    text = str(error).strip()
    for marker in ("[FlightSQL] ", "[Flight SQL] "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text


# -- statistics ---------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def geomean(values: Sequence[float]) -> float:
    usable = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in usable) / len(usable)) if usable else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def mib(value: float) -> float:
    return value / 2**20


def fmt_seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def fmt_bytes(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- command line and results --------------------------------------------------------------


def arguments(description: str, *, runs: int = 5) -> argparse.ArgumentParser:
    """The flags every benchmark takes. Also makes SIGTERM unwind like Ctrl-C, so that the
    servers, PostgreSQL schemas and peers a benchmark started are stopped and dropped."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny data, one run: checks that the harness works")
    parser.add_argument("--runs", type=int, default=None, help=f"timed runs per measurement (default {runs}; 1 quick)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON, markdown and plots go")
    parser.add_argument("--work-dir", type=Path, default=DATA, help="where generated data is kept")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(default_runs=runs)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def runs_of(args: argparse.Namespace) -> int:
    if args.runs is not None:
        return max(1, int(args.runs))
    return 1 if args.quick else int(args.default_runs)


def write_results(results_dir: Path, name: str, payload: dict[str, Any], report: str) -> Path:
    """Write ``<name>.json`` and ``<name>.md``; returns the markdown path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(payload), indent=2, default=_json_default, allow_nan=False)
    (results_dir / f"{name}.json").write_text(text + "\n")
    path = results_dir / f"{name}.md"
    path.write_text(report.rstrip() + "\n")
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: unknown numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return _finite(asdict(value))
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return str(value)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def executable(name: str) -> str | None:
    """A console script installed next to this Python, or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)
