"""The byte-order rule for whole queries as data: the unparser's SQL in, PostgreSQL's SQL out.

``tests/fixtures/bytewise.sql`` holds blocks of two lines: a query over ``d.t`` as DataFusion's
unparser writes it, and what :func:`gateway.bytewise.bytewise_ordering` makes of it with
``COLLATE "C"`` (``refused``: the query stays federated). One case runs without a byte-order
collation: a dialect without one refuses any ordering of text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlglot import exp, parse_one
from sqlglot.schema import MappingSchema

from gateway.bytewise import TypedQuery, bytewise_ordering

FIXTURES = Path(__file__).parent / "fixtures" / "bytewise.sql"
SCHEMA = MappingSchema(
    {"d": {"t": {"id": "BIGINT", "name": "TEXT", "n2": "TEXT", "b": "BYTEA"}}}, dialect="postgres", normalize=False
)


def load_cases() -> list[tuple[str, str]]:
    cases = []
    for block in FIXTURES.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.strip().splitlines() if line and not line.startswith("#")]
        if lines:
            assert len(lines) == 2, lines
            cases.append((lines[0], lines[1]))
    return cases


CASES = load_cases()


def rewrite(sql: str, collation: str | None = "C") -> str:
    result = bytewise_ordering(parse_one(sql, read="postgres"), SCHEMA, collation)
    return "refused" if result is None else result.sql("postgres")


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[c[0][:70] for c in CASES])
def test_bytewise_fixture(sql: str, expected: str) -> None:
    assert rewrite(sql) == expected


def test_without_a_byte_order_collation_only_queries_that_order_no_text_pass() -> None:
    assert rewrite('SELECT "t"."id" FROM "t" WHERE "t"."id" > 1 ORDER BY "t"."id"', None) != "refused"
    assert rewrite('SELECT "t"."id" FROM "t" ORDER BY "t"."name"', None) == "refused"
    assert rewrite('SELECT max("t"."name") FROM "t"', None) == "refused"


def test_a_typed_query_is_typed_once_and_leaves_its_tree_alone() -> None:
    tree = parse_one('SELECT "t"."id" / 2 FROM "d"."t" AS "t" WHERE "t"."name" > \'m\'', read="postgres")
    before = tree.sql("postgres")
    query = TypedQuery(tree, SCHEMA)
    typed = query.typed()
    assert typed is not None and typed is not tree
    assert query.typed() is typed  # the guards share one copy
    assert typed.find(exp.Div) is not None and typed.find(exp.Div).this.type.is_type(exp.DType.BIGINT)
    assert tree.sql("postgres") == before and tree.find(exp.Div).this.type is None


def test_a_query_sqlglot_cannot_type_has_no_types() -> None:
    query = TypedQuery(parse_one('SELECT "t"."nope" FROM "d"."t" AS "t"', read="postgres"), SCHEMA)
    assert query.typed() is None and query.typed() is None


def test_a_query_that_orders_nothing_is_returned_as_it_is_untyped() -> None:
    """Nothing to collate, nothing to type: a 100,000-constant IN list was copied and typed (2 s)."""
    tree = parse_one('SELECT "t"."id" FROM "d"."t" AS "t" WHERE "t"."id" IN (1, 2, 3) AND "t"."name" = \'x\'')
    assert bytewise_ordering(tree, SCHEMA, "C") is tree
    assert tree.find(exp.In).this.type is None
