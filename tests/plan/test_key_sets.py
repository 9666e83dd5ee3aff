"""Key sets (gateway/plan/key_sets.py): a run-time filter's many integer keys reach a source as
one constant, DataFusion evaluates the same filter, and a caller's SQL cannot call it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext
from sqlglot import exp

from gateway.api import CallerContext
from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import MeshgateError
from gateway.plan import key_sets, runtime_filter
from tests.support.gateway import query, serve_in_process, source_queries
from tests.support.mysql import connect

ROWS = 100_000
KEYS = [k for k in range(0, ROWS, 20)] + [ROWS + 5, -3]  # 5,002 keys, scattered, two matching nothing
MATCHED = [k for k in KEYS if 0 <= k < ROWS]


def test_the_function_answers_membership_with_null_for_null() -> None:
    keys = key_sets.register(SessionContext(), pa.array([9, 3, 3, None, -4], pa.int32()))
    assert len(keys) == 3 and key_sets.takes(pa.int32()) and not key_sets.takes(pa.uint64())
    assert keys.keys.tolist() == [-4, 3, 9] and keys.digits == "-4,3,9"  # sorted, each once
    assert len(key_sets.register(SessionContext(), pa.array([None], pa.int64()))) == 0
    assert not key_sets.takes(pa.string())
    probe = pa.array([3, 4, None, -4, 10, 9, -5], pa.int32())
    assert keys(probe).to_pylist() == [True, False, None, True, False, True, False]
    assert key_sets.find(keys.name) is keys and key_sets.find("meshgate_keys_unknown") is None
    assert key_sets.find("upper") is None


def test_the_function_evaluates_in_datafusion() -> None:
    ctx = SessionContext()
    ctx.register_record_batches("t", [[pa.record_batch({"a": pa.array([1, 2, 3, 4, None], pa.int64())})]])
    keys = key_sets.register(ctx, pa.array([2, 4, 6], pa.int64()))
    assert ctx.sql(f"SELECT a FROM t WHERE {keys.name}(a) ORDER BY a").to_pydict() == {"a": [2, 4]}


def _select(keys: key_sets.KeySet, style: str, dialect: str, table: str = "t") -> str:
    condition = keys.sql(exp.column("a", quoted=True), style)
    return exp.select("a").from_(table).where(condition).order_by("a").sql(dialect)


def test_each_style_selects_the_keys_in_its_source(postgres_uri: str, pg_schema: str, tmp_path: Path) -> None:
    keys = key_sets.register(SessionContext(), pa.array(KEYS, pa.int64()))
    with sqlite3.connect(tmp_path / "t.sqlite") as lite:
        lite.execute("CREATE TABLE t (a INTEGER)")
        lite.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(ROWS)])
        assert [a for (a,) in lite.execute(_select(keys, "json_each", "sqlite"))] == MATCHED
    lite.close()
    with duckdb.connect() as duck:
        duck.execute(f"CREATE TABLE t AS SELECT range::INTEGER AS a FROM range({ROWS})")
        assert [a for (a,) in duck.execute(_select(keys, "unnest", "duckdb")).fetchall()] == MATCHED
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.t AS SELECT g::int AS a FROM generate_series(0, {ROWS - 1}) g")
        cursor.execute(_select(keys, "array", "postgres", f"{pg_schema}.t"))
        assert [a for (a,) in cursor.fetchall()] == MATCHED
    with pytest.raises(ValueError, match="unknown key-set style"):
        keys.sql(exp.column("a"), "xml")


@pytest.fixture(scope="module")
def sources(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str, mysql_or_none: str | None
) -> Iterator[tuple[Path, dict[str, str]]]:
    """The same 100,000-row table in PostgreSQL, SQLite, DuckDB (and MariaDB when one answers),
    and 5,002 keys in a Parquet file: a mesh of them, and each source's connector line."""
    root = tmp_path_factory.mktemp("key-sets")
    pq.write_table(pa.table({"k": pa.array(KEYS, pa.int64())}), root / "keys.parquet")
    values = [(i, i % 11) for i in range(ROWS)]
    with sqlite3.connect(root / "big.sqlite") as lite:
        lite.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, v INTEGER)")
        lite.executemany("INSERT INTO events VALUES (?, ?)", values)
    lite.close()
    with duckdb.connect(str(root / "big.duckdb")) as duck:
        duck.execute(f"CREATE TABLE events AS SELECT range::BIGINT AS id, range % 11 AS v FROM range({ROWS})")
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {pg_schema}.events AS SELECT g::bigint AS id, g % 11 AS v FROM generate_series(0, {ROWS - 1}) g"
        )
        cursor.execute(f"ANALYZE {pg_schema}.events")
    connectors = {
        "postgres": f'{{type: postgres, uri: "{postgres_uri}"}}\n    products:\n'
        f"      - {{name: events, source: {pg_schema}.events}}",
        "sqlite": "{type: sqlite, path: big.sqlite}",
        "duckdb": "{type: duckdb, path: big.duckdb}",
    }
    if mysql_or_none is not None:
        with connect(mysql_or_none) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE events (id BIGINT PRIMARY KEY, v INT)")
            cursor.executemany("INSERT INTO events VALUES (%s, %s)", values)
        connectors["mysql"] = f"{{type: mysql, uri: '{mysql_or_none}'}}"
    yield root, connectors


