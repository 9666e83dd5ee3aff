"""The file sub-plans rule (gateway/plan/file_subplans.py): a join of a Parquet file with tables
computed already is run ahead whole and replaced by its rows; anything else is left in the plan.
Here DataFusion stands in for the file engine (the rule's choice is what is tested); DuckDB's
answers for such joins, through the gateway and a Flight SQL client: ``tests/e2e/test_file_engine.py``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import LogicalPlan, SessionContext

from gateway.plan import file_subplans
from gateway.plan.substrait import plan_pb2
from tests.plan.materialising import apply_rule

LINES = pa.table({"part": [i % 500 for i in range(20_000)], "qty": [i % 37 for i in range(20_000)]})
KEYS = pa.table({"p_partkey": [7, 57, 107, 311]})
NAMES = pa.table({"k": [1, 2], "name": ["one", "two"]})
JOIN = "SELECT l.part, l.qty FROM logistics.lines l JOIN computed.keys k ON l.part = k.p_partkey"
ORDERED = f"{JOIN} ORDER BY l.part, l.qty"


def rewritten(
    tmp_path: Path, sql: str, *, kinds: dict[str, str] | None = None, refuse: bool = False, rows: float = 20_000.0
) -> tuple[int, str, list[str]]:
    """How many sub-plans the rule ran ahead, the plan after it, and the plans offered to the engine;
    the answer is checked against the plan's without the rule."""
    ctx = SessionContext()
    for schema in ("logistics", "computed", "sales"):
        ctx.sql(f"CREATE SCHEMA {schema}").collect()
    pq.write_table(LINES, tmp_path / "lines.parquet")
    ctx.register_parquet("logistics.lines", str(tmp_path / "lines.parquet"))
    ctx.register_record_batches("computed.keys", [KEYS.to_batches()])
    ctx.register_record_batches("sales.names", [NAMES.to_batches()])
    known = {"lines": "files", "keys": "computed", "names": "sql", **(kinds or {})}
    offered: list[str] = []

    def engine(plan: LogicalPlan, limit: int) -> pa.Table | None:
        offered.append(plan.display_indent())
        return None if refuse else ctx.create_dataframe_from_logical_plan(plan).limit(limit).to_arrow_table()

    def rule(message: plan_pb2.Plan, derived, materialize) -> int:  # type: ignore[no-untyped-def]
        return file_subplans.run_file_subplans(
            message,
            ctx,
            lambda names: known.get(names[-1]),
            lambda names: known.get(names[-1]) == "files",
            derived,
            engine,
            lambda names: rows if names[-1] == "lines" else 4.0,
        )

    done, plan, answer, _ = apply_rule(ctx, sql, rule)
    assert answer
    return done, plan, offered


def test_a_files_join_with_a_computed_table_runs_ahead_whole(tmp_path: Path) -> None:
    done, plan, offered = rewritten(tmp_path, f"SELECT part, sum(qty) AS q FROM ({JOIN}) GROUP BY part ORDER BY part")
    assert done == 1 and len(offered) == 1
    assert "TableScan: logistics.lines" not in plan and "meshgate.derived.file_subplan" in plan, plan
    assert "Join" in offered[0] and "Aggregate" in offered[0]  # the largest such sub-plan, its grouping too


def test_a_join_that_also_reads_a_sql_source_offers_only_its_files_part(tmp_path: Path) -> None:
    sql = f"SELECT j.part, n.name FROM ({JOIN}) j JOIN sales.names n ON n.k = j.qty ORDER BY 1, 2"
    done, plan, offered = rewritten(tmp_path, sql)
    assert done == 1 and len(offered) == 1 and "sales.names" not in offered[0]
    assert "TableScan: sales.names" in plan and "TableScan: logistics.lines" not in plan, plan


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT part, sum(qty) AS q FROM logistics.lines WHERE part < 9 GROUP BY part ORDER BY part",  # a grouping of a file alone
        "SELECT l.part, n.name FROM logistics.lines l JOIN sales.names n ON n.k = l.qty ORDER BY 1, 2",  # a SQL source's read
        "SELECT k.p_partkey, n.name FROM computed.keys k JOIN sales.names n ON n.k < k.p_partkey ORDER BY 1, 2",  # no file
    ],
    ids=["grouping-alone", "sql-read", "no-file"],
)
def test_what_is_not_a_join_of_files_and_computed_tables_stays(tmp_path: Path, sql: str) -> None:
    done, _, offered = rewritten(tmp_path, sql)
    assert done == 0 and offered == []


def test_a_file_the_engine_may_not_read_stays(tmp_path: Path) -> None:
    done, _, offered = rewritten(tmp_path, ORDERED, kinds={"lines": "csv"})
    assert done == 0 and offered == []


def test_a_join_estimated_too_large_is_not_run_ahead(tmp_path: Path) -> None:
    done, _, offered = rewritten(tmp_path, ORDERED, rows=file_subplans.MAX_ROWS * 2.0)
    assert done == 0 and offered == []


def test_a_sub_plan_the_engine_refuses_is_left_and_looked_into(tmp_path: Path) -> None:
    done, plan, offered = rewritten(
        tmp_path, f"SELECT part, sum(qty) AS q FROM ({JOIN}) GROUP BY part ORDER BY part", refuse=True
    )
    assert done == 0 and len(offered) >= 2 and "TableScan: logistics.lines" in plan  # the grouping, then the join
