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
follows a column's collation in the source) nor booleans (MySQL's may hold other numbers); and
groupings, as a derived table ``(SELECT ... GROUP BY ...) AS aN`` that filters (``HAVING``) and
joins above read, with the aggregates :func:`aggregate` accepts (those the source computes
exactly as DataFusion does); and limits and top Ns (``ORDER BY ... LIMIT n``) the same way, where
the plan above reads their rows as a set (:data:`_UNORDERED`).
Every predicate is translated by :func:`gateway.pushdown.translate`, the same check each
single scan passes; a sub-plan with
anything it cannot translate, or another shape, is not pushed, and the rule looks inside it.
A sub-plan is pushed only when it groups or limits, or joins and filters: a lone scan is already
negotiated by :func:`gateway.planner.negotiate_scans`, and an unfiltered join returns about as many
rows as its tables hold (measured: partsupp joined with supplier in SQLite, 800,000 rows, is
slower than fetching both and joining in DataFusion). One more case of one table is pushed: a
filter DataFusion keeps above the scan (a ``LIKE``: a scan is handed only what Arrow evaluates)
that tests a column nothing above reads, which the scan would otherwise fetch for DataFusion to
test again (:func:`_narrows`).

:func:`push_subplans` finds the sub-plans in the Substrait form of the plan
(``gateway/plan/rules.py``), asks :func:`subplan_query` for each one's SQL, and splices in a
read of a table that runs that SQL (``gateway/plan/substrait_plan.py`` says why that is safe).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from datafusion import Expr, LogicalPlan, SessionContext
from datafusion.catalog import CatalogProvider, SchemaProvider, Table
from sqlglot import exp

from connectors.base import SourceObject, SqlCapabilities
from connectors.sqlbase import Read, SourceColumn, TypedSqlConnector
from gateway.averages import average_type, exact_average
from gateway.catalog import Product
from gateway.plan.build_side import Rows, estimate
from gateway.plan.substrait import plan_pb2
from gateway.plan.substrait_plan import (
    correlated,
    function_names,
    inputs,
    reads_below,
    root,
    sub_plan,
    subquery_roots,
    to_logical,
    to_substrait,
)
from gateway.pushdown import comparable, translate
from gateway.scan import ProductDataset, ProductScan
from gateway.system_tables import TableDataset
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
    ordered: bool = False  # the sub-plan's rows come out of a sort with a limit (see push_subplans)
    estimate: float | None = None  # its rows as estimated in the plan, when it reads one table once


class _NotPushed(Exception):
    """This sub-plan has a shape or an expression the rule does not push."""


@dataclass
class _Output:
    alias: str  # of its table in the query being written
    name: str  # what the plan names it
    type: pa.DataType
    column: SourceColumn
    relation: str  # what the plan qualifies it by: the table's name, or a subquery's alias
    label: str = ""  # its column's name in the SQL, when not ``name`` (an aggregate's output)
    nullable: bool = True  # false only where DataFusion knows it is never null (a count)
    not_null: bool = False  # its source declares it NOT NULL (inner joins and groupings keep that)

    def ref(self) -> exp.Column:
        """The column in the query being written."""
        return exp.column(self.label or self.name, table=self.alias, quoted=True)


