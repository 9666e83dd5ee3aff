"""Functions and operators answer as DataFusion does whichever route a query takes.

A query that reads one source's products goes to that source whole (gateway/planner.py); crossed
with a one-row Parquet product, DataFusion computes it over the source's rows. The same values
live in PostgreSQL, SQLite, DuckDB, MariaDB and roapi, and each expression below must give DataFusion's
answer on both routes. Sources disagree with DataFusion on many functions (SQLite's ``upper`` is ASCII only,
its ``substr`` counts a negative start from the end, it has no ``left`` and no ``EXTRACT``;
PostgreSQL's ``upper('ß')`` is ``'ß'`` and its ``to_char`` reads another format; ``%`` of reals
fails in PostgreSQL and truncates in SQLite; DuckDB divides integers into a DOUBLE): a whole query
goes to its source only when every function in it is one the source evaluates as DataFusion does
(``SqlCapabilities.evaluates``) and every ``/`` and ``%`` divides integers in a source that divides
them as DataFusion does (``SqlCapabilities.integer_division``, ``integer_remainder``), else it
stays federated. roapi, a DataFusion server of another version than the gateway's, is sent what the
gateway's DataFusion evaluates, once it prepared it: it cannot add an integer to a date and does not
parse ``FILTER`` on a window aggregate, and such queries stay federated (``FlightSqlConnector.accepts``).
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from adbc_driver_manager import Error as AdbcError
from datafusion import SessionContext

from tests.support.gateway import connect as gateway_connect
from tests.support.gateway import explain_analyze, query, serve_in_process
from tests.support.mysql import connect
from tests.support.roapi import roapi_server

VALUES = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "name": pa.array(["élan", "abc", "Ärger", "ß", None], pa.string()),
        "x": pa.array([2.5, -7.5, 1e10, 0.0, None], pa.float64()),
        "i": pa.array([7, -7, 3, 0, None], pa.int64()),
        "j": pa.array([7, -7, 2**31 - 1, 0, None], pa.int32()),
        "d": pa.array([dt.date(2024, 1, 31), dt.date(2023, 12, 1), dt.date(2024, 2, 29), None, dt.date(1999, 1, 1)]),
        "ts": pa.array(
            [
                dt.datetime(2024, 2, 29),
                dt.datetime(2024, 2, 29, 10, 30),
                dt.datetime(2024, 3, 1),
                None,
                dt.datetime(1999, 1, 1, 12),
            ],
            pa.timestamp("us"),
        ),
        "b": pa.array([b"\xc3\xa9", b"ab", b"", b"\xc3\x9f", None], pa.binary()),  # the bytes of 'é' and 'ß'
    }
)
SOURCES = ("postgres", "sqlite", "duckdb", "mysql", "roapi")  # MariaDB's cases skip when none answers
ALL = frozenset(SOURCES)
BUT_MYSQL = ALL - {"mysql"}
# expression -> the sources that evaluate it as DataFusion does (a whole query with it goes to them)
EXPRESSIONS: dict[str, frozenset[str]] = {
    "upper(name)": frozenset({"roapi"}),
    "lower(name)": frozenset({"roapi"}),
    "substr(name, -1, 3)": frozenset({"postgres", "roapi"}),
    "left(name, 2)": frozenset({"postgres", "duckdb", "roapi"}),
    "extract(year from d)": frozenset({"mysql"}),
    "to_char(d, '%Y')": frozenset(),
    "x % 2": frozenset(),
    "i % 4": frozenset({"postgres", "duckdb"}),
    "i / 2": frozenset({"postgres"}),
    "(i + 1) / (i - 10)": frozenset({"postgres"}),
    "x / 4": frozenset(),
    "j * 2": ALL,  # 64-bit in DataFusion (its constant is an Int64); 32-bit constants in PostgreSQL and DuckDB
    "sum(j + 1) OVER ()": ALL,
    "CAST(x AS BIGINT)": frozenset(),
    "CAST(i AS INT)": ALL,
    "CAST(x AS TEXT)": frozenset(),
    "CAST(i AS TEXT)": BUT_MYSQL,
    "CAST(d AS TEXT)": BUT_MYSQL,
    "d + INTERVAL '1 day'": frozenset({"postgres", "duckdb", "mysql", "roapi"}),
    # DataFusion's INTERVAL '1 MONS', which sqlglot wrote for DuckDB as INTERVAL '1' MONS (a parser error there)
    "d - INTERVAL '1 month'": frozenset({"postgres", "duckdb", "mysql", "roapi"}),
    # a DATE in DataFusion (the hours dropped), a timestamp in the sources (gateway/intervals.py)
    "d + INTERVAL '36 hours' > DATE '2024-02-01'": frozenset(),
    "d + 1": frozenset({"postgres", "duckdb"}),  # roapi's DataFusion cannot add an integer to a date
    # the constants are dates: PostgreSQL failed the collation the query put on d ("not supported by type date")
    "d BETWEEN '2000-01-01' AND '2024-01-31'": ALL,
    "d + i": frozenset(),  # PostgreSQL and DuckDB add no BIGINT to a date (an error there until 2026-12-05)
    "left(name, j - 5)": frozenset({"duckdb", "roapi"}),  # j is an int4 in PostgreSQL, but its product does not say so
    "left(name, i + 1)": frozenset({"duckdb", "roapi"}),  # PostgreSQL has no left(text, bigint)
    "substr(name, 2, 2)": frozenset({"postgres", "roapi"}),
    "x + 1": ALL,
    "x * 1.5": ALL,
    "name || 'x'": ALL,
    # DataFusion's default escape character: none in SQLite and DuckDB (which missed 'abc' until 2026-12-05)
    "name LIKE 'ab\\c'": ALL,
    "name IS DISTINCT FROM 'abc'": ALL,
    "row_number() OVER (ORDER BY x)": ALL,
    "count(DISTINCT name) OVER ()": frozenset({"duckdb", "roapi"}),  # PostgreSQL, SQLite, MariaDB failed it whole
    "sum(i) FILTER (WHERE i > 0) OVER ()": BUT_MYSQL - {"roapi"},  # roapi's DataFusion does not parse it
    "sum(i) OVER (ORDER BY i RANGE BETWEEN 1 PRECEDING AND CURRENT ROW)": BUT_MYSQL,
    "strpos(name, 'r')": BUT_MYSQL,
    "length(name)": ALL,
    "abs(i)": ALL,
    "coalesce(name, 'none')": ALL,
    "CASE WHEN i > 0 THEN name END": ALL,
    # a BIGINT and a DOUBLE: announced as a BIGINT (the query's type before coercion) until 2026-12-05
    "CASE WHEN i > 0 THEN i ELSE x END": ALL,
    # of DataFusion's Null type: PostgreSQL sent text and SQLite an integer, and the query failed until
    # 2026-12-05; connectorx reads no MySQL NULL column, so MariaDB's stays federated
    "NULL": ALL - {"mysql"},
    # DuckDB fails -7 << 2 ("Cannot left-shift negative number") until 2026-12-05; MySQL's bitwise
    # operators stay federated
    "i << 2": frozenset({"postgres", "sqlite", "roapi"}),
    # SQLite and MySQL read the text 'inf' as 0 (every x compared false whole until 2026-12-05)
    "x < CAST('inf' AS DOUBLE)": ALL - {"sqlite", "mysql"},
    # a real printed by || (PostgreSQL and MySQL wrote 0.0 as 0, 1e10 without its .0), a boolean cast to
    # text (SQLite wrote 1 and 0), PostgreSQL's missing max(boolean): each failed whole until 2026-12-05
    "name || x": frozenset(),
    "CAST(i > 0 AS TEXT)": frozenset(),
    "max(i > 0) OVER ()": ALL - {"postgres"},
    # SQLite's lower folds ASCII letters only ('Ärger' did not match whole until 2026-12-05); MySQL has no ILIKE
    "name ILIKE 'ä%'": ALL - {"sqlite", "mysql"},
    # a frame offset DataFusion's unparser writes as a string ('31 days' PRECEDING): SQLite and DuckDB
    # failed it whole until 2026-12-05
    "count(*) OVER (ORDER BY d RANGE BETWEEN INTERVAL '31 days' PRECEDING AND CURRENT ROW)": frozenset(
        {"postgres", "roapi"}
    ),
    # DataFusion reads bytes as UTF-8 text here: 1 for the bytes of 'é', 2 in the sources, and a cast to
    # text is 'é' where PostgreSQL writes '\xc3a9' (both whole until 2026-12-05)
    "length(b)": frozenset(),
    "CAST(b AS TEXT)": frozenset(),
    "count(b) OVER ()": ALL,
    "md5(b)": frozenset({"postgres", "duckdb", "roapi"}),
    # bytes written X'6162', a bit string to PostgreSQL ("operator does not exist: bytea = bit") until 2026-12-05
    "b = X'6162'": ALL,
}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str, mysql_or_none: str | None
) -> Iterator[tuple[str, str | None]]:
    """A gateway over the values in a PostgreSQL table, a SQLite file, a DuckDB file and a MariaDB table
    (when one answers), and a one-row Parquet file; why MariaDB's cases skip (None: they run)."""
    folder = tmp_path_factory.mktemp("routes")
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{pg_schema}".vals (id int8, name text, x float8, i int8, j int4, d date, ts timestamp, b bytea)'
        )
        cursor.adbc_ingest("vals", VALUES, mode="append", db_schema_name=pg_schema)
    with sqlite3.connect(folder / "vals.sqlite") as lite:
        lite.execute(
            "CREATE TABLE vals (id INTEGER, name TEXT, x REAL, i INTEGER, j INTEGER, d DATE, ts TIMESTAMP, b BLOB)"
        )
        rows = [tuple(str(v) if isinstance(v, dt.datetime) else v for v in r.values()) for r in VALUES.to_pylist()]
        lite.executemany("INSERT INTO vals VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    lite.close()
    with duckdb.connect(str(folder / "vals.duckdb")) as duck:
        duck.register("arrow_values", VALUES)
        duck.execute("CREATE TABLE vals AS SELECT * FROM arrow_values")
    pq.write_table(pa.table({"k": [1]}), folder / "one.parquet")
    mariadb = ""
    if mysql_or_none is not None:
        with connect(mysql_or_none) as maria, maria.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE vals (id BIGINT, name TEXT, x DOUBLE, i BIGINT, j INT, d DATE, ts DATETIME, b VARBINARY(8))"
            )
            cursor.executemany(
                "INSERT INTO vals VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [tuple(r.values()) for r in VALUES.to_pylist()],
            )
        mariadb = (
            f"  - name: mysql\n    connector: {{type: mysql, uri: '{mysql_or_none}'}}\n"
            "    products:\n      - {name: vals, source: vals}\n"
        )
    (folder / "mesh.yaml").write_text(
        "domains:\n"
        f"  - name: postgres\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: vals, source: {pg_schema}.vals}}\n"
        "  - name: sqlite\n    connector: {type: sqlite, path: vals.sqlite}\n"
        "    products:\n      - {name: vals, source: vals}\n"
        "  - name: duckdb\n    connector: {type: duckdb, path: vals.duckdb}\n"
        "    products:\n      - {name: vals, source: vals}\n"
        f"{mariadb}"
        "  - name: one\n    connector: {type: parquet, path: one.parquet}\n"
        "    products:\n      - {name: one, source: one.parquet}\n"
    )
    with serve_in_process(folder) as uri:
        yield uri, None if mysql_or_none is not None else "no MariaDB answers (tests/support/mysql.py)"


