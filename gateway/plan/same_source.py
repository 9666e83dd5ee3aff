"""Rule: every largest sub-plan whose tables all live in one SQL source goes to it as one query.

In the manner of datafusion-federation's optimizer rule: a join of products of one SQL
source, with the filters and projections between, is asked of that source whole; DataFusion
receives its rows and runs only what spans sources::

    SELECT s_name, n_name FROM procurement.supplier JOIN procurement.partsupp ON s_suppkey = ps_suppkey
      JOIN reference.nation ON s_nationkey = n_nationkey WHERE ps_availqty > 10
    -- the procurement source (SQLite) gets
    SELECT "t0"."s_name" AS "s_name", "t0"."s_nationkey" AS "s_nationkey" FROM "supplier" AS "t0"
      INNER JOIN "partsupp" AS "t1" ON TRUE WHERE "t1"."ps_availqty" > 10 AND "t0"."s_suppkey" = "t1"."ps_suppkey"

The SQL is written here from the plan's nodes, never by DataFusion's unparser (which writes
optimised plans' semi-joins and aggregates wrongly): scans with their filters, filters,
projections of columns, inner equi-joins, and semi and anti equi-joins (from IN and EXISTS:
``key IN (SELECT ...)`` and ``NOT EXISTS (...)``), on keys that are neither text (text equality
follows a column's collation in the source) nor booleans (MySQL's may hold other numbers).
Every predicate is translated by :func:`gateway.pushdown.translate`, the same check each
single scan passes; a sub-plan with
anything it cannot translate, or another shape, is not pushed, and the rule looks inside it.
A sub-plan is pushed only when it joins and filters: a lone scan is already negotiated by
:func:`gateway.planner.negotiate_scans`, and an unfiltered join returns about as many rows
as its tables hold (measured: partsupp joined with supplier in SQLite, 800,000 rows, is
slower than fetching both and joining in DataFusion).

:func:`push_subplans` finds the sub-plans in the Substrait form of the plan
(``gateway/plan/rules.py``), asks :func:`subplan_query` for each one's SQL, and splices in a
read of a table that runs that SQL (``gateway/plan/substrait_plan.py`` says why that is safe).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext
from datafusion.catalog import CatalogProvider, SchemaProvider, Table
from sqlglot import exp

from connectors.base import SourceObject
from connectors.sqlbase import SourceColumn, TypedSqlConnector
from gateway.catalog import Product
from gateway.plan.substrait import plan_pb2
from gateway.plan.substrait_plan import inputs, reads_below, root, sub_plan, to_logical, to_substrait
from gateway.pushdown import comparable, translate
from gateway.scan import ProductDataset, ProductScan
from meshcore.arrow import is_text
from meshcore.sql import quote_identifier

Resolve = Callable[[tuple[str, ...]], Product | None]
"""The product a Substrait table name reads, if the rule may push it (a SQL product the caller reads unrestricted)."""

Register = Callable[[Product], tuple[str, ...]]
"""Make a derived product readable in the query's context; the table name to read it by."""


@dataclass(frozen=True)
class SubplanQuery:
    """One sub-plan as its source's query: a derived product (its columns named as in the products,
    with the position appended to a name two of them share)."""

    product: Product
    reads: tuple[Product, ...]


class _NotPushed(Exception):
    """This sub-plan has a shape or an expression the rule does not push."""


@dataclass
class _Output:
    alias: str  # of its table in the query being written
    name: str
    type: pa.DataType
    column: SourceColumn
    relation: str  # what the plan qualifies it by: the table's name, or a subquery's alias


@dataclass
class _Query:
    """A sub-plan as SQL in the making: FROM items, WHERE conjuncts, output columns in order."""

    tables: list[exp.Expr] = field(default_factory=list)
    where: list[exp.Expr] = field(default_factory=list)
    outputs: list[_Output] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    filtered: bool = False  # a predicate other than the join keys: the source returns fewer rows
    inner: list[Product] = field(default_factory=list)  # the products of ``tables``, inner-joined at the top

    def output(self, column: Any) -> _Output:
        """The output a plan's ``Column`` expression names (by its qualifier when it has one)."""
        reference = column.to_variant()
        name, relation = reference.name(), reference.relation()
        found = [o for o in self.outputs if o.name == name and (relation is None or _same(o.relation, relation))]
        if len(found) != 1:
            raise _NotPushed(f"column {reference.qualified_name()} is ambiguous or unknown")
        return found[0]

    def schema(self) -> pa.Schema:
        return pa.schema([(o.name, o.type) for o in self.outputs])