@dataclass
class _Query:
    """A sub-plan as SQL in the making: FROM items, WHERE conjuncts, output columns in order."""

    tables: list[exp.Expr] = field(default_factory=list)
    where: list[exp.Expr] = field(default_factory=list)
    outputs: list[_Output] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    filtered: bool = False  # a predicate other than the join keys: the source returns fewer rows
    inner: list[Product] = field(default_factory=list)  # the products of ``tables``, inner-joined at the top
    reduced: bool = False  # it groups or limits: the source returns fewer rows however big the tables
    ordered: bool = False  # the plan's rows come out of its top-most sort with a limit
    tested: set[str] = field(default_factory=set)  # the columns its filters above the scans read

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
    joins = len(query.products) >= 2 and query.filtered
    if not (joins or query.reduced or _narrows(query)) or len(connectors) != 1 or not query.outputs:
        # Unfiltered, a join of a source's tables returns about as many rows as fetching
        # them does, and a source without hash joins (SQLite) is slower at it than DataFusion.
        # (A join of which no column is used, under count(*), would be a query without columns.)
        return None
    first = query.products[0]
    connector = first.connector
    assert isinstance(connector, TypedSqlConnector)
    counts = Counter(o.label or o.name for o in query.outputs)
    names = [
        (o.label or o.name) if counts[o.label or o.name] == 1 else f"{o.label or o.name}_{i}"
        for i, o in enumerate(query.outputs)
    ]
    selected: list[exp.Expr] = [o.ref().as_(n, quoted=True) for n, o in zip(names, query.outputs, strict=True)]
    select = _select_from(query, selected, query.where)
    # view_as and guard are applied by each product's relation in FROM; read is applied on top.
    columns = tuple(SourceColumn(n, o.type, read=o.column.read) for n, o in zip(names, query.outputs, strict=True))
    sql = connector.render(select)
    if not connector.accepts(sql) or connector.per_row(sql):
        return None
    source = SourceObject(sql=sql, columns=columns, split=_split_on(query))
    schema = pa.schema([pa.field(c.name, c.type, o.nullable) for c, o in zip(columns, query.outputs, strict=True)])
    name = "+".join(dict.fromkeys(p.name for p in query.products))
    derived = Product(first.domain, name, source, schema, connector)
    return SubplanQuery(derived, tuple(dict.fromkeys(query.products)), query.ordered)


def _narrows(query: _Query) -> bool:
    """Whether ``query`` reads one table through a filter DataFusion applies above its scan (one it
    cannot hand a scan, like ``LIKE``) on a column nothing above reads: sent as a query, the column is
    neither fetched nor tested twice (TPC-H Q13's orders without their comments: 1.48 million rows of
    the 79 bytes of ``o_comment`` on top of their keys)."""
    return len(query.products) == 1 and bool(query.tested - {o.name for o in query.outputs})


