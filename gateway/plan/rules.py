"""The planner's rules over a federated query's plan, in the order they apply.

After DataFusion has optimised a query that spans sources (a query in one source goes there
whole: ``gateway/planner.py``), the plan is read as Substrait once and each rule of
:data:`RULES` rewrites it in turn:

1. :func:`gateway.plan.counted_keys.count_join_keys`: a count of a NOT NULL column that an
   outer join may make NULL counts the join's key instead, and the column is not read;
2. :func:`gateway.plan.shared_subplans.compute_shared_once`: an aggregate the plan holds more
   than once (a CTE named twice) is computed once, ahead, and its rows replace it;
3. :func:`gateway.plan.subquery_scans.separate_subquery_scans`: the scans inside subqueries
   kept as expressions become scans of their own, so that the others push down as usual;
4. :func:`gateway.plan.same_source.push_same_source`: filtered joins, groupings and top Ns
   within one SQL source go to that source as one query;
5. :func:`gateway.plan.build_side.build_smaller`: every hash join builds on the input
   estimated to be smaller;
6. :func:`gateway.plan.runtime_filter.send_build_keys`: a small build input runs first, and
   its join keys filter the SQL sources of the probe input;
7. the same once more over the re-optimised plan, whose reads now carry the first filters;
8. :func:`gateway.plan.shared_reads.read_shared_once`: a file or a SQL product read twice with
   the same key list is read once;
9. :func:`gateway.plan.file_subplans.run_file_subplans`: a join of Parquet files with tables
   computed already runs ahead in the file engine (DuckDB), and its rows replace it.

Then the plan is read back, and :func:`gateway.planner.negotiate_scans` gives each scan its
columns and filters. A plan that holds something the Substrait round trip would change is
not rewritten at all (:func:`carried`). Last, over the final plan,
:func:`gateway.plan.late_materialisation.late_materialisation` decides whether Parquet
evaluates filters while decoding (a session setting, not a change of the plan; the engine
applies it to every federated query, rewritten or not).
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext
from sqlglot import exp

from connectors.base import FileConnector
from gateway.catalog import Product
from gateway.plan import key_sets
from gateway.plan.build_side import FILTERED, Facts, Spans, build_smaller, estimate, ranged_selectivity
from gateway.plan.counted_keys import count_join_keys
from gateway.plan.file_subplans import run_file_subplans
from gateway.plan.late_materialisation import LATE_SETTING, filtered_scan
from gateway.plan.runtime_filter import send_build_keys
from gateway.plan.same_source import DERIVED_SCHEMA, DerivedCatalog, push_same_source, read_of
from gateway.plan.shared_reads import read_shared_once
from gateway.plan.shared_subplans import compute_shared_once
from gateway.plan.subquery_scans import negotiate_subquery_scans, separate_subquery_scans
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    NotNull,
    conjuncts,
    equalities,
    function_names,
    holds_subquery,
    instances,
    optimized,
    origin,
    read_relations,
    reads,
    root,
    sub_plan,
    subquery_free,
    to_logical,
    to_substrait,
    width,
)
from gateway.pushdown import translate
from gateway.scan import ProductScan
from meshcore.errors import MeshgateError

log = logging.getLogger(__name__)

MANY_LITERALS = 100
"""The most literals a read's filter may hold for its source to be asked to estimate it."""

LEAF_ROWS = 100_000
"""The most rows each read of another source in a part run ahead may be estimated at for it to be
computed first, so that the file engine runs the part over the Parquet it joins
(:meth:`Planning._leaves_first`)."""

Remember = Callable[[Hashable, Callable[[], float | None]], float | None]
"""Gives the value kept under a key, or computes, keeps and gives it."""


def _memo(kept: dict[Hashable, float | None]) -> Remember:
    def remember(key: Hashable, compute: Callable[[], float | None]) -> float | None:
        if key not in kept:
            kept[key] = compute()
        return kept[key]

    return remember


