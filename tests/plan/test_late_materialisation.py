"""The late-materialisation rule (gateway/plan/late_materialisation.py): plan in, whether Parquet
evaluates filters while decoding out; and, through the engine, that the choice reaches the
scan and never the answer."""

from __future__ import annotations

import datetime
import decimal
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from gateway.api import CallerContext
from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.plan.late_materialisation import file_spans, late_materialisation, number

EVENTS = pa.table(
    {
        "id": pa.array(range(1000), pa.int64()),
        "customer": pa.array([i % 50 for i in range(1000)], pa.int64()),
        "kind": [("click", "view", "buy")[i % 3] for i in range(1000)],
        "day": pa.array([i % 365 for i in range(1000)], pa.int32()),
        "amount": [i * 0.5 for i in range(1000)],
    }
)
CUSTOMERS = pa.table(
    {
        "cid": pa.array(range(50), pa.int64()),
        "region": [("north", "south")[i % 2] for i in range(50)],
        "tier": pa.array([i % 5 for i in range(50)], pa.int64()),
    }
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> SessionContext:
    folder = tmp_path_factory.mktemp("late")
    pq.write_table(EVENTS, folder / "events.parquet")
    context = SessionContext()
    context.register_parquet("events", str(folder / "events.parquet"))
    context.register_record_batches("customers", [CUSTOMERS.to_batches()])  # stands for a SQL source
    context.register_record_batches("log", [EVENTS.to_batches()])  # neither: a CSV file, a system table
    return context


def kind(table_scan: Any) -> str | None:
    return {"events": "files", "customers": "sql"}.get(str(table_scan.table_name()))


# SQL, and whether Parquet should evaluate its filters while decoding.
CASES = [
    ("SELECT amount FROM events WHERE id = 42", True),  # a lookup
    ("SELECT amount FROM events WHERE id = 42 AND day > 3", True),
    ("SELECT day, amount FROM events WHERE kind LIKE 'cl%'", True),  # a prefix: as many others as filtered
    ("SELECT amount FROM events WHERE kind = 'buy' OR kind = 'view'", True),  # two points, one column each
    ("SELECT amount FROM events WHERE id IN (1, 5, 9, 12)", True),
    ("SELECT day FROM events WHERE (kind = 'buy' OR kind = 'view') AND id > 3 AND amount < 9", False),  # Q12
    (  # points on two columns (Q20's run-time filters of suppliers and parts): their shares multiply
        "SELECT amount FROM events WHERE customer IN (1, 2, 3) AND id IN (7, 8, 9) AND day > 3",
        True,
    ),
    (  # a run-time filter's long lists: their columns found, each list's name written once, not per value
        "SELECT amount FROM events WHERE customer IN ("
        + ", ".join(map(str, range(0, 1200, 3)))
        + ") AND id IN ("
        + ", ".join(map(str, range(0, 900, 2)))
        + ") AND day > 3",
        True,
    ),
    ("SELECT day FROM events WHERE customer IN (" + ", ".join(map(str, range(400))) + ") AND amount > 3", False),
    ("SELECT amount FROM events WHERE day BETWEEN 10 AND 20", False),  # a range
    ("SELECT sum(amount) FROM events WHERE day > 10 AND amount < 100", False),  # Q6: ranges only
    ("SELECT id FROM events WHERE id = 42", False),  # nothing but the filter's column to decode
    ("SELECT amount FROM events WHERE kind LIKE '%uy'", False),  # no prefix: scans every value
    ("SELECT amount FROM events WHERE kind <> 'buy'", False),
    ("SELECT amount FROM events WHERE id NOT IN (1, 2)", False),
    ("SELECT amount FROM log WHERE id = 42", False),  # not Parquet
    (  # the other side is a SQL read of one region: few keys reach the file's run-time filter
        "SELECT e.amount FROM events e JOIN customers c ON e.customer = c.cid WHERE c.region = 'north'",
        True,
    ),
    (  # a number there is mostly a run-time filter of a foreign key
        "SELECT e.amount FROM events e JOIN customers c ON e.customer = c.cid WHERE c.tier = 2",
        False,
    ),
    (  # DataFusion carries the key's value across the join: the file's own lookup
        "SELECT e.amount FROM events e JOIN customers c ON e.customer = c.cid WHERE c.cid = 7",
        True,
    ),
    ("SELECT e.amount FROM events e JOIN customers c ON e.customer = c.cid", False),  # the whole table
    (  # the file side's own lookup, below an aggregate
        "SELECT kind, count(*) FROM (SELECT kind FROM events WHERE customer = 3 AND day < 100) GROUP BY kind",
        True,
    ),
]


@pytest.mark.parametrize(("sql", "wanted"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_the_plan_shows_where_late_materialisation_pays(ctx: SessionContext, sql: str, wanted: bool) -> None:
    assert late_materialisation(ctx.sql(sql).optimized_logical_plan(), kind) is wanted


def spans(table_scan: Any, column: str) -> tuple[float, float] | None:
    """As the engine reads them from the footers: day 0-364, amount 0-499.5; none for text."""
    return {"day": (0.0, 364.0), "amount": (0.0, 499.5), "id": (0.0, 999.0)}.get(column)


# With the file's column spans: a range narrow enough counts as a point.
RANGE_CASES = [
    ("SELECT id, amount FROM events WHERE day BETWEEN 10 AND 15", True),  # 5 of 364 days
    ("SELECT id, amount FROM events WHERE day >= 100 AND day < 104 AND amount > 3", True),
    ("SELECT id, amount FROM events WHERE 360 < day", True),  # the literal on the left
    ("SELECT id, amount FROM events WHERE day BETWEEN 10 AND 20", False),  # 10 days: 2.7 %
    ("SELECT id, amount FROM events WHERE day > 100", False),
    ("SELECT id, amount FROM events WHERE day NOT BETWEEN 10 AND 15", False),
    ("SELECT id, amount FROM events WHERE kind > 'b' AND kind < 'c'", False),  # text: no span
    ("SELECT day FROM events WHERE day BETWEEN 10 AND 15", False),  # nothing else to decode
    ("SELECT id, amount FROM log WHERE day BETWEEN 10 AND 15", False),  # not Parquet
]


@pytest.mark.parametrize(("sql", "wanted"), RANGE_CASES, ids=[str(i) for i in range(len(RANGE_CASES))])
def test_a_range_the_statistics_show_narrow_counts_as_a_point(ctx: SessionContext, sql: str, wanted: bool) -> None:
    assert late_materialisation(ctx.sql(sql).optimized_logical_plan(), kind, spans) is wanted


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime.date(1970, 1, 2), 719164.0),
        (datetime.datetime(1970, 1, 1, 0, 1, tzinfo=datetime.UTC), 60.0),
        (decimal.Decimal("2.50"), 2.5),
        (7, 7.0),
        ("text", None),
        (True, None),
    ],
)
def test_values_compare_as_numbers(value: object, expected: float | None) -> None:
    assert number(value) == expected


