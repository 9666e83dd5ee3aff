"""Prepared statements kept on pooled ADBC connections and reused (connectors/adbc.py).

Against a real PostgreSQL (through a small proxy that counts the protocol messages the
connector sends) and real SQLite files.
"""

from __future__ import annotations

import gc
import socket
import sqlite3
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pg
import adbc_driver_sqlite.dbapi
import pyarrow as pa
import pytest

from connectors.adbc import AdbcConnector, KeptStatements
from connectors.base import SourceStream
from connectors.postgres import PostgresConnector
from connectors.sqlite import SqliteConnector
from gateway.config import ConnectorConfig
from gateway.errors import SourceError

ITEM = pa.schema([("id", pa.int64()), ("name", pa.string()), ("pid", pa.int32())])


def run(uri: str, *statements: str) -> list[tuple[object, ...]]:
    """Run statements on a fresh connection; the rows of the last one."""
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def bound(*values: int) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array([value], pa.int64()) for value in values], names=[str(i) for i in range(len(values))]
    )


def rows(stream: SourceStream) -> list[dict[str, object]]:
    return pa.Table.from_batches(list(stream), stream.schema).to_pylist()


def kept(connector: AdbcConnector, connection: object) -> KeptStatements:
    """The statements an idle connection of ``connector`` keeps."""
    return connector._pool._kept[connection]  # type: ignore[index]


def postgres(uri: str, pool_size: int = 1) -> PostgresConnector:
    return PostgresConnector("sales", ConnectorConfig(type="postgres", uri=uri, options={"pool_size": pool_size}))


