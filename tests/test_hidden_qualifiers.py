"""DataFusion's unparser writes a projection under a join as a derived table and still names the
table inside it above; ``gateway.planner.hidden_qualifiers`` names the derived table instead, and
touches nothing that resolves (or that it cannot resolve alone)."""

from __future__ import annotations

import duckdb
import pytest
from sqlglot import parse_one

from gateway.planner import hidden_qualifiers

# As DataFusion 55 unparses a join of a table with a filtered file (gateway/plan/file_subplans.py).
UNPARSED = (
    'SELECT "keys"."k", "lines"."qty" FROM "keys" AS "keys" INNER JOIN (SELECT "lines"."part", "lines"."qty"'
    ' FROM "lines" AS "lines" WHERE "lines"."qty" > 1) AS "derived_projection" ON "keys"."k" = "lines"."part"'
)


def fixed(sql: str) -> str:
    return hidden_qualifiers(parse_one(sql, read="postgres")).sql(dialect="duckdb")


def test_a_hidden_table_is_named_by_the_derived_table_that_outputs_its_column() -> None:
    out = fixed(UNPARSED)
    assert out == (
        'SELECT "keys"."k", "derived_projection"."qty" FROM "keys" AS "keys" INNER JOIN (SELECT "lines"."part",'
        ' "lines"."qty" FROM "lines" AS "lines" WHERE "lines"."qty" > 1) AS "derived_projection"'
        ' ON "keys"."k" = "derived_projection"."part"'
    )
    connection = duckdb.connect()
    connection.execute("CREATE TABLE keys AS SELECT * FROM (VALUES (1), (2)) AS t(k)")
    connection.execute("CREATE TABLE lines AS SELECT * FROM (VALUES (1, 5), (2, 1), (3, 7)) AS t(part, qty)")
    with pytest.raises(duckdb.BinderException):
        connection.sql(UNPARSED)
    assert connection.sql(out).fetchall() == [(1, 5)]


@pytest.mark.parametrize(
    "sql",
    [
        # resolves in its own query
        'SELECT "t"."a" FROM "t" AS "t" JOIN "u" AS "u" ON "t"."a" = "u"."a"',
        # an outer query's table (a correlated subquery): not this query's to rename
        'SELECT "t"."a" FROM "t" AS "t" WHERE EXISTS (SELECT 1 FROM (SELECT "u"."a" FROM "u" AS "u") AS "d"'
        ' WHERE "d"."a" = "t"."a")',
        # two derived tables output the column: ambiguous, left for the engine to refuse
        'SELECT "x"."a" FROM (SELECT "x"."a" FROM "x" AS "x") AS "d1" JOIN (SELECT "y"."a" FROM "y" AS "y") AS "d2"'
        ' ON "x"."a" = "d2"."a"',
    ],
    ids=["resolves", "outer-query", "ambiguous"],
)
def test_what_resolves_or_is_ambiguous_is_left_as_it_is(sql: str) -> None:
    assert fixed(sql) == parse_one(sql, read="postgres").sql(dialect="duckdb")