@pytest.fixture
def mesh(tmp_path: Path) -> Path:
    pq.write_table(EVENTS, tmp_path / "events.parquet")
    with sqlite3.connect(tmp_path / "crm.sqlite") as lite:
        lite.execute("CREATE TABLE customers (cid INTEGER PRIMARY KEY, region TEXT, tier INTEGER)")
        lite.executemany("INSERT INTO customers VALUES (?, ?, ?)", zip(*CUSTOMERS.to_pydict().values(), strict=True))
    lite.close()
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: logs\n    connector: {type: parquet, path: .}\n"
        "    products:\n      - {name: events, source: events.parquet}\n"
        "  - name: crm\n    connector: {type: sqlite, path: crm.sqlite}\n"
        "    products:\n      - {name: customers, source: customers}\n"
    )
    return tmp_path / "mesh.yaml"


ENGINE_CASES = [
    ("SELECT id, amount FROM logs.events WHERE customer = 7 ORDER BY id", True),
    (
        "SELECT e.id, e.amount FROM logs.events e JOIN crm.customers c ON e.customer = c.cid"
        " WHERE c.region = 'north' AND e.day < 40 ORDER BY e.id",
        True,
    ),
    ("SELECT count(*) AS n, sum(amount) AS total FROM logs.events WHERE day BETWEEN 30 AND 90", False),
    # 3 of 364 days, as the Parquet footer's statistics tell the engine
    ("SELECT id, amount, kind FROM logs.events WHERE day BETWEEN 30 AND 33 ORDER BY id", True),
]