@pytest.fixture(scope="module")
def served_roapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway over the values in roapi (a foreign DataFusion server of another version, through
    the flightsql connector: the gateway asks it to prepare what it would send it) and the one-row
    Parquet file."""
    folder = tmp_path_factory.mktemp("routes-roapi")
    pq.write_table(VALUES, folder / "vals.parquet")
    pq.write_table(pa.table({"k": [1]}), folder / "one.parquet")
    with roapi_server({"vals": folder / "vals.parquet"}) as remote:
        (folder / "mesh.yaml").write_text(
            "domains:\n"
            f"  - name: roapi\n    connector: {{type: flightsql, uri: '{remote}'}}\n"
            "    products:\n      - {name: vals, source: vals}\n"
            "  - name: one\n    connector: {type: parquet, path: one.parquet}\n"
            "    products:\n      - {name: one, source: one.parquet}\n"
        )
        with serve_in_process(folder) as uri:
            yield uri


def answer(table: pa.Table) -> list[object]:
    """The values of ``v`` by id, NaN as a string (NaN is not equal to itself)."""
    rows = sorted(table.to_pylist(), key=lambda row: row["id"])
    return [("NaN" if isinstance(row["v"], float) and math.isnan(row["v"]) else row["v"]) for row in rows]


def oracle(expression: str) -> list[object]:
    ctx = SessionContext()
    ctx.from_arrow(VALUES, name="vals")
    return answer(ctx.sql(f"SELECT id, {expression} AS v FROM vals").to_arrow_table())


def _gateway_of(request: pytest.FixtureRequest, source: str) -> str:
    """The gateway serving ``source``'s values (MariaDB's cases skip when none answers)."""
    if source == "roapi":
        uri: str = request.getfixturevalue("served_roapi")
        return uri
    uri, no_mariadb = request.getfixturevalue("served")
    if source == "mysql" and no_mariadb is not None:
        pytest.skip(no_mariadb)
    return uri


def _read(source: str, route: str) -> str:
    """``source``'s values as the query reads them: alone (whole), or beside the Parquet file (federated)."""
    return f"{source}.vals" if route == "whole" else f"(SELECT v.* FROM {source}.vals v CROSS JOIN one.one)"


