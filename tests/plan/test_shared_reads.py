"""The shared-read rule (gateway/plan/shared_reads.py): a file read twice with the same key list
is read once, with the columns of both reads; answers never change. A SQL product's reads, on a real
SQLite source: ``tests/test_engine.py``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from gateway.plan import shared_reads
from tests.plan.materialising import apply_rule

LINES = pa.table(
    {
        "part": [i % 500 for i in range(20_000)],
        "qty": [i % 37 for i in range(20_000)],
        "price": [float(i % 97) for i in range(20_000)],
        "note": [f"n{i % 11}" for i in range(20_000)],
    }
)
KEYS = "(7, 57, 107, 311)"
Q17 = (  # the query's read and the subquery's aggregate's read, each with the same keys and other columns
    f"SELECT sum(l.price) AS revenue FROM (SELECT part, qty, price FROM logistics.lines WHERE part IN {KEYS}) l"
    f" JOIN (SELECT part, avg(qty) AS a FROM logistics.lines WHERE part IN {KEYS} GROUP BY part) s"
    " ON l.part = s.part WHERE l.qty < s.a"
)


def rewritten(tmp_path: Path, sql: str, kind: str = "files", fmt: str = "parquet") -> tuple[int, str, int]:
    """How many files the rule read once, the plan after it, and how many times it read one;
    the answer is checked against the plan's without the rule."""
    ctx = SessionContext()
    ctx.sql("CREATE SCHEMA logistics").collect()
    if fmt == "parquet":
        pq.write_table(LINES, tmp_path / "lines.parquet")
        ctx.register_parquet("logistics.lines", str(tmp_path / "lines.parquet"))
    else:
        pacsv.write_csv(LINES, tmp_path / "lines.csv")
        ctx.register_csv("logistics.lines", str(tmp_path / "lines.csv"))
    done, plan, answer, runs = apply_rule(
        ctx,
        sql,
        lambda message, derived, materialize: shared_reads.read_shared_once(
            message, ctx, lambda names: names if kind == "files" else None, derived, materialize
        ),
    )
    assert answer
    return done, plan, runs


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_file_read_twice_with_the_same_keys_is_read_once(tmp_path: Path, fmt: str) -> None:
    done, plan, runs = rewritten(tmp_path, Q17, fmt=fmt)
    assert done == 1 and runs == 1
    assert "TableScan: logistics.lines" not in plan and plan.count("meshgate.derived.shared_read projection") == 2, plan
    # each read keeps its own columns: the aggregate's input reads two of the three
    assert "shared_read projection=[part, qty]" in plan and "shared_read projection=[part, qty, price]" in plan


@pytest.mark.parametrize(
    "sql",
    [
        Q17.replace(f"part IN {KEYS} GROUP BY", "part IN (7, 57) GROUP BY"),  # other keys
        Q17.replace(f"IN {KEYS}", "< 12"),  # no key list: a range may keep most rows
        Q17.replace(
            f"SELECT part, qty, price FROM logistics.lines WHERE part IN {KEYS}",
            "SELECT part, qty, price FROM logistics.lines",
        ),
    ],
    ids=["other-keys", "no-list", "once-filtered"],
)
def test_reads_that_differ_are_left_as_planned(tmp_path: Path, sql: str) -> None:
    done, plan, runs = rewritten(tmp_path, sql)
    assert done == 0 and runs == 0 and plan.count("TableScan: logistics.lines") == 2, plan


def test_reads_of_a_table_the_planner_cannot_name_are_left_as_planned(tmp_path: Path) -> None:
    """A table the rule has no identity for (one of the planner's own) may hold other rows for each read."""
    done, _, runs = rewritten(tmp_path, Q17, kind="unknown")
    assert done == 0 and runs == 0


def test_rows_beyond_the_limit_leave_both_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_reads, "MAX_ROWS", 10)  # the four parts have 160 lines
    done, plan, runs = rewritten(tmp_path, Q17)
    assert done == 0 and runs == 1 and plan.count("TableScan: logistics.lines") == 2, plan