@pytest.mark.parametrize(("sql", "fires"), ENGINE_CASES, ids=["lookup", "join", "range", "narrow-range"])
def test_the_choice_reaches_the_parquet_scan_and_not_the_answer(mesh: Path, sql: str, fires: bool) -> None:
    chosen = Engine(MeshCatalog(load_config(mesh)))
    never = Engine(MeshCatalog(load_config(mesh)), EngineSettings(parquet_pushdown=False))
    caller = CallerContext(user="root")
    try:
        planned = chosen._plan(sql, caller)
        physical = planned.dataframe.execution_plan().display_indent()
        assert ("late_materialisation" in planned.fired) is fires
        # Evaluated while decoding, the file's filter needs no FilterExec of its own above the scan.
        assert _filtered_above_parquet(physical) is not fires, physical
        assert "late_materialisation" not in never._plan(sql, caller).fired
        assert "late_materialisation" in chosen.run("EXPLAIN " + sql).read_all().to_pylist()[0]["plan"] or not fires
        answer = chosen.run(sql).read_all()
        assert answer.num_rows > 0 and answer.equals(never.run(sql).read_all())
    finally:
        chosen.close()
        never.close()


def _filtered_above_parquet(physical: str) -> bool:
    """Whether a FilterExec is the Parquet scan's parent in an indented physical plan (a
    repartition or batch coalescing in between does not count)."""
    lines = physical.splitlines()
    at = next(i for i, line in enumerate(lines) if "file_type=parquet" in line)
    while True:
        depth = len(lines[at]) - len(lines[at].lstrip())
        at = next(i for i in range(at - 1, -1, -1) if len(lines[i]) - len(lines[i].lstrip()) < depth)
        if not lines[at].lstrip().startswith(("RepartitionExec", "CoalesceBatchesExec")):
            return lines[at].lstrip().startswith("FilterExec")


def test_the_spans_follow_the_files(mesh: Path) -> None:
    """A new version of the file brings its own statistics: the same range, narrow in the old
    file, covers the whole of the new one."""
    engine = Engine(MeshCatalog(load_config(mesh)))
    sql = "SELECT id, amount FROM logs.events WHERE day BETWEEN 30 AND 33"
    try:
        assert "late_materialisation" in engine._plan(sql, CallerContext(user="root")).fired
        narrow = EVENTS.filter(pa.compute.is_in(EVENTS["day"], pa.array([30, 31, 32, 33], pa.int32())))
        pq.write_table(narrow, mesh.parent / "events.parquet")
        assert "late_materialisation" not in engine._plan(sql, CallerContext(user="root")).fired
        assert engine.run(sql).read_all().num_rows == narrow.num_rows
    finally:
        engine.close()


def test_spans_cover_every_file_and_leave_out_a_column_one_file_has_no_statistics_for(tmp_path: Path) -> None:
    pq.write_table(EVENTS.slice(0, 500), tmp_path / "a.parquet")
    pq.write_table(EVENTS.slice(500), tmp_path / "b.parquet", write_statistics=["id", "day"])
    footers = [pq.read_metadata(tmp_path / name) for name in ("a.parquet", "b.parquet")]
    spans = file_spans(footers)
    assert spans["id"] == (0.0, 999.0) and spans["day"] == (0.0, 364.0)
    assert "amount" not in spans  # b.parquet wrote none for it: a span from a.parquet alone would be too short
