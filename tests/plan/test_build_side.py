"""The build-side rule (gateway/plan/build_side.py): plan in, the join order DataFusion runs out."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.plan.build_side import Facts, build_smaller, estimate, ranged_selectivity
from gateway.plan.late_materialisation import file_spans
from gateway.plan.rules import Planning
from gateway.plan.substrait import algebra_pb2
from gateway.plan.substrait_plan import function_names, instances, messages, root, to_logical, to_substrait

BIG = pa.record_batch({"id": [*range(1, 101), None], "x": [f"x{i}" for i in range(101)]})
SMALL = pa.record_batch({"k": [3, 5, 5, None], "y": [30, 50, 51, 0]})


def context() -> SessionContext:
    ctx = SessionContext()
    ctx.register_record_batches("big", [[BIG]])
    ctx.register_record_batches("small", [[SMALL]])
    return ctx


def rows(names: tuple[str, ...]) -> float | None:
    return {"big": 1_000_000.0, "small": 10.0}.get(names[-1])


# SQL, and how the rewritten plan's join reads (its first line with "Join").
CASES = [
    (
        "SELECT big.x FROM big WHERE big.id IN (SELECT k FROM small) ORDER BY 1",
        "RightSemi Join: small.k = big.id",
    ),
    (
        "SELECT big.x, small.y FROM big JOIN small ON big.id = small.k ORDER BY 1, 2",
        "Inner Join: small.k = big.id",
    ),
    (
        "SELECT big.x FROM big WHERE NOT EXISTS (SELECT 1 FROM small WHERE small.k = big.id) ORDER BY 1",
        "RightAnti Join: small.k = big.id",
    ),
    (
        "SELECT big.x, small.y FROM big JOIN small ON big.id = small.k AND small.y > big.id * 9 ORDER BY 1, 2",
        "Inner Join: small.k = big.id Filter: small.y > big.id * Int64(9)",
    ),
    (  # already the small side on the left: left as it is
        "SELECT small.y FROM small JOIN big ON big.id = small.k ORDER BY 1",
        "Inner Join: small.k = big.id",
    ),
    (  # an outer join keeps its order
        "SELECT big.x, small.y FROM big LEFT JOIN small ON big.id = small.k ORDER BY 1, 2",
        "Left Join: big.id = small.k",
    ),
]


@pytest.mark.parametrize(("sql", "join"), CASES, ids=[c[1].split(":")[0] + str(i) for i, c in enumerate(CASES)])
def test_the_smaller_input_is_built_and_the_answer_stays(sql: str, join: str) -> None:
    ctx = context()
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    build_smaller(message, ctx, rows)
    rewritten = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    plan = rewritten.optimized_logical_plan().display_indent()
    (first,) = [line.strip() for line in plan.splitlines() if "Join" in line][:1]
    assert first == join, plan
    assert rewritten.schema() == ctx.sql(sql).schema()
    assert rewritten.to_pylist() == ctx.sql(sql).to_pylist()


def test_an_input_without_an_estimate_is_not_swapped() -> None:
    ctx = context()
    sql = "SELECT big.x FROM big WHERE big.id IN (SELECT k FROM small)"
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    assert not build_smaller(message, ctx, lambda names: 1_000_000.0 if names[-1] == "big" else None)


def test_estimates_follow_filters_groupings_and_joins() -> None:
    ctx = context()
    sql = "SELECT k, count(*) FROM small WHERE y > 10 GROUP BY k"
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    assert estimate(root(message), rows) == pytest.approx(10 * 0.25 * 0.1)
    message = to_substrait(
        ctx.sql("SELECT count(*) FROM big JOIN small ON big.id = small.k").optimized_logical_plan(), ctx
    )
    assert estimate(root(message), rows) == 1.0


# A filter's conjuncts, and the share of big's rows each WHERE clause is estimated to keep.
SHARES = [
    ("id = 3", 0.1),
    ("id <> 3", 0.9),
    ("id > 3", 1 / 3),
    ("id >= 3 AND id < 90", 1 / 9),
    ("id IN (1, 2, 3)", 1 - 0.9**3),  # DataFusion writes a short list as ORs of equalities
    ("id IN (1, 2, 3, 4, 5, 6, 7, 8)", 0.5),
    ("x LIKE 'x1%'", 0.1),
    ("id = 3 OR id = 4", 1 - 0.9 * 0.9),
    ("NOT (id > 3 AND x LIKE 'x1%')", 1 - 2 / 3 * 0.1),  # as id <= 3 OR x NOT LIKE 'x1%'
    ("id IS NULL", 0.1),
    ("x IS NOT NULL AND id = 3", 0.9 * 0.1),
    ("x = 'x3' AND id > 3 AND id < 9 AND id <> 5", 0.1 / 9 * 0.9),
    ("length(x) = id", 0.1),
    ("ends_with(x, '1')", 0.25),  # a function the estimate does not know: the flat share
]


@pytest.mark.parametrize(("where", "share"), SHARES, ids=[c[0] for c in SHARES])
def test_a_filter_keeps_the_product_of_its_conjuncts_shares(where: str, share: float) -> None:
    """A memory table takes no filters, so DataFusion keeps the whole condition in a Filter."""
    ctx = context()
    message = to_substrait(ctx.sql(f"SELECT x FROM big WHERE {where}").optimized_logical_plan(), ctx)
    assert estimate(root(message), rows, function_names(message)) == pytest.approx(1_000_000 * share)
    assert estimate(root(message), rows) == pytest.approx(1_000_000 * 0.25)  # no names: the flat share


def test_a_parquet_scan_and_the_filter_above_it_are_one_cut_not_two(tmp_path: Path) -> None:
    """DataFusion hands a Parquet scan the filter above it, which stays: estimated once."""
    pq.write_table(pa.table({"id": range(1000), "x": [f"x{i}" for i in range(1000)]}), tmp_path / "f.parquet")
    ctx = SessionContext()
    ctx.register_parquet("f", str(tmp_path / "f.parquet"))
    message = to_substrait(ctx.sql("SELECT x FROM f WHERE id = 3 AND x > 'x5'").optimized_logical_plan(), ctx)
    assert (
        "Filter" in to_logical(message, ctx).display_indent()
        and "filters=" in ctx.sql("SELECT x FROM f WHERE id = 3 AND x > 'x5'").optimized_logical_plan().display_indent()
    )
    estimated = estimate(root(message), lambda names: 1_000_000.0, function_names(message))
    assert estimated == pytest.approx(1_000_000 * 0.1 / 3)


# A join, the primary keys known, and its estimate without them (the larger input) and with them.
KEYED = [
    # small's filtered rows are a tenth of small: each big row meets at most one of them
    ("SELECT big.x FROM big JOIN small ON big.id = small.k WHERE small.y = 30", {"small": ("k",)}, 1e6, 1e5),
    # big's key: each of small's ten rows meets at most one big row
    ("SELECT big.x FROM small JOIN big ON big.id = small.k", {"big": ("id",)}, 1e6, 10.0),
    # both keys: at most the smaller input
    ("SELECT big.x FROM small JOIN big ON big.id = small.k", {"big": ("id",), "small": ("k",)}, 1e6, 10.0),
    # through a projection that computes on top of the kept key, a third of big
    (
        "SELECT t.x FROM (SELECT x, id, id + 1 AS next FROM big WHERE id > 3) t JOIN small ON t.id = small.k",
        {"big": ("id",)},
        1e6 / 3,
        10 / 3,
    ),
    # a key that is computed is no key
    ("SELECT big.x FROM big JOIN small ON big.id + 1 = small.k", {"big": ("id",)}, 1e6, 1e6),
    # a two-column key that one equality does not cover
    ("SELECT big.x FROM big JOIN small ON big.id = small.k", {"big": ("id", "x")}, 1e6, 1e6),
]


@pytest.mark.parametrize(("sql", "known", "plain", "keyed"), KEYED, ids=range(len(KEYED)))
def test_an_inner_join_on_a_primary_key_keeps_the_share_of_the_keyed_table(
    sql: str, known: dict[str, tuple[str, ...]], plain: float, keyed: float
) -> None:
    ctx = context()
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    (join,) = [rel for rel in messages(root(message)) if isinstance(rel, algebra_pb2.Rel) and rel.HasField("join")]
    names = function_names(message)
    assert estimate(join, rows, names) == pytest.approx(plain)
    assert estimate(join, rows, names, Facts(keys=lambda table: known.get(table[-1], ()))) == pytest.approx(keyed)


def test_a_filtered_read_takes_the_estimate_its_source_gives(tmp_path: Path) -> None:
    """``Facts.reads``: the source's estimate of a read with a filter replaces the filter's shares
    (PostgreSQL's statistics of a part type: 1,451 rows where an equality's share says 20,000)."""
    pq.write_table(pa.table({"id": range(1000), "x": [f"x{i}" for i in range(1000)]}), tmp_path / "f.parquet")
    ctx = SessionContext()
    ctx.register_parquet("f", str(tmp_path / "f.parquet"))
    message = to_substrait(ctx.sql("SELECT x FROM f WHERE x = 'x3'").optimized_logical_plan(), ctx)
    names = function_names(message)
    told = Facts(reads=lambda read: 7.0 if read.HasField("filter") else None)
    assert estimate(root(message), lambda names: 1_000_000.0, names, told) == pytest.approx(7.0)
    assert estimate(root(message), lambda names: 1_000_000.0, names, Facts()) == pytest.approx(100_000.0)


def test_a_sql_sources_small_input_is_built_once_and_the_file_is_not_repartitioned(tmp_path: Path) -> None:
    """A SQL source's scan has no statistics: DataFusion would hash-partition both inputs of its
    join (the Parquet file's rows too); the gateway collects the build input once instead."""
    pq.write_table(
        pa.table({"id": range(300_000), "part": [i % 500 for i in range(300_000)]}), tmp_path / "lines.parquet"
    )
    with sqlite3.connect(tmp_path / "parts.db") as connection:
        connection.execute("CREATE TABLE part (pid INTEGER PRIMARY KEY, kind TEXT NOT NULL)")
        connection.executemany("INSERT INTO part VALUES (?, ?)", [(i, "odd" if i % 2 else "even") for i in range(500)])
    (tmp_path / "mesh.yaml").write_text(
        f"domains:\n  - name: logs\n    connector: {{type: parquet, path: {tmp_path}}}\n"
        "    products:\n      - {name: lines, source: lines.parquet}\n"
        f"  - name: shop\n    connector: {{type: sqlite, path: {tmp_path / 'parts.db'}}}\n"
    )
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    sql = "SELECT l.id FROM shop.part AS p JOIN logs.lines AS l ON p.pid = l.part WHERE p.kind = 'odd' ORDER BY l.id"
    try:
        physical = engine._plan(sql, CallerContext(user="root")).dataframe.execution_plan().display_indent()
        assert "mode=CollectLeft" in physical and "Partitioned" not in physical, physical
        assert "partitioning=Hash" not in physical, physical
        assert engine.run(sql).read_all().column("id").to_pylist() == [i for i in range(300_000) if i % 500 % 2]
    finally:
        engine.close()


def test_a_join_with_computed_keys_of_a_keyed_table_keeps_their_share_of_it() -> None:
    """``Facts.subset``: ``small`` stands for ten distinct keys of a table of 1,000 rows (its ``k``
    column, the keys a run-time filter computed); big joined with them keeps 10 / 1,000 of its rows."""
    ctx = context()
    sql = "SELECT big.x FROM big JOIN small ON big.id = small.k"
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    (join,) = [rel for rel in messages(root(message)) if isinstance(rel, algebra_pb2.Rel) and rel.HasField("join")]
    names = function_names(message)

    def sized(table: tuple[str, ...]) -> float | None:
        return 1000.0 if table == ("procurement", "part") else rows(table)

    subset = Facts(subset=lambda table: ("k", ("procurement", "part")) if table[-1] == "small" else None)
    assert estimate(join, sized, names, subset) == pytest.approx(1e6 * 10 / 1000)
    other_column = Facts(subset=lambda table: ("y", ("procurement", "part")) if table[-1] == "small" else None)
    assert estimate(join, sized, names, other_column) == pytest.approx(1e6)  # not joined on the keys


def _spans_of(path: Path) -> dict[str, tuple[float, float]]:
    return file_spans([pq.read_metadata(path)])


# A WHERE clause on a Parquet file of 1,000 ids (0-999) and days (2020-01-01 on, 0-999 days
# later), and the share of its rows estimated from the file's statistics.
RANGED = [
    ("id >= 100 AND id < 300", 200 / 999),
    ("300 > id AND 100 <= id", 200 / 999),  # the literal first
    ("id BETWEEN 100 AND 299", 199 / 999),
    ("day >= DATE '2020-04-10' AND day < DATE '2020-07-19'", 100 / 999),
    ("id > 900 AND x = 'x950'", 99 / 999 * 0.1),  # the equality takes its textbook share
    ("id > 5000", 0.0),  # beyond the largest value
    ("id < 500 AND id < 250", 250 / 999),  # the tighter bound
    ("length(x) > 3", 1 / 3),  # not a column's bound: the textbook share
]


@pytest.mark.parametrize(("where", "share"), RANGED, ids=[c[0] for c in RANGED])
def test_a_files_range_bounds_keep_their_share_of_the_columns_span(tmp_path: Path, where: str, share: float) -> None:
    day = dt.date(2020, 1, 1)
    table = pa.table(
        {
            "id": range(1000),
            "day": [day + dt.timedelta(days=i) for i in range(1000)],
            "x": [f"x{i}" for i in range(1000)],
        }
    )
    pq.write_table(table, tmp_path / "f.parquet")
    ctx = SessionContext()
    ctx.register_parquet("f", str(tmp_path / "f.parquet"))
    message = to_substrait(ctx.sql(f"SELECT x FROM f WHERE {where}").optimized_logical_plan(), ctx)
    (read,) = instances(message, algebra_pb2.ReadRel)
    assert read.HasField("filter")
    kept = ranged_selectivity(
        read.filter, function_names(message), list(read.base_schema.names), _spans_of(tmp_path / "f.parquet")
    )
    assert kept == pytest.approx(share)
    if "x" not in where:  # ranges only: the estimate is about what the file holds (its values are spread evenly)
        assert kept == pytest.approx(ctx.sql(f"SELECT x FROM f WHERE {where}").count() / 1000, abs=0.01)


def test_a_bound_on_a_column_without_a_finite_span_takes_the_textbook_share(tmp_path: Path) -> None:
    pq.write_table(pa.table({"v": [0.5, 1.5, 2.5]}), tmp_path / "f.parquet")
    ctx = SessionContext()
    ctx.register_parquet("f", str(tmp_path / "f.parquet"))
    message = to_substrait(ctx.sql("SELECT v FROM f WHERE v > 1.0").optimized_logical_plan(), ctx)
    (read,) = instances(message, algebra_pb2.ReadRel)
    functions, columns = function_names(message), list(read.base_schema.names)
    assert ranged_selectivity(read.filter, functions, columns, {"v": (0.5, 2.5)}) == pytest.approx(0.75)
    for span in [(float("nan"), 2.5), (0.5, float("inf")), (float("-inf"), float("inf"))]:
        assert ranged_selectivity(read.filter, functions, columns, {"v": span}) == pytest.approx(1 / 3), span


def test_a_file_reads_estimate_comes_from_its_statistics_and_the_filter_above_does_not_cut_it_again(
    tmp_path: Path,
) -> None:
    """``Planning.read_rows`` of a Parquet product: TPC-H Q7's two years of ship dates in seven
    (0.29 of lineitem), where two range bounds' textbook shares say 1/9."""
    first = dt.date(1992, 1, 1)
    table = pa.table({"id": range(7665), "day": [first + dt.timedelta(days=i % 2555) for i in range(7665)]})
    pq.write_table(table, tmp_path / "lines.parquet", row_group_size=1000)
    (tmp_path / "mesh.yaml").write_text(
        f"domains:\n  - name: logs\n    connector: {{type: parquet, path: {tmp_path}}}\n"
        "    products:\n      - {name: lines, source: lines.parquet}\n"
    )
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    try:
        engine.run("SELECT count(*) FROM logs.lines").read_all()  # the engine holds the file's version
        ctx = SessionContext()
        ctx.sql("CREATE SCHEMA logs").collect()
        ctx.register_parquet("logs.lines", str(tmp_path / "lines.parquet"))
        sql = "SELECT id FROM logs.lines WHERE day >= DATE '1995-01-01' AND day <= DATE '1996-12-31'"
        message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
        planning = Planning(ctx, {}, lambda scan: True, engine.catalog.find, lambda plan: None)
        planning.message = message
        (read,) = instances(message, algebra_pb2.ReadRel)
        names = function_names(message)
        assert planning.read_rows(read) is None  # no statistics given: the textbook shares
        assert estimate(root(message), planning.rows, names, planning.facts) == pytest.approx(7665 / 9)
        planning.spans = engine._column_spans
        share = (dt.date(1996, 12, 31) - dt.date(1995, 1, 1)).days / 2554
        assert planning.read_rows(read) == pytest.approx(7665 * share)
        assert "Filter" in to_logical(message, ctx).display_indent()  # DataFusion keeps the filter above too
        assert estimate(root(message), planning.rows, names, planning.facts) == pytest.approx(7665 * share)
        assert ctx.sql(sql).count() == pytest.approx(7665 * share, rel=0.01)
    finally:
        engine.close()
