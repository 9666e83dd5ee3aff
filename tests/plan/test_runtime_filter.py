"""The run-time filter rule (gateway/plan/runtime_filter.py): a small join input runs first,
its rows replace it, and its keys filter the other input; answers never change."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest
from datafusion import LogicalPlan, SessionContext
from datafusion.catalog import Table

from gateway.plan import runtime_filter
from gateway.plan.build_side import Facts, build_smaller
from gateway.plan.rules import Planning
from gateway.plan.same_source import DerivedCatalog
from gateway.plan.substrait_plan import to_logical, to_substrait
from gateway.system_tables import TableDataset

BIG = pa.record_batch(
    {"id": [*range(1, 501), None], "grp": [i % 7 for i in range(501)], "code": [f"k{i}" for i in range(501)]}
)
LINES = pa.record_batch(
    {
        "ref": [i % 250 for i in range(2000)],
        "qty": [i % 13 for i in range(2000)],
        "rcode": [f"k{i % 250}" for i in range(2000)],
    }
)


def context() -> tuple[SessionContext, DerivedCatalog]:
    ctx = SessionContext()
    ctx.register_record_batches("big", [[BIG]])  # plays a SQL source's table
    ctx.register_record_batches("lines", [[LINES]])  # plays a Parquet product
    derived = DerivedCatalog()
    ctx.register_catalog_provider(derived.name, derived)
    return ctx, derived


def rows(names: tuple[str, ...]) -> float | None:
    return {"big": 1_000_000.0, "lines": 2_000.0}.get(names[-1])


def kind(names: tuple[str, ...]) -> str | None:
    return {"big": "sql", "lines": "files"}.get(names[-1])


def materializer(ctx: SessionContext) -> Callable[[LogicalPlan, int], pa.Table]:
    return lambda plan, limit: ctx.create_dataframe_from_logical_plan(plan).limit(limit).to_arrow_table()


def rewritten(sql: str) -> tuple[int, str, list[dict[str, object]]]:
    ctx, derived = context()
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    build_smaller(message, ctx, rows)
    done = runtime_filter.send_build_keys(message, ctx, rows, kind, lambda: derived, materializer(ctx))
    frame = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    assert frame.schema() == ctx.sql(sql).schema()
    return done, frame.optimized_logical_plan().display_indent(), frame.to_pylist()


SEMI = "SELECT id, grp FROM big WHERE id IN (SELECT ref FROM lines GROUP BY ref HAVING sum(qty) > 55) ORDER BY id"


def test_the_keys_of_a_small_input_filter_the_other_and_the_answer_stays() -> None:
    ctx, _ = context()
    done, plan, answer = rewritten(SEMI)
    assert done == 1 and answer == ctx.sql(SEMI).to_pylist() and answer
    # Above big's scan here (a memory table takes no filters); a source's scan takes it as its
    # own filter, which its query then carries (tests/plan/test_same_source.py checks that end).
    (condition,) = [line for line in plan.splitlines() if "big.id IN ([" in line]
    assert condition.count("Int64(") == len({row["id"] for row in answer}) == 19
    assert "join_input" in plan  # computed once: the aggregate does not run again


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT b.id, l.qty FROM big b JOIN lines l ON b.id = l.ref WHERE l.qty = 12 ORDER BY 1, 2",
        "SELECT b.id FROM big b WHERE EXISTS (SELECT 1 FROM lines l WHERE l.ref = b.id AND l.qty > 11) ORDER BY 1",
    ],
    ids=["inner", "exists"],
)
def test_inner_and_semi_joins_are_filtered(sql: str) -> None:
    ctx, _ = context()
    done, plan, answer = rewritten(sql)
    assert done == 1 and "big.id IN ([" in plan and answer == ctx.sql(sql).to_pylist()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT b.id, l.qty FROM big b LEFT JOIN lines l ON b.id = l.ref ORDER BY 1, 2",
        "SELECT b.id FROM big b WHERE NOT EXISTS (SELECT 1 FROM lines l WHERE l.ref = b.id) ORDER BY 1",
        "SELECT b.id FROM big b JOIN lines l ON b.id > l.ref WHERE l.qty = 12 AND l.ref = 3 ORDER BY 1",
    ],
    ids=["outer", "anti", "not-an-equality"],
)
def test_joins_that_keep_unmatched_rows_or_do_not_compare_equal_are_left_alone(sql: str) -> None:
    ctx, _ = context()
    _, plan, answer = rewritten(sql)
    assert "big.id IN ([" not in plan and answer == ctx.sql(sql).to_pylist()


@pytest.mark.parametrize(("lines", "done"), [(2_000.0, 1), (2_000_000.0, 0)])
def test_a_build_input_that_reads_a_source_runs_first_only_when_its_keys_are_likely_few(
    lines: float, done: int
) -> None:
    """A source's build input is asked for before the rest of the query starts: only in the pass
    that takes them, and when it is estimated at SQL_BUILD_ROWS rows or fewer (its keys can then
    be sent)."""
    ctx, derived = context()
    message = to_substrait(ctx.sql(SEMI).optimized_logical_plan(), ctx)
    estimates = {"big": 1e9, "lines": lines}  # the build input: lines grouped (x0.1), filtered (x1/3)
    build_smaller(message, ctx, lambda names: estimates.get(names[-1]))
    everything_sql = lambda names: "sql"  # noqa: E731
    found = runtime_filter.send_build_keys(
        message, ctx, lambda names: estimates.get(names[-1]), everything_sql, lambda: derived, materializer(ctx), True
    )
    assert found == done
    first_pass = to_substrait(ctx.sql(SEMI).optimized_logical_plan(), ctx)
    assert (
        runtime_filter.send_build_keys(first_pass, ctx, rows, everything_sql, lambda: derived, materializer(ctx)) == 0
    )
    frame = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    assert frame.to_pylist() == ctx.sql(SEMI).to_pylist()


@pytest.mark.parametrize(("takes_key_sets", "done"), [(True, 1), (False, 0)])
def test_a_source_build_input_may_be_larger_when_the_probe_takes_a_key_set(takes_key_sets: bool, done: int) -> None:
    """Between SQL_BUILD_ROWS and MAX_SET_KEYS rows, a source's build input runs first only when
    the probe input's source takes its keys as a key set (TPC-H Q8's 45,000 lineitems of one part
    type, whose order keys then filter orders)."""
    ctx, derived = context()
    message = to_substrait(ctx.sql(SEMI).optimized_logical_plan(), ctx)
    estimates = {"big": 1e9, "lines": 2_000_000.0}  # the build input: lines grouped (x0.1), filtered (x1/3)
    assert runtime_filter.SQL_BUILD_ROWS < 2_000_000 * 0.1 / 3 < runtime_filter.MAX_SET_KEYS
    build_smaller(message, ctx, lambda names: estimates.get(names[-1]))
    found = runtime_filter.send_build_keys(
        message,
        ctx,
        lambda names: estimates.get(names[-1]),
        lambda names: "sql",
        lambda: derived,
        materializer(ctx),
        True,
        lambda names: takes_key_sets and names[-1] == "big",
    )
    assert found == done
    frame = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    assert ("big.id IN ([" in frame.optimized_logical_plan().display_indent()) == bool(done)
    assert frame.to_pylist() == ctx.sql(SEMI).to_pylist()


def test_too_many_keys_are_sent_as_their_range_and_the_input_still_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_filter, "MAX_KEYS", 3)
    ctx, _ = context()
    done, plan, answer = rewritten(SEMI)
    assert done == 1 and "IN ([" not in plan and "join_input" in plan and answer == ctx.sql(SEMI).to_pylist()
    ids = [row["id"] for row in answer]
    assert f"big.id >= Int64({min(ids)}) AND big.id <= Int64({max(ids)})" in plan, plan


def test_too_many_text_keys_are_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A text range would compare by the source's collation: only a list of text keys is sent."""
    monkeypatch.setattr(runtime_filter, "MAX_KEYS", 3)
    ctx, _ = context()
    sql = "SELECT b.id FROM big b JOIN lines l ON b.code = l.rcode WHERE l.qty = 12 ORDER BY 1"
    done, plan, answer = rewritten(sql)
    assert done == 1 and "join_input" in plan and answer == ctx.sql(sql).to_pylist() and answer
    assert "big.code IN" not in plan and "big.code >=" not in plan, plan
    monkeypatch.setattr(runtime_filter, "MAX_KEYS", 1000)
    done, plan, _ = rewritten(sql)
    assert "big.code IN ([" in plan, plan  # the same keys, few enough, are sent as a list


