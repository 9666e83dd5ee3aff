"""The shared-aggregate rule (gateway/plan/shared_subplans.py): an aggregate planned twice runs
once and its rows replace it; answers never change. Through the engine, a SQL source is then
asked once for it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest
from datafusion import SessionContext

from gateway.api import CallerContext
from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.plan import shared_subplans
from tests.plan.materialising import apply_rule

LINES = pa.record_batch(
    {
        "supplier": [i % 40 for i in range(3000)],
        "price": [float(i % 97) for i in range(3000)],
        "day": [i % 365 for i in range(3000)],
    }
)
SUPPLIERS = pa.record_batch({"sid": list(range(40)), "name": [f"s{i}" for i in range(40)]})

REVENUE = "WITH revenue AS (SELECT supplier, sum(price) AS total FROM lines WHERE day < 90 GROUP BY supplier) "
Q15 = (
    REVENUE + "SELECT sid, name, total FROM suppliers JOIN revenue ON sid = supplier"
    " WHERE total = (SELECT max(total) FROM revenue) ORDER BY sid"
)


def rows(names: tuple[str, ...]) -> float | None:
    return {"lines": 3_000.0, "suppliers": 40.0}.get(names[-1])


def rewritten(sql: str) -> tuple[int, str, list[dict[str, object]], int]:
    """How many aggregates the rule shared, the plan after it, its answer, and how many times
    the rule's materialisation ran."""
    ctx = SessionContext()
    ctx.register_record_batches("lines", [[LINES]])
    ctx.register_record_batches("suppliers", [[SUPPLIERS]])
    return apply_rule(
        ctx,
        sql,
        lambda message, derived, materialize: shared_subplans.compute_shared_once(
            message, ctx, rows, derived, materialize
        ),
    )


def test_a_cte_named_twice_is_aggregated_once() -> None:
    done, plan, answer, runs = rewritten(Q15)
    assert done == 1 and runs == 1
    scans = [line.strip() for line in plan.splitlines() if "TableScan:" in line]
    assert len(scans) == 3 and sum("meshgate.derived.shared " in scan for scan in scans) == 2, plan
    assert len(answer) >= 1


@pytest.mark.parametrize(
    "sql",
    [
        REVENUE + "SELECT a.supplier, a.total, b.total AS other FROM revenue a JOIN revenue b"
        " ON a.supplier = b.supplier + 1 ORDER BY 1",  # a self-join of a CTE
        REVENUE + "SELECT supplier, total FROM revenue WHERE total > 10"
        " UNION ALL SELECT supplier, total FROM revenue WHERE total < 5 ORDER BY 1, 2",  # a union of it
        # two correlated subqueries, which DataFusion turns into joins with one grouped aggregate
        "SELECT sid FROM suppliers s WHERE (SELECT sum(price) FROM lines WHERE supplier = s.sid) >"
        " (SELECT sum(price) FROM lines WHERE supplier = s.sid + 1) ORDER BY sid",
    ],
    ids=["self-join", "union", "decorrelated"],
)
def test_every_shape_that_names_an_aggregate_twice(sql: str) -> None:
    done, plan, _, _ = rewritten(sql)
    assert done == 1 and "TableScan: lines" not in plan, plan


@pytest.mark.parametrize(
    "sql",
    [
        REVENUE + "SELECT sid, total FROM suppliers JOIN revenue ON sid = supplier ORDER BY sid",  # named once
        "WITH hot AS (SELECT supplier, price FROM lines WHERE day < 9) "  # no aggregate: nothing to save
        "SELECT a.supplier FROM hot a JOIN hot b ON a.supplier = b.supplier AND a.price < b.price ORDER BY 1",
    ],
    ids=["once", "no-aggregate"],
)
def test_what_is_not_shared_is_left_as_planned(sql: str) -> None:
    done, _, _, runs = rewritten(sql)
    assert done == 0 and runs == 0


def test_an_aggregate_larger_than_the_limit_runs_where_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_subplans, "MAX_ROWS", 10)  # revenue has 40 groups
    done, plan, _, runs = rewritten(Q15)
    assert done == 0 and runs == 1 and "TableScan: lines" in plan


def test_an_aggregate_wider_than_the_byte_limit_runs_where_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_subplans, "MAX_BYTES", 100)  # 40 groups of two 8-byte columns
    done, plan, _, runs = rewritten(Q15)
    assert done == 0 and runs == 1 and "TableScan: lines" in plan


def test_an_estimate_above_the_threshold_is_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_subplans, "TRY_ROWS", 1)
    done, _, _, runs = rewritten(Q15)
    assert done == 0 and runs == 0


def test_a_sql_source_is_asked_once_for_a_cte_named_twice(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "shop.sqlite") as lite:
        lite.execute("CREATE TABLE lines (supplier INTEGER, price REAL, day INTEGER)")
        lite.executemany("INSERT INTO lines VALUES (?, ?, ?)", zip(*LINES.to_pydict().values(), strict=True))
        lite.execute("CREATE TABLE suppliers (sid INTEGER PRIMARY KEY, name TEXT)")
        lite.executemany("INSERT INTO suppliers VALUES (?, ?)", zip(*SUPPLIERS.to_pydict().values(), strict=True))
    lite.close()
    (tmp_path / "names.csv").write_text("sid,label\n" + "".join(f"{i},n{i}\n" for i in range(40)))
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: shop\n    connector: {type: sqlite, path: shop.sqlite}\n"
        "    products:\n      - {name: lines, source: lines}\n"
        "  - name: ref\n    connector: {type: csv, path: .}\n"
        "    products:\n      - {name: names, source: names.csv}\n"
    )
    sql = (
        "WITH revenue AS (SELECT supplier, sum(price) AS total FROM shop.lines WHERE day < 90 GROUP BY supplier)"
        " SELECT n.label, r.total FROM ref.names n JOIN revenue r ON n.sid = r.supplier"
        " WHERE r.total = (SELECT max(total) FROM revenue) ORDER BY 1"
    )
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")))
    plain = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")), EngineSettings(plan_rules=False))
    try:
        execution = engine.run(sql)
        answer = execution.read_all()
        assert len([q for q in execution.source_queries if "lines" in q.sql]) == 1, execution.source_queries
        assert "shared_subplans" in engine._plan(sql, CallerContext()).fired
        planned = plain.run(sql)
        assert answer.equals(planned.read_all()) and answer.num_rows >= 1
        assert len([q for q in planned.source_queries if "lines" in q.sql]) == 2
    finally:
        engine.close()
        plain.close()
