"""Deadlines that hold end to end: a real gateway, real sources, real clients.

The statement timeout bounds the whole query, whatever holds it: a PostgreSQL table lock,
a PostgreSQL server stopped with SIGSTOP (a throwaway embedded one: the shared server is
never stopped), a SQLite database another process holds locked, a heavy query that runs
only in DataFusion. When it fires, the client gets DEADLINE_EXCEEDED within about a second,
and nothing keeps running where the query ran: no PostgreSQL backend left waiting, no CPU
burnt. Queries that end otherwise (cancelled, a backend terminated mid-stream) end cleanly
too, and the next query works.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pg
import psutil
import pyarrow.flight as flight
import pytest

from gateway.flightsql import flight_pb2 as fpb
from tests.lifecycle.test_postgres_lifecycle import (
    COOKIES,
    SESSION_OPTION,
    cancel_flight_info,
    gateway,
    statement,
    wait_for,
)
from tests.support.postgres import embedded_server

TIMEOUT = 2.0
LOCK_WAIT = 0.5  # the SQLite connector's lock_wait in these meshes (seconds)
TIMED_OUT = "[Meshgate] statement timeout: the query ran longer than 2 s and was cancelled"
# A heavy query that runs only in DataFusion: 20 M rows sorted (spills under the default memory limit).
HEAVY = (
    "SELECT a.x * 7919 % 1000003 AS k, b.y FROM (SELECT unnest(range(0, 20000)) AS x) a"
    " CROSS JOIN (SELECT unnest(range(0, 1000)) AS y) b ORDER BY k DESC, b.y"
)


def run(uri: str, sql: str) -> list[tuple[object, ...]]:
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []


def write_mesh(directory: Path, postgres_uri: str, table: str, sqlite: Path | None = None) -> Path:
    """A mesh with PostgreSQL products (``table``, and a product that streams then stalls), a CSV one, SQLite."""
    (directory / "kinds").mkdir(exist_ok=True)
    (directory / "kinds" / "kinds.csv").write_text("g,label\n1,one\n2,two\n3,three\n")
    stalls = (
        "SELECT g AS x FROM generate_series(1, 3000000) g, pg_sleep(CASE WHEN g = 2000000 THEN 30 ELSE 0 END) s"
    )
    sqlite_domain = (
        f"  - name: shop\n    connector: {{type: sqlite, path: '{sqlite}', lock_wait: {LOCK_WAIT}}}\n"
        if sqlite is not None
        else ""
    )
    config = directory / "mesh.yaml"
    config.write_text(
        f"""domains:
  - name: sales
    connector: {{type: postgres, uri: '{postgres_uri}'}}
    products:
      - {{name: locked, source: '{table}'}}
      - name: stalls
        sql: "{stalls}"
  - name: files
    connector: {{type: csv, path: kinds}}
{sqlite_domain}"""
    )
    return config


ROUTED = "SELECT id FROM sales.locked"
FEDERATED = "SELECT l.id, k.label FROM sales.locked l JOIN files.kinds k ON k.g = l.id"


def assert_timed_out(error: BaseException) -> None:
    """The statement timeout, as the ADBC driver reports DEADLINE_EXCEEDED."""
    assert TIMED_OUT in str(error)
    assert "DeadlineExceeded" in str(error)
    assert isinstance(error, adbc_driver_manager.Error)
    assert error.status_code == adbc_driver_manager.AdbcStatusCode.TIMEOUT


def timed(call: Callable[[], object]) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(adbc_driver_manager.Error) as raised:
        call()
    return time.monotonic() - started, raised.value


def query(cursor: adbc_driver_manager.dbapi.Cursor, sql: str) -> int:
    cursor.execute(sql)
    rows: int = cursor.fetch_arrow_table().num_rows
    return rows


# -- a PostgreSQL table lock ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lock_mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    table = f"{pg_schema}.locked"
    run(postgres_uri, f"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 3) g")
    return write_mesh(tmp_path_factory.mktemp("deadlines"), postgres_uri, table)


@contextmanager
def table_locked(postgres_uri: str, table: str) -> Iterator[None]:
    """``table`` held in ACCESS EXCLUSIVE mode by another connection (readers wait) until the block ends."""
    with pg.connect(postgres_uri) as locker, locker.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        locker.rollback()


def waiting_on(postgres_uri: str, table: str) -> list[tuple[object, ...]]:
    """The backends (the gateway's) waiting for a lock on ``table``."""
    return run(
        postgres_uri,
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        f" AND query LIKE '%{table}%' AND pid <> pg_backend_pid()",
    )


@pytest.mark.parametrize("sql", [ROUTED, FEDERATED], ids=["routed", "federated"])
def test_a_query_waiting_on_a_table_lock_times_out_and_leaves_no_backend_waiting(
    lock_mesh: Path, postgres_uri: str, pg_schema: str, sql: str
) -> None:
    table = f"{pg_schema}.locked"
    with (
        gateway(lock_mesh, statement_timeout=TIMEOUT) as (uri, server),
        flightsql.connect(uri) as connection,
        connection.cursor() as cursor,
    ):
        with table_locked(postgres_uri, table):
            seconds, error = timed(lambda: query(cursor, sql))
            assert_timed_out(error)
            assert TIMEOUT <= seconds < TIMEOUT + 1
            wait_for(lambda: waiting_on(postgres_uri, table) == [], timeout=1, what="no gateway backend waiting")
        wait_for(lambda: server._statements.active() == 0, timeout=1, what="no statement left")
        assert query(cursor, sql) == 3  # the lock is gone: the same connection works


def test_a_session_statement_timeout_set_through_adbc_holds_against_a_lock(
    lock_mesh: Path, postgres_uri: str, pg_schema: str
) -> None:
    table = f"{pg_schema}.locked"
    with (
        gateway(lock_mesh) as (uri, _server),
        flightsql.connect(uri, db_kwargs=COOKIES) as connection,
        connection.cursor() as cursor,
    ):
        connection.adbc_connection.set_options(**{f"{SESSION_OPTION}statement_timeout": str(TIMEOUT)})
        with table_locked(postgres_uri, table):
            seconds, error = timed(lambda: query(cursor, ROUTED))
            assert_timed_out(error)
            assert TIMEOUT <= seconds < TIMEOUT + 1
            wait_for(lambda: waiting_on(postgres_uri, table) == [], timeout=1, what="no gateway backend waiting")


# -- a PostgreSQL backend terminated mid-stream -----------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    ["SELECT x FROM sales.stalls", "SELECT x FROM sales.stalls UNION ALL SELECT g FROM files.kinds"],
    ids=["routed", "federated"],
)
def test_a_backend_terminated_mid_stream_is_a_clean_error_and_the_next_query_works(
    lock_mesh: Path, postgres_uri: str, sql: str
) -> None:
    stalled = "SELECT pid FROM pg_stat_activity WHERE query ILIKE '%generate_series(1, 3000000)%'"
    stalled += " AND state = 'active' AND pid <> pg_backend_pid()"
    with gateway(lock_mesh) as (uri, server), flightsql.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        reader = cursor.fetch_record_batch()
        assert reader.read_next_batch().num_rows > 0  # streaming
        wait_for(lambda: len(run(postgres_uri, stalled)) == 1, what="the source query stalled mid-stream")
        ((pid,),) = run(postgres_uri, stalled)
        run(postgres_uri, f"SELECT pg_terminate_backend({pid})")
        started = time.monotonic()
        with pytest.raises(OSError) as raised:  # the driver's Arrow reader reports UNAVAILABLE as an IOError
            reader.read_all()
        assert time.monotonic() - started < 2
        message = str(raised.value)
        assert "] terminating connection due to administrator command. Detail: Unavailable" in message
        assert "[sales/postgres:" in message and "Traceback" not in message
        wait_for(lambda: server._statements.active() == 0, timeout=2, what="no statement left")
        assert query(cursor, "SELECT id FROM sales.locked") == 3


