"""Route-independent answers on collated text columns: whole, federated and pushed agree with DataFusion.

A PostgreSQL column with a locale collation (ICU or libc: orders ``a < B``), one with a
nondeterministic ICU collation (``a = A``), SQLite ``COLLATE NOCASE`` and ``RTRIM`` columns
(``a = A``, ``a = 'a '``) and a SQLite view over them (whose collations the connector does
not trace) hold the same strings. Each query runs through the gateway three ways:

- whole: it reads one source's product only, so it goes to that source whole;
- federated: the product is crossed with a one-row Parquet product, so DataFusion orders,
  groups and aggregates, and the filters are pushed to the source (checked: the source
  query has them and returns exactly the selected rows);

and each answer must be DataFusion's over the same strings (byte order).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from tests.support.collations import NO_LOCALE, locale_collation, nondeterministic_collation
from tests.support.gateway import explain_analyze, query, serve_in_process

WORDS = [
    "a", "B", "A", "b", "ab", "aB", "Ab", "_x", "x_", "ä", "Ä", "z", "Z", "a ", " a", "1",
    "é", "e", "E", "ß", "ss", "SS", "a-b", "ab ", None,
]  # fmt: skip
# Each column the words are stored in: (domain, product, column).
COLUMNS = {
    "postgres_locale": ("pgc", "words", "locale"),
    "postgres_nondeterministic": ("pgc", "words", "ci"),
    "sqlite_nocase": ("litec", "words", "nocase"),
    "sqlite_rtrim": ("litec", "words", "rtrim"),
    "sqlite_view": ("litec", "words_view", "nocase"),
}
# name -> (query over {t} and column {c}, ordered result, filters a federated scan pushes)
QUERIES = {
    "greater": ("SELECT id FROM {t} WHERE {c} > 'a'", False, True),
    "between": ("SELECT id FROM {t} WHERE {c} BETWEEN 'A' AND 'b'", False, True),
    "equal": ("SELECT id FROM {t} WHERE {c} = 'a'", False, True),
    "in_list": ("SELECT id FROM {t} WHERE {c} IN ('a', 'ss')", False, True),
    "like": ("SELECT id FROM {t} WHERE {c} LIKE 'a%'", False, True),
    "order_by": ("SELECT {c}, id FROM {t} ORDER BY {c}, id", True, False),
    "order_by_desc_limit": ("SELECT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {c} DESC LIMIT 6", True, True),
    "min_max": ("SELECT min({c}) AS lo, max({c}) AS hi FROM {t}", False, False),
    "group_by": ("SELECT {c}, count(*) AS n FROM {t} GROUP BY {c}", False, False),
    "distinct": ("SELECT DISTINCT {c} FROM {t}", False, False),
    "distinct_ordered": ("SELECT DISTINCT {c} FROM {t} ORDER BY {c}", True, False),
    "count_distinct": ("SELECT count(DISTINCT {c}) AS n FROM {t}", False, False),
    "self_join": ("SELECT a.id AS x, b.id AS y FROM {t} a JOIN {t} b ON a.{c} = b.{c}", False, False),
    "derived_columns": (  # a derived table's column list names the outputs ordered by (TPC-H Q13)
        "SELECT d.w, d.n FROM (SELECT {c}, count(*) FROM {t} GROUP BY {c}) AS d(w, n) ORDER BY d.n DESC, d.w",
        True,
        False,
    ),
}


def words() -> pa.Table:
    ids = pa.array(range(1, len(WORDS) + 1), pa.int64())
    text = pa.array(WORDS, pa.string())
    return pa.table({"id": ids, "locale": text, "ci": text, "nocase": text, "rtrim": text})


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """A gateway over the words in every column, and why a column's cases skip (PostgreSQL's collations)."""
    folder = tmp_path_factory.mktemp("collations")
    locale = locale_collation(postgres_uri)
    ci = nondeterministic_collation(postgres_uri, pg_schema)
    skips = (
        {"postgres_nondeterministic": "this PostgreSQL has no ICU, so no nondeterministic collation"} if not ci else {}
    )
    postgres = ""
    if locale is None:
        skips.update(postgres_locale=NO_LOCALE, postgres_nondeterministic=NO_LOCALE)
    else:
        second = ci or f'"{locale}"'
        with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(
                f'CREATE TABLE "{pg_schema}".words (id int8, locale text COLLATE "{locale}", ci text COLLATE {second})'
            )
            words_pg = words().select(["id", "locale", "ci"])
            cursor.adbc_ingest("words", words_pg, mode="append", db_schema_name=pg_schema)
            cursor.adbc_ingest("tags", tags(), mode="create", db_schema_name=pg_schema)
        postgres = (
            f"  - name: pgc\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
            f"    products:\n      - {{name: words, source: {pg_schema}.words}}\n"
            f"      - {{name: tags, source: {pg_schema}.tags}}\n"
        )
    with sqlite3.connect(folder / "words.sqlite") as connection:
        connection.execute("CREATE TABLE words (id INTEGER, nocase TEXT COLLATE NOCASE, rtrim TEXT COLLATE RTRIM)")
        connection.execute("CREATE VIEW words_view AS SELECT id, nocase FROM words")
        connection.executemany("INSERT INTO words VALUES (?, ?, ?)", [(i + 1, w, w) for i, w in enumerate(WORDS)])
        connection.execute("CREATE TABLE tags (word_id INTEGER, tag TEXT)")
        connection.executemany("INSERT INTO tags VALUES (?, ?)", [tuple(r.values()) for r in tags().to_pylist()])
    connection.close()
    pq.write_table(pa.table({"k": [1]}), folder / "one.parquet")
    (folder / "mesh.yaml").write_text(
        "domains:\n"
        f"{postgres}"
        "  - name: litec\n    connector: {type: sqlite, path: words.sqlite}\n"
        "    products:\n      - {name: words, source: words}\n      - {name: words_view, source: words_view}\n"
        "      - {name: tags, source: tags}\n"
        "  - name: one\n    connector: {type: parquet, path: one.parquet}\n"
        "    products:\n      - {name: one, source: one.parquet}\n"
    )
    with serve_in_process(folder) as uri:
        yield uri, skips


def tags() -> pa.Table:
    return pa.table(
        {"word_id": pa.array(range(1, len(WORDS) + 1), pa.int64()), "tag": [f"t{i}" for i in range(len(WORDS))]}
    )


def oracle(sql: str) -> pa.Table:
    ctx = SessionContext()
    ctx.from_arrow(words(), name="words")
    ctx.from_arrow(tags(), name="tags")
    return ctx.sql(sql).to_arrow_table()


def rows(table: pa.Table, ordered: bool) -> list[tuple[object, ...]]:
    found = [tuple(row.values()) for row in table.to_pylist()]
    return found if ordered else sorted(found, key=repr)


@pytest.mark.parametrize("name", sorted(QUERIES))
@pytest.mark.parametrize("column", sorted(COLUMNS))
@pytest.mark.parametrize("route", ["whole", "federated"])
def test_answer_is_datafusions_on_every_route(
    setup: tuple[str, dict[str, str]], route: str, column: str, name: str
) -> None:
    uri, skips = setup
    if column in skips:
        pytest.skip(skips[column])
    domain, product, field = COLUMNS[column]
    template, ordered, pushes = QUERIES[name]
    expected = rows(oracle(template.format(t="words", c=field)), ordered)
    table = f"{domain}.{product}"
    if route == "federated":  # a one-row Parquet product makes DataFusion run the query over the source's rows
        table = f"(SELECT w.* FROM {domain}.{product} w CROSS JOIN one.one)"
    sql = template.format(t=table, c=field)
    got = rows(query(uri, sql), ordered)
    assert got == expected, f"{sql}\n{got}\n!=\n{expected}"
    plan = explain_analyze(uri, sql)
    (route_row,) = [text for kind, text in plan if kind == "route"]
    assert route_row.startswith("single source" if route == "whole" else "federated"), route_row
    if route == "federated" and pushes and "LIMIT" not in sql:
        sent = [text for kind, text in plan if kind.startswith(f"source_query[{domain}/")]
        assert sent and all("WHERE" in text for text in sent), sent
        returned = sum(int(text.rpartition("\n  rows=")[2].split()[0]) for text in sent)
        assert returned == len(expected), f"the source returned {returned} rows for {len(expected)}: {sent}"


@pytest.mark.parametrize("column", ["postgres_nondeterministic", "sqlite_nocase", "sqlite_rtrim"])
@pytest.mark.parametrize("predicate", ["{c} = 'a'", "{c} IN ('a', 'ss')", "{c} > 'a'"])
def test_a_join_pushed_to_its_source_filters_in_byte_order(
    setup: tuple[str, dict[str, str]], column: str, predicate: str
) -> None:
    """The same-source rule sends a filtered join of one source's products to it as one query
    (gateway/plan/same_source.py); a filter on a collated column must select what DataFusion does."""
    uri, skips = setup
    if column in skips:
        pytest.skip(skips[column])
    domain, product, field = COLUMNS[column]
    condition = predicate.format(c=f"w.{field}")
    template = "SELECT w.id, g.tag FROM {words} w JOIN {tags} g ON g.word_id = w.id {one} WHERE " + condition
    sql = template.format(words=f"{domain}.{product}", tags=f"{domain}.tags", one="CROSS JOIN one.one")
    expected = rows(oracle(template.format(words="words", tags="tags", one="")), False)
    assert rows(query(uri, sql), False) == expected
    plan = explain_analyze(uri, sql)
    (sent,) = [text for kind, text in plan if kind.startswith(f"source_query[{domain}/")]
    assert "INNER JOIN" in sent and "WHERE" in sent, sent  # the join and its filter went to the source
    assert int(sent.rpartition("\n  rows=")[2].split()[0]) == len(expected), sent


@pytest.mark.parametrize("name", ["group_by", "distinct", "count_distinct", "min_max", "order_by_desc_limit"])
@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_a_grouping_or_top_n_sent_to_its_source_follows_bytes(
    setup: tuple[str, dict[str, str]], column: str, name: str
) -> None:
    """Beside another domain's table, a grouping of one source's product goes to that source
    (gateway/plan/same_source.py) where text is equal there exactly when its bytes are: PostgreSQL,
    whose nondeterministic collations are presented in "C". Its groups must be DataFusion's."""
    uri, skips = setup
    if column in skips:
        pytest.skip(skips[column])
    domain, product, field = COLUMNS[column]
    template = QUERIES[name][0]
    expected = rows(oracle(template.format(t="words", c=field)), False)
    sql = f"SELECT d.* FROM ({template.format(t=f'{domain}.{product}', c=field)}) AS d CROSS JOIN one.one"
    assert rows(query(uri, sql), False) == expected, sql
    sent = [text for kind, text in explain_analyze(uri, sql) if kind.startswith(f"source_query[{domain}/")]
    grouped = any(word in text for text in sent for word in ("GROUP BY", "COUNT(DISTINCT", "MAX(", "LIMIT"))
    # SQLite groups by sorting, and text may hold numbers there: DataFusion groups and orders its rows
    assert grouped == (domain == "pgc"), sent
