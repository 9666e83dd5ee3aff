"""Deadlines at the connector contract: ``execute(sql, schema, deadline)`` against real sources.

Each source query ends by its deadline with QueryTimeoutError, whatever holds it (a lock,
a server that accepts connections and never answers, a long computation); the source's own
settings for it never leak to the next query on a pooled connection; and ``cancel()`` never
blocks, even on a source that does not answer.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import psutil
import pyarrow as pa
import pytest

from connectors.deadline import before, expired
from connectors.duckdb import DuckdbConnector
from connectors.postgres import PostgresConnector
from connectors.sqlbase import ReaderStream
from connectors.sqlite import SqliteConnector
from gateway.config import ConnectorConfig
from gateway.errors import QueryTimeoutError, SourceError

INT = pa.schema([("x", pa.int32())])


def run(uri: str, sql: str) -> list[tuple[object, ...]]:
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []


def elapsed_until_error(call: Callable[[], object]) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError) as raised:
        call()
    return time.monotonic() - started, raised.value


def late_by(deadline: float, call: Callable[[], object]) -> tuple[float, BaseException]:
    """How long after ``deadline`` ``call`` raised QueryTimeoutError (negative: before it), and the error."""
    with pytest.raises(QueryTimeoutError) as raised:
        call()
    return time.monotonic() - deadline, raised.value


@pytest.fixture
def postgres(postgres_uri: str) -> Iterator[PostgresConnector]:
    connector = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=postgres_uri))
    yield connector
    connector.close()


# -- PostgreSQL ------------------------------------------------------------------------------


def test_a_scan_waiting_on_a_lock_ends_at_its_deadline_and_its_backend_stops_waiting(
    postgres: PostgresConnector, postgres_uri: str, pg_schema: str
) -> None:
    table = f'"{pg_schema}".locked'
    run(postgres_uri, f"CREATE TABLE {table} AS SELECT 1 AS x")
    with pg.connect(postgres_uri) as locker, locker.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # held until the transaction ends
        seconds, error = elapsed_until_error(
            lambda: list(postgres.execute(f"SELECT x FROM {table}", INT, time.monotonic() + 1.0))
        )
        assert 1.0 <= seconds < 1.5
        assert str(error) == "[sales/postgres] the source query did not finish before the query's deadline"
        waiting = f"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%{table}%'"
        assert run(postgres_uri, waiting) == [(0,)]  # PostgreSQL's own lock_timeout ended the wait


def test_a_scan_past_its_deadline_stops_its_backend(postgres: PostgresConnector, postgres_uri: str) -> None:
    deadline = time.monotonic() + 1.0
    stream = postgres.execute("SELECT 1 AS x FROM pg_sleep(20.25)", INT, deadline)
    late, _ = late_by(deadline, lambda: list(stream))
    assert 0 <= late < 0.3
    time.sleep(0.5)
    active = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20.25)%' AND state = 'active'"
    assert run(postgres_uri, active + " AND pid <> pg_backend_pid()") == [(0,)]


def test_the_timeouts_are_set_for_a_bounded_scan_and_reset_before_the_next_query(postgres: PostgresConnector) -> None:
    sql = (
        "SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS st,"
        " current_setting('lock_timeout') AS lt"
    )
    schema = pa.schema([("pid", pa.int32()), ("st", pa.string()), ("lt", pa.string())])
    bounded = pa.Table.from_batches(list(postgres.execute(sql, schema, time.monotonic() + 30)), schema).to_pylist()
    (row,) = bounded
    assert row["st"] == row["lt"]
    milliseconds = float(row["st"].removesuffix("ms")) if row["st"].endswith("ms") else float(row["st"][:-1]) * 1000
    assert 29_000 <= milliseconds <= 30_000
    unbounded = pa.Table.from_batches(list(postgres.execute(sql, schema)), schema).to_pylist()
    assert unbounded == [{"pid": row["pid"], "st": "0", "lt": "0"}]  # the same pooled connection, reset


def test_connecting_to_a_server_that_never_answers_ends_at_the_deadline() -> None:
    """A listening socket that never answers: what a server stopped with SIGSTOP looks like to a client."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        connector = PostgresConnector(
            "sales", ConnectorConfig(type="postgres", uri=f"postgresql://u@127.0.0.1:{port}/db")
        )
        try:
            seconds, error = elapsed_until_error(lambda: connector.execute("SELECT 1", INT, time.monotonic() + 1.0))
        finally:
            connector.close()
    assert 1.0 <= seconds < 1.3
    assert "127.0.0.1" not in str(error)  # the location is for the domain's owners only


# -- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sqlite3; c = sqlite3.connect({str(path)!r}); c.execute('CREATE TABLE t (x INTEGER)');"
            " c.execute('INSERT INTO t VALUES (1)'); c.commit()",
        ],
        check=True,
    )
    return path


