"""Quantified comparisons with a subquery over the same unaliased table are refused, naming the fix
(gateway/quantified.py): DataFusion 55 answers them wrongly without an error (apache/datafusion#25258).
The same comparisons with an alias answer as PostgreSQL does."""

from __future__ import annotations

from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pytest

from gateway.api import CallerContext
from gateway.engine import Engine
from gateway.errors import PlanningError
from gateway.quantified import check_statement
from tests.support.gateway import parquet_engine

ROOT = CallerContext(user="root")
EMP = pa.table({"id": list(range(1, 7)), "salary": [5000, 6000, 7000, 8000, 9000, 10000]})


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT id FROM emp WHERE salary > ANY (SELECT salary FROM emp WHERE id <= 3)", True),
        ("SELECT id FROM emp WHERE salary = SOME (SELECT salary FROM emp)", True),
        ("SELECT id FROM a.emp WHERE salary <= ALL (SELECT salary FROM A.EMP WHERE id > 3)", True),
        ("SELECT id FROM emp JOIN d ON emp.k = d.k WHERE salary > ALL (SELECT salary FROM emp)", True),
        ("SELECT id FROM emp e WHERE salary > ANY (SELECT salary FROM emp WHERE id <= 3)", False),
        ("SELECT id FROM emp WHERE salary > ANY (SELECT s.salary FROM emp s WHERE s.id <= 3)", False),
        ("SELECT id FROM emp WHERE salary > ANY (SELECT salary FROM other)", False),
        ("SELECT id FROM emp WHERE salary IN (SELECT salary FROM emp)", False),
        ("SELECT id FROM emp WHERE salary = ANY (ARRAY[5000, 6000])", False),
        ("SELECT 'ANY (SELECT 1)' FROM emp", False),
    ],
)
def test_a_quantified_subquery_over_the_same_unaliased_table_is_refused(sql: str, refused: bool) -> None:
    if refused:
        with pytest.raises(PlanningError, match=r"give (a\.)?emp an alias .*apache/datafusion#25258"):
            check_statement(sql)
    else:
        check_statement(sql)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    made = parquet_engine(tmp_path_factory.mktemp("quantified"), "hr", "emp", EMP)
    yield made
    made.close()


@pytest.mark.parametrize(
    ("comparison", "expected"),
    [("> ANY", [2, 3, 4, 5, 6]), ("= ANY", [1, 2, 3]), ("<= ALL", [1]), ("<> ALL", [4, 5, 6])],
)
def test_the_refused_query_names_the_fix_and_the_fixed_one_answers_as_postgresql(
    engine: Engine, postgres_uri: str, pg_schema: str, comparison: str, expected: list[int]
) -> None:
    plain = f"SELECT id FROM hr.emp WHERE salary {comparison} (SELECT salary FROM hr.emp WHERE id <= 3) ORDER BY id"
    with pytest.raises(PlanningError, match=r"give hr\.emp an alias"):
        engine.run(plain, ROOT)
    aliased = plain.replace("FROM hr.emp WHERE salary", "FROM hr.emp AS e WHERE salary")
    answer = engine.run(aliased, ROOT).read_all().column("id").to_pylist()
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE IF NOT EXISTS "{pg_schema}".emp (id int8, salary int8)')
        cursor.execute(f'TRUNCATE "{pg_schema}".emp')
        cursor.adbc_ingest("emp", EMP, mode="append", db_schema_name=pg_schema)
        cursor.execute(plain.replace("hr.emp", f'"{pg_schema}".emp'))
        assert [row[0] for row in cursor.fetchall()] == answer == expected
