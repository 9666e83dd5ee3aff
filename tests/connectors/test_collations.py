"""Per-column collations as the connectors find them, and scans that compare collated text as bytes.

PostgreSQL asks ``pg_collation_for`` of the relation the engine sees (tables, columns read as
text, products defined by a query), SQLite reads each table's ``CREATE TABLE``; a collation
under which distinct strings can be equal is overridden in the product's relation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pytest
from sqlglot import exp

from connectors.base import ScanSpec, SourceObject
from connectors.postgres import PostgresConnector, collation
from connectors.sqlbase import Collation, TypedSqlConnector
from connectors.sqlite import SqliteConnector, declared_collations
from meshcore.config import ConnectorConfig
from tests.support.collations import NO_LOCALE, locale_collation, nondeterministic_collation

WORDS = ["a", "A", "a ", "B", "b", "ß", "ss"]


def scan(connector: TypedSqlConnector, source: SourceObject, column: str, predicate: str) -> tuple[list[object], str]:
    """The values of ``column`` where ``predicate`` (pushed to the source) holds, sorted, and the SQL sent."""
    schema = connector.schema(source)
    sql = connector.scan_sql(ScanSpec(source, (column,), exp.condition(predicate)))
    one = pa.schema([schema.field(column)])
    table = pa.Table.from_batches(list(connector.execute(sql, one)), one)
    return sorted(table.column(0).to_pylist()), sql


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"name": '"C"', "provider": "c", "deterministic": True, "collate": "C"}, None),
        ({"name": '"POSIX"', "provider": "c", "deterministic": True, "collate": "POSIX"}, None),
        ({"name": "ucs_basic", "provider": "b", "deterministic": True}, None),  # builtin provider: code points
        ({"name": "pg_c_utf8", "provider": "b", "deterministic": True}, None),
        ({"name": "pg_unicode_fast", "provider": "b", "deterministic": True}, None),
        ({"name": '"C.utf8"', "provider": "c", "deterministic": True, "collate": "C.utf8"}, True),
        ({"name": '"en-x-icu"', "provider": "i", "deterministic": True}, True),
        ({"name": "ci", "provider": "i", "deterministic": False}, False),
        ({"name": '"default"', "provider": "d", "deterministic": True, "db_provider": "c", "db_collate": "C"}, None),
        ({"name": '"default"', "provider": "d", "db_provider": "c", "db_collate": "en_US.UTF-8"}, True),
        ({"name": '"default"', "provider": "d", "db_provider": "i", "db_collate": "C"}, True),
        ({"name": '"default"', "provider": "d", "db_provider": None, "db_collate": "POSIX"}, None),  # before 15
        ({"name": None, "provider": None, "deterministic": None}, True),  # none derived: not known to be bytes
    ],
)
def test_which_postgres_collations_are_byte_order(row: dict[str, object], expected: bool | None) -> None:
    found = collation(row)
    assert (found.deterministic if found is not None else None) == expected, found


@pytest.fixture(scope="module")
def postgres(postgres_uri: str, pg_schema: str) -> Iterator[tuple[PostgresConnector, str, str, bool]]:
    """A table of every kind of text column: (connector, table, its locale collation, whether ICU is there)."""
    locale = locale_collation(postgres_uri)
    if locale is None:
        pytest.skip(NO_LOCALE)
    created = nondeterministic_collation(postgres_uri, pg_schema)
    icu = created is not None
    ci = created or f'"{locale}"'
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TYPE \"{pg_schema}\".mood AS ENUM ('ok', 'sad')")
        table = f'"{pg_schema}".texts'
        cursor.execute(
            f'CREATE TABLE {table} (n int4, c text COLLATE "C", p varchar(9) COLLATE "POSIX", d text,'
            f' loc text COLLATE "{locale}", ci text COLLATE {ci}, fixed char(3) COLLATE {ci},'
            f' mood "{pg_schema}".mood)'
        )
        for word in WORDS:
            cursor.execute(f"INSERT INTO {table} (n, c, loc, ci, fixed) VALUES (1, $1, $1, $1, $1)", (word,))
    connector = PostgresConnector("texts", ConnectorConfig(type="postgres", uri=postgres_uri))
    yield connector, table, locale, icu
    connector.close()


def test_postgres_columns_carry_their_collation(postgres: tuple[PostgresConnector, str, str, bool]) -> None:
    connector, table, locale, icu = postgres
    found = {c.name: c.collation for c in connector.describe(SourceObject(table=table))}
    default = collation(
        {"name": '"default"', "provider": "d", **_database(connector)}
    )  # the database's own: C on some servers, a locale on others
    assert found["n"] is None and found["c"] is None and found["p"] is None
    assert found["d"] == default and found["mood"] == default  # an enum is read as text: the default collation
    assert found["loc"] == Collation(f'"{locale}"', deterministic=True)
    assert found["ci"] is not None and found["ci"].deterministic is not icu
    assert found["fixed"] == found["ci"]  # char(n) is read through ::text, which keeps the column's collation
    query = SourceObject(sql=f"SELECT loc, ci || '' AS ci2, c FROM {table}")
    derived = {c.name: c.collation for c in connector.describe(query)}
    assert derived == {"loc": found["loc"], "ci2": found["ci"], "c": None}


def _database(connector: PostgresConnector) -> dict[str, object]:
    row = connector.fetch(
        "SELECT to_jsonb(d) ->> 'datlocprovider' AS db_provider, d.datcollate::text AS db_collate"
        " FROM pg_database d WHERE d.datname = current_database()"
    ).to_pylist()[0]
    return dict(row)


def test_postgres_scans_compare_a_nondeterministic_column_as_bytes(
    postgres: tuple[PostgresConnector, str, str, bool],
) -> None:
    connector, table, _, icu = postgres
    if not icu:
        pytest.skip("this PostgreSQL has no ICU, so no nondeterministic collation")
    source = SourceObject(table=table)
    values, sql = scan(connector, source, "ci", "\"ci\" = 'a' OR \"ci\" IN ('ss')")
    assert values == ["a", "ss"], sql
    assert 'COLLATE "C" AS "ci"' in sql
    assert scan(connector, source, "ci", "\"ci\" LIKE 'a%'")[0] == ["a", "a "]  # LIKE on a nondeterministic one fails
    assert scan(connector, source, "fixed", "\"fixed\" = 'a'")[0] == ["a", "a"]  # char(3) pads both "a" and "a "


# -- SQLite -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        (
            "CREATE TABLE t (a TEXT COLLATE NOCASE, b TEXT, c TEXT COLLATE rtrim NOT NULL)",
            {"a": "NOCASE", "c": "RTRIM"},
        ),
        ('CREATE TABLE "t" ([a b] TEXT CONSTRAINT k COLLATE "NoCase", `c` BLOB)', {"a b": "NOCASE"}),
        ("CREATE TABLE t (a TEXT DEFAULT 'x' COLLATE NOCASE, b TEXT COLLATE BINARY)", {"a": "NOCASE", "b": "BINARY"}),
        ("CREATE TABLE t (a)", {}),
        ("CREATE TABLE t (a TEXT COLLATE", None),
    ],
)
def test_sqlite_reads_collations_from_the_tables_sql(ddl: str, expected: dict[str, str] | None) -> None:
    assert declared_collations(ddl) == expected


@pytest.fixture
def sqlite_words(tmp_path: Path) -> Iterator[SqliteConnector]:
    with sqlite3.connect(tmp_path / "words.db") as connection:
        connection.execute(
            "CREATE TABLE words (n INTEGER, nocase TEXT COLLATE NOCASE, rtrim TEXT COLLATE RTRIM, plain TEXT)"
        )
        connection.execute("CREATE VIEW words_view AS SELECT * FROM words")
        connection.executemany("INSERT INTO words VALUES (1, ?, ?, ?)", [(w, w, w) for w in WORDS])
    connection.close()
    connector = SqliteConnector("words", ConnectorConfig(type="sqlite", path=tmp_path / "words.db"))
    yield connector
    connector.close()


def test_sqlite_columns_carry_their_collation(sqlite_words: SqliteConnector) -> None:
    found = {c.name: c.collation for c in sqlite_words.describe(SourceObject(table="words"))}
    assert found == {
        "n": None,
        "nocase": Collation("NOCASE", deterministic=False),
        "rtrim": Collation("RTRIM", deterministic=False),
        "plain": None,
    }
    undeclared = Collation("undeclared", deterministic=False)  # a view's or query's collations are not traced
    for source in (SourceObject(table="words_view"), SourceObject(sql="SELECT n, plain FROM words")):
        columns = sqlite_words.describe(source)
        assert all(c.collation == (undeclared if pa.types.is_string(c.type) else None) for c in columns)


@pytest.mark.parametrize("product", ["words", "words_view"])
@pytest.mark.parametrize(
    ("column", "predicate", "expected"),
    [
        ("nocase", "\"nocase\" = 'a'", ["a"]),
        ("nocase", "\"nocase\" IN ('b', 'SS')", ["b"]),
        ("nocase", "\"nocase\" > 'a'", ["a ", "b", "ss", "ß"]),
        ("rtrim", "\"rtrim\" = 'a'", ["a"]),
        ("plain", "\"plain\" = 'a'", ["a"]),
    ],
)
def test_sqlite_scans_compare_collated_columns_as_bytes(
    sqlite_words: SqliteConnector, product: str, column: str, predicate: str, expected: list[str]
) -> None:
    values, sql = scan(sqlite_words, SourceObject(table=product), column, predicate)
    assert values == expected, sql
    assert (f'COLLATE "BINARY" AS "{column}"' in sql) == (column != "plain" or product == "words_view"), sql