@pytest.mark.parametrize("expression", list(EXPRESSIONS))
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("route", ["whole", "federated"])
def test_an_expression_answers_as_datafusion_on_every_route(
    request: pytest.FixtureRequest, route: str, source: str, expression: str
) -> None:
    uri = _gateway_of(request, source)
    expected = oracle(expression)
    sql = f"SELECT id, {expression} AS v FROM {_read(source, route)}"
    assert answer(query(uri, sql)) == expected, sql
    (route_row,) = [text for kind, text in explain_analyze(uri, sql) if kind == "route"]
    whole = route == "whole" and source in EXPRESSIONS[expression]
    assert route_row.startswith("single source" if whole else "federated"), (sql, route_row)


@pytest.mark.parametrize("source", SOURCES)
def test_a_parenthesized_join_answers_as_datafusion_on_every_source(
    request: pytest.FixtureRequest, source: str
) -> None:
    """``a LEFT JOIN (b JOIN c ON ...) ON ...`` within one source: DataFusion's unparser writes the
    parentheses as a chain whose first condition names b before joining it. PostgreSQL, DuckDB and
    MariaDB refused it ("missing FROM-clause entry for table b", "Referenced table b not found",
    "Unknown column 'b.id' in 'ON'"), and SQLite took it and answered 2 rows where there are 5: such
    a query now stays federated."""
    uri = _gateway_of(request, source)
    template = (
        "SELECT count(*) AS n, count(c.name) AS m FROM {t} a LEFT JOIN ({t} b JOIN {t} c"
        " ON b.id = c.id AND c.i > 0) ON a.id = b.id"
    )
    ctx = SessionContext()
    ctx.from_arrow(VALUES, name="vals")
    expected = ctx.sql(template.format(t="vals")).to_arrow_table().to_pylist()
    assert expected == [{"n": 5, "m": 2}]
    sql = template.format(t=f"{source}.vals")
    assert query(uri, sql).to_pylist() == expected, sql