def subplan_query(plan: LogicalPlan, resolve: Resolve) -> SubplanQuery | None:
    """``plan`` as one query of its source, or None when the rule does not push it."""
    builder = _Builder(resolve)
    try:
        query = builder.build(plan)
    except _NotPushed:
        return None
    connectors = {id(p.connector) for p in query.products}
    if len(query.products) < 2 or len(connectors) != 1 or not query.filtered or not query.outputs:
        # Unfiltered, a join of a source's tables returns about as many rows as fetching
        # them does, and a source without hash joins (SQLite) is slower at it than DataFusion.
        # (A join of which no column is used, under count(*), would be a query without columns.)
        return None
    first = query.products[0]
    connector = first.connector
    assert isinstance(connector, TypedSqlConnector)
    counts = Counter(o.name for o in query.outputs)
    names = [o.name if counts[o.name] == 1 else f"{o.name}_{i}" for i, o in enumerate(query.outputs)]
    selected: list[exp.Expr] = [
        exp.column(o.name, table=o.alias, quoted=True).as_(n, quoted=True)
        for n, o in zip(names, query.outputs, strict=True)
    ]
    select = _select_from(query, selected, query.where)
    # view_as and guard are applied by each product's relation in FROM; read is applied on top.
    columns = tuple(SourceColumn(n, o.type, read=o.column.read) for n, o in zip(names, query.outputs, strict=True))
    source = SourceObject(sql=connector.render(select), columns=columns, split=_split_on(query))
    schema = pa.schema([(c.name, c.type) for c in columns])
    name = "+".join(dict.fromkeys(p.name for p in query.products))
    derived = Product(first.domain, name, source, schema, connector)
    return SubplanQuery(derived, tuple(dict.fromkeys(query.products)))


def _split_on(query: _Query) -> str | None:
    """The table a source may split the query's read on (``SourceObject.split``): of its inner-joined
    tables read once, the one estimated to hold the most rows (each range of it joined with the others
    gives a part of the rows, and together all of them: TPC-H Q3's orders, 730,000 rows filtered,
    beside 30,000 customers)."""
    tables = [p.source.table for p in query.products]
    once = [p for p in query.inner if p.source.table is not None and tables.count(p.source.table) == 1]
    sized = [(rows, p.source.table) for p in once if (rows := p.connector.estimate_rows(p.source)) is not None]
    return max(sized)[1] if sized else None