TINY = pa.record_batch({"k": list(range(250)), "flag": [k % 25 for k in range(250)]})
OTHER = pa.record_batch({"g": list(range(7)), "label": [f"g{g}" for g in range(7)]})


def _rewritten_with(
    sql: str, estimates: dict[str, float], kinds: dict[str, str], passes: tuple[bool, ...] = (False, True)
) -> tuple[int, str, list[dict[str, object]]]:
    """``sql`` over big, lines, tiny and other after the build-side rule and the run-time filter
    passes (with build inputs that read sources or not), with these estimates and kinds: how many
    joins were filtered, the optimised plan, and the answer (checked against the plain one)."""
    ctx, derived = context()
    ctx.register_record_batches("tiny", [[TINY]])
    ctx.register_record_batches("other", [[OTHER]])
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    build_smaller(message, ctx, lambda names: estimates.get(names[-1]))
    done = 0
    for sources in passes:
        done += runtime_filter.send_build_keys(
            message,
            ctx,
            lambda names: estimates.get(names[-1]),
            lambda names: kinds.get(names[-1]),
            lambda: derived,
            materializer(ctx),
            sources,
        )
    frame = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    assert frame.to_pylist() == ctx.sql(sql).to_pylist()
    return done, frame.optimized_logical_plan().display_indent(), frame.to_pylist()


