"""``IS [NOT] DISTINCT FROM`` followed by AND/OR answers as PostgreSQL reads it, or is refused.

DataFusion 55's parser swallows the AND/OR that follows into the right operand
(gateway/distinct_from.py): ``a IS DISTINCT FROM b OR c`` counted 2 of these 3 rows where
PostgreSQL counts 3. A client's statement written so is refused with the fix; a policy's row filter
written so is parenthesized, and selects the rows PostgreSQL selects with the same predicate.
"""

from __future__ import annotations

from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.distinct_from import check_join_keys, check_statement
from gateway.engine import Engine
from gateway.errors import PlanningError

FLAGS = pa.table({"id": [1, 2, 3], "a": [True, False, None], "b": [True, True, False], "c": [True, False, True]})
ROW_FILTER = "a IS DISTINCT FROM b OR c"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("distinct-from")
    pq.write_table(FLAGS, folder / "flags.parquet")
    (folder / "lake.yaml").write_text(
        "domains:\n  - name: lake\n    connector: {type: parquet, path: flags.parquet}\n"
        "    products: [{name: flags, source: flags.parquet}]\n"
    )
    (folder / "platform.yaml").write_text(
        "policies:\n  roles: {admin: [root], analyst: [ana]}\n"
        '  grants: [{role: admin, on: "*"}, {role: analyst, on: lake.flags}]\n'
        f'  row_filters: [{{on: lake.flags, where: "{ROW_FILTER}", except: [admin]}}]\n'
    )
    made = Engine.from_config(load_config(folder))
    assert made.policies.enabled
    yield made
    made.close()


def postgres_ids(uri: str, schema: str, predicate: str) -> list[int]:
    """The ids of FLAGS for which PostgreSQL holds ``predicate`` true."""
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".flags (id int8, a bool, b bool, c bool)')
        cursor.execute(f'TRUNCATE "{schema}".flags')
        cursor.adbc_ingest("flags", FLAGS, mode="append", db_schema_name=schema)
        cursor.execute(f'SELECT id FROM "{schema}".flags WHERE {predicate} ORDER BY id')
        return [row[0] for row in cursor.fetchall()]


def test_a_statement_that_datafusion_would_read_otherwise_is_refused_with_the_fix(
    engine: Engine, postgres_uri: str, pg_schema: str
) -> None:
    root = CallerContext(user="root")
    with pytest.raises(PlanningError, match=r"write \(a IS DISTINCT FROM b\) OR c"):
        engine.run(f"SELECT id FROM lake.flags WHERE {ROW_FILTER}", root)
    with pytest.raises(PlanningError, match="IS NOT DISTINCT FROM in parentheses when AND follows"):
        engine.run("SELECT id FROM lake.flags WHERE a IS NOT DISTINCT FROM b AND c", root)
    fixed = engine.run("SELECT id FROM lake.flags WHERE (a IS DISTINCT FROM b) OR c ORDER BY id", root).read_all()
    assert fixed.column("id").to_pylist() == postgres_ids(postgres_uri, pg_schema, ROW_FILTER) == [1, 2, 3]


def test_a_row_filter_selects_the_rows_postgresql_selects(engine: Engine, postgres_uri: str, pg_schema: str) -> None:
    seen = engine.run("SELECT id FROM lake.flags ORDER BY id", CallerContext(user="ana")).read_all()
    assert seen.column("id").to_pylist() == postgres_ids(postgres_uri, pg_schema, ROW_FILTER)


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM t WHERE a IS DISTINCT FROM b OR c", True),
        ("SELECT * FROM t WHERE x = 1 AND (a IS NOT DISTINCT FROM b AND c)", True),
        ("SELECT CASE WHEN a IS DISTINCT FROM b AND c THEN 1 END FROM t", True),
        ("SELECT * FROM t WHERE (a IS DISTINCT FROM b) OR c", False),
        ("SELECT * FROM t WHERE a IS DISTINCT FROM (b OR c)", False),
        ("SELECT a IS DISTINCT FROM b AS x, c FROM t WHERE d AND e", False),
        ("SELECT * FROM t WHERE a IS DISTINCT FROM b BETWEEN 1 AND 2", False),
        ("SELECT CASE WHEN a IS DISTINCT FROM b THEN 1 END FROM t WHERE x OR y", False),
        ("SELECT * FROM t WHERE x IN (SELECT y FROM u WHERE a IS DISTINCT FROM b) AND z", False),
        ("SELECT * FROM t WHERE a IS NULL AND b", False),
        ("SELECT 'a IS DISTINCT FROM b OR c' AS text", False),
    ],
)
def test_which_statements_are_refused(sql: str, refused: bool) -> None:
    if refused:
        with pytest.raises(PlanningError, match="in parentheses when"):
            check_statement(sql)
    else:
        check_statement(sql)


def test_malformed_text_is_left_to_the_parser() -> None:
    """Unbalanced or untokenizable text raises nothing here: the parser reports it, with its position."""
    check_statement("SELECT * FROM t WHERE a IS DISTINCT FROM (b")
    check_statement("SELECT 'unterminated")


PAIRS = pa.table({"g": ["a", None, "b"], "h": ["x", None, "b"]})


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT p.g FROM pairs p JOIN pairs q ON p.g IS NOT DISTINCT FROM q.h", False),  # a join whose NULLs match
        ("SELECT p.g FROM pairs p JOIN pairs q ON p.g IS NOT DISTINCT FROM q.h CROSS JOIN one", True),
        ("SELECT p.g FROM pairs p JOIN pairs q ON p.g IS NOT DISTINCT FROM q.h JOIN one ON one.k = 1", True),
        ("SELECT p.g FROM pairs p CROSS JOIN one JOIN pairs q ON p.g IS NOT DISTINCT FROM q.h", False),
        ("SELECT g FROM pairs CROSS JOIN one WHERE g IS NOT DISTINCT FROM 'a'", False),  # a constant: = 'a'
        ("SELECT g FROM pairs CROSS JOIN one WHERE g IS NOT DISTINCT FROM h", False),  # no join key
        ("SELECT g FROM pairs CROSS JOIN one WHERE g IS NOT DISTINCT FROM NULL", False),  # g IS NULL
    ],
    ids=["alone", "cross-join", "another-join", "joined-first", "constant", "same-row", "null"],
)
def test_a_not_distinct_join_key_the_optimiser_drops_is_refused(sql: str, refused: bool) -> None:
    ctx = SessionContext()
    ctx.from_arrow(PAIRS, name="pairs")
    ctx.from_arrow(pa.table({"k": [1]}), name="one")
    dataframe = ctx.sql(sql)
    answer = dataframe.to_arrow_table().num_rows
    if refused:
        assert answer == 1  # DataFusion 55: the NULL pair is missing (2 rows are due)
        with pytest.raises(PlanningError, match="IS NOT DISTINCT FROM"):
            check_join_keys(dataframe.logical_plan(), dataframe.optimized_logical_plan())
    else:
        check_join_keys(dataframe.logical_plan(), dataframe.optimized_logical_plan())
