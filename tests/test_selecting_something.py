"""The optimised plan of a count over a filtered read needs no column of it, and DataFusion's unparser
writes that read as a derived table that selects nothing; ``gateway.planner.selecting_something``
gives such a SELECT a constant output, which DuckDB and SQLite require (PostgreSQL does not)."""

from __future__ import annotations

import sqlite3

import duckdb
import pytest
from sqlglot import parse_one

from gateway.planner import selecting_something

# As DataFusion 55 unparses ``SELECT count(*) AS n FROM lines WHERE qty = 3`` (the file engine's route).
UNPARSED = (
    'SELECT COUNT(1) AS "n" FROM (SELECT FROM "lines" AS "lines" WHERE ("lines"."qty" = 3)'
    ' AND ("lines"."qty" = 3)) AS "derived_projection"'
)


def fixed(sql: str, dialect: str) -> str:
    return selecting_something(parse_one(sql, read="postgres")).sql(dialect=dialect)


def test_a_select_of_nothing_selects_a_constant_and_counts_the_same() -> None:
    assert fixed(UNPARSED, "duckdb") == (
        'SELECT COUNT(1) AS "n" FROM (SELECT 1 FROM "lines" AS "lines" WHERE ("lines"."qty" = 3)'
        ' AND ("lines"."qty" = 3)) AS "derived_projection"'
    )
    connection = duckdb.connect()
    connection.execute("CREATE TABLE lines AS SELECT * FROM (VALUES (3), (3), (4), (NULL)) AS t(qty)")
    with pytest.raises(duckdb.ParserException, match="without selection list"):
        connection.sql(parse_one(UNPARSED, read="postgres").sql(dialect="duckdb"))
    assert connection.sql(fixed(UNPARSED, "duckdb")).fetchall() == [(2,)]
    lite = sqlite3.connect(":memory:")
    lite.executescript("CREATE TABLE lines (qty INTEGER); INSERT INTO lines VALUES (3), (3), (4), (NULL);")
    with pytest.raises(sqlite3.OperationalError):
        lite.execute(parse_one(UNPARSED, read="postgres").sql(dialect="sqlite"))
    assert lite.execute(fixed(UNPARSED, "sqlite")).fetchall() == [(2,)]


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT COUNT(1) AS "n" FROM (SELECT "t"."a" FROM "t" AS "t" WHERE "t"."a" > 1) AS "d"',
        'SELECT "d"."a" FROM (SELECT "t"."a" FROM "t" AS "t") AS "d" WHERE EXISTS (SELECT 1 FROM "u" AS "u")',
        'SELECT * FROM "t" AS "t"',
    ],
    ids=["a-column", "a-constant", "a-star"],
)
def test_a_select_of_something_is_left_as_it_is(sql: str) -> None:
    assert fixed(sql, "duckdb") == parse_one(sql, read="postgres").sql(dialect="duckdb")