def test_keys_reach_the_other_side_of_a_join_above_that_equates_the_probe_key() -> None:
    """TPC-H Q9's shape: a source's filtered parts (here ``tiny``) join a file's lines, which
    join a source's big table on the same key further up: the parts' keys filter the big table
    too, though it is not the probe input of their own join (the file is)."""
    estimates = {"big": 1_000_000.0, "lines": 2_000.0, "tiny": 250.0}
    kinds = {"big": "sql", "lines": "files", "tiny": "sql"}
    done, plan, answer = _rewritten_with(
        "SELECT b.grp, l.qty FROM lines l JOIN tiny t ON l.ref = t.k JOIN big b ON b.id = l.ref"
        " WHERE t.flag = 3 ORDER BY 1, 2",
        estimates,
        kinds,
        (True,),
    )
    assert done >= 1 and "big.id IN ([Int64(3), Int64(28)" in plan and answer, plan


def test_a_source_build_input_runs_first_for_a_file_alone_only_when_nothing_else_reads_a_source() -> None:
    """TPC-H Q19's shape: a source's few parts join a file's lines, and no other source is read.
    Run first, the parts delay nothing that could have run meanwhile, and their list filters the
    file. Where another source is read (TPC-H Q21's orders, Q7's), that read would wait: not run first."""
    estimates = {"big": 1_000_000.0, "lines": 2_000.0, "tiny": 250.0}
    kinds = {"big": "sql", "lines": "files", "tiny": "sql"}
    alone = "SELECT l.qty FROM lines l JOIN tiny t ON l.ref = t.k WHERE t.flag = 3 ORDER BY 1"
    done, plan, answer = _rewritten_with(alone, estimates, kinds, (True,))
    assert done == 1 and "lines.ref IN ([Int64(3), Int64(28)" in plan and len(answer) == 80, plan
    elsewhere = (
        "SELECT l.qty, b.grp FROM lines l JOIN tiny t ON l.ref = t.k JOIN big b ON b.grp = l.qty"
        " WHERE t.flag = 3 ORDER BY 1, 2"
    )
    done, plan, answer = _rewritten_with(elsewhere, estimates, kinds, (True,))
    assert done == 0 and "lines.ref IN" not in plan and answer, plan
    assert _rewritten_with(alone, {**estimates, "lines": 200_000.0}, kinds, (True,))[0] == 1
    # More keys than a list holds are likely (2,500 parts estimated): not run first.
    assert _rewritten_with(alone, {**estimates, "lines": 200_000.0, "tiny": 25_000.0}, kinds, (True,))[0] == 0