def backend_gone(uri: str, pid: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while run(uri, f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class MessageCounter:
    """A TCP proxy in front of PostgreSQL counting the protocol messages its clients send, by type.

    A message is counted before it is forwarded, so every message of a finished call is counted.
    """

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or "127.0.0.1"
        port = parts.port or int(query.get("port", "5432"))
        self._upstream: tuple[socket.AddressFamily, object] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else (socket.AF_INET, (host, port))
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        user = parts.username or "postgres"
        login = f"{user}:{parts.password}" if parts.password else user
        listening = self._listener.getsockname()[1]
        self.uri = f"postgresql://{login}@127.0.0.1:{listening}{parts.path}?sslmode=disable&gssencmode=disable"
        self._sent: Counter[str] = Counter()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> Counter[str]:
        """The messages sent since the last call, by type (``P``: Parse, ``B``: Bind ...)."""
        with self._lock:
            sent, self._sent = self._sent, Counter()
        return sent

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                family, address = self._upstream
                server = socket.socket(family)
                server.connect(address)
                threading.Thread(target=self._answers, args=(server, client), daemon=True).start()
                threading.Thread(target=self._requests, args=(client, server), daemon=True).start()

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        with suppress(OSError):
            while data := server.recv(65536):
                client.sendall(data)
        client.close()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        pending, started = b"", False  # the startup message has no type byte; every later one has
        with suppress(OSError):
            while data := client.recv(65536):
                pending += data
                while True:
                    head = 0 if started else 1  # untyped: the length comes first
                    if len(pending) < 5 - head:
                        break
                    size = int.from_bytes(pending[1 - head : 5 - head], "big") + 1 - head
                    if len(pending) < size:
                        break
                    if started:
                        with self._lock:
                            self._sent[chr(pending[0])] += 1
                    pending, started = pending[size:], True
                server.sendall(data)
        server.close()


@pytest.fixture(scope="module")
def items(postgres_uri: str, pg_schema: str) -> str:
    table = f'"{pg_schema}".items'
    run(
        postgres_uri,
        f"CREATE TABLE {table} (id int8 PRIMARY KEY, name text NOT NULL)",
        f"INSERT INTO {table} SELECT g, 'item ' || g FROM generate_series(1, 1000) g",
    )
    return table


@pytest.fixture
def counted(postgres_uri: str) -> Iterator[MessageCounter]:
    counter = MessageCounter(postgres_uri)
    yield counter
    counter.close()


def item_lookup(items: str) -> str:
    return f"SELECT id, name, pg_backend_pid() AS pid FROM {items} WHERE id = $1"


def test_a_repeated_lookup_runs_the_statement_its_connection_prepared_before(
    counted: MessageCounter, items: str
) -> None:
    connector = postgres(counted.uri)
    sql = item_lookup(items)
    try:
        first = rows(connector.execute_bound(sql, ITEM, bound(7)))
        assert [(r["id"], r["name"]) for r in first] == [(7, "item 7")]
        # the new connection's session zone (connectors.postgres._UTC: 2), then the statement prepared
        # (Parse, Describe) and parsed again with the bound types (2)
        assert counted.take()["P"] == 4
        for key, want in [(8, [(8, "item 8")]), (5000, []), (9, [(9, "item 9")]), (9, [(9, "item 9")])]:
            found = rows(connector.execute_bound(sql, ITEM, bound(key)))
            assert [(r["id"], r["name"]) for r in found] == want  # never an earlier execution's rows
            assert {r["pid"] for r in found} <= {first[0]["pid"]}
            assert counted.take()["P"] == 1  # executed only: no preparing again
    finally:
        connector.close()


def test_every_connection_keeps_its_own_statements(postgres_uri: str, items: str) -> None:
    connector = postgres(postgres_uri, pool_size=2)
    sql = item_lookup(items)
    try:
        one, two = connector.execute_bound(sql, ITEM, bound(1)), connector.execute_bound(sql, ITEM, bound(2))
        pids = {rows(one)[0]["pid"], rows(two)[0]["pid"]}
        assert len(pids) == 2
        for connection in connector._pool._idle:
            statement = kept(connector, connection).take(sql)
            assert statement is not None
            kept(connector, connection).keep(sql, statement)
        assert {rows(connector.execute_bound(sql, ITEM, bound(3)))[0]["pid"]} <= pids
    finally:
        connector.close()


@pytest.mark.parametrize("seconds", [None, 30.0], ids=["no deadline", "deadline"])
def test_a_kept_statement_whose_backend_was_terminated_is_run_on_a_new_connection(
    postgres_uri: str, items: str, seconds: float | None
) -> None:
    connector = postgres(postgres_uri)
    sql = item_lookup(items)
    try:
        pid = rows(connector.execute_bound(sql, ITEM, bound(1)))[0]["pid"]
        assert rows(connector.execute_bound(sql, ITEM, bound(2)))[0]["pid"] == pid  # kept and reused
        run(postgres_uri, f"SELECT pg_terminate_backend({pid})")
        assert backend_gone(postgres_uri, pid)
        deadline = None if seconds is None else time.monotonic() + seconds
        again = rows(connector.execute_bound(sql, ITEM, bound(3), deadline))
        assert [(r["id"], r["name"]) for r in again] == [(3, "item 3")]
        assert again[0]["pid"] != pid
        assert rows(connector.execute_bound(sql, ITEM, bound(4)))[0]["pid"] == again[0]["pid"]  # kept there now
    finally:
        connector.close()


def test_when_every_pooled_connection_is_gone_the_lookup_ends_on_a_fresh_one(postgres_uri: str, items: str) -> None:
    """As after a server restart: the kept statement fails, and so does preparing on the other pooled connection."""
    connector = postgres(postgres_uri, pool_size=2)
    sql = item_lookup(items)
    try:
        one, two = connector.execute_bound(sql, ITEM, bound(1)), connector.execute_bound(sql, ITEM, bound(2))
        pids = [rows(one)[0]["pid"], rows(two)[0]["pid"]]
        run(postgres_uri, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({pids[0]}, {pids[1]})")
        assert all(backend_gone(postgres_uri, pid) for pid in pids)
        again = rows(connector.execute_bound(sql, ITEM, bound(3)))
        assert [(r["id"], r["name"]) for r in again] == [(3, "item 3")]
        assert again[0]["pid"] not in pids
    finally:
        connector.close()


def test_a_kept_statement_that_fails_is_not_retried_and_its_connection_is_closed(postgres_uri: str) -> None:
    connector = postgres(postgres_uri)
    schema = pa.schema([("q", pa.int64()), ("pid", pa.int32())])
    sql = "SELECT 10 / $1::int8 AS q, pg_backend_pid() AS pid"
    try:
        ((q, pid),) = [tuple(r.values()) for r in rows(connector.execute_bound(sql, schema, bound(5)))]
        assert q == 2
        with pytest.raises(SourceError, match=r"^\[sales/postgres:.*\] division by zero") as raised:
            rows(connector.execute_bound(sql, schema, bound(0)))
        assert "Traceback" not in str(raised.value)
        assert backend_gone(postgres_uri, pid)
        after = rows(connector.execute_bound(sql, schema, bound(2)))
        assert after[0]["q"] == 5 and after[0]["pid"] != pid
    finally:
        connector.close()


def test_a_scan_not_read_to_its_end_closes_its_connection_with_the_kept_statements(
    postgres_uri: str, pg_schema: str
) -> None:
    size = f'"{pg_schema}".size'
    run(postgres_uri, f"CREATE TABLE {size} (n int8)", f"INSERT INTO {size} VALUES (3)")
    connector = postgres(postgres_uri)
    schema = pa.schema([("g", pa.int64()), ("pid", pa.int32())])
    # Without parameters: PostgreSQL streams the result (COPY) in batches.
    sql = f"SELECT g, pg_backend_pid() AS pid FROM generate_series(1, (SELECT n FROM {size})) g"
    try:
        pid = rows(connector.execute(sql, schema))[0]["pid"]
        run(postgres_uri, f"UPDATE {size} SET n = 5000000")
        stream = connector.execute(sql, schema)  # the kept statement
        batches = iter(stream)
        assert next(batches).num_rows < 5_000_000
        stream.close()
        assert backend_gone(postgres_uri, pid)
        run(postgres_uri, f"UPDATE {size} SET n = 3")
        after = rows(connector.execute(sql, schema))
        assert [r["g"] for r in after] == [1, 2, 3] and after[0]["pid"] != pid
    finally:
        connector.close()


def test_a_deadline_bounds_the_kept_statement_and_is_undone_before_the_next(postgres_uri: str) -> None:
    connector = postgres(postgres_uri)
    schema = pa.schema([("timeout", pa.string()), ("pid", pa.int32())])
    sql = "SELECT current_setting('statement_timeout') AS timeout, pg_backend_pid() AS pid WHERE $1::int8 > 0"
    try:
        plain = rows(connector.execute_bound(sql, schema, bound(1)))
        assert plain[0]["timeout"] == "0"
        timed = rows(connector.execute_bound(sql, schema, bound(1), time.monotonic() + 30))
        assert timed[0]["pid"] == plain[0]["pid"]  # the kept statement, on the same connection
        assert timed[0]["timeout"] != "0"
        assert rows(connector.execute_bound(sql, schema, bound(1))) == plain  # reset before it went back
    finally:
        connector.close()


def test_closing_the_connector_closes_the_kept_statements_and_their_connections(postgres_uri: str, items: str) -> None:
    connector = postgres(postgres_uri)
    pid = rows(connector.execute_bound(item_lookup(items), ITEM, bound(1)))[0]["pid"]
    statements = kept(connector, connector._pool._idle[0])
    assert len(statements) == 1
    gc.collect()  # what earlier tests in this worker left unclosed warns now, not inside the window below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        connector.close()
        del connector
        gc.collect()
    unclosed = [str(w.message) for w in caught if "unclosed" in str(w.message).lower()]
    assert not unclosed, unclosed
    assert backend_gone(postgres_uri, pid)
    assert len(statements) == 0


def test_a_connector_dropped_without_closing_still_lets_its_connections_go(postgres_uri: str, items: str) -> None:
    """The pool's kept cursors hold their connections: collected unclosed, it still closes them (cursors first)."""
    connector = postgres(postgres_uri)
    pid = rows(connector.execute_bound(item_lookup(items), ITEM, bound(1)))[0]["pid"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the driver's own "unclosed" warnings
        del connector
        gc.collect()
    assert backend_gone(postgres_uri, pid)


# -- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = DELETE")  # readers hold locks that block writers
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 101)])
    connection.close()
    return path


def test_sqlite_lookups_reuse_their_statement_without_holding_a_lock_or_missing_writes(shop: Path) -> None:
    connector = SqliteConnector("shop", ConnectorConfig(type="sqlite", path=shop, options={"pool_size": 1}))
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    sql = "SELECT id, name FROM items WHERE id = ?"
    writer = sqlite3.connect(shop, timeout=0, isolation_level=None)  # fails at once on a lock
    try:
        assert rows(connector.execute_bound(sql, schema, bound(1))) == [{"id": 1, "name": "item 1"}]
        statements = kept(connector, connector._pool._idle[0])
        statement = statements.take(sql)
        assert statement is not None
        statements.keep(sql, statement)
        writer.execute("UPDATE items SET name = 'renamed' WHERE id = 2")  # the idle kept statement locks nothing
        assert rows(connector.execute_bound(sql, schema, bound(2))) == [{"id": 2, "name": "renamed"}]
        assert rows(connector.execute_bound(sql, schema, bound(500))) == []
        assert kept(connector, connector._pool._idle[0]) is statements
        assert statements.take(sql) is statement  # the same prepared statement all along
        statements.keep(sql, statement)
    finally:
        writer.close()
        connector.close()


def test_kept_statements_close_the_least_recently_used_beyond_their_size(tmp_path: Path) -> None:
    with adbc_driver_sqlite.dbapi.connect(str(tmp_path / "lru.db")) as connection:
        cursors = [connection.cursor() for _ in range(3)]
        for number, cursor in enumerate(cursors, 1):
            cursor.adbc_prepare(f"SELECT {number}")
        one, two, three = cursors
        statements = KeptStatements(size=2)
        statements.keep("SELECT 1", one)
        statements.keep("SELECT 2", two)
        assert statements.take("SELECT 1") is one
        statements.keep("SELECT 1", one)  # used again: the most recent now
        statements.keep("SELECT 3", three)  # one too many: the least recently used is closed
        assert len(statements) == 2
        assert statements.take("SELECT 2") is None
        closed = "must call AdbcStatementNew first"
        with pytest.raises(adbc_driver_manager.ProgrammingError, match=closed):
            two.execute("SELECT 2")
        assert statements.take("SELECT 1") is one
        assert one.execute("SELECT 1").fetchall() == [(1,)]  # kept: still prepared and usable
        one.close()
        statements.close()
        assert len(statements) == 0
        with pytest.raises(adbc_driver_manager.ProgrammingError, match=closed):
            three.execute("SELECT 3")