def _split_on(query: _Query) -> str | None:
    """The table a source may split the query's read on (``SourceObject.split``): of its inner-joined
    tables read once, the one estimated to hold the most rows (each range of it joined with the others
    gives a part of the rows, and together all of them: TPC-H Q3's orders, 730,000 rows filtered,
    beside 30,000 customers)."""
    if query.reduced:
        return None  # a range of a table would be grouped, or limited, apart from the others
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
        outputs = [
            _Output(
                alias,
                name,
                product.schema.field(name).type,
                described[name],
                relation,
                not_null=name in product.not_null,
            )
            for name in names
        ]
        table = connector.relation(product.source, alias)
        columns = {name: exp.column(name, table=alias, quoted=True) for name in product.schema.names}
        where = [_qualified(p, columns) for p in filters.pushed]
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
        columns = {o.name: o.ref() for o in query.outputs}
        query.where.extend(_qualified(p, columns) for p in agreed.pushed)
        query.tested.update(c.name for p in agreed.pushed for c in p.find_all(exp.Column))
        query.filtered = True
        query.ordered = False
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
                left.reduced or right.reduced,
            )
        # A semi or anti join keeps one input's rows, once each. A semi join is written as
        # ``key IN (SELECT key ...)``, which a source runs once (SQLite: 344 ms as a correlated
        # EXISTS against 150 for TPC-H Q20's parts); an anti join as NOT EXISTS, whose NULLs
        # behave as DataFusion's anti joins here do (a NOT IN's null-aware one reaches the rules
        # only when its keys cannot be NULL, see gateway/plan/rules.py), or, where neither side's
        # keys can be NULL and the source has no hash joins, as NOT IN, which SQLite also runs
        # once rather than row by row (TPC-H Q16's 118,000 part suppliers: 216 against 382 ms).
        kept, other = (left, right) if kind.startswith("Left") else (right, left)
        keys = [(equal.this, equal.expression) for equal in conditions]
        if kept is right:
            keys = [(inner, outer) for outer, inner in keys]
        outer_keys = [outer for outer, _ in keys]
        key: exp.Expr = outer_keys[0] if len(outer_keys) == 1 else exp.Tuple(expressions=outer_keys)
        subquery = _select_from(other, [inner for _, inner in keys], other.where)
        connector = kept.products[0].connector
        assert isinstance(connector, TypedSqlConnector)
        test: exp.Expr
        if kind.endswith("Semi"):
            test = exp.In(this=key, query=exp.Subquery(this=subquery))
        elif not connector.capabilities.hash_joins and _never_null(node, left, right):
            test = exp.Not(this=exp.In(this=key, query=exp.Subquery(this=subquery)))
        else:
            test = exp.Not(
                this=exp.Exists(this=_select_from(other, [exp.Literal.number(1)], [*other.where, *conditions]))
            )
        reduced = kept.reduced or other.reduced
        return _Query(
            kept.tables, [*kept.where, test], kept.outputs, kept.products + other.products, True, kept.inner, reduced
        )

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
            conditions.append(exp.EQ(this=a.ref(), expression=b.ref()))
        if not conditions:
            raise _NotPushed("a join without keys")
        return conditions

    def _Sort(self, node: Any, children: list[LogicalPlan]) -> _Query:
        """A sort with a limit (top N), as a derived table ``(SELECT ... ORDER BY ... LIMIT n) AS lN``. A sort
        without a limit is not pushed: no read of a source keeps an order DataFusion relies on."""
        fetch = node.get_fetch_val()
        if fetch is None:
            raise _NotPushed("a sort without a limit")
        return self._top(node, children, int(fetch))

    def _top(self, node: Any, children: list[LogicalPlan], fetch: int) -> _Query:
        """The first ``fetch`` rows in the order of the Sort ``node``."""
        query = self.build(children[0])
        connector = query.products[0].connector
        assert isinstance(connector, TypedSqlConnector)
        keys = []
        for sort in node.sort_exprs():
            expression = sort.expr()
            if expression.variant_name() != "Column":
                raise _NotPushed(f"ordering by {expression}")
            output = query.output(expression)
            if not _exact_key(output.type, connector, ordered=True):
                # floats put NaN their own way
                raise _NotPushed(f"ordering by a column of type {output.type}")
            key = _bytewise(output.ref(), output.type, connector.capabilities)
            keys.append(exp.Ordered(this=key, desc=not sort.ascending(), nulls_first=sort.nulls_first()))
        return self._limited(query, keys, fetch)

    def _Limit(self, node: Any, children: list[LogicalPlan]) -> _Query:
        """A limit without an offset (any rows, as DataFusion's are), as a derived table."""
        skip, fetch = _constant(node.skip()), _constant(node.fetch())
        if skip or fetch is None:
            raise _NotPushed("a limit with an offset, or not a constant")
        below = children[0].to_variant()
        if type(below).__name__ == "Sort" and below.get_fetch_val() in (None, fetch):  # a top N
            return self._top(below, children[0].inputs(), fetch)
        return self._limited(self.build(children[0]), [], fetch)

    def _limited(self, query: _Query, keys: list[exp.Ordered], fetch: int) -> _Query:
        alias = f"l{self._aliases}"
        self._aliases += 1
        labels = [f"c{index}" for index in range(len(query.outputs))]
        selected = [o.ref().as_(label, quoted=True) for o, label in zip(query.outputs, labels, strict=True)]
        limited = _select_from(query, selected, query.where)
        if keys:
            limited = limited.order_by(*keys)
        limited = limited.limit(fetch)
        table = exp.Subquery(this=limited, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        outputs = [
            _Output(alias, o.name, o.type, o.column, o.relation, label, o.nullable)
            for o, label in zip(query.outputs, labels, strict=True)
        ]
        return _Query([table], [], outputs, query.products, True, [], reduced=True, ordered=bool(keys))

    def _Aggregate(self, node: Any, children: list[LogicalPlan]) -> _Query:
        """A grouping, as a derived table of the source's query: ``(SELECT g, agg FROM ... GROUP BY g) AS aN``.
        Filters above it (``HAVING``) and joins with it then read that table."""
        query = self.build(children[0])
        connector = query.products[0].connector
        assert isinstance(connector, TypedSqlConnector)
        alias = f"a{self._aliases}"
        self._aliases += 1
        groups = [self._group_key(query, expression) for expression in node.group_by_exprs()]
        selected: list[exp.Expr] = []
        outputs: list[_Output] = []
        for index, group in enumerate(groups):
            label = f"g{index}"
            selected.append(group.ref().as_(label, quoted=True))
            outputs.append(
                _Output(
                    alias, group.name, group.type, group.column, group.relation, label, group.nullable, group.not_null
                )
            )
        for index, expression in enumerate(node.aggregate_exprs()):
            label = f"v{index}"
            sql, kind, read = aggregate(query, expression, connector.capabilities)
            selected.append(sql.as_(label, quoted=True))
            nullable = not isinstance(sql, exp.Count)
            column = SourceColumn(label, kind, read=read)
            outputs.append(_Output(alias, expression.schema_name(), kind, column, "", label, nullable))
        grouped = _select_from(query, selected, query.where)
        if groups:
            grouped = grouped.group_by(*(group.ref() for group in groups))
            if not _few_groups(query, connector, grouped):
                raise _NotPushed("a grouping the source may not make smaller enough to pay")
        table = exp.Subquery(this=grouped, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        return _Query([table], [], outputs, query.products, True, [], reduced=True)

    def _group_key(self, query: _Query, expression: Any) -> _Output:
        if expression.variant_name() != "Column":
            raise _NotPushed(f"grouping by {expression}")
        output = query.output(expression)
        if not _exact_key(output.type, query.products[0].connector):
            raise _NotPushed(f"grouping by a column of type {output.type}")
        return output


def _never_null(join: Any, left: _Query, right: _Query) -> bool:
    """Whether no key of ``join`` can be NULL on either side (a column declared NOT NULL, or a count)."""
    outputs = [side.output(key) for pair in join.on() for side, key in zip((left, right), pair, strict=True)]
    return all(o.not_null or not o.nullable for o in outputs)


def _select_from(query: _Query, columns: list[exp.Expr], where: list[exp.Expr]) -> exp.Select:
    """``SELECT columns FROM`` the query's tables (inner joins, conditions in WHERE) ``WHERE where``."""
    select = exp.select(*columns).from_(query.tables[0])
    for table in query.tables[1:]:
        # An inner join (its conditions are in WHERE), never CROSS JOIN, which is what sqlglot
        # writes a comma as for SQLite: SQLite keeps the order of CROSS JOINs as written, and the
        # source's planner must choose the join order (measured: TPC-H Q2 10.8 s against 0.4 s).
        select = select.join(table, join_type="inner", on=exp.true())
    return select.where(exp.and_(*where)) if where else select


def aggregate(
    query: _Query, expression: Any, capabilities: SqlCapabilities
) -> tuple[exp.Expr, pa.DataType, Read | None]:
    """One of an Aggregate node's expressions as the source's SQL over ``query``'s columns, the type
    DataFusion gives its result, and how to read it (a sum, minimum or maximum is read as its column
    is: MySQL's decimals as text, to arrive exact); raises _NotPushed for any the source could
    compute otherwise.

    ``count`` (``DISTINCT`` of what may be grouped by: :func:`_exact_key`); ``sum`` of integers and
    decimals; ``min``/``max`` of integers, decimals, dates, timestamps and text the source orders by
    its bytes (not floats, whose NaN it orders its own way); ``avg`` of a decimal where the source
    divides as DataFusion does (gateway/averages.py). Decimals only where the source computes them
    exactly.
    """
    if expression.variant_name() == "Alias":
        expression = expression.to_variant().expr()
    shown = str(expression)
    if expression.variant_name() != "AggregateFunction" or " FILTER (" in shown or " ORDER BY " in shown:
        raise _NotPushed(f"aggregate {shown}")
    function = expression.to_variant()
    name, arguments, distinct = str(function.aggregate_type()).lower(), function.args(), function.is_distinct()
    if len(arguments) != 1:
        raise _NotPushed(f"aggregate {shown}")
    argument = arguments[0]
    if name == "count" and not distinct and argument.variant_name() == "Literal":
        if argument.python_value().as_py() is None:
            raise _NotPushed("count(NULL)")
        return exp.Count(this=exp.Star()), pa.int64(), None
    column = _argument(query, argument)
    kind = column.type
    if name == "count":
        if distinct and not _exact_key(kind, query.products[0].connector):
            raise _NotPushed(f"count(DISTINCT) of {kind}")
        return exp.Count(this=exp.Distinct(expressions=[column.ref()]) if distinct else column.ref()), pa.int64(), None
    decimal = pa.types.is_decimal128(kind)
    exact = capabilities.exact_decimals or (capabilities.decimal_sums and name in ("sum", "min", "max"))
    if decimal and not exact:
        raise _NotPushed(f"{name} of a decimal, which the source computes otherwise")
    if distinct and name not in ("min", "max"):
        raise _NotPushed(f"{name}(DISTINCT)")
    if name == "sum" and (pa.types.is_integer(kind) or decimal):
        read = column.column.read
        if decimal:
            return exp.Sum(this=column.ref()), pa.decimal128(min(38, kind.precision + 10), kind.scale), read
        return exp.Sum(this=column.ref()), pa.uint64() if pa.types.is_unsigned_integer(kind) else pa.int64(), read
    if name in ("min", "max") and (
        pa.types.is_integer(kind) or decimal or pa.types.is_date(kind) or pa.types.is_timestamp(kind)
    ):
        return (exp.Min if name == "min" else exp.Max)(this=column.ref()), kind, column.column.read
    if name in ("min", "max") and _exact_key(kind, query.products[0].connector, ordered=True):
        value = _bytewise(column.ref(), kind, capabilities)  # text, in byte order
        return (exp.Min if name == "min" else exp.Max)(this=value), kind, column.column.read
    if name == "avg" and decimal and capabilities.truncating_division:
        return exact_average(column.ref(), kind.scale), average_type(kind), column.column.read
    raise _NotPushed(f"{name} of {kind}")


def _argument(query: _Query, argument: Any) -> _Output:
    """The column an aggregate reads: a column, or one DataFusion widened to a 64-bit integer."""
    if argument.variant_name() == "Cast":
        inner = argument.to_variant().expr()
        if inner.variant_name() == "Column":
            output = query.output(inner)
            if pa.types.is_signed_integer(output.type) and str(argument).endswith(" AS Int64)"):
                return output
        raise _NotPushed(f"aggregate of {argument}")
    if argument.variant_name() != "Column":
        raise _NotPushed(f"aggregate of {argument}")
    return query.output(argument)


GROUP_REDUCTION = 100
"""A grouping is sent to its source only when it is estimated to return at most a hundredth of the
rows of the largest table it reads (or :data:`FEW_GROUPS`): grouping 1.5 million PostgreSQL orders
by customer (100,000 groups) took 671 ms there against 366 ms fetched in two ranges and grouped by
DataFusion; by their 1 or 3 values of a column, 210 against 355 ms."""
FEW_GROUPS = 10_000
"""So many groups are sent whatever the tables' size (a small table's grouping costs little anywhere)."""


def _few_groups(query: _Query, connector: TypedSqlConnector, grouped: exp.Select) -> bool:
    """Whether ``grouped`` (``query`` grouped) is estimated to return few enough rows to be sent.

    Never to a source without hash joins (SQLite groups by sorting: 88 ms for 200,000 parts by
    size against 35 ms fetched and grouped by DataFusion); always to one whose groupings are fast
    (``fast_groupings``: DuckDB). The groups are the source's estimate of the grouped query where it
    makes one (PostgreSQL's EXPLAIN), else at most the rows read.
    """
    if not connector.capabilities.hash_joins:
        return False
    if connector.capabilities.fast_groupings:
        return True
    sizes = [connector.estimate_rows(product.source) for product in query.products]
    if any(size is None for size in sizes):
        return False
    largest = max(size for size in sizes if size is not None)
    estimate = connector.estimate_rows(SourceObject(sql=connector.render(grouped)))
    return few_groups(largest if estimate is None else estimate, largest)


def few_groups(groups: int, largest: int) -> bool:
    """Whether a grouping estimated at ``groups`` groups, over tables of at most ``largest`` rows, is
    worth a source's making rather than DataFusion's (:data:`GROUP_REDUCTION`, :data:`FEW_GROUPS`)."""
    return groups <= max(FEW_GROUPS, largest / GROUP_REDUCTION)


def _bytewise(value: exp.Expr, kind: pa.DataType, capabilities: SqlCapabilities) -> exp.Expr:
    """``value`` as ordered in byte order: text in the dialect's binary collation where the source
    orders text otherwise (PostgreSQL: ``COLLATE "C"``)."""
    if not is_text(kind) or capabilities.binary_string_order or capabilities.string_collation is None:
        return value
    return exp.Collate(this=value, expression=exp.Identifier(this=capabilities.string_collation, quoted=True))


def _constant(value: Any) -> int | None:
    """A limit's or offset's number: DataFusion gives each as an expression (or none)."""
    if value is None or isinstance(value, int):
        return value
    expression = Expr(value)
    number = expression.python_value().as_py() if expression.variant_name() == "Literal" else None
    return number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else None


def _exact_key(kind: pa.DataType, connector: Any, ordered: bool = False) -> bool:
    """Whether values of ``kind`` are equal (and, ``ordered``, ordered) in the source exactly as
    DataFusion finds them (grouping, DISTINCT, a top N, min/max): integers, dates, timestamps,
    decimals the source keeps exact, and text where the source compares its bytes (``text_keys``;
    for an order, also where it orders text by bytes, or has a collation that does: PostgreSQL's
    ``C``, see :func:`_bytewise`). Not floats (``-0.0``, NaN) or booleans (MySQL's may hold other
    numbers)."""
    capabilities = connector.capabilities
    if pa.types.is_decimal128(kind):
        return bool(capabilities.exact_decimals)
    if is_text(kind):
        bytewise = capabilities.binary_string_order or capabilities.string_collation is not None
        return bool(capabilities.text_keys) and (bytewise or not ordered)
    return pa.types.is_integer(kind) or pa.types.is_date(kind) or pa.types.is_timestamp(kind)


_JOINS = {"Inner", "LeftSemi", "RightSemi", "LeftAnti", "RightAnti"}
"""The join types a pushed sub-plan may hold (outer joins stay in DataFusion)."""


def _same(qualifier: str, relation: str) -> bool:
    """Whether a column qualified by ``relation`` can be of a table the plan calls ``qualifier``."""
    return qualifier == relation or qualifier.endswith("." + relation) or relation.endswith("." + qualifier)


def _qualified(predicate: exp.Expr, columns: dict[str, exp.Column]) -> exp.Expr:
    """``predicate`` with each column, named as the plan names it, as ``columns`` writes it (qualified
    by the alias of the table it belongs to)."""

    def qualify(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table:
            return columns[node.name].copy()
        return node

    return predicate.copy().transform(qualify)


def push_subplans(
    message: plan_pb2.Plan, ctx: SessionContext, resolve: Resolve, register: Register, rows: Rows | None = None
) -> list[SubplanQuery]:
    """Replace, in ``message``, its same-source sub-plans by reads of their queries; the ones pushed.

    The plan is walked from the root: a relation whose reads all resolve to products of one
    source, that joins (or groups, limits or filters one table), and whose query
    :func:`subplan_query` can write, is replaced by a read of the derived product ``register``
    makes readable; otherwise its inputs are tried.
    A sub-plan that reads one table once carries the estimate of its rows ``rows`` gives the
    relation it replaces (``build_side.estimate``): sending it must not change the plan's view of it.
    """
    functions = function_names(message)
    pushed: list[SubplanQuery] = []
    found: list[list[tuple[str, ...] | None]] = []
    sizes: list[int] = []
    position = 0

    def visit(rel: Any, parent: str | None) -> None:
        nonlocal position
        here = position
        position += 1
        names = found[here]
        products = [resolve(name) if name is not None else None for name in names]
        one_source = all(p is not None for p in products) and len({id(p.connector) for p in products if p}) == 1
        if (len(names) >= 2 or (names and _holds(rel, _WORTH_ALONE))) and one_source:
            query = subplan_query(to_logical(sub_plan(message, rel), ctx), resolve)
            if query is not None and (not query.ordered or parent in _UNORDERED):
                if rows is not None and len(names) == 1:
                    query = replace(query, estimate=estimate(rel, rows, functions))
                rel.CopyFrom(read_of(register(query.product), ctx))
                pushed.append(query)
                position = here + sizes[here]  # what was under it is gone
                return
        for child in inputs(rel):
            visit(child, rel.WhichOneof("rel_type"))

    top = root(message)
    # The plan, then each uncorrelated subquery it keeps as an expression (a scalar subquery whose
    # grouping one source computes returns its one row from there); a sub-plan is never pushed
    # with an expression that holds a subquery, so these are still there after the first walk.
    subqueries = [sub for sub in subquery_roots(top, nested=False) if not correlated(sub)]
    for start, parent in [(top, None), *((sub, "subquery") for sub in subqueries)]:
        found, sizes = reads_below(start)  # in pre-order, as visit() goes
        position = 0
        visit(start, parent)
    return pushed


_UNORDERED = {"join", "cross", "aggregate", "set", "subquery"}
"""Substrait relations that read their inputs as sets (and a subquery in an expression, a value or a
set of values): a sorted sub-plan below one may be read from its source in any order (below anything
else, DataFusion may rely on the order, and sorts itself)."""


_WORTH_ALONE = frozenset({"aggregate", "fetch", "filter"})
"""Relations that may make a sub-plan of one table worth sending (:func:`subplan_query` decides)."""


def _holds(rel: Any, kinds: frozenset[str]) -> bool:
    """Whether the Substrait relation ``rel`` is of one of ``kinds``, or reads a relation that is."""
    return rel.WhichOneof("rel_type") in kinds or any(_holds(child, kinds) for child in inputs(rel))


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
        self.computed: dict[str, pa.Table] = {}  # those tables' rows
        # A computed table's column of distinct values of another table's one-column primary key:
        # the column, and that table's names (build_side.Facts.subset).
        self.subsets: dict[str, tuple[str, tuple[str, ...]]] = {}

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

    def add_computed(self, name: str, rows: pa.Table) -> tuple[str, ...]:
        """Hold the computed ``rows`` under ``name`` (made unique); the full name to read them by."""
        names = self.add(name, Table(TableDataset(rows)), rows.num_rows)
        self.computed[names[-1]] = rows
        return names


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
    rows: Rows | None = None,
) -> list[SubplanQuery]:
    """Push ``message``'s same-source sub-plans (each read through a new entry of ``scans``); the ones pushed.

    Only products whose scans are in ``scans`` and ``pushable`` (read unrestricted by the
    caller, from a SQL source whose capabilities push joins) take part. Nothing is looked at
    unless one source holds two of them or the plan aggregates, limits or filters. ``derived`` gives the
    query's catalog of derived tables (made on first use).
    """
    eligible = {key: scan for key, scan in scans.items() if pushable(scan)}
    per_source = Counter(id(scan.product.connector) for scan in eligible.values())
    if not per_source or (max(per_source.values()) < 2 and not _holds(root(message), _WORTH_ALONE)):
        return []

    def resolve(names: tuple[str, ...]) -> Product | None:
        scan = eligible.get((names[-2], names[-1])) if len(names) >= 2 else None
        return scan.product if scan is not None else None

    def register(product: Product) -> tuple[str, ...]:
        scan = ProductScan(product)
        table = derived().add(product.name, Table(ProductDataset(scan)))
        scans[(DERIVED_SCHEMA, table[-1])] = scan
        return table

    return push_subplans(message, ctx, resolve, register, rows)