def test_a_file_input_gets_the_list_of_keys_when_the_build_input_runs_first_anyway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TPC-H Q17's shape: the parts' keys filter a source (or an aggregate) further up, so the parts
    run first; the file input of their own join then gets their list too (DataFusion's own run-time
    filter sends it only the keys' range). More keys than a list holds: the file gets none."""
    estimates = {"big": 1_000_000.0, "lines": 2_000.0, "tiny": 250.0}
    kinds = {"big": "sql", "lines": "files", "tiny": "sql"}
    sql = (
        "SELECT b.grp, l.qty FROM lines l JOIN tiny t ON l.ref = t.k JOIN big b ON b.id = l.ref"
        " WHERE t.flag = 3 ORDER BY 1, 2"
    )
    _, plan, _ = _rewritten_with(sql, estimates, kinds, (True,))
    assert "lines.ref IN ([Int64(3), Int64(28)" in plan, plan
    monkeypatch.setattr(runtime_filter, "MAX_KEYS", 5)  # the 10 keys are sent as their range
    _, plan, answer = _rewritten_with(sql, estimates, kinds, (True,))
    assert "big.id >= Int64(3) AND big.id <= Int64(228)" in plan and "lines.ref IN" not in plan, plan
    assert answer


def test_keys_of_a_semi_join_travel_up_as_the_column_it_returns() -> None:
    """A semi join returns one side's columns: the probe key is found among them, not at the place
    it has among both inputs' columns (which, here, is ``grp``: filtering ``other.g`` by the id
    keys would drop the rows with ``grp`` 3)."""
    _, plan, answer = _rewritten_with(
        "SELECT b.id, o.label FROM (SELECT id, grp FROM big WHERE id IN"
        " (SELECT ref FROM lines GROUP BY ref HAVING sum(qty) > 55)) b JOIN other o ON o.g = b.grp ORDER BY 1",
        {"big": 1_000_000.0, "lines": 2_000.0, "other": 700_000.0},
        {"big": "sql", "lines": "files", "other": "sql"},
        (False,),
    )
    assert "big.id IN ([" in plan and "other.g IN" not in plan, plan
    assert {row["label"] for row in answer} >= {"g3"}


def test_a_computed_join_input_is_known_to_the_next_pass() -> None:
    """A join input computed first (or an aggregate computed once) has its exact rows and needs no
    source: the cascaded pass may build on it (TPC-H Q2's outer parts, whose keys then filter
    the subquery's minimum cost per part: 800,000 partsupp rows fetched become 3,000)."""
    ctx, _ = context()
    planning = Planning(ctx, {}, lambda scan: True, lambda domain, name: None, lambda plan: None)
    name = planning.derived().add("join_input", Table(TableDataset(pa.Table.from_batches([LINES]))), LINES.num_rows)
    assert planning.rows(name) == 2_000.0 and planning.kind(name) == "computed"
    other = planning.derived().add("part+partsupp", Table(TableDataset(pa.Table.from_batches([BIG]))))
    assert planning.rows(other) is None and planning.kind(other) is None  # a pushed sub-plan is a scan's


def test_the_keys_of_the_rows_not_exists_keeps_filter_the_other_side() -> None:
    """NOT EXISTS: the other side's rows that match no kept row's key could only rule a row out by
    matching it, so they may go."""
    _, plan, answer = _rewritten_with(
        "SELECT l.ref FROM lines l WHERE NOT EXISTS (SELECT 1 FROM big b WHERE b.id = l.ref AND b.grp = 3) ORDER BY 1",
        {"big": 1_000_000.0, "lines": 2_000.0},
        {"big": "sql", "lines": "files"},
    )
    assert "LeftAnti Join" in plan and "big.id IN ([Int64(0), Int64(1)" in plan, plan
    assert answer


def test_the_rows_not_exists_keeps_are_never_filtered_by_the_other_sides_keys() -> None:
    """Here the keys come from the NOT EXISTS side: the rows of big it keeps are those whose id is
    *not* among them, so they must not filter big."""
    _, plan, answer = _rewritten_with(
        "SELECT b.id FROM big b WHERE NOT EXISTS"
        " (SELECT 1 FROM lines l JOIN tiny t ON l.ref = t.k WHERE t.flag = 3 AND l.ref = b.id) ORDER BY 1",
        {"big": 1_000.0, "lines": 200_000.0, "tiny": 250.0},
        {"big": "sql", "lines": "files", "tiny": "sql"},
    )
    assert "LeftAnti Join" in plan and "big.id IN" not in plan, plan
    assert len(answer) > 400


def test_keys_filter_an_input_that_returns_few_rows_but_reads_a_big_table() -> None:
    """big joined with tiny on big's primary key is estimated at tiny's 5 rows, fewer than ten
    times the 200 of lines' build input: what the keys save is big's million rows read (TPC-H
    Q7's orders)."""
    ctx, derived = context()
    ctx.register_record_batches("tiny", [[pa.record_batch({"k": [3, 5, 8, 13, 21], "v": [1, 2, 3, 4, 5]})]])
    sql = (
        "SELECT b.id, b.grp, t.v, l.qty FROM lines l JOIN (SELECT big.id, big.grp, tiny.v FROM big JOIN tiny"
        " ON big.id = tiny.k) AS b ON l.ref = b.id JOIN tiny t ON t.k = b.id WHERE l.qty = 12 ORDER BY 1, 2, 3, 4"
    )
    sizes = {"big": 1_000_000.0, "lines": 2_000.0, "tiny": 5.0}
    keyed = {"big": ("id",), "tiny": ("k",)}
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)  # lines builds, as written
    done = runtime_filter.send_build_keys(
        message,
        ctx,
        lambda names: sizes.get(names[-1]),
        lambda names: {"big": "sql", "lines": "files", "tiny": "files"}.get(names[-1]),
        lambda: derived,
        materializer(ctx),
        facts=Facts(keys=lambda names: keyed.get(names[-1], ())),
    )
    frame = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    assert done >= 1 and "big.id IN ([" in frame.optimized_logical_plan().display_indent()
    assert frame.to_pylist() == ctx.sql(sql).to_pylist()
