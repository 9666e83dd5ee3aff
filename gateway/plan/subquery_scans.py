"""Rule: every scan inside a subquery kept as an expression becomes a scan of its own.

DataFusion keeps an uncorrelated scalar subquery (TPC-H Q11's HAVING, Q15, Q22) as an
expression, and its Python binding does not expose that subquery's plan, so
:func:`gateway.planner.negotiate_scans` cannot see the scans inside. A product read there and
outside would share one :class:`~gateway.scan.ProductScan`, which cannot tell its scans
apart: so every scan of such a plan used to fetch its columns without any filter (blind)::

    SELECT ... FROM partsupp ... HAVING sum(...) > (SELECT sum(...) FROM partsupp ...)
    -- both partsupp scans: SELECT <columns> FROM partsupp  (filters applied in the gateway)

Here each read of a SQL product inside an expression's subquery is pointed at a derived table
over the same product (with the same guard: the policies hold as for any scan). Its pushdown is
negotiated from the read itself, as the plan has it now; the final plan's optimiser could still
change that read's filters, so such a scan also applies DataFusion's filter to its rows in the
gateway (``ProductScan.verify``). Outside the subqueries, scans then negotiate as in any plan,
and the rules that follow filter them as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from datafusion import LogicalPlan, SessionContext
from datafusion.catalog import Table

from gateway.plan.same_source import DERIVED_SCHEMA, DerivedCatalog
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import inputs, optimized, root, sub_plan, subquery_roots
from gateway.scan import ProductDataset, ProductScan


def separate_subquery_scans(
    message: plan_pb2.Plan,
    scans: dict[tuple[str, str], ProductScan],
    derived: Callable[[], DerivedCatalog],
) -> int:
    """Give every SQL read inside ``message``'s expression subqueries a scan of its own; how many.

    What each pushes down is negotiated once the plan is final (:func:`negotiate_subquery_scans`).
    """
    separated = 0
    for subquery in subquery_roots(root(message)):
        for read in _main_reads(subquery):
            names = tuple(read.named_table.names)
            scan = scans.get((names[-2], names[-1])) if len(names) >= 2 and names[-2] != DERIVED_SCHEMA else None
            if scan is None:
                continue  # a file product's read, or a table of the planner's own
            own = ProductScan(scan.product, guard=scan.guard, verify=True)
            table = derived().add(scan.product.name, Table(ProductDataset(own)))
            scans[(DERIVED_SCHEMA, table[-1])] = own
            del read.named_table.names[:]
            read.named_table.names.extend(table)
            separated += 1
    return separated


def negotiate_subquery_scans(
    message: plan_pb2.Plan, ctx: SessionContext, negotiate: Callable[[LogicalPlan], None]
) -> None:
    """Record what the scans of each subquery push down, each subquery planned on its own (a
    correlated one cannot be: then each of its reads alone, and a read that refers to the
    outer query pushes nothing)."""
    for subquery in subquery_roots(root(message)):
        if not _negotiate(message, subquery, ctx, negotiate):
            for read in _main_reads(subquery):
                alone = algebra_pb2.Rel()
                alone.read.CopyFrom(read)
                _negotiate(message, alone, ctx, negotiate)


def _main_reads(rel: algebra_pb2.Rel) -> Iterator[algebra_pb2.ReadRel]:
    """The reads of ``rel``'s own tree (not those of its subqueries: they have their own roots)."""
    if rel.WhichOneof("rel_type") == "read":
        yield rel.read
    for child in inputs(rel):
        yield from _main_reads(child)


def _negotiate(
    message: plan_pb2.Plan, rel: algebra_pb2.Rel, ctx: SessionContext, negotiate: Callable[[LogicalPlan], None]
) -> bool:
    try:
        plan = optimized(sub_plan(message, rel), ctx)
    except Exception:  # an outer reference, or a relation Substrait cannot carry alone
        return False
    negotiate(plan)
    return True
