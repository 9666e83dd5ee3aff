"""Whole queries sent to MariaDB/MySQL (connectors/mysql_queries.py): the answer is DataFusion's on
every route, and a query MySQL would answer otherwise stays federated.

The server's database uses its case-insensitive PAD SPACE collation (``utf8mb4_general_ci``), so
a text comparison left to it would take ``'ABC'`` and ``'abc '`` for ``'abc'``. Each query runs
through a real gateway and the ADBC Flight SQL driver, once over the MySQL products alone (routed
whole when MySQL can answer it exactly) and once crossed with a one-row Parquet product (federated),
and both answers must be DataFusion's over the same rows.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from tests.conformance.test_collations import QUERIES as COLLATION_QUERIES
from tests.conformance.test_collations import WORDS
from tests.support.gateway import explain_analyze, query, serve_in_process
from tests.support.mysql import connect

pytestmark = pytest.mark.mariadb

NUMS = pa.table(
    {
        "id": pa.array(range(1, 9), pa.int64()),
        "i": pa.array([3, None, 2, -5, 2, 7, None, 0], pa.int32()),
        "u": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.uint32()),
        "m": pa.array(
            [Decimal(v) if v else None for v in ("0.30", "1.10", None, "12.34", "-3.00", "0.30", "7.77", "100.00")],
            pa.decimal128(10, 2),
        ),
        "f": pa.array([1.5, -0.25, 2.7, None, 1e10, 3.3, 0.1, -7.9], pa.float64()),
        "d": pa.array(
            [
                datetime.date(2024, 1, 31),
                datetime.date(2023, 12, 31),
                None,
                datetime.date(2024, 2, 29),
                datetime.date(2000, 3, 1),
                datetime.date(2024, 1, 1),
                datetime.date(1999, 12, 31),
                datetime.date(2024, 5, 31),
            ],
            pa.date32(),
        ),
        "flag": pa.array([True, False, None, True, True, False, False, True], pa.bool_()),
        "s": pa.array(["abc", "ABC", "abc ", None, "abd", "Abc", "ab", "é"], pa.string()),
    }
)
WORDS_TABLE = pa.table({"id": pa.array(range(1, len(WORDS) + 1), pa.int64()), "w": pa.array(WORDS, pa.string())})

# Queries MySQL answers whole (route "single source"); {n} is the numbers product, {w} the words'.
WHOLE = {
    "aggregates": "SELECT sum(i) AS s, count(*) AS n, count(i) AS ni, min(m) AS lo, max(m) AS hi, sum(m) AS sm,"
    " min(d) AS first, max(s) AS top FROM {n}",
    "group_by_bool": "SELECT flag, sum(i) AS s, count(*) AS n FROM {n} GROUP BY flag",
    "nulls_ordered": "SELECT i, id FROM {n} ORDER BY i, id",
    "nulls_ordered_desc": "SELECT i, id FROM {n} ORDER BY i DESC, id",
    "nulls_first_asc": "SELECT i, id FROM {n} ORDER BY i ASC NULLS FIRST, id",
    "limit_offset": "SELECT i FROM {n} ORDER BY i DESC LIMIT 3 OFFSET 1",
    "offset_only": "SELECT id FROM {n} ORDER BY id OFFSET 5",
    "float_constant": "SELECT id, i * 1.1 AS x, m * 1.1 AS y FROM {n}",
    "float_compare": "SELECT id FROM {n} WHERE m >= 0.3 AND f < 2.7 AND i > 1.5",
    "negative_constants": "SELECT id, i * -1.5 AS x FROM {n} WHERE f > -0.5 AND m > -(1.5)",
    "intervals": "SELECT id, d + INTERVAL '1' MONTH AS next, d - INTERVAL '3' DAY AS before,"
    " d + INTERVAL '1' YEAR AS later FROM {n}",
    "extract": "SELECT extract(year FROM d) AS y, count(*) AS n FROM {n} GROUP BY extract(year FROM d)",
    "windows": "SELECT id, row_number() OVER (ORDER BY i DESC, id) AS r, rank() OVER (ORDER BY i) AS k,"
    " sum(i) OVER (PARTITION BY flag ORDER BY id) AS c FROM {n}",
    "text_equal": "SELECT id FROM {n} WHERE s = 'abc'",
    "text_range": "SELECT id FROM {n} WHERE s > 'Abc' AND s < 'abd'",
    "constant_text": "SELECT id FROM {n} WHERE id > 6 OR 'a' = 'A' OR 'a ' = 'a' OR 'B' > 'a'",
    "case_group": "SELECT CASE WHEN flag THEN 'y' ELSE 'n' END AS k, count(*) AS c FROM {n} GROUP BY 1",
    "in_subquery": "SELECT id FROM {n} WHERE i IN (SELECT i FROM {n} WHERE flag)",
    "exists": "SELECT a.id FROM {n} a WHERE EXISTS (SELECT 1 FROM {n} b WHERE b.i = a.i AND b.id <> a.id)",
    "functions": "SELECT id, coalesce(i, -1) AS c, nullif(i, 2) AS z, abs(i) AS a, length(s) AS l, trim(s) AS t"
    " FROM {n}",
    "self_join_text": "SELECT a.id AS x, b.id AS y FROM {n} a JOIN {n} b ON a.s = b.s",
    "join_words": "SELECT n.id, w.id AS wid FROM {n} n JOIN {w} w ON n.s = w.w",
    "distinct_text": "SELECT DISTINCT s FROM {n}",
    "union": "SELECT s AS v FROM {n} UNION SELECT w FROM {w}",
    "decimal_sums_ordered": "SELECT s, sum(m) AS t, sum(i) AS n FROM {n} GROUP BY s ORDER BY t DESC, s",
    "integer_sum_ordered": "SELECT flag, sum(i) AS total FROM {n} GROUP BY flag ORDER BY total, flag",
    "union_ordered": "SELECT v FROM (SELECT s AS v FROM {n} UNION SELECT w FROM {w}) AS x ORDER BY v",
}
# Queries MySQL would answer otherwise: they stay federated.
FEDERATED = {
    "avg": "SELECT avg(i) AS a FROM {n}",
    "division": "SELECT id, i / 2 AS h FROM {n}",
    "modulo": "SELECT id, i % 2 AS r FROM {n}",
    "filter_clause": "SELECT count(*) FILTER (WHERE flag) AS c FROM {n}",
    "unsigned_arithmetic": "SELECT id, u - 5 AS x FROM {n}",
    "float_to_integer": "SELECT id, CAST(f AS BIGINT) AS x FROM {n}",
    "number_to_text": "SELECT id, CAST(i AS VARCHAR) AS x FROM {n}",
    "upper": "SELECT id, upper(s) AS x FROM {n}",
    "float_arithmetic_compared": "SELECT id FROM {n} WHERE m >= 0.1 + 0.2",
    "decimal_union": "SELECT m FROM {n} UNION SELECT m * 2 FROM {n}",
    "compound_interval": "SELECT id, d + INTERVAL '1 month 2 days' AS x FROM {n}",
    "full_join": "SELECT a.id AS x, b.id AS y FROM {n} a FULL JOIN {n} b ON a.id = b.i",
}


@pytest.fixture(scope="module")
def gateway(mysql_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with connect(mysql_uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE nums (id BIGINT PRIMARY KEY, i INT, u INT UNSIGNED NOT NULL, m DECIMAL(10, 2),"
            " f DOUBLE, d DATE, flag BOOLEAN, s VARCHAR(20))"
        )
        cursor.execute("CREATE TABLE words (id BIGINT PRIMARY KEY, w VARCHAR(10))")
        for name, table in (("nums", NUMS), ("words", WORDS_TABLE)):
            marks = ", ".join(["%s"] * table.num_columns)
            cursor.executemany(f"INSERT INTO {name} VALUES ({marks})", [tuple(r.values()) for r in table.to_pylist()])
    folder = tmp_path_factory.mktemp("mysql_whole")
    pq.write_table(pa.table({"k": [1]}), folder / "one.parquet")
    (folder / "mesh.yaml").write_text(
        f"domains:\n  - name: shop\n    connector: {{type: mysql, uri: '{mysql_uri}'}}\n"
        "  - name: one\n    connector: {type: parquet, path: one.parquet}\n"
        "    products:\n      - {name: one, source: one.parquet}\n"
    )
    with serve_in_process(folder) as uri:
        yield uri


def oracle(sql: str) -> pa.Table:
    ctx = SessionContext()
    ctx.from_arrow(NUMS, name="nums")
    ctx.from_arrow(WORDS_TABLE, name="words")
    return ctx.sql(sql).to_arrow_table()


def rows(table: pa.Table, ordered: bool) -> list[tuple[object, ...]]:
    found = [tuple(row.values()) for row in table.to_pylist()]
    return found if ordered else sorted(found, key=repr)


def route_of(uri: str, sql: str) -> str:
    (route,) = [text for kind, text in explain_analyze(uri, sql) if kind == "route"]
    return route


def answers(uri: str, template: str, ordered: bool, expected_route: str) -> None:
    """The query over the MySQL products alone takes ``expected_route``; it and the federated form
    (each product crossed with a one-row Parquet product) both answer as DataFusion does."""
    expected = oracle(template.format(n="nums", w="words"))
    whole = template.format(n="shop.nums", w="shop.words")
    got = query(uri, whole)
    if expected_route == "single source":  # (DataFusion itself reports a UNION's decimal types unlike it computes them)
        expected_types = [pa.string() if t == pa.string_view() else t for t in expected.schema.types]
        assert got.schema.types == expected_types, f"{whole}\n{got.schema}\n!=\n{expected.schema}"
    assert rows(got, ordered) == rows(expected, ordered), whole
    assert route_of(uri, whole).startswith(expected_route), whole
    crossed = template.format(
        n="(SELECT t.* FROM shop.nums t CROSS JOIN one.one)", w="(SELECT t.* FROM shop.words t CROSS JOIN one.one)"
    )
    assert rows(query(uri, crossed), ordered) == rows(expected, ordered), crossed
    assert route_of(uri, crossed).startswith("federated"), crossed


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_a_query_mysql_answers_exactly_goes_whole(gateway: str, name: str) -> None:
    template = WHOLE[name]
    answers(gateway, template, "ORDER BY" in template and "OVER (" not in template, "single source")


@pytest.mark.parametrize("name", sorted(FEDERATED))
def test_a_query_mysql_would_answer_otherwise_stays_federated(gateway: str, name: str) -> None:
    answers(gateway, FEDERATED[name], False, "federated")


@pytest.mark.parametrize("name", sorted(COLLATION_QUERIES))
def test_collated_text_answers_in_byte_order_on_the_whole_route(gateway: str, name: str) -> None:
    """The collation conformance cases (tests/conformance/test_collations.py) over MariaDB's
    case-insensitive, PAD SPACE column."""
    template, ordered, _ = COLLATION_QUERIES[name]
    answers(gateway, template.format(t="{w}", c="w"), ordered, "single source")


def test_the_whole_query_mysql_receives(gateway: str) -> None:
    """The NULL order, intervals, text constants and float constants as they reach MySQL."""
    sql = (
        "SELECT id, i * 1.5 AS x FROM shop.nums WHERE d + INTERVAL '1' MONTH > DATE '2024-01-01' AND s <> 'a'"
        " ORDER BY i DESC"
    )
    plan = explain_analyze(gateway, sql)
    (sent,) = [text for kind, text in plan if kind.startswith("source_query[shop/")]
    assert "INTERVAL '1' MONTH" in sent, sent
    assert "CAST(1.5 AS DOUBLE)" in sent, sent
    assert "IS NULL DESC" in sent, sent
    assert "'a' COLLATE utf8mb4_nopad_bin" in sent, sent