@dataclass
class Planning:
    """What the rules may use of one query's planning."""

    ctx: SessionContext
    scans: dict[tuple[str, str], ProductScan]  # the query's SQL scans; rules add derived ones
    pushable: Callable[[ProductScan], bool]  # may this scan be part of a sub-plan sent to its source?
    find: Callable[[str, str], Product | None]  # a product of the catalog (file products have no scan)
    negotiate: Callable[[LogicalPlan], None]  # record what each scan in a plan pushes down
    deadline: float | None = None  # when the query's source queries must be over (time.monotonic())
    late: Callable[[LogicalPlan], bool] = lambda plan: False  # does Parquet's late materialisation pay for a plan?
    # A part of the query that reads Parquet and the given computed tables only, run by the file
    # engine (connectors/file_engine.py), at most so many rows of it; None when it cannot run there.
    in_file_engine: Callable[[LogicalPlan, int, Mapping[str, pa.Table]], pa.Table | None] = (
        lambda plan, limit, computed: None
    )
    # Whether the file engine may read the product a Substrait read names (a Parquet file held unrestricted).
    engine_reads: Callable[[tuple[str, ...]], bool] = lambda names: False
    fired: list[str] = field(default_factory=list)  # which rules changed the plan
    reads: dict[str, tuple[Product, ...]] = field(default_factory=dict)  # derived table -> the products it joins
    estimates: dict[str, float] = field(default_factory=dict)  # derived table -> its sub-plan's estimate
    message: plan_pb2.Plan | None = None  # the plan the rules rewrite (whose declarations a read's filter uses)
    remember: Remember = field(default_factory=lambda: _memo({}))  # keeps what sources told the estimates
    # Each column's smallest and largest value in a file product's Parquet statistics (empty: unknown).
    spans: Callable[[tuple[str, str]], Spans] = lambda key: {}
    _derived: DerivedCatalog | None = None

    @property
    def facts(self) -> Facts:
        """What the sources tell the rules' estimates (``build_side.Facts``)."""
        return Facts(self.key, self.read_rows, base=self.base)

    def base(self, names: tuple[str, ...]) -> tuple[str, ...] | None:
        """``names``, or for a sub-plan pushed to its source that reads one product, that product's
        (``build_side.Facts.base``); None for the planner's other tables."""
        if len(names) < 2 or names[-2] != DERIVED_SCHEMA:
            return names
        products = self.reads.get(names[-1], ())
        return (products[0].domain, products[0].name) if len(products) == 1 else None

    def subset(self, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
        """A computed table's column of another table's distinct keys, and that table's names
        (``build_side.Facts.subset``); None for other tables."""
        if self._derived is None or len(names) < 2 or names[-2] != DERIVED_SCHEMA:
            return None
        return self._derived.subsets.get(names[-1])

    def materialize(self, plan: LogicalPlan, limit: int) -> pa.Table:
        """Run ``plan`` (a part of the query) now, at most ``limit`` rows of it.

        A plan that reads Parquet only runs in the file engine where it can (``in_file_engine``):
        DuckDB reads and aggregates Parquet about twice as fast (TPC-H Q18's groups of lineitem:
        108 against 175-190 ms). One that joins Parquet with small reads of other sources has
        those computed first, and then runs there (:meth:`_leaves_first`). Else DataFusion runs it
        (:meth:`_run`).
        """
        table = self.in_engine(plan, limit, computed=False)
        if table is None:
            table = self._leaves_first(plan, limit)
        return table if table is not None else self._run(plan, limit)

    def _run(self, plan: LogicalPlan, limit: int) -> pa.Table:
        """At most ``limit`` rows of ``plan``, run by DataFusion.

        Its SQL scans push down what they would as part of the query (negotiated for this plan
        alone, and set back afterwards: the query's own plan is negotiated once it is final),
        and their source queries end by the query's deadline. Its Parquet scans evaluate
        filters while decoding when that pays for it (``late``).
        """
        saved = {key: (scan.occurrences, scan.blind, scan.deadline) for key, scan in self.scans.items()}
        try:
            for scan in self.scans.values():
                scan.occurrences, scan.blind, scan.deadline = [], False, self.deadline
            dataframe = self.ctx.create_dataframe_from_logical_plan(plan).limit(limit)
            optimized = dataframe.optimized_logical_plan()
            self.negotiate(optimized)
            if not self.late(optimized):
                return dataframe.to_arrow_table()
            self.ctx.sql(f"SET {LATE_SETTING} = true")  # read when a DataFrame is made
            if "late_materialisation" not in self.fired:
                self.fired.append("late_materialisation")
            try:
                return self.ctx.create_dataframe_from_logical_plan(plan).limit(limit).to_arrow_table()
            finally:
                self.ctx.sql(f"SET {LATE_SETTING} = false")  # the query's own plan decides for itself
        finally:
            for key, (occurrences, blind, deadline) in saved.items():
                scan = self.scans[key]
                scan.occurrences, scan.blind, scan.deadline = occurrences, blind, deadline

    def _leaves_first(self, plan: LogicalPlan, limit: int) -> pa.Table | None:
        """At most ``limit`` rows of ``plan``, a part that joins a Parquet product the file engine
        reads with reads of other sources each estimated at :data:`LEAF_ROWS` rows or fewer: those
        reads computed first (by :meth:`_run`, each under its own pushdown), the part then run by
        the file engine over them (by DataFusion if it cannot); None for any other part.

        TPC-H Q8's lines of 1,451 parts (SQLite) with their suppliers (SQLite): part and supplier
        in 12 ms, then DuckDB joins them with lineitem in 71-76 ms, where DataFusion took 93-119 ms.
        A part whose Parquet product the query reads elsewhere too is left to DataFusion: read once
        for both uses (``shared_reads``) pays more (TPC-H Q17).
        """
        if self.message is None:
            return None
        part = to_substrait(plan, self.ctx)
        top = root(part)
        leaves = read_relations(top)
        if len(leaves) < 2 or not all(rel.read.HasField("named_table") for rel in leaves):
            return None
        names = [tuple(rel.read.named_table.names) for rel in leaves]
        files = [name for name in names if self.engine_reads(name)]
        ahead = [
            rel for rel, name in zip(leaves, names, strict=True) if name not in files and self.kind(name) != "computed"
        ]
        if not files or not ahead or holds_subquery(top):
            return None
        everywhere = Counter(reads(root(self.message)))  # the query's reads, its subqueries' too
        if any(everywhere[name] > 1 for name in files):
            return None
        message, self.message = self.message, part  # a read's filter names the functions of its own plan
        try:
            functions = function_names(part)
            sizes = [estimate(rel, self.rows, functions, self.facts) for rel in ahead]
        finally:
            self.message = message
        if any(size is None or size > LEAF_ROWS for size in sizes):
            return None
        for rel in ahead:
            leaf = self._run(to_logical(sub_plan(part, rel), self.ctx), LEAF_ROWS + 1)
            if leaf.num_rows > LEAF_ROWS:
                return None  # estimated wrong: DataFusion runs the part as it is
            rel.CopyFrom(read_of(self.derived().add_computed("leaf", leaf), self.ctx))
        rewritten = to_logical(part, self.ctx)
        table = self.tried_in_engine(rewritten, limit)
        return table if table is not None else self._run(rewritten, limit)

    def in_engine(self, plan: LogicalPlan, limit: int, computed: bool = True) -> pa.Table | None:
        """At most ``limit`` rows of ``plan`` run by the file engine, which reads the tables the rules
        computed too unless ``computed`` is false; None when it cannot run there (``in_file_engine``).

        A part the rules run ahead reads files only there: TPC-H Q17's build input (lineitem with
        the keys of 204 parts) computed by DuckDB took 103 ms, but then its lineitem was read
        twice, no longer once for both uses (``shared_reads``): 128 -> 283 ms."""
        tables = self._derived.computed if computed and self._derived is not None else {}
        table = self.in_file_engine(plan, limit, tables)
        if table is not None and "file_engine" not in self.fired:
            self.fired.append("file_engine")
        return table

    def tried_in_engine(self, plan: LogicalPlan, limit: int) -> pa.Table | None:
        """:meth:`in_engine`, None also when DuckDB refuses what the checks let through (logged):
        DataFusion then runs the part (``file_subplans.Engine``)."""
        try:
            return self.in_engine(plan, limit)
        except MeshgateError as error:
            log.warning("the file engine could not run a part of a query, DataFusion does: %s", error)
            return None

    def derived(self) -> DerivedCatalog:
        """The query's catalog of derived tables (pushed sub-plans, materialised join inputs)."""
        if self._derived is None:
            self._derived = DerivedCatalog()
            self.ctx.register_catalog_provider(self._derived.name, self._derived)
        return self._derived

    def kind(self, names: tuple[str, ...]) -> str | None:
        """``"sql"`` for a read of a SQL source's scan, ``"files"`` for a file product's,
        ``"computed"`` for a table computed already, else None."""
        if len(names) < 2:
            return None
        if (names[-2], names[-1]) in self.scans:
            return "sql"
        if self._computed(names) is not None:
            return "computed"  # nothing to ask a source for
        product = self.find(names[-2], names[-1])
        return "files" if product is not None and isinstance(product.connector, FileConnector) else None

    def identity(self, names: tuple[str, ...]) -> Hashable | None:
        """What the table a Substrait read names reads, alike for two reads of the same rows: a SQL
        product under its guard (a subquery's own scan of it too), a file product's name; None for
        a table of the planner's own."""
        if len(names) < 2:
            return None
        scan = self.scans.get((names[-2], names[-1]))
        if scan is not None:
            return id(scan.product), id(scan.guard)
        return names if names[-2] != DERIVED_SCHEMA and self.kind(names) == "files" else None

    def _computed(self, names: tuple[str, ...]) -> int | None:
        """The rows of the derived table a read names when they are computed already, else None."""
        if self._derived is None or len(names) < 2 or names[-2] != DERIVED_SCHEMA:
            return None
        return self._derived.rows.get(names[-1])

    def key_sets(self, names: tuple[str, ...]) -> bool:
        """Whether the table a Substrait read names is a SQL source's that takes key sets."""
        scan = self.scans.get((names[-2], names[-1])) if len(names) >= 2 else None
        return scan is not None and scan.connector.capabilities.key_sets is not None

    def key(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The primary key of the product a Substrait read names (none for the planner's own tables)."""
        product = self._product(names)
        return product.primary_key if product is not None else ()

    def not_null(self, names: tuple[str, ...], column: str) -> bool:
        """Whether the product a Substrait read names declares ``column`` NOT NULL (:data:`NotNull`)."""
        product = self._product(names)
        return product is not None and column in product.not_null

    def _product(self, names: tuple[str, ...]) -> Product | None:
        """The product a Substrait read names (None for the planner's own tables)."""
        if len(names) < 2 or names[-2] == DERIVED_SCHEMA:
            return None
        scan = self.scans.get((names[-2], names[-1]))
        return scan.product if scan is not None else self.find(names[-2], names[-1])

    def read_rows(self, read: algebra_pb2.ReadRel) -> float | None:
        """The rows a filtered read of a SQL product returns, as its source estimates them
        (``ProductScan.estimate``); None for other reads, for reads filtered by the planner's own
        key lists and sets (its run-time filters: long to send, and the source's estimate of them
        no better than the planner's), and when the source cannot tell."""
        names = tuple(read.named_table.names)
        scan = self.scans.get((names[-2], names[-1])) if len(names) >= 2 and names[-2] != DERIVED_SCHEMA else None
        if scan is None and self.kind(names) == "files":
            return self._file_rows(read, names)
        if scan is None or self.message is None:
            return None
        product, guard = scan.product, scan.guard
        key = (
            product.domain,
            product.name,
            id(product.connector),  # a reload makes new connectors
            None if guard is None else (guard.columns, guard.predicate.sql() if guard.predicate else None),
            _canonical(read, self.message),
        )

        def ask() -> float | None:
            predicate = self._predicate(read, scan)
            if predicate is None or sum(1 for _ in predicate.find_all(exp.Literal)) > MANY_LITERALS:
                return None
            told = scan.estimate(predicate)
            return float(told) if told is not None else None

        return self.remember(key, ask)

    def _file_rows(self, read: algebra_pb2.ReadRel, names: tuple[str, ...]) -> float | None:
        """The rows a filtered read of a file product returns, its range bounds estimated from the
        files' statistics (``build_side.ranged_selectivity``); None when none are known."""
        spans = self.spans((names[-2], names[-1]))
        whole = self.rows(names)
        if not spans or whole is None or self.message is None:
            return None
        functions = function_names(self.message)
        columns = list(read.base_schema.names)
        if len(columns) != len(read.base_schema.struct.types):
            return None  # nested columns: the names are not the fields
        for condition in ("filter", "best_effort_filter"):
            if read.HasField(condition):
                whole *= ranged_selectivity(getattr(read, condition), functions, columns, spans)
        return whole

    def _predicate(self, read: algebra_pb2.ReadRel, scan: ProductScan) -> exp.Expr | None:
        """What of ``read``'s filter its source would be sent (``gateway/pushdown.py``); None if nothing."""
        assert self.message is not None
        rel = algebra_pb2.Rel()
        rel.read.CopyFrom(read)
        try:
            node = to_logical(sub_plan(self.message, rel), self.ctx)
        except Exception:  # a read DataFusion cannot read back alone: no estimate of the source's
            return None
        found = filtered_scan(node)
        if found is None:
            return None
        table_scan, above = found
        filters = [*table_scan.filters(), *above]
        if any(key_sets.PREFIX in str(expr) for expr in filters):
            return None
        return translate(filters, scan.product.schema, scan.connector.capabilities).predicate

    def rows(self, names: tuple[str, ...]) -> float | None:
        """The estimated rows of the table a Substrait read names (``Connector.estimate_rows``)."""
        if len(names) < 2:
            return None
        computed = self._computed(names)
        if computed is not None:
            return float(computed)  # a join input or aggregate computed already
        scan = self.scans.get((names[-2], names[-1]))
        product = scan.product if scan is not None else self.find(names[-2], names[-1])
        if product is None:
            return None
        if names[-2] == DERIVED_SCHEMA and names[-1] in self.estimates:  # a pushed sub-plan of one table
            return self.estimates[names[-1]]
        if names[-2] == DERIVED_SCHEMA and names[-1] in self.reads:  # a pushed sub-plan: a filtered join
            parts = [p.connector.estimate_rows(p.source) for p in self.reads.get(names[-1], ())]
            known = [rows for rows in parts if rows is not None]
            return min(known) * FILTERED if known and len(known) == len(parts) else None
        estimate = product.connector.estimate_rows(product.source)
        return float(estimate) if estimate is not None else None


def _canonical(read: algebra_pb2.ReadRel, message: plan_pb2.Plan) -> bytes:
    """``read`` serialized alike in every plan that reads the same: its function anchors, numbered
    anew in each plan DataFusion writes, replaced by their names' CRC-32 (a read estimated in an
    earlier query is then known again: keyed by the anchors, TPC-H's repeated queries asked their
    sources again 20 times a run of the 22, about 1 ms each)."""
    names = {
        e.extension_function.function_anchor: e.extension_function.name
        for e in message.extensions
        if e.HasField("extension_function")
    }
    canonical = algebra_pb2.ReadRel()
    canonical.CopyFrom(read)
    for call in instances(canonical, algebra_pb2.Expression.ScalarFunction):
        call.function_reference = zlib.crc32(names.get(call.function_reference, "").encode())
    others = b"".join(
        e.SerializeToString(deterministic=True) for e in message.extensions if not e.HasField("extension_function")
    )
    return canonical.SerializeToString(deterministic=True) + b"\x00" + others


def _counted_keys(message: plan_pb2.Plan, planning: Planning) -> bool:
    return count_join_keys(message, planning.not_null) > 0


def _shared_subplans(message: plan_pb2.Plan, planning: Planning) -> bool:
    return compute_shared_once(message, planning.ctx, planning.rows, planning.derived, planning.materialize) > 0


def _subquery_scans(message: plan_pb2.Plan, planning: Planning) -> bool:
    return separate_subquery_scans(message, planning.scans, planning.derived) > 0


def _same_source(message: plan_pb2.Plan, planning: Planning) -> bool:
    pushed = push_same_source(message, planning.ctx, planning.scans, planning.pushable, planning.derived, planning.rows)
    queries = {id(query.product): query for query in pushed}
    for (schema, table), scan in planning.scans.items():  # by the name each was registered under
        query = queries.get(id(scan.product)) if schema == DERIVED_SCHEMA else None
        if query is not None:
            planning.reads[table] = query.reads
            if query.estimate is not None:
                planning.estimates[table] = query.estimate
    return bool(pushed)


def _build_side(message: plan_pb2.Plan, planning: Planning) -> bool:
    return build_smaller(message, planning.ctx, planning.rows, planning.facts)


def _send_keys(message: plan_pb2.Plan, planning: Planning, sources: bool) -> int:
    """:func:`send_build_keys` over ``message`` with what ``planning`` knows; how many joins it filtered."""
    return send_build_keys(
        message,
        planning.ctx,
        planning.rows,
        planning.kind,
        planning.derived,
        planning.materialize,
        sources,
        planning.key_sets,
        planning.facts,
    )


def _runtime_filter(message: plan_pb2.Plan, planning: Planning) -> bool:
    return _send_keys(message, planning, sources=False) > 0


def _cascaded_runtime_filter(message: plan_pb2.Plan, planning: Planning) -> bool:
    """Run-time filters once more, with build inputs that read SQL sources, over the plan
    re-optimised after the first ones (which take build inputs of files only).

    DataFusion pushes the first filters down to the reads, so a join input they made small
    can now send its own keys: TPC-H Q11's German nation key filters supplier, and the 396
    keys of German suppliers then filter partsupp (800,000 rows fetched become 32,000).
    Joins are built on their smaller input again first, as the sources now estimate the
    filtered reads: TPC-H Q18's orders, 57 once the lines' keys reach them, build the join with
    the customers that was built on the 150,000 customers, and their keys fetch 57 customers
    (71 -> 3 ms; Q18 528 -> 459 ms, the only TPC-H query whose plan this changes).
    """
    ctx = planning.ctx
    again = message
    if "runtime_filter" in planning.fired:
        again = planning.message = to_substrait(optimized(message, ctx), ctx)
        build_smaller(again, ctx, planning.rows, planning.facts)  # inputs the first keys made small build now
    found = _send_keys(again, planning, sources=True)
    if found and again is not message:
        message.CopyFrom(again)
    planning.message = message
    return found > 0


def _file_subplans(message: plan_pb2.Plan, planning: Planning) -> bool:
    found = run_file_subplans(
        message,
        planning.ctx,
        planning.kind,
        planning.engine_reads,
        planning.derived,
        planning.tried_in_engine,
        planning.rows,
        replace(planning.facts, subset=planning.subset),
    )
    return found > 0


def _shared_reads(message: plan_pb2.Plan, planning: Planning) -> bool:
    return read_shared_once(message, planning.ctx, planning.identity, planning.derived, planning.materialize) > 0


RULES: tuple[tuple[str, Callable[[plan_pb2.Plan, Planning], bool]], ...] = (
    ("counted_keys", _counted_keys),
    ("shared_subplans", _shared_subplans),
    ("subquery_scans", _subquery_scans),
    ("same_source", _same_source),
    ("build_side", _build_side),
    ("runtime_filter", _runtime_filter),
    ("cascaded_runtime_filter", _cascaded_runtime_filter),
    ("shared_reads", _shared_reads),
    ("file_subplans", _file_subplans),
)
"""The rules, in the order they apply: each changes the Substrait plan in place and says whether it did.

Sub-plans are pushed before run-time filters are added: the other way round, TPC-H Q11 gained
(its German nation key made partsupp's join with supplier a filtered one, sent to SQLite whole)
but Q2 lost more (a filter of all 25 nation keys made the same join "filtered", and SQLite joined
800,000 rows slower than DataFusion does): measured 393-447 ms against 546 for Q11, 784-810 against
445-466 for Q2."""


# What DataFusion 55's Substrait round trip loses (tests/plan/test_substrait_plan.py pins them):
# the null-aware anti join of NOT IN (NULLs then match nothing), the time zone of a cast to a
# timestamp (AT TIME ZONE), a window aggregate's FILTER (``sum(x) FILTER (WHERE x > 0) OVER ()``
# came back summing every row) and a RANGE frame's offsets (``RANGE BETWEEN 1 PRECEDING AND
# CURRENT ROW`` came back another frame).
_NULL_AWARE = re.compile(r"\bnull_aware\b")
_ZONED = re.compile(r'\bTimestamp\w*\([^()"]*(?:Some\()?"(?!UTC"|\+00:00")[^"]*"')
_WINDOW_FILTER = re.compile(r"\) FILTER \(WHERE [^\n]*?\) (?:ROWS|RANGE|GROUPS) BETWEEN ")
_RANGE_OFFSET = re.compile(
    r"\bRANGE BETWEEN (?!(?:UNBOUNDED PRECEDING|CURRENT ROW) AND (?:CURRENT ROW|UNBOUNDED FOLLOWING)\b)"
)
_ANTI = (algebra_pb2.JoinRel.JOIN_TYPE_LEFT_ANTI, algebra_pb2.JoinRel.JOIN_TYPE_RIGHT_ANTI)


def carried(plan_text: str, message: plan_pb2.Plan | None = None, not_null: NotNull | None = None) -> bool:
    """Whether the Substrait round trip keeps the meaning of a plan that displays as ``plan_text``.

    It loses the time zone of a cast, a window aggregate's FILTER, a RANGE frame's offsets, and
    the null-awareness of NOT IN's anti join; the latter
    changes nothing when no key of any anti join in ``message`` (the plan as Substrait) can be NULL:
    each of its conditions compares two columns that ``not_null`` says their tables declare NOT NULL,
    and no outer join below makes NULL (TPC-H Q16's ``ps_suppkey NOT IN (SELECT s_suppkey ...)``)."""
    if _ZONED.search(plan_text) or _WINDOW_FILTER.search(plan_text) or _RANGE_OFFSET.search(plan_text):
        return False
    if not _NULL_AWARE.search(plan_text):
        return True
    if message is None or not_null is None:
        return False
    functions = function_names(message)
    antis = [join for join in instances(message, algebra_pb2.JoinRel) if join.type in _ANTI]
    for join in antis:
        pairs, left = equalities(join.expression, functions), width(join.left)
        if left is None or len(pairs) != len(conjuncts(join.expression, functions)):
            return False
        for key in (f for pair in pairs for f in pair):
            found = origin(join.left, key, kept=True) if key < left else origin(join.right, key - left, kept=True)
            if found is None or not not_null(*found):
                return False
    return bool(antis)


def rewrite(plan: LogicalPlan, planning: Planning) -> LogicalPlan | None:
    """``plan`` after :data:`RULES`, or None when no rule changed it (or it cannot be rewritten)."""
    text = plan.display_indent()
    if not any(word in text for word in ("Join", "Subquery:", "Union")) or _ZONED.search(text):
        return None
    message = planning.message = to_substrait(plan, planning.ctx)
    if not carried(text, message, planning.not_null):
        return None
    with subquery_free(not holds_subquery(root(message))):  # most plans hold none: asked once
        for name, rule in RULES:
            if rule(message, planning):
                planning.fired.append(name)
        if "subquery_scans" in planning.fired:
            negotiate_subquery_scans(message, planning.ctx, planning.negotiate)
    return to_logical(message, planning.ctx) if planning.fired else None