# -- a frozen PostgreSQL server (SIGSTOP) ------------------------------------------------------------


@pytest.fixture(scope="module")
def frozen_uri() -> Iterator[str]:
    """A throwaway embedded PostgreSQL of this module's own: the tests stop it with SIGSTOP."""
    with tempfile.TemporaryDirectory(prefix="meshgate-frozen-") as folder, embedded_server(Path(folder)) as uri:
        run(uri, "CREATE TABLE public.locked AS SELECT g AS id FROM generate_series(1, 3) g")
        yield uri


@contextmanager
def frozen(uri: str) -> Iterator[None]:
    """Every process of the server at ``uri`` stopped (SIGSTOP), and always continued (SIGCONT) after."""
    ((pid,),) = run(uri, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    postmaster = psutil.Process(int(pid)).parent()  # type: ignore[arg-type]
    processes = [postmaster, *postmaster.children(recursive=True)]
    try:
        for process in processes:
            _signal(process, signal.SIGSTOP)
        yield
    finally:
        for process in processes:
            _signal(process, signal.SIGCONT)


def _signal(process: psutil.Process, number: int) -> None:
    """Send ``number`` to ``process`` unless it has ended meanwhile (a backend whose client left)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(number)


def test_a_frozen_postgres_times_out_in_bounded_time_and_the_next_query_works_after_sigcont(
    tmp_path: Path, frozen_uri: str
) -> None:
    mesh = write_mesh(tmp_path, frozen_uri, "public.locked")
    with (
        gateway(mesh, statement_timeout=TIMEOUT) as (uri, server),
        flightsql.connect(uri) as connection,
        connection.cursor() as cursor,
    ):
        assert query(cursor, ROUTED) == 3 and query(cursor, FEDERATED) == 3  # pooled connections now exist
        with frozen(frozen_uri):
            for sql in (ROUTED, FEDERATED, ROUTED):  # pooled connections, then new ones that cannot connect
                seconds, error = timed(lambda sql=sql: query(cursor, sql))  # type: ignore[misc]
                assert_timed_out(error)
                assert TIMEOUT <= seconds < TIMEOUT + 1
        wait_for(lambda: server._statements.active() == 0, timeout=1, what="no statement left")
        assert query(cursor, ROUTED) == 3 and query(cursor, FEDERATED) == 3
        # The queries abandoned while it was stopped end once it runs again (their statement_timeout expired).
        active = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%locked%'"
        wait_for(lambda: run(frozen_uri, active + " AND pid <> pg_backend_pid()") == [(0,)], timeout=3)


# -- a SQLite database locked by another writer -------------------------------------------------------


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """``BEGIN EXCLUSIVE`` held on ``path`` by another process (a lock taken in this one would not hold:
    POSIX locks do not conflict within a process, and the ADBC driver links a SQLite of its own)."""
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
    assert locker.stdin is not None and locker.stdout is not None
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.stdin.close()
        locker.wait(timeout=10)


@pytest.mark.parametrize("timeout", [TIMEOUT, None], ids=["statement-timeout", "no-timeout"])
def test_a_locked_sqlite_database_fails_in_bounded_time(
    tmp_path: Path, postgres_uri: str, pg_schema: str, lock_mesh: Path, timeout: float | None
) -> None:
    database = tmp_path / "shop.db"
    subprocess.run(
        [sys.executable, "-c", f"import sqlite3; c = sqlite3.connect({str(database)!r});"
         " c.execute('CREATE TABLE items (id INTEGER)'); c.execute('INSERT INTO items VALUES (1)'); c.commit()"],
        check=True,
    )
    mesh = write_mesh(tmp_path, postgres_uri, f"{pg_schema}.locked", sqlite=database)
    with (
        gateway(mesh, statement_timeout=timeout) as (uri, _server),
        flightsql.connect(uri) as connection,
        connection.cursor() as cursor,
    ):
        with sqlite_locked(database):
            seconds, error = timed(lambda: query(cursor, "SELECT id FROM shop.items"))
            if timeout is None:  # the connector's lock_wait bounds it
                assert "database is locked" in str(error)
                assert LOCK_WAIT <= seconds < LOCK_WAIT + 1
            else:
                assert_timed_out(error)
                assert TIMEOUT <= seconds < TIMEOUT + 1
        assert query(cursor, "SELECT id FROM shop.items") == 1


# -- DataFusion's own work ------------------------------------------------------------------------------


def cpu_settles(process: psutil.Process, within: float = 1.0, idle: float = 20.0) -> float:
    """Seconds until the process uses less than ``idle`` % CPU over a 0.2 s window (fails after ``within``)."""
    started = time.monotonic()
    while True:
        process.cpu_percent(None)
        time.sleep(0.2)
        if process.cpu_percent(None) < idle:
            return time.monotonic() - started
        assert time.monotonic() - started < within, "the process still burns CPU"


def burns(process: psutil.Process, seconds: float = 0.4, within: float = 5.0) -> bool:
    """Whether the process uses ``seconds`` of CPU time within ``within`` seconds of wall time.

    CPU time rather than a share of one window: on a shared machine (or beside another test
    worker) the share depends on the neighbours, the work done does not.
    """

    def used() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    start, deadline = used(), time.monotonic() + within
    while time.monotonic() < deadline:
        if used() - start >= seconds:
            return True
        time.sleep(0.05)
    return False


def start_reading(client: flight.FlightClient, info: flight.FlightInfo) -> tuple[threading.Thread, list[BaseException]]:
    """Read the statement's stream in a thread (chunk by chunk, see test_postgres_lifecycle); its error is kept."""
    errors: list[BaseException] = []

    def read() -> None:
        reader = client.do_get(info.endpoints[0].ticket)
        try:
            while True:
                reader.read_chunk()
        except StopIteration:
            return
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, errors


def test_cancelling_a_heavy_datafusion_query_brings_the_cpu_back_to_idle_within_a_second(lock_mesh: Path) -> None:
    process = psutil.Process()
    with gateway(lock_mesh) as (uri, server), flight.connect(uri) as client:
        info = statement(client, HEAVY)
        reader, errors = start_reading(client, info)
        assert burns(process)  # DataFusion is sorting

        assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_CANCELLED
        settled = cpu_settles(process)

        reader.join(timeout=2)
        assert not reader.is_alive() and isinstance(errors[0], flight.FlightCancelledError)
        assert settled < 1.0
        wait_for(lambda: server._statements.active() == 0, timeout=1, what="no statement left")


def test_a_heavy_datafusion_query_past_its_statement_timeout_stops_burning_cpu(lock_mesh: Path) -> None:
    process = psutil.Process()
    with gateway(lock_mesh, statement_timeout=TIMEOUT) as (uri, _server), flight.connect(uri) as client:
        started = time.monotonic()
        reader, errors = start_reading(client, statement(client, HEAVY))
        reader.join(timeout=TIMEOUT + 2)
        answered = time.monotonic() - started
        assert not reader.is_alive() and isinstance(errors[0], flight.FlightTimedOutError)
        assert TIMED_OUT in str(errors[0])
        assert TIMEOUT <= answered < TIMEOUT + 1
        assert cpu_settles(process) < 1.0
