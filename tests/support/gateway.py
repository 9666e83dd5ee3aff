"""Running a real gateway for tests: in-process (fast) or as a `meshgate serve` subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa

from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql.server import FlightSqlServer


@contextmanager
def serve_in_process(config: Path) -> Iterator[str]:
    """Serve ``config`` on a free loopback port in this process; yields the URI."""
    catalog = MeshCatalog(load_config(config))
    server = FlightSqlServer(Engine(catalog), "grpc://127.0.0.1:0")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"grpc://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        catalog.close()


class GatewayProcess:
    """``meshgate serve`` in a child process, so its memory can be measured on its own."""

    def __init__(self, config: Path | None, *, extra: tuple[str, ...] = ()) -> None:
        self.config = config
        source = ("--config", str(config)) if config is not None else ()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *source, *extra, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "MESHGATE_LOG_LEVEL": "INFO"},
        )
        self.uri = self._wait_for_port()

    @classmethod
    def demo(cls, directory: Path) -> GatewayProcess:
        """``meshgate serve --demo`` writing its mesh into ``directory``."""
        process = cls(None, extra=("--demo", "--demo-dir", str(directory)))
        process.config = directory / "config"
        return process

    def _wait_for_port(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"serving catalog '\w+' at (grpc://[\d.]+:\d+)", line)
            if found:
                threading.Thread(target=self._drain, daemon=True).start()
                return found.group(1)
        self.process.kill()
        raise RuntimeError("gateway did not start:\n" + "".join(lines))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def peak_rss_bytes(self) -> int:
        """The child's peak resident memory (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert found is not None
        return int(found.group(1)) * 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def query(uri: str, sql: str) -> pa.Table:
    """Run ``sql`` through the ADBC Flight SQL driver (a real, independent client)."""
    with flightsql.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        table: pa.Table = cursor.fetch_arrow_table()
        return table


def explain_analyze(uri: str, sql: str) -> list[tuple[str, str]]:
    """``EXPLAIN ANALYZE`` through the client: (plan_type, plan) rows."""
    table = query(uri, f"EXPLAIN ANALYZE {sql}")
    return list(zip(table.column("plan_type").to_pylist(), table.column("plan").to_pylist(), strict=True))


def source_queries(uri: str, sql: str) -> list[tuple[str, str, int]]:
    """What each source received and returned when ``sql`` ran: (source label, SQL, rows)."""
    found = []
    for plan_type, plan in explain_analyze(uri, sql):
        if plan_type.startswith("source_query["):
            text, _, stats = plan.rpartition("\n  rows=")
            found.append((plan_type[len("source_query[") : -1], text, int(stats.split()[0])))
    return found
