"""Each SQL source evaluates its declared functions exactly as DataFusion does, on awkward inputs.

Functions are built the way the planner builds them (``exp.func(name, ..., dialect=
"postgres")``) and rendered in the source's dialect. Every declared function needs a
case here; the functions a source leaves out on purpose are checked to still differ,
so a source that catches up shows up as a failure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext
from sqlglot import exp

from connectors.base import SourceObject, SqlConnector
from connectors.registry import open_connector
from gateway.config import ConnectorConfig
from tests.support.gateway import serve_in_process
from tests.support.mysql import connect as mysql_connect
from tests.support.roapi import roapi_server

WORDS = pa.table(
    {
        "id": pa.array(range(14), pa.int64()),
        "s": [
            "",
            " a ",
            "héllo",
            "straße",
            "ΣΑΣ",
            "xxaxx",
            "a,b,c",
            "e\u0301",
            "日本語",
            "İ",
            "A_b%c",
            "  ",
            "ǅ",
            None,
        ],
        "i": [-7, 0, 7, None, 2, -1, 1, 3, 100, -100, 5, 6, 8, 9],
    }
)
S, N = exp.column("s"), exp.column("i")


def lit(value: str | int) -> exp.Expr:
    return exp.Literal.string(value) if isinstance(value, str) else exp.Literal.number(value)


CASES: dict[str, list[list[exp.Expr]]] = {
    "abs": [[N]],
    "ascii": [[S]],
    "btrim": [[S], [S, lit("x")]],
    "trim": [[S]],
    "char_length": [[S]],
    "character_length": [[S]],
    "length": [[S]],
    "octet_length": [[S]],
    "coalesce": [[S, lit("z")]],
    "nullif": [[S, lit("xxaxx")]],
    "instr": [[S, lit("l")]],
    "strpos": [[S, lit("l")], [S, lit("")]],
    "left": [[S, lit(2)], [S, lit(-1)]],
    "right": [[S, lit(2)], [S, lit(-1)]],
    "ltrim": [[S], [S, lit("x")]],
    "rtrim": [[S], [S, lit("x")]],
    "md5": [[S]],
    "repeat": [[S, lit(2)]],
    "replace": [[S, lit("x"), lit("yz")]],
    "reverse": [[S]],
    "split_part": [[S, lit(","), lit(2)], [S, lit(","), lit(-1)]],
    "starts_with": [[S, lit("x")]],
    "ends_with": [[S, lit("x")]],
    "substr": [[S, lit(2), lit(3)], [S, lit(0), lit(3)], [S, lit(-1), lit(3)], [S, lit(3)]],
    "substring": [[S, lit(2), lit(3)]],
    "upper": [[S]],
    "lower": [[S]],
}

# Left out of a source's functions because they differ from DataFusion (see each connector).
DIFFERENT = {
    "postgres": ["upper", "lower"],
    "sqlite": ["upper", "lower", "substr"],
    "duckdb": ["upper", "lower", "substr", "reverse"],
    "mysql": ["upper", "lower", "ascii", "left", "right", "substr", "split_part", "starts_with", "ends_with"],
    "flightsql": [],  # a DataFusion-based remote (here a Meshgate gateway over Parquet) computes all of them
    "roapi": [],  # a flightsql domain too: DataFusion of another version than the gateway's
}


@pytest.fixture(scope="module", params=sorted(DIFFERENT))
def words(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SqlConnector, SourceObject]]:
    kind: str = request.param
    folder = tmp_path_factory.mktemp(f"functions-{kind}")
    if kind == "postgres":
        uri: str = request.getfixturevalue("postgres_uri")
        schema: str = request.getfixturevalue("pg_schema")
        with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f'CREATE TABLE "{schema}".words (id int8, s text, i int8)')
            cursor.adbc_ingest("words", WORDS, mode="append", db_schema_name=schema)
        config, source = ConnectorConfig(type=kind, uri=uri), SourceObject(table=f'"{schema}".words')
    elif kind == "sqlite":
        path = folder / "words.db"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE words (id INTEGER, s TEXT, i INTEGER)")
            connection.executemany("INSERT INTO words VALUES (?, ?, ?)", [tuple(r.values()) for r in WORDS.to_pylist()])
        connection.close()
        config, source = ConnectorConfig(type=kind, path=path), SourceObject(table="words")
    elif kind == "mysql":
        uri = request.getfixturevalue("mysql_uri")
        with mysql_connect(uri) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE words (id BIGINT, s TEXT, i BIGINT) CHARACTER SET utf8mb4")
            cursor.executemany("INSERT INTO words VALUES (%s, %s, %s)", [tuple(r.values()) for r in WORDS.to_pylist()])
        config, source = ConnectorConfig(type=kind, uri=uri), SourceObject(table="words")
    elif kind in ("flightsql", "roapi"):
        pq.write_table(WORDS, folder / "words.parquet")
        with _flight_sql_server(kind, folder) as (uri, table):
            connector = open_connector("functions", ConnectorConfig(type="flightsql", uri=uri))
            assert isinstance(connector, SqlConnector)
            source = SourceObject(table=table)
            connector.schema(source)  # the first connection asks the server who it is: DataFusion
            assert "upper" in connector.capabilities.functions
            yield connector, source
            connector.close()
        return
    else:
        path = folder / "words.duckdb"
        connection = duckdb.connect(str(path))
        connection.register("incoming", WORDS)
        connection.execute("CREATE TABLE words AS SELECT * FROM incoming")
        connection.close()
        config, source = ConnectorConfig(type=kind, path=path), SourceObject(table="words")
    connector = open_connector("functions", config)
    assert isinstance(connector, SqlConnector)
    yield connector, source
    connector.close()


@contextmanager
def _flight_sql_server(kind: str, folder: Path) -> Iterator[tuple[str, str]]:
    """A Meshgate gateway (``flightsql``) or roapi serving ``folder``'s words.parquet: its URI and the table's name."""
    if kind == "roapi":
        with roapi_server({"words": folder / "words.parquet"}) as uri:
            yield uri, "words"
        return
    (folder / "inner.yaml").write_text(
        "domains:\n  - name: data\n    connector: {type: parquet, path: words.parquet}\n"
    )
    with serve_in_process(folder / "inner.yaml") as uri:
        yield uri, '"mesh"."data"."words"'


def compare(connector: SqlConnector, source: SourceObject, name: str, args: list[exp.Expr]) -> tuple[list, list]:  # type: ignore[type-arg]
    """(source values, DataFusion values) of ``name(args)`` over every row, by id."""
    ctx = SessionContext()
    ctx.from_arrow(WORDS, name="words")
    call = f"{name}({', '.join(arg.sql() for arg in args)})"
    want = ctx.sql(f"SELECT id, {call} AS v FROM words ORDER BY id").to_arrow_table()
    if pa.types.is_string_view(want.schema.field("v").type):
        want = want.cast(pa.schema([want.schema.field("id"), ("v", pa.string())]))
    function = exp.func(name, *(arg.copy() for arg in args), dialect="postgres")
    query = exp.select(exp.column("id"), function.as_("v")).from_(connector.relation(source, "words"))
    stream = connector.execute(connector.render(query), want.schema)
    got = pa.Table.from_batches(list(stream), want.schema).sort_by("id")
    return got["v"].to_pylist(), want["v"].to_pylist()


def test_declared_functions_match_datafusion(words: tuple[SqlConnector, SourceObject]) -> None:
    connector, source = words
    for name in sorted(connector.capabilities.functions):
        assert name in CASES, f"add a case for {name}"
        for args in CASES[name]:
            got, want = compare(connector, source, name, args)
            assert got == want, f"{connector.kind}: {name}({', '.join(a.sql() for a in args)})"


def test_left_out_functions_still_differ(words: tuple[SqlConnector, SourceObject]) -> None:
    connector, source = words
    for name in DIFFERENT[connector.kind]:
        assert name not in connector.capabilities.functions
        try:
            differs = any(
                compare(connector, source, name, args)[0] != compare(connector, source, name, args)[1]
                for args in CASES[name]
            )
        except Exception:  # the source may fail outright, which is a difference too
            differs = True
        assert differs, f"{connector.kind} now evaluates {name} like DataFusion: declare it"


def test_every_case_is_a_datafusion_function() -> None:
    ctx = SessionContext()
    ctx.from_arrow(WORDS, name="words")
    for name, cases in CASES.items():
        for args in cases:
            ctx.sql(f"SELECT {name}({', '.join(arg.sql() for arg in args)}) FROM words").collect()
