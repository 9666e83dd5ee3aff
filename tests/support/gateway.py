"""Running a real gateway for tests: in-process (fast) or as a `meshgate serve` subprocess.

In-process servers run without authentication (the ``FlightSqlServer`` default). A
``meshgate serve --config`` process requires users, so configs given to
:class:`GatewayProcess` declare the test user (:func:`auth_yaml`), and clients connect
with :data:`TEST_CREDENTIALS` (or, for the demo, the password it prints).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.parquet as pq

from gateway.auth import hash_password
from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql.server import FlightSqlServer


@dataclass(frozen=True)
class Credentials:
    """A user name and password, as the ADBC driver and ``meshgate query`` take them."""

    user: str
    password: str

    def db_kwargs(self) -> dict[str, str]:
        return {"username": self.user, "password": self.password}

    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``MESHGATE_USER``/``MESHGATE_PASSWORD``, for ``meshgate query``."""
        return {**os.environ, "MESHGATE_USER": self.user, "MESHGATE_PASSWORD": self.password}


TEST_CREDENTIALS = Credentials("tester", "correct horse battery staple")


@cache
def _hash(password: str) -> str:
    return hash_password(password)


def auth_yaml(*users: Credentials, indent: str = "") -> str:
    """A top-level ``auth:`` section (YAML text) declaring ``users`` (default: the test user)."""
    lines = ["auth:", "  users:"]
    for user in users or (TEST_CREDENTIALS,):
        lines += [f"    - name: {user.user}", f"      password_hash: '{_hash(user.password)}'"]
    return "".join(f"{indent}{line}\n" for line in lines)


@contextmanager
def serve_in_process(config: Path) -> Iterator[str]:
    """Serve ``config`` on a free loopback port in this process; yields the URI."""
    engine = Engine.from_config(load_config(config))
    try:
        with serving(FlightSqlServer(engine, "grpc://127.0.0.1:0")) as server:
            yield f"grpc://127.0.0.1:{server.port}"
    finally:
        engine.catalog.close()


def parquet_engine(folder: Path, domain: str, product: str, table: pa.Table) -> Engine:
    """An engine over one Parquet product ``domain.product`` holding ``table``, written into ``folder``."""
    pq.write_table(table, folder / f"{product}.parquet")
    (folder / "mesh.yaml").write_text(
        f"domains:\n  - name: {domain}\n    connector: {{type: parquet, path: {product}.parquet}}\n"
        f"    products: [{{name: {product}, source: {product}.parquet}}]\n"
    )
    return Engine.from_config(load_config(folder))


@contextmanager
def serving(server: FlightSqlServer) -> Iterator[FlightSqlServer]:
    """``server`` serving on a thread of this process until the block ends, then shut down."""
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)


class GatewayProcess:
    """``meshgate serve`` in a child process, so its memory can be measured on its own.

    ``credentials`` are what clients log in with: the test user by default (the config
    must declare it, see :func:`auth_yaml`), the printed demo login for :meth:`demo`, or
    ``None`` for ``--no-auth``. ``startup_log`` holds the lines printed before serving.
    """

    def __init__(
        self,
        config: Path | None,
        *,
        extra: tuple[str, ...] = (),
        credentials: Credentials | None = TEST_CREDENTIALS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.startup_log: list[str] = []
        self.output: deque[str] = deque(maxlen=10_000)  # the lines printed after startup (the last ones)
        self.http_url: str | None = None  # the HTTP listener's, with --http-port (or --demo)
        self._wants_http = "--http-port" in extra or "--demo" in extra
        source = ("--config", str(config)) if config is not None else ()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *source, *extra, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "MESHGATE_LOG_LEVEL": "INFO", **(env or {})},
        )
        self.uri = self._wait_for_port()

    @classmethod
    def demo(cls, directory: Path, *, extra: tuple[str, ...] = ()) -> GatewayProcess:
        """``meshgate serve --demo`` writing its mesh into ``directory``."""
        demo = ("--demo", "--demo-dir", str(directory), "--http-port", "0")  # never the fixed 8080 in tests
        process = cls(None, extra=(*demo, *extra), credentials=None)
        process.config = directory / "config"
        return process

    def _wait_for_port(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        found: re.Match[str] | None = None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.startup_log.append(line)
            login = re.search(r"demo login: user '(\S+)', password '(\S+)'", line)
            if login:
                self.credentials = Credentials(login.group(1), login.group(2))
            http = re.search(r"catalog in the browser at (https?://\S+?) ", line)
            if http:
                self.http_url = http.group(1)
            found = found or re.search(r"serving catalog '\w+' at (grpc(?:\+tls)?://[\w.-]+:\d+)", line)
            if found and (self.http_url is not None or not self._wants_http):
                threading.Thread(target=self._drain, daemon=True).start()
                return found.group(1)
        self.process.kill()
        raise RuntimeError("gateway did not start:\n" + "".join(self.startup_log))

    def connect(self) -> flightsql.Connection:
        """An ADBC connection logged in with :attr:`credentials`."""
        return connect(self.uri, self.credentials)

    def client_env(self) -> dict[str, str]:
        """The environment for ``meshgate query`` against this gateway (credentials included)."""
        return self.credentials.env() if self.credentials is not None else dict(os.environ)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

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


def connect(uri: str, credentials: Credentials | None = None, **options: str) -> flightsql.Connection:
    """An ADBC Flight SQL connection, logged in when ``credentials`` are given."""
    db_kwargs = {**(credentials.db_kwargs() if credentials is not None else {}), **options}
    return flightsql.connect(uri, db_kwargs=db_kwargs)


def query(uri: str, sql: str, credentials: Credentials | None = None) -> pa.Table:
    """Run ``sql`` through the ADBC Flight SQL driver (a real, independent client)."""
    with connect(uri, credentials) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        table: pa.Table = cursor.fetch_arrow_table()
        return table


def query_served(engine: Engine, sql: str) -> pa.Table:
    """Serve ``engine`` on a free loopback port for one query, ``sql`` through :func:`query`."""
    with serving(FlightSqlServer(engine, "grpc://127.0.0.1:0")) as server:
        return query(f"grpc://127.0.0.1:{server.port}", sql)


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
