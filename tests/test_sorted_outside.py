"""gateway.planner.sorted_outside: the order of a sorted derived table is the whole query's."""

from __future__ import annotations

import pytest
from sqlglot import parse_one

from gateway.planner import sorted_outside

# SQL in (as DataFusion 55 unparses it); SQL out, or None: not sent whole.
CASES = {
    'SELECT "derived_sort"."id" FROM (SELECT "t"."id", "t"."i" FROM t AS "t" ORDER BY ("t"."i" > 0) ASC NULLS FIRST,'
    ' "t"."id" ASC) AS "derived_sort"': 'SELECT "derived_sort"."id" FROM (SELECT "t"."id", "t"."i" FROM t'
    ' AS "t" ORDER BY ("t"."i" > 0) ASC NULLS FIRST, "t"."id" ASC) AS "derived_sort" ORDER BY'
    ' ("derived_sort"."i" > 0) ASC NULLS FIRST, "derived_sort"."id" ASC',
    # a key the derived table outputs as an expression
    'SELECT "d"."id" FROM (SELECT "t"."id", abs("t"."i") AS "k" FROM t AS "t" ORDER BY abs("t"."i") DESC LIMIT 3)'
    ' AS "d"': 'SELECT "d"."id" FROM (SELECT "t"."id", ABS("t"."i") AS "k" FROM t AS "t" ORDER BY ABS("t"."i") DESC'
    ' LIMIT 3) AS "d" ORDER BY "d"."k" DESC',
    # a top N as the unparser writes the plan as planned: the LIMIT outside applies after the ORDER BY
    'SELECT "d"."id" FROM (SELECT "t"."id", "t"."i" FROM t AS "t" ORDER BY ("t"."i" > 0) ASC) AS "d"'
    " LIMIT 1 OFFSET 1": 'SELECT "d"."id" FROM (SELECT "t"."id", "t"."i" FROM t AS "t" ORDER BY ("t"."i" > 0) ASC)'
    ' AS "d" ORDER BY ("d"."i" > 0) ASC LIMIT 1 OFFSET 1',
    # a key the derived table does not output
    'SELECT "d"."id" FROM (SELECT "t"."id" FROM t AS "t" ORDER BY "t"."i") AS "d"': None,
    # the outside filters or aggregates: a subquery of the query's own, whose order SQL drops
    'SELECT "d"."id" FROM (SELECT "t"."id" FROM t AS "t" ORDER BY "t"."id" LIMIT 5) AS "d" WHERE "d"."id" > 1': (
        'SELECT "d"."id" FROM (SELECT "t"."id" FROM t AS "t" ORDER BY "t"."id" LIMIT 5) AS "d" WHERE "d"."id" > 1'
    ),
    'SELECT AVG("d"."x") FROM (SELECT "t"."x" FROM t AS "t" ORDER BY "t"."x" DESC LIMIT 10) AS "d"': (
        'SELECT AVG("d"."x") FROM (SELECT "t"."x" FROM t AS "t" ORDER BY "t"."x" DESC LIMIT 10) AS "d"'
    ),
    # nothing to do
    'SELECT "d"."id" FROM (SELECT "t"."id" FROM t AS "t") AS "d"': 'SELECT "d"."id" FROM (SELECT "t"."id" FROM t AS "t") AS "d"',
    'SELECT "t"."id" FROM t AS "t" ORDER BY "t"."id"': 'SELECT "t"."id" FROM t AS "t" ORDER BY "t"."id"',
}


@pytest.mark.parametrize("sql", list(CASES), ids=range(len(CASES)))
def test_sorted_outside(sql: str) -> None:
    got = sorted_outside(parse_one(sql, read="postgres"))
    assert (None if got is None else got.sql("postgres")) == CASES[sql]