class _Builder:
    def __init__(self, resolve: Resolve) -> None:
        self._resolve = resolve
        self._aliases = 0

    def build(self, plan: LogicalPlan) -> _Query:
        node = plan.to_variant()
        kind = type(node).__name__
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            raise _NotPushed(kind)
        children = plan.inputs()
        result: _Query = handler(node, children)
        return result

    def _TableScan(self, node: Any, _: list[LogicalPlan]) -> _Query:
        if node.fetch() is not None:
            raise _NotPushed("a scan with a limit")
        _, schema_name, table = node.fqn()
        product = self._resolve((str(schema_name), str(table)))
        if product is None or not isinstance(product.connector, TypedSqlConnector):
            raise _NotPushed(f"{schema_name}.{table}")
        connector = product.connector
        alias = f"t{self._aliases}"
        self._aliases += 1
        filters = translate(list(node.filters()), product.schema, connector.capabilities)
        if filters.kept:
            raise _NotPushed(f"filters {filters.kept}")
        described = {c.name: c for c in connector.columns(product.source)}
        projection = node.projection()
        names = [name for _, name in projection] if projection else product.schema.names
        relation = str(node.table_name())
        outputs = [_Output(alias, name, product.schema.field(name).type, described[name], relation) for name in names]
        table = connector.relation(product.source, alias)
        where = [_qualified(p, dict.fromkeys(product.schema.names, alias)) for p in filters.pushed]
        return _Query([table], where, outputs, [product], filtered=bool(where), inner=[product])

    def _SubqueryAlias(self, node: Any, children: list[LogicalPlan]) -> _Query:
        query = self.build(children[0])
        for output in query.outputs:
            output.relation = str(node.alias())
        return query

    def _Filter(self, node: Any, children: list[LogicalPlan]) -> _Query:
        query = self.build(children[0])
        connector = query.products[0].connector
        assert isinstance(connector, TypedSqlConnector)
        agreed = translate([node.predicate()], query.schema(), connector.capabilities)
        if agreed.kept:
            raise _NotPushed(f"filter {agreed.kept}")
        owners = {o.name: o.alias for o in query.outputs}
        query.where.extend(_qualified(p, owners) for p in agreed.pushed)
        query.filtered = True
        return query

    def _Projection(self, node: Any, children: list[LogicalPlan]) -> _Query:
        query = self.build(children[0])
        outputs = []
        for expression in node.projections():
            if expression.variant_name() != "Column":
                raise _NotPushed(f"projection of {expression}")
            outputs.append(query.output(expression))
        query.outputs = outputs
        return query

    def _Join(self, node: Any, children: list[LogicalPlan]) -> _Query:
        kind = str(node.join_type())
        if kind not in _JOINS or node.filter() is not None:
            raise _NotPushed(f"{kind} join")
        left, right = self.build(children[0]), self.build(children[1])
        conditions = self._keys(node, left, right)
        if kind == "Inner":
            return _Query(
                left.tables + right.tables,
                left.where + right.where + conditions,
                left.outputs + right.outputs,
                left.products + right.products,
                left.filtered or right.filtered,
                left.inner + right.inner,
            )
        # A semi or anti join keeps one input's rows, once each. A semi join is written as
        # ``key IN (SELECT key ...)``, which a source runs once (SQLite: 344 ms as a correlated
        # EXISTS against 150 for TPC-H Q20's parts); an anti join as NOT EXISTS, whose NULLs
        # behave as DataFusion's anti joins here do (a NOT IN's null-aware one never reaches the
        # rules, see gateway/plan/rules.py).
        kept, other = (left, right) if kind.startswith("Left") else (right, left)
        keys = [(equal.this, equal.expression) for equal in conditions]
        if kept is right:
            keys = [(inner, outer) for outer, inner in keys]
        test: exp.Expr
        if kind.endswith("Semi"):
            subquery = _select_from(other, [inner for _, inner in keys], other.where)
            outer_keys = [outer for outer, _ in keys]
            key: exp.Expr = outer_keys[0] if len(outer_keys) == 1 else exp.Tuple(expressions=outer_keys)
            test = exp.In(this=key, query=exp.Subquery(this=subquery))
        else:
            test = exp.Not(
                this=exp.Exists(this=_select_from(other, [exp.Literal.number(1)], [*other.where, *conditions]))
            )
        return _Query(kept.tables, [*kept.where, test], kept.outputs, kept.products + other.products, True, kept.inner)

    def _keys(self, node: Any, left: _Query, right: _Query) -> list[exp.Expr]:
        """The join's key equalities between ``left`` and ``right``, as SQL."""
        conditions: list[exp.Expr] = []
        for left_key, right_key in node.on():
            if left_key.variant_name() != "Column" or right_key.variant_name() != "Column":
                raise _NotPushed("a join key that is not a column")
            a, b = left.output(left_key), right.output(right_key)
            if a.type != b.type or not comparable(a.type) or is_text(a.type) or pa.types.is_boolean(a.type):
                # Boolean keys stay out: MySQL's BOOLEAN is a TINYINT that may hold 2, which a read
                # refuses (the scan fails) but the source's own join would compare as a number.
                raise _NotPushed(f"join keys of types {a.type} and {b.type}")
            conditions.append(
                exp.EQ(
                    this=exp.column(a.name, table=a.alias, quoted=True),
                    expression=exp.column(b.name, table=b.alias, quoted=True),
                )
            )
        if not conditions:
            raise _NotPushed("a join without keys")
        return conditions


def _select_from(query: _Query, columns: list[exp.Expr], where: list[exp.Expr]) -> exp.Select:
    """``SELECT columns FROM`` the query's tables (inner joins, conditions in WHERE) ``WHERE where``."""
    select = exp.select(*columns).from_(query.tables[0])
    for table in query.tables[1:]:
        # An inner join (its conditions are in WHERE), never CROSS JOIN, which is what sqlglot
        # writes a comma as for SQLite: SQLite keeps the order of CROSS JOINs as written, and the
        # source's planner must choose the join order (measured: TPC-H Q2 10.8 s against 0.4 s).
        select = select.join(table, join_type="inner", on=exp.true())
    return select.where(exp.and_(*where)) if where else select


_JOINS = {"Inner", "LeftSemi", "RightSemi", "LeftAnti", "RightAnti"}
"""The join types a pushed sub-plan may hold (outer joins stay in DataFusion)."""


def _same(qualifier: str, relation: str) -> bool:
    """Whether a column qualified by ``relation`` can be of a table the plan calls ``qualifier``."""
    return qualifier == relation or qualifier.endswith("." + relation) or relation.endswith("." + qualifier)


