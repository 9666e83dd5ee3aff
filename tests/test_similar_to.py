"""``SIMILAR TO`` is refused with what to write instead (gateway/similar_to.py): DataFusion 55 reads its
pattern as an unanchored regular expression without the ``%`` and ``_`` wildcards, and answered
``'a_b' SIMILAR TO 'a%'`` false where PostgreSQL answers true (apache/datafusion#22263)."""

from __future__ import annotations

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pytest
from datafusion import SessionContext

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.errors import ConfigError, PlanningError
from tests.support.gateway import parquet_engine

NAMES = pa.table({"id": [1, 2, 3, 4], "s": ["a_b", "a%b", "abc", "xab"]})


def test_datafusion_55_still_reads_similar_to_as_an_unanchored_regular_expression() -> None:
    """Why the statement is refused; when a DataFusion upgrade answers as PostgreSQL, this fails
    and the refusal can go."""
    ctx = SessionContext()
    ctx.from_arrow(NAMES, name="t")
    rows = ctx.sql("SELECT id FROM t WHERE s SIMILAR TO 'a%' ORDER BY id").to_pylist()
    assert [row["id"] for row in rows] == [2]  # PostgreSQL: 1, 2, 3


def test_similar_to_is_refused_and_like_answers_as_postgresql(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str
) -> None:
    engine = parquet_engine(tmp_path_factory.mktemp("similar"), "lake", "names", NAMES)
    root = CallerContext(user="root")
    try:
        with pytest.raises(PlanningError, match=r"SIMILAR TO is not supported \(line 1, column \d+\).*Write LIKE"):
            engine.run("SELECT id FROM lake.names WHERE s NOT SIMILAR TO 'a%' ORDER BY id", root)
        liked = engine.run("SELECT id FROM lake.names WHERE s LIKE 'a%' ORDER BY id", root).read_all()
        assert engine.run("SELECT 'SIMILAR TO' AS text", root).read_all().to_pylist() == [{"text": "SIMILAR TO"}]
    finally:
        engine.close()
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{pg_schema}".names (id int8, s text)')
        cursor.adbc_ingest("names", NAMES, mode="append", db_schema_name=pg_schema)
        cursor.execute(f"SELECT id FROM \"{pg_schema}\".names WHERE s SIMILAR TO 'a%' ORDER BY id")
        assert [row[0] for row in cursor.fetchall()] == liked.column("id").to_pylist() == [1, 2, 3]


def test_a_row_filter_with_similar_to_is_a_configuration_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A policy would select other rows than its author wrote: the mesh does not load, naming the file."""
    folder = tmp_path_factory.mktemp("similar-policy")
    parquet_engine(folder, "lake", "names", NAMES).close()
    (folder / "platform.yaml").write_text(
        "policies:\n  roles: {admin: [root], analyst: [ana]}\n"
        '  grants: [{role: admin, on: "*"}, {role: analyst, on: lake.names}]\n'
        "  row_filters: [{on: lake.names, where: \"s SIMILAR TO 'a%'\", except: [admin]}]\n"
    )
    with pytest.raises(ConfigError, match=r"platform\.yaml:\d+: policies\.row_filters\[0\]\.where: SIMILAR TO is not"):
        load_config(folder)
