"""The plan cache (gateway/plancache.py): same answers as planning every time, invalidated by
reloads, drift and policy changes, never shared between callers the policies treat differently,
and a hit that plans nothing. Real PostgreSQL and SQLite, and the real ADBC Flight SQL client."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import MeshgateError
from gateway.flightsql.server import FlightSqlServer
from gateway.plancache import MAX_TEXT, Literal, PlanCache, parameterize
from tests.support.gateway import connect, serving

ALICE = CallerContext(user="alice", attributes={"region": "eu"})
BOB = CallerContext(user="bob", attributes={"region": "us"})
ROOT = CallerContext(user="root")

POLICIES = """policies:
  roles:
    analyst: [alice, bob]
    admin: [root]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "crm.*"}
    - {role: analyst, on: "shop.*"}
  row_filters:
    - {on: crm.people, where: "region = current_user_attribute('region')", except: [admin]}
"""


def _mesh(directory: Path, postgres_uri: str, schema: str, *, table: str = "people", policies: str = POLICIES) -> Path:
    (directory / "mesh.yaml").write_text(
        f"""domains:
  - name: crm
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: people, source: {schema}.{table}}}
      - name: strict
        source: {schema}.strict
        on_drift: block
        columns:
          - {{name: id, type: int32}}
          - {{name: label, type: string}}
  - name: shop
    connector: {{type: sqlite, path: shop.db}}
{policies}"""
    )
    return directory / "mesh.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    directory = tmp_path_factory.mktemp("plan_cache")
    statements = [
        f"CREATE TABLE {pg_schema}.people (id int4 PRIMARY KEY, name text, born date, score float8,"
        " active bool, region text NOT NULL)",
        f"INSERT INTO {pg_schema}.people SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'name ' || g END,"
        " DATE '2000-01-01' + g, g / 4.0, g % 2 = 0, CASE WHEN g % 3 = 0 THEN 'us' ELSE 'eu' END"
        " FROM generate_series(1, 60) g",
        f"CREATE TABLE {pg_schema}.people2 (id int4 PRIMARY KEY, name text, born date, score float8,"
        " active bool, region text NOT NULL)",
        f"INSERT INTO {pg_schema}.people2 VALUES (1, 'moved', DATE '1999-09-09', 0.5, true, 'eu')",
        f"CREATE TABLE {pg_schema}.strict (id int4, label text)",
        f"INSERT INTO {pg_schema}.strict VALUES (1, 'one'), (2, 'two')",
    ]
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        connection.commit()
    with sqlite3.connect(directory / "shop.db") as connection:
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT, price REAL)")
        connection.executemany(
            "INSERT INTO items VALUES (?, ?, ?)",
            [(i, None if i % 5 == 0 else f"item {i}", i * 1.5) for i in range(1, 31)],
        )
    return directory


@pytest.fixture
def engines(data: Path, postgres_uri: str, pg_schema: str) -> Iterator[tuple[Engine, Engine]]:
    """A caching engine and one that plans every statement (``maxsize=0``), on the same mesh."""
    config = load_config(_mesh(data, postgres_uri, pg_schema))
    cached, uncached = Engine.from_config(config), Engine.from_config(config)
    uncached.plans = PlanCache(maxsize=0)
    yield cached, uncached
    cached.close()
    uncached.close()


def _run(engine: Engine, sql: str, caller: CallerContext, *values: pa.Array) -> pa.Table:
    query = engine.prepare(sql, caller)
    parameters = pa.record_batch(list(values), names=[f"${i}" for i in range(1, len(values) + 1)]) if values else None
    return engine.execute(query, caller, parameters).read_all()


STATEMENTS = [
    ("SELECT * FROM crm.people WHERE id = $1", [pa.array([v], pa.int32()) for v in (1, 3, 4, 59, 1000)]),
    ("SELECT * FROM crm.people WHERE id = $1", [pa.array([v], pa.int64()) for v in (2, 6, 2**40)]),
    ("SELECT id, name FROM crm.people WHERE name = $1", [pa.array([v]) for v in ("name 5", "name 6", "x", "")]),
    ("SELECT id FROM crm.people WHERE born > $1 ORDER BY id", [pa.array([dt.date(2000, 2, 20)], pa.date32())]),
    ("SELECT id FROM crm.people WHERE id = $1", [pa.array([None], pa.int32()), pa.array([None], pa.null())]),
    ("SELECT id FROM crm.people WHERE active = $1 AND score < $2 ORDER BY id", None),
    ("SELECT id, label FROM shop.items WHERE id = $1", [pa.array([v], pa.int64()) for v in (1, 5, 30, 31)]),
    ("SELECT id FROM shop.items WHERE label = $1 OR price > $2 ORDER BY id", None),
]


@pytest.mark.parametrize("caller", [ROOT, ALICE], ids=["admin", "row-filtered"])
def test_cached_lookups_answer_like_planning_every_time(engines: tuple[Engine, Engine], caller: CallerContext) -> None:
    cached, uncached = engines
    for sql, values in STATEMENTS:
        if values is None:
            if "shop" in sql:
                rows = [
                    (pa.array(["item 3"]), pa.array([40.0])),
                    (pa.array([None], pa.string()), pa.array([None], pa.float64())),
                ]
            else:
                rows = [(pa.array([True]), pa.array([5.0])), (pa.array([False]), pa.array([20.0]))]
            runs: list[tuple[pa.Array, ...]] = list(rows)
        else:
            runs = [(value,) for value in values]
        for run in runs:
            expected = _run(uncached, sql, caller, *run)
            got = _run(cached, sql, caller, *run)
            assert got.schema.equals(expected.schema), sql
            assert got.equals(expected), (sql, run)
    for literal in [
        "SELECT * FROM crm.people WHERE id = 5",
        "SELECT * FROM crm.people WHERE id = 9",
        "SELECT * FROM crm.people WHERE name = 'name 10'",
        "SELECT id, label FROM shop.items WHERE label = 'item 4'",
        "SELECT id, label FROM shop.items WHERE label = 'item 8'",
        "SELECT * FROM crm.people WHERE id = '12'",
        "SELECT * FROM crm.people WHERE born = '2000-01-11'",
    ]:
        expected = _run(uncached, literal, caller)
        got = _run(cached, literal, caller)
        assert got.schema.equals(expected.schema) and got.equals(expected), literal
    assert cached.plans.routed > 0
    assert uncached.plans.routed == 0


def test_a_hit_plans_nothing(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    _run(engine, "SELECT name FROM crm.people WHERE id = 1", ALICE)  # learns the template id = $1
    plannings, routed = engine.plans.plannings, engine.plans.routed
    names = [
        _run(engine, f"SELECT name FROM crm.people WHERE id = {key}", ALICE).column(0).to_pylist()
        for key in (2, 4, 5, 7)
    ]
    assert names == [["name 2"], ["name 4"], ["name 5"], [None]]
    assert engine.plans.plannings == plannings  # no DataFusion planning at all
    assert engine.plans.routed == routed + 4
    query = engine.prepare("SELECT name FROM crm.people WHERE id = $1", ALICE)
    plannings = engine.plans.plannings
    for key in (8, 10, 11):
        engine.execute(query, ALICE, pa.record_batch([pa.array([key], pa.int32())], names=["$1"])).read_all()
    assert engine.plans.plannings == plannings


def test_a_statement_too_long_to_keep_is_answered_and_not_kept(engines: tuple[Engine, Engine]) -> None:
    """Distinct long texts must not pile up in the cache (any user could hold memory with them)."""
    engine, _ = engines
    padding = "x" * MAX_TEXT
    for key in (2, 4, 5):
        entries = len(engine.plans._entries)
        sql = f"SELECT name, '{padding}' AS pad FROM crm.people WHERE id = {key}"
        assert _run(engine, sql, ALICE).column("name").to_pylist() == [f"name {key}"]
        assert len(engine.plans._entries) == entries
    short = "SELECT name FROM crm.people WHERE id = 1"
    _run(engine, short, ALICE)
    assert len(engine.plans._entries) > entries  # the same engine keeps a short one


def test_two_callers_with_different_row_filters_never_share_a_plan(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    sql = "SELECT id, region FROM crm.people WHERE id = 3 OR id = 4"
    assert _run(engine, sql, ALICE).to_pylist() == [{"id": 4, "region": "eu"}]
    assert _run(engine, sql, BOB).to_pylist() == [{"id": 3, "region": "us"}]
    assert _run(engine, sql, ROOT).num_rows == 2
    held = engine.prepare("SELECT id FROM crm.people WHERE id = $1", ALICE)
    three = pa.record_batch([pa.array([3], pa.int32())], names=["$1"])
    assert engine.execute(held, ALICE, three).read_all().num_rows == 0
    assert engine.execute(held, BOB, three).read_all().num_rows == 1  # run by another caller: checked again


def test_a_policy_change_is_seen_by_the_next_execution(
    engines: tuple[Engine, Engine], data: Path, postgres_uri: str, pg_schema: str
) -> None:
    engine, _ = engines
    held = engine.prepare("SELECT id FROM crm.people WHERE id = $1", ALICE)
    three = pa.record_batch([pa.array([3], pa.int32())], names=["$1"])
    assert engine.execute(held, ALICE, three).read_all().num_rows == 0
    assert _run(engine, "SELECT id FROM crm.people WHERE id = 3", ALICE).num_rows == 0
    looser = POLICIES.replace("region = current_user_attribute('region')", "region <> 'none'")
    engine.install({}, set(), load_config(_mesh(data, postgres_uri, pg_schema, policies=looser)).policies)
    assert engine.execute(held, ALICE, three).read_all().num_rows == 1
    assert _run(engine, "SELECT id FROM crm.people WHERE id = 3", ALICE).num_rows == 1
    no_grant = looser.replace('    - {role: analyst, on: "crm.*"}\n', "")
    engine.install({}, set(), load_config(_mesh(data, postgres_uri, pg_schema, policies=no_grant)).policies)
    with pytest.raises(MeshgateError, match="access denied"):
        _run(engine, "SELECT id FROM crm.people WHERE id = 3", ALICE)


def test_a_reload_or_refresh_is_seen_by_the_next_execution(
    engines: tuple[Engine, Engine], data: Path, postgres_uri: str, pg_schema: str
) -> None:
    engine, _ = engines
    sql = "SELECT * FROM crm.people WHERE id = 1"
    assert _run(engine, sql, ROOT).column("name").to_pylist() == ["name 1"]
    held = engine.prepare("SELECT name FROM crm.people WHERE id = $1", ROOT)
    # The product's source changes (a hot reload installs the domain anew).
    moved = load_config(_mesh(data, postgres_uri, pg_schema, table="people2"))
    domain = engine.catalog.build(next(d for d in moved.domains if d.name == "crm"))
    engine.install({"crm": domain}, set(), moved.policies)
    assert _run(engine, sql, ROOT).column("name").to_pylist() == ["moved"]
    one = pa.record_batch([pa.array([1], pa.int32())], names=["$1"])
    assert engine.execute(held, ROOT, one).read_all().column("name").to_pylist() == ["moved"]
    # The source's schema changes (a refresh reads it again).
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {pg_schema}.people2 ADD COLUMN extra int4 DEFAULT 7")
        connection.commit()
    try:
        assert "extra" not in _run(engine, sql, ROOT).column_names
        engine.refresh("crm")
        assert _run(engine, sql, ROOT).column("extra").to_pylist() == [7]
    finally:
        with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {pg_schema}.people2 DROP COLUMN extra")
            connection.commit()


def test_drift_that_blocks_a_product_stops_its_cached_plan(
    engines: tuple[Engine, Engine], postgres_uri: str, pg_schema: str
) -> None:
    engine, _ = engines
    sql = "SELECT label FROM crm.strict WHERE id = 2"
    assert _run(engine, sql, ROOT).column(0).to_pylist() == ["two"]
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {pg_schema}.strict ALTER COLUMN id TYPE int8")
        connection.commit()
    try:
        engine.refresh("crm")
        with pytest.raises(MeshgateError, match="blocked"):
            _run(engine, sql, ROOT)
    finally:
        with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {pg_schema}.strict ALTER COLUMN id TYPE int4")
            connection.commit()


def test_cached_executions_are_audited_and_explained(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    for key in (1, 2):
        _run(engine, f"SELECT name FROM crm.people WHERE id = {key}", ALICE)
    assert engine.plans.routed >= 1
    record = engine.audit.records("alice")[-1]
    assert record.sql == "SELECT name FROM crm.people WHERE id = 2" and record.outcome == "ok"
    assert record.products == ["crm.people"] and "crm.people.name" in record.columns
    assert any("row_filter" in policy or "crm.people" in policy for policy in record.policies)
    explained = dict(
        _run(engine, "EXPLAIN SELECT name FROM crm.people WHERE id = 2", ROOT).to_pylist()[i].values() for i in range(2)
    )  # type: ignore[misc]
    assert any("= 2" in plan for plan in explained.values())


def test_parameterize_takes_only_literals_compared_to_columns_in_where() -> None:
    assert parameterize("SELECT * FROM t WHERE a.b = 5 AND (c <> 'x' OR d >= 7)") == (
        "SELECT * FROM t WHERE a.b = $1 AND (c <> $2 OR d >= $3)",
        (Literal(5), Literal("x"), Literal(7)),
    )
    for unchanged in [
        "SELECT a = 5 FROM t",
        "SELECT * FROM t WHERE a = 5 + 1",
        "SELECT * FROM t WHERE a = -5",
        "SELECT * FROM t WHERE a = 1.5",
        "SELECT * FROM t WHERE a BETWEEN 1 AND 5",
        "SELECT * FROM t WHERE a IN (1, 2)",
        "SELECT * FROM t WHERE d = DATE '2024-01-01'",
        "SELECT * FROM t WHERE a = '5'::int",
        "SELECT * FROM t WHERE a = $1 AND b = 5",
        "SELECT * FROM t LIMIT 5",
        "SELECT * FROM t GROUP BY a HAVING count(*) > 5",
        "SELECT * FROM t WHERE a + 1 = 5",
    ]:
        assert parameterize(unchanged) is None, unchanged


def test_the_flight_sql_client_gets_the_same_answers(data: Path, postgres_uri: str, pg_schema: str) -> None:
    config = load_config(_mesh(data, postgres_uri, pg_schema, policies=""))  # anonymous clients: no policies
    cached, uncached = Engine.from_config(config), Engine.from_config(config)
    uncached.plans = PlanCache(maxsize=0)
    servers = [FlightSqlServer(engine, "grpc://127.0.0.1:0") for engine in (cached, uncached)]
    try:
        with serving(servers[0]), serving(servers[1]):
            answers = _answers_of(servers)
        for mine, theirs in zip(*answers, strict=True):
            assert mine.schema.equals(theirs.schema) and mine.equals(theirs)
        assert cached.plans.routed >= 5
    finally:
        cached.close()
        uncached.close()


def _answers_of(servers: list[FlightSqlServer]) -> list[list[pa.Table]]:
    """Each server's answers, through the ADBC Flight SQL driver, to the same statements."""
    answers = []
    for server in servers:
        with connect(f"grpc://127.0.0.1:{server.port}") as connection, connection.cursor() as cursor:
            got = []
            for sql, parameters in [
                ("SELECT * FROM crm.people WHERE id = ?", (4,)),
                ("SELECT * FROM crm.people WHERE id = ?", (2**40,)),
                ("SELECT * FROM crm.people WHERE id = ?", (None,)),
                ("SELECT id FROM crm.people WHERE name = ?", ("name 8",)),
                ("SELECT id FROM crm.people WHERE born = ?", (dt.date(2000, 1, 9),)),
                ("SELECT * FROM crm.people WHERE id = 6", ()),
                ("SELECT * FROM crm.people WHERE id = 8", ()),
                ("SELECT label FROM shop.items WHERE id = ?", (3,)),
            ]:
                cursor.execute(sql, parameters or None)
                got.append(cursor.fetch_arrow_table())
            answers.append(got)
    return answers