def _qualified(predicate: exp.Expr, owners: dict[str, str]) -> exp.Expr:
    """``predicate`` with each column qualified by the alias of the table it belongs to."""

    def qualify(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table:
            return exp.column(node.name, table=owners[node.name], quoted=True)
        return node

    return predicate.copy().transform(qualify)


def push_subplans(
    message: plan_pb2.Plan, ctx: SessionContext, resolve: Resolve, register: Register
) -> list[SubplanQuery]:
    """Replace, in ``message``, its same-source sub-plans by reads of their queries; the ones pushed.

    The plan is walked from the root: a relation whose reads all resolve to products of one
    source, that joins, and whose query :func:`subplan_query` can write, is replaced by a
    read of the derived product ``register`` makes readable; otherwise its inputs are tried.
    """
    pushed: list[SubplanQuery] = []
    found, sizes = reads_below(root(message))  # in pre-order, as visit() goes
    position = 0

    def visit(rel: Any) -> None:
        nonlocal position
        here = position
        position += 1
        names = found[here]
        products = [resolve(name) if name is not None else None for name in names]
        one_source = all(p is not None for p in products) and len({id(p.connector) for p in products if p}) == 1
        if len(names) >= 2 and one_source:
            query = subplan_query(to_logical(sub_plan(message, rel), ctx), resolve)
            if query is not None:
                rel.CopyFrom(read_of(register(query.product), ctx))
                pushed.append(query)
                position = here + sizes[here]  # what was under it is gone
                return
        for child in inputs(rel):
            visit(child)

    visit(root(message))
    return pushed


def read_of(table: tuple[str, ...], ctx: SessionContext, columns: Sequence[str] | None = None) -> Any:
    """The relation reading ``columns`` (all when None) of ``table``, as DataFusion writes it in Substrait."""
    quoted = ".".join(quote_identifier(part) for part in table)
    selected = "*" if columns is None else ", ".join(quote_identifier(column) for column in columns)
    message: plan_pb2.Plan = to_substrait(ctx.sql(f"SELECT {selected} FROM {quoted}").logical_plan(), ctx)
    return root(message)


DERIVED_SCHEMA = "meshgate.derived"
"""The schema derived products are read from (a dot: no domain can be called that)."""


class DerivedCatalog(CatalogProvider):
    """The derived products of one query, in a catalog of the query's context that lists nothing.

    It is registered after the caller's SQL is planned, so only the planner's own SQL names
    it, and it lists no schema, so information_schema shows nothing of it.
    """

    def __init__(self) -> None:
        self.name = f"derived_{uuid.uuid4().hex[:8]}"  # only the planner's own SQL names it
        self.tables: dict[str, Table] = {}
        self.rows: dict[str, int] = {}  # of the tables whose rows are computed already

    def schema_names(self) -> set[str]:
        return set()

    def schema(self, name: str) -> SchemaProvider | None:  # type: ignore[override]  # a Python provider works too
        return _DerivedSchema(self) if name == DERIVED_SCHEMA else None

    def add(self, name: str, table: Table, rows: int | None = None) -> tuple[str, ...]:
        """Hold ``table`` (of ``rows`` rows, when they are computed) under ``name`` (made unique);
        the full name to read it by."""
        unique, n = name, 1
        while unique in self.tables:
            n += 1
            unique = f"{name}#{n}"
        self.tables[unique] = table
        if rows is not None:
            self.rows[unique] = rows
        return (self.name, DERIVED_SCHEMA, unique)


class _DerivedSchema(SchemaProvider):
    def __init__(self, catalog: DerivedCatalog) -> None:
        self._catalog = catalog

    @property
    def table_names(self) -> list[str]:  # type: ignore[override]
        return []

    def table(self, name: str) -> Table | None:
        return self._catalog.tables.get(name)

    def table_exist(self, name: str) -> bool:
        return name in self._catalog.tables


def push_same_source(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    scans: dict[tuple[str, str], ProductScan],
    pushable: Callable[[ProductScan], bool],
    derived: Callable[[], DerivedCatalog],
) -> list[SubplanQuery]:
    """Push ``message``'s same-source sub-plans (each read through a new entry of ``scans``); the ones pushed.

    Only products whose scans are in ``scans`` and ``pushable`` (read unrestricted by the
    caller, from a SQL source whose capabilities push joins) take part. Nothing is looked at
    unless one source holds two of them. ``derived`` gives the query's catalog of derived
    tables (made on first use).
    """
    eligible = {key: scan for key, scan in scans.items() if pushable(scan)}
    per_source = Counter(id(scan.product.connector) for scan in eligible.values())
    if not per_source or max(per_source.values()) < 2:
        return []

    def resolve(names: tuple[str, ...]) -> Product | None:
        scan = eligible.get((names[-2], names[-1])) if len(names) >= 2 else None
        return scan.product if scan is not None else None

    def register(product: Product) -> tuple[str, ...]:
        scan = ProductScan(product)
        table = derived().add(product.name, Table(ProductDataset(scan)))
        scans[(DERIVED_SCHEMA, table[-1])] = scan
        return table

    return push_subplans(message, ctx, resolve, register)