@pytest.mark.parametrize("source", SOURCES)
def test_distinct_on_answers_in_datafusions_order_on_every_source(request: pytest.FixtureRequest, source: str) -> None:
    """``SELECT DISTINCT ON (...) ... ORDER BY ...`` goes whole only to sources with DISTINCT ON of
    their own (PostgreSQL, DuckDB, DataFusion): sqlglot wrote it for SQLite as a ROW_NUMBER() filter
    without the query's ORDER BY, and the rows came back with the NULL key first."""
    uri = _gateway_of(request, source)
    template = "SELECT DISTINCT ON (i > 0) i > 0 AS k, id FROM {t} ORDER BY i > 0, id"
    ctx = SessionContext()
    ctx.from_arrow(VALUES, name="vals")
    expected = ctx.sql(template.format(t="vals")).to_arrow_table().to_pylist()
    assert [row["k"] for row in expected] == [False, True, None]
    sql = template.format(t=f"{source}.vals")
    assert query(uri, sql).to_pylist() == expected, sql
    (route_row,) = [text for kind, text in explain_analyze(uri, sql) if kind == "route"]
    whole = source in ("postgres", "duckdb", "roapi")
    assert route_row.startswith("single source" if whole else "federated"), (sql, route_row)


@pytest.mark.parametrize("source", SOURCES)
def test_a_like_pattern_given_as_a_parameter_escapes_as_in_datafusion(
    request: pytest.FixtureRequest, source: str
) -> None:
    """``name LIKE ?`` given ``ab\\c``: DataFusion's escape character, the backslash, makes it match
    ``abc``. SQLite and DuckDB, which have none by default, took it as a backslash followed by c
    (no row) when the prepared statement went to them whole."""
    uri = _gateway_of(request, source)
    ctx = SessionContext()
    ctx.from_arrow(VALUES, name="vals")
    expected = ctx.sql("SELECT id FROM vals WHERE name LIKE 'ab\\c' ORDER BY id").to_arrow_table()
    assert expected.column("id").to_pylist() == [2]
    with gateway_connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {source}.vals WHERE name LIKE ? ORDER BY id", parameters=("ab\\c",))
        assert [row[0] for row in cursor.fetchall()] == [2]