def locked_by_another_process(path: Path) -> subprocess.Popen[str]:
    """A process holding ``BEGIN EXCLUSIVE`` on ``path`` until its stdin closes.

    Another process, not this one: POSIX locks do not conflict within one process, and the
    ADBC driver links a SQLite of its own, so a lock taken here with ``sqlite3`` would not hold.
    """
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sqlite3, sys; c = sqlite3.connect({str(path)!r}, isolation_level=None);"
            " c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def test_a_locked_sqlite_database_fails_after_the_lock_wait_without_a_deadline_and_at_the_deadline_with_one(
    sqlite_path: Path,
) -> None:
    connector = SqliteConnector(
        "inventory", ConnectorConfig(type="sqlite", path=sqlite_path, options={"lock_wait": 0.3})
    )
    schema = pa.schema([("x", pa.int64())])
    locker = locked_by_another_process(sqlite_path)
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match="database is locked"):
            list(connector.execute("SELECT x FROM t", schema))
        assert 0.3 <= time.monotonic() - started < 0.8
        seconds, _ = elapsed_until_error(
            lambda: list(connector.execute("SELECT x FROM t", schema, time.monotonic() + 1.0))
        )
        assert 1.0 <= seconds < 1.5
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(timeout=10)
    try:
        assert sum(batch.num_rows for batch in connector.execute("SELECT x FROM t", schema, time.monotonic() + 5)) == 1
        assert connector.fetch("PRAGMA busy_timeout").to_pylist() == [{"timeout": 300}]  # reset in the pool
    finally:
        connector.close()


# -- DuckDB ----------------------------------------------------------------------------------


def test_a_long_duckdb_query_is_interrupted_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    connector = DuckdbConnector("warehouse", ConnectorConfig(type="duckdb", path=path))
    heavy = "SELECT sum(a.range * b.range)::BIGINT AS x FROM range(200000) a, range(200000) b"
    process = psutil.Process()
    try:
        deadline = time.monotonic() + 1.0
        stream = connector.execute(heavy, pa.schema([("x", pa.int64())]), deadline)
        late, error = late_by(deadline, lambda: list(stream))
        assert 0 <= late < 0.3
        assert str(error).startswith("[warehouse/duckdb] ")
        time.sleep(0.3)
        process.cpu_percent(None)
        time.sleep(0.5)
        assert process.cpu_percent(None) < 25  # DuckDB stopped: interrupted, not abandoned
    finally:
        time.sleep(0.2)  # the reading thread lets go of its cursor
        connector.close()


# -- the contract's machinery, with a source that never answers ---------------------------------


class _StuckScan:
    """A source query whose start and interrupt block until released (a frozen server)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished: list[bool] = []

    def start(self) -> Iterable[pa.RecordBatch]:
        self.release.wait()
        return iter(())

    def interrupt(self) -> None:
        self.release.wait()

    def finish(self, complete: bool) -> None:
        self.finished.append(complete)

    def error(self, exc: Exception) -> SourceError:
        return SourceError("d", "stuck", str(exc))


def test_cancel_never_blocks_and_the_stream_ends_at_once_on_a_source_that_does_not_answer() -> None:
    scan = _StuckScan()
    stream = ReaderStream(INT, scan, source="d/stuck")
    reading = threading.Thread(target=lambda: list(stream))
    reading.start()
    time.sleep(0.2)
    started = time.monotonic()
    stream.cancel()
    assert time.monotonic() - started < 0.05
    reading.join(timeout=1)
    assert not reading.is_alive()
    assert scan.finished == []  # still held by the source
    scan.release.set()
    deadline = time.monotonic() + 5
    while not scan.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scan.finished == [False]  # released once, as incomplete


def test_a_stream_on_a_source_that_does_not_answer_raises_at_its_deadline() -> None:
    scan = _StuckScan()
    stream = ReaderStream(INT, scan, time.monotonic() + 0.5, source="d/stuck")
    try:
        seconds, error = elapsed_until_error(lambda: list(stream))
        assert 0.5 <= seconds < 0.7
        assert str(error) == str(expired("d/stuck"))
    finally:
        scan.release.set()


def test_before_gives_up_at_the_deadline_and_hands_a_late_result_to_abandon() -> None:
    abandoned: list[str] = []
    gate = threading.Event()

    def slow() -> str:
        gate.wait()
        return "connection"

    seconds, _ = elapsed_until_error(
        lambda: before(time.monotonic() + 0.3, slow, abandon=abandoned.append, source="d/slow")
    )
    assert 0.3 <= seconds < 0.5
    gate.set()
    deadline = time.monotonic() + 5
    while not abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert abandoned == ["connection"]
    assert before(None, lambda: 7, abandon=abandoned.append, source="d/fast") == 7
