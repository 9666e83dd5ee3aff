"""The stress mesh and the gateway process that serves it.

The mesh is the governed federation mesh of the policy tests (``tests/governance/mesh.py``:
sales in PostgreSQL, inventory in SQLite, logistics in Parquet, platform and domain
policies, eight users with passwords) plus an ``ops`` domain whose one product sleeps in
PostgreSQL, so that the soak has queries worth cancelling.

:class:`StressGateway` is a ``meshgate serve`` subprocess that keeps the tail of its log
(a crash report needs the last lines) and answers what a stress run asks of a process:
is it alive, how did it die, how much memory, threads and file descriptors does it hold,
and how many PostgreSQL connections.
"""

from __future__ import annotations

import collections
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import psutil

from tests.e2e.federation_data import build_tables
from tests.governance.mesh import USERS, auth_section, credentials, write_governed_mesh
from tests.support.gateway import Credentials, GatewayProcess
from tests.support.postgres import postgres_server, temporary_schema

SLOW_SECONDS = 1.5
"""How long ``ops.slow`` sleeps in PostgreSQL."""

OPS_DOMAIN = """domains:
  - name: ops
    owner: ops-team
    description: A slow PostgreSQL product, for cancellations
    connector: {{type: postgres, uri: "{uri}"}}
    products:
      - name: slow
        sql: SELECT g AS n FROM generate_series(1, 3) g, pg_sleep({seconds}) s
    policies:
      grants:
        - {{role: analyst, on: ops.slow}}
"""

LOGIN_USERS = tuple(name for name, caller in USERS.items() if caller.user is not None)
"""The mesh's users who can log in (root is the admin, eve has no grant at all)."""


def write_stress_mesh(directory: Path, postgres_uri: str, schema: str) -> Path:
    """Load the sources and write the config directory; returns it."""
    config = write_governed_mesh(directory, postgres_uri, schema, build_tables())
    (config / "auth.yaml").write_text(auth_section())
    (config / "ops.yaml").write_text(OPS_DOMAIN.format(uri=postgres_uri, seconds=SLOW_SECONDS))
    return config


@contextmanager
def stress_mesh(postgres_uri: str | None = None) -> Iterator[tuple[Path, str]]:
    """A fresh mesh in a temporary directory and PostgreSQL schema: ``(config, postgres_uri)``.

    Without ``postgres_uri``, the PostgreSQL of the test suite (``tests/support/postgres.py``).
    """
    with (
        tempfile.TemporaryDirectory(prefix="meshgate-stress-") as folder,
        postgres_server(Path(folder) / "pg") if postgres_uri is None else _given(postgres_uri) as uri,
        temporary_schema(uri, "stress") as schema,
    ):
        yield write_stress_mesh(Path(folder), uri, schema), uri


@contextmanager
def _given(uri: str) -> Iterator[str]:
    yield uri


class StressGateway(GatewayProcess):
    """``meshgate serve --config`` in a child process, logged in as root by default.

    ``statement_timeout`` bounds every query, so that a generated query that would run
    for minutes ends with a clean DEADLINE_EXCEEDED instead of holding the run.
    """

    def __init__(self, config: Path, *, statement_timeout: float = 10.0, log_lines: int = 4000) -> None:
        self.log_tail: collections.deque[str] = collections.deque(maxlen=log_lines)
        self.unexpected_references: list[str] = []
        self._log_lock = threading.Lock()
        super().__init__(
            config,
            extra=("--statement-timeout", f"{statement_timeout:g}"),
            credentials=credentials("root"),
        )
        self.ps = psutil.Process(self.process.pid)

    def _drain(self) -> None:  # keeps the tail instead of discarding it
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._log_lock:
                self.log_tail.append(line)
                found = re.search(r"unexpected error while serving a request \(reference ([0-9a-f]+)\)", line)
                if found:
                    self.unexpected_references.append(found.group(1))

    def login(self, user: str) -> Credentials:
        """The password of ``user`` (one of :data:`LOGIN_USERS`)."""
        return credentials(user)

    def alive(self) -> bool:
        return self.process.poll() is None

    def death(self) -> str:
        """How the process ended, e.g. ``killed by SIGABRT``; empty while it runs."""
        code = self.process.poll()
        if code is None:
            return ""
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def tail(self, lines: int = 60) -> str:
        with self._log_lock:
            return "".join(list(self.log_tail)[-lines:])

    def vitals(self, postgres_uri: str | None = None) -> dict[str, int]:
        """RSS (bytes), threads, open file descriptors and PostgreSQL connections of the process.

        ``pg_connections`` counts the process's TCP connections to PostgreSQL's port, and
        ``pg_backends`` the ``pg_stat_activity`` rows whose client port is one of them (other
        sessions on the same server, other engineers' tests included, are not counted).
        """
        with self.ps.oneshot():
            figures = {
                "rss": self.ps.memory_info().rss,
                "threads": self.ps.num_threads(),
                "fds": self.ps.num_fds(),
            }
            ports = {c.laddr.port for c in self.ps.net_connections("tcp") if c.raddr and c.raddr.port == 5432}
        figures["pg_connections"] = len(ports)
        if postgres_uri is not None:
            figures["pg_backends"] = pg_backends(postgres_uri, ports)
        return figures


def pg_backends(postgres_uri: str, client_ports: set[int]) -> int:
    """How many ``pg_stat_activity`` rows come from ``client_ports`` (loopback clients)."""
    if not client_ports:
        return 0
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT client_port FROM pg_stat_activity WHERE client_port IS NOT NULL")
        return sum(1 for (port,) in cursor.fetchall() if port in client_ports)