@pytest.mark.parametrize("source", SOURCES)
def test_a_date_compared_with_a_string_parameter_reads_it_as_datafusion_does(
    request: pytest.FixtureRequest, source: str
) -> None:
    """``d < ?`` given ``'2024-02-29 00:00:01'``: DataFusion reads the string as the date 2024-02-29
    (its time dropped), so 2024-02-29 itself is not before it. Sent whole, SQLite compared the
    text and MySQL a DATETIME, and both counted it. ``ts = ?`` given a date is its midnight, which
    SQLite missed comparing the two as text."""
    uri = _gateway_of(request, source)
    with gateway_connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {source}.vals WHERE d < ? ORDER BY id", parameters=("2024-02-29 00:00:01",))
        assert [row[0] for row in cursor.fetchall()] == [1, 2, 5]
        cursor.execute(f"SELECT id FROM {source}.vals WHERE ts = ? ORDER BY id", parameters=(dt.date(2024, 2, 29),))
        assert [row[0] for row in cursor.fetchall()] == [1]


@pytest.mark.parametrize("source", SOURCES)
def test_an_infinite_parameter_is_never_written_as_a_word(request: pytest.FixtureRequest, source: str) -> None:
    """``x < ?`` given infinity: DataFusion's unparser writes the constant as ``inf``, which MariaDB
    read as a column ("Unknown column 'inf'") when the statement, planned with its value, went to
    it whole."""
    uri = _gateway_of(request, source)
    with gateway_connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {source}.vals WHERE x < ? ORDER BY id", parameters=(math.inf,))
        assert [row[0] for row in cursor.fetchall()] == [1, 2, 3, 4]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("route", ["whole", "federated"])
def test_a_value_too_large_for_its_decimal_fails_on_every_route(
    request: pytest.FixtureRequest, route: str, source: str
) -> None:
    """``CAST(x AS DECIMAL(10,2))`` of 1e10 fails in DataFusion; MariaDB, whose casts are lenient,
    clamped it to 99999999.99 when the query went to it whole (until 2026-12-05)."""
    uri = _gateway_of(request, source)
    with pytest.raises(AdbcError, match=r"(?i)too large|overflow|out of range"):
        query(uri, f"SELECT id, CAST(x AS DECIMAL(10,2)) AS v FROM {_read(source, route)}")