@pytest.mark.parametrize("source", ["postgres", "sqlite", "duckdb", "mysql"])
def test_thousands_of_scattered_keys_reach_the_source_and_the_answer_stays(
    sources: tuple[Path, dict[str, str]], source: str
) -> None:
    """5,002 keys from Parquet (more than MAX_KEYS, spread over the whole range, so their range
    alone would filter nothing) make the source return only their rows; MariaDB takes no key
    set and gets the range, and the answer is the same everywhere."""
    root, connectors = sources
    if source not in connectors:
        pytest.skip("no MariaDB answers here")
    mesh = root / f"{source}.yaml"
    mesh.write_text(
        "domains:\n"
        "  - name: picks\n    connector: {type: parquet, path: keys.parquet}\n"
        f"  - name: store\n    connector: {connectors[source]}\n"
    )
    engine = Engine(MeshCatalog(load_config(mesh)))
    sql = "SELECT sum(v) AS s, count(*) AS n FROM store.events JOIN picks.keys ON id = k"
    try:
        execution = engine.run(sql)
        answer = execution.read_all().to_pylist()
        (events,) = [q for q in execution.source_queries if q.domain == "store"]
        plan = engine.run("EXPLAIN " + sql).read_all().to_pylist()
    finally:
        engine.close()
    assert answer == [{"s": sum(k % 11 for k in MATCHED), "n": len(MATCHED)}]
    assert len(KEYS) > runtime_filter.MAX_KEYS and "runtime_filter" in plan[0]["plan"]
    assert ">= -3" in events.sql and f"<= {ROWS + 5}" in events.sql, events.sql[:300]
    if source == "mysql":
        assert events.rows == ROWS and key_sets.PREFIX not in events.sql
    else:
        assert events.rows == len(MATCHED), events.sql[:300]
        assert {"postgres": "= ANY(", "sqlite": "JSON_EACH(", "duckdb": "UNNEST("}[source] in events.sql.upper()


def test_a_callers_sql_cannot_call_a_key_set(sources: tuple[Path, dict[str, str]]) -> None:
    """The function is registered after the caller's SQL was planned, under a name nobody can
    know: another query naming one (taken from an EXPLAIN) is refused with a planning error."""
    root, connectors = sources
    mesh = root / "sqlite.yaml"
    mesh.write_text(
        "domains:\n"
        "  - name: picks\n    connector: {type: parquet, path: keys.parquet}\n"
        f"  - name: store\n    connector: {connectors['sqlite']}\n"
    )
    engine = Engine(MeshCatalog(load_config(mesh)))
    try:
        planned = engine._plan("SELECT v FROM store.events JOIN picks.keys ON id = k", CallerContext(user="root"))
        text = planned.dataframe.logical_plan().display_indent()
        name = text[text.index(key_sets.PREFIX) :].split("(")[0]
        assert key_sets.find(name) is not None
        with pytest.raises(MeshgateError, match=name):
            engine.run(f"SELECT {name}(id) FROM store.events").read_all()
    finally:
        engine.close()


def test_a_key_set_through_the_flight_sql_gateway(sources: tuple[Path, dict[str, str]]) -> None:
    """The same join asked by an ADBC Flight SQL client of a running gateway: the answer, and
    PostgreSQL's query holding the key set and returning only the keys' rows."""
    root, connectors = sources
    mesh = root / "served.yaml"
    mesh.write_text(
        "domains:\n"
        "  - name: picks\n    connector: {type: parquet, path: keys.parquet}\n"
        f"  - name: store\n    connector: {connectors['postgres']}\n"
    )
    sql = "SELECT sum(v) AS s, count(*) AS n FROM store.events JOIN picks.keys ON id = k"
    with serve_in_process(mesh) as uri:
        assert query(uri, sql).to_pylist() == [{"s": sum(k % 11 for k in MATCHED), "n": len(MATCHED)}]
        (sent,) = [(text, rows) for label, text, rows in source_queries(uri, sql) if label.startswith("store/")]
    assert "= ANY(CAST('{" in sent[0] and sent[1] == len(MATCHED), sent[0][:300]