@pytest.mark.parametrize("source", SOURCES)
def test_a_bytes_parameter_is_bytes_on_every_source(request: pytest.FixtureRequest, source: str) -> None:
    """``b = ?`` given bytes: the plan holds them as ``X'6162'``, which PostgreSQL reads as a bit
    string ("operator does not exist: bytea = bit") when the statement went to it whole."""
    uri = _gateway_of(request, source)
    with gateway_connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {source}.vals WHERE b = ? ORDER BY id", parameters=(b"ab",))
        assert [row[0] for row in cursor.fetchall()] == [2]


# Query shapes whose SQL a source once took otherwise (or not at all), each with DataFusion's
# answer over the same rows: i and j are NULL in the same row, so the NULL is in both inputs.
SHAPES = {
    # DataFusion plans these as joins whose NULL keys match, which its unparser wrote with "=" (and
    # the two reads of vals as one): the whole query lost the NULL, or kept it, until 2026-12-05.
    "intersect": "SELECT i FROM {t} INTERSECT SELECT j FROM {t}",
    "except": "SELECT i FROM {t} EXCEPT SELECT j FROM {t}",
    "counted-intersect": "SELECT count(*) AS n FROM (SELECT i FROM {t} INTERSECT SELECT j FROM {t}) AS s",
    "not-distinct-join": "SELECT a.id, b.id AS b_id FROM {t} a JOIN {t} b ON a.i IS NOT DISTINCT FROM b.j",
    # What SQLite's grammar lacks: these failed whole there ("no such function: ROLLUP", a syntax error).
    "rollup": "SELECT i > 0 AS p, count(*) AS n FROM {t} GROUP BY ROLLUP (i > 0)",
    "grouping-sets": "SELECT i > 0 AS p, j < 0 AS q, count(*) AS n FROM {t} GROUP BY GROUPING SETS ((i > 0), (j < 0), ())",
    "any": "SELECT id FROM {t} WHERE i = ANY (SELECT s.j FROM {t} s WHERE s.j < 5)",
    "all": "SELECT id FROM {t} WHERE i > ALL (SELECT s.i FROM {t} s WHERE s.i < 3)",
    # roapi's DataFusion runs NOT IN as an anti join unaware of NULLs: the NULL of j made this empty in
    # DataFusion 55 and kept four rows there, and the NULL i was kept (whole, until 2026-12-05)
    "not-in-null": "SELECT id FROM {t} WHERE i NOT IN (SELECT s.j FROM {t} s WHERE s.id > 3)",
    "not-in": "SELECT id FROM {t} WHERE i NOT IN (SELECT s.j FROM {t} s WHERE s.j IS NOT NULL AND s.id > 2)",
    # DataFusion's sum of integers is an integer, divided as one (-7 / 2 is -3); PostgreSQL's a
    # NUMERIC (-3.5000000000000000, which the gateway could not read as an integer) until 2026-12-05.
    "sum-divided": "SELECT i > 0 AS p, sum(i) / count(*) AS q FROM {t} GROUP BY 1",
    # DataFusion reads a string compared with a date as a date, with a timestamp as a timestamp;
    # SQLite compared the text and MySQL a date with a time as a DATETIME (counting 2024-02-29 in
    # the first; no row in SQLite for the next three) until 2026-12-05.
    "date-with-time": "SELECT id FROM {t} WHERE d < '2024-02-29 00:00:01'",
    "date-unpadded": "SELECT id FROM {t} WHERE d = '2024-2-29'",
    "date-cast-unpadded": "SELECT id FROM {t} WHERE d = CAST('2024-2-29' AS DATE)",
    "timestamp-date-string": "SELECT id FROM {t} WHERE ts = '2024-02-29'",
    "timestamp-t-string": "SELECT id FROM {t} WHERE ts < '2024-02-29T10:30:00'",
    # A date compared with a timestamp: SQLite compared '2024-02-29 00:00:00' with '2024-02-29' as
    # text (no row) until 2026-12-05.
    "timestamp-date-constant": "SELECT id FROM {t} WHERE ts = DATE '2024-02-29'",
    "date-timestamp-constant": "SELECT id FROM {t} WHERE d = TIMESTAMP '2024-02-29 00:00:00'",
    # DataFusion converts a UTC offset (10:30 UTC); PostgreSQL dropped it (12:30) until 2026-12-05.
    "timestamp-zoned-string": "SELECT id FROM {t} WHERE ts = '2024-02-29 12:30:00+02'",
}


# Ordered answers (the order compared too).
ORDERED_SHAPES = {
    # MySQL: the NULLs-first key sqlglot added for a DESC key, n IS NULL, named an aggregate's alias
    # ("reference to group function", error 1247) until 2026-12-05.
    "order-by-aggregate": "SELECT i > 0 AS p, count(*) AS n FROM {t} GROUP BY 1 ORDER BY 2 DESC, 1 NULLS FIRST",
    # PostgreSQL: the ORDER BY's text key was collated and the DISTINCT ON's not ("SELECT DISTINCT ON
    # expressions must match initial ORDER BY expressions") until 2026-12-05.
    "distinct-on-text": "SELECT DISTINCT ON (name) name, id FROM {t} ORDER BY name, id DESC",
    # An ordering by what is not output: DataFusion's unparser sorts a derived table and selects from
    # it unsorted; MariaDB and roapi answered in id order alone until 2026-12-05.
    "order-by-expression": "SELECT id FROM {t} ORDER BY i > 0, id",
    "top-by-expression": "SELECT id FROM {t} ORDER BY abs(i) DESC NULLS LAST, id LIMIT 3",
    "page-by-expression": "SELECT id FROM {t} ORDER BY i > 0, id LIMIT 2 OFFSET 1",
    # a top N inside an aggregate: the order outside must not be repeated there (an error whole)
    "average-of-a-top": "SELECT avg(s.x) AS a FROM (SELECT x FROM {t} ORDER BY x DESC NULLS LAST LIMIT 2) s",
}


def _rows(table: pa.Table, ordered: bool = False) -> list[tuple[object, ...]]:
    rows = [tuple(row.values()) for row in table.to_pylist()]
    return rows if ordered else sorted(rows, key=repr)


@pytest.mark.parametrize("shape", [*SHAPES, *ORDERED_SHAPES])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("route", ["whole", "federated"])
def test_a_query_shape_answers_as_datafusion_on_every_route(
    request: pytest.FixtureRequest, route: str, source: str, shape: str
) -> None:
    uri = _gateway_of(request, source)
    ordered = shape in ORDERED_SHAPES
    template = ORDERED_SHAPES[shape] if ordered else SHAPES[shape]
    ctx = SessionContext()
    ctx.from_arrow(VALUES, name="vals")
    expected = _rows(ctx.sql(template.format(t="vals")).to_arrow_table(), ordered)
    sql = template.format(t=_read(source, route))
    assert _rows(query(uri, sql), ordered) == expected, sql


def test_set_operations_keep_their_null() -> None:
    """The oracle itself: the NULL of i and j is in the intersection and not in the difference."""
    ctx = SessionContext()
    ctx.from_arrow(VALUES, name="vals")
    assert _rows(ctx.sql(SHAPES["intersect"].format(t="vals")).to_arrow_table()) == [(-7,), (0,), (7,), (None,)]
    assert _rows(ctx.sql(SHAPES["except"].format(t="vals")).to_arrow_table()) == [(3,)]


@pytest.mark.parametrize("source", ["postgres", "sqlite"])
def test_a_not_distinct_join_beside_another_join_is_refused_naming_the_rewrite(
    request: pytest.FixtureRequest, source: str
) -> None:
    """DataFusion 55 drops the NULL matching of ``ON a IS NOT DISTINCT FROM b`` when the query joins
    anything else (no row where one is due); the gateway refuses it, and the rewrite it names answers."""
    uri = _gateway_of(request, source)
    joined = f"SELECT a.id, b.id AS b_id FROM {source}.vals a JOIN {source}.vals b ON {{on}} CROSS JOIN one.one"
    with pytest.raises(AdbcError, match=r"write \(a = b OR \(a IS NULL AND b IS NULL\)\)"):
        query(uri, joined.format(on="a.i IS NOT DISTINCT FROM b.j"))
    rewritten = query(uri, joined.format(on="(a.i = b.j OR (a.i IS NULL AND b.j IS NULL))"))
    assert _rows(rewritten) == [(1, 1), (2, 2), (4, 4), (5, 5)]
