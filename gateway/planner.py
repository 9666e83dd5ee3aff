"""From a DataFusion plan to what each source is asked.

Two rules, applied in this order:

1. :func:`single_source_sql`: when every table of a query lives in one SQL source
   that accepts whole queries, the whole query goes there, rewritten into its dialect
   (unless a cost check finds it slower there: :func:`_joins_big_unfiltered`, :func:`_groups_pay`).
   A query that aggregates Parquet products of one domain goes whole to its file engine the same way
   (``connectors/file_engine.py``), written from the optimised plan (:func:`chain_sql`) where
   it can be, else from the unoptimised one.
2. :func:`negotiate_scans`: otherwise, each scan of a SQL source gets its columns,
   every filter conjunct the source can evaluate identically, and a LIMIT when that
   is safe; DataFusion runs the rest.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from datafusion import DataFrame, Expr, LogicalPlan
from datafusion.unparser import Dialect, Unparser
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from connectors.base import SourceObject, SqlCapabilities, SqlConnector
from gateway import literal_lists
from gateway.averages import exact_averages
from gateway.bytewise import TypedQuery, bytewise_ordering, named_outputs, sql_type
from gateway.date_literals import dates_read_as_datafusion
from gateway.distinct_from import null_equal_keys
from gateway.intervals import date_arithmetic_as_datafusion
from gateway.plan.same_source import few_groups
from gateway.plancache import bind_placeholder
from gateway.pushdown import comparable, translate
from gateway.scan import Occurrence, ProductScan
from meshcore.arrow import is_binary

# "Subquery:" (not "SubqueryAlias:") marks a subquery that stayed an expression.
_SUBQUERY_EXPRESSION = re.compile(r"\bSubquery:")
# Nodes that neither change rows nor reorder them: a LIMIT can be pushed through them.
_ROW_PRESERVING = {"Projection", "SubqueryAlias"}
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.Between, exp.In)


def scan_key(table_scan: Any, default_domain: str) -> tuple[str, str]:
    """A TableScan's ``(domain, product)``; an unqualified name belongs to ``default_domain``."""
    _, schema, table = table_scan.fqn()
    return str(schema or default_domain), str(table)


def negotiate_scans(
    plan: LogicalPlan,
    scans: Mapping[tuple[str, str], ProductScan],
    default_domain: str,
    subqueries_separated: bool = False,
) -> None:
    """Record, on each :class:`ProductScan`, what every scan of it in ``plan`` pushes down.

    ``subqueries_separated``: every SQL scan inside the plan's subquery expressions has a
    :class:`ProductScan` of its own that checks its rows (``gateway/plan/subquery_scans.py``).
    """

    if not subqueries_separated and _SUBQUERY_EXPRESSION.search(plan.display_indent()):
        # A subquery kept as an expression hides its scans from this walk (the Python
        # binding does not expose their plans), and such a scan may read a product the
        # walk did see: no scan can then be trusted to know its filters. Each fetches
        # its columns and applies DataFusion's filter itself.
        for scan in scans.values():
            scan.blind = True
        _count_reads(scans, blind=True)
        return

    def walk(node: LogicalPlan, ancestors: list[LogicalPlan]) -> None:
        variant = node.to_variant()
        if type(variant).__name__ == "TableScan":
            scan = scans.get(scan_key(variant, default_domain))
            if scan is not None:
                scan.occurrences.append(_occurrence(variant, ancestors, scan))
            return
        for child in node.inputs():
            walk(child, [*ancestors, node])

    walk(plan, [])
    _count_reads(scans)


def _count_reads(scans: Mapping[tuple[str, str], ProductScan], blind: bool = False) -> None:
    """Set each scan's ``reads``: how many reads of its product the plan runs at once, one per
    occurrence (``blind``: one per scan, the occurrences being unknown).

    Reads of the same product are alike in size, and so in the cores they take: TPC-H Q11 reads
    partsupp twice, and each read split in two made four threads on two cores (186 ms against
    221 ms, alternating runs). Reads of other products are not counted: a split still pays beside
    a smaller one (Q8's orders beside customer: 514-557 ms split against 572-655 ms not).
    """
    reads = Counter[str]()
    for scan in scans.values():
        reads[scan.product.qualified_name] += 1 if blind else len(scan.occurrences)
    for scan in scans.values():
        scan.reads = max(1, reads[scan.product.qualified_name])


def _occurrence(table_scan: Any, ancestors: list[LogicalPlan], scan: ProductScan) -> Occurrence:
    capabilities = scan.connector.capabilities
    schema = scan.product.schema
    exact = translate(list(table_scan.filters()), schema, capabilities)
    above: list[Any] = []
    chain = list(reversed(ancestors))
    if chain and type(chain[0].to_variant()).__name__ == "Filter":
        above = [chain[0].to_variant().predicate()]
        chain = chain[1:]
    residual = translate(above, schema, capabilities)
    exact_ok = not exact.kept
    limit: int | None = None
    if exact_ok and table_scan.fetch() is not None:
        limit = int(table_scan.fetch())
    elif exact_ok and above and not residual.kept:
        limit = _limit_above(chain)
    columns = tuple(name for _, name in table_scan.projection())
    return Occurrence(
        columns=columns,
        pushed=exact.pushed + residual.pushed,
        kept=exact.kept + residual.kept,
        exact_filters_pushed=exact_ok,
        limit=limit,
    )


def touched(plan: LogicalPlan, default_domain: str) -> tuple[list[str], list[str]]:
    """The products (``domain.product``) and columns (``domain.product.column``) a plan reads."""
    products: dict[str, None] = {}
    columns: dict[str, None] = {}

    def walk(node: LogicalPlan) -> None:
        variant = node.to_variant()
        if type(variant).__name__ == "TableScan":
            domain, product = scan_key(variant, default_domain)
            if domain == "information_schema":
                return
            name = f"{domain}.{product}"
            products[name] = None
            for _, column in variant.projection():
                columns[f"{name}.{column}"] = None
        for child in node.inputs():
            walk(child)

    walk(plan)
    return list(products), list(columns)


def _limit_above(chain: list[LogicalPlan]) -> int | None:
    """The rows a LIMIT directly above (through projections) needs, if there is one."""
    for node in chain:
        variant = node.to_variant()
        kind = type(variant).__name__
        if kind == "Limit":
            fetch, skip = _count(variant.fetch()), _count(variant.skip())
            if fetch is None:
                return None
            return fetch + (skip or 0)
        if kind not in _ROW_PRESERVING:
            return None
    return None


def _count(value: Any) -> int | None:
    """A LIMIT's or OFFSET's number: DataFusion 55 gives each as an expression (a constant, unless
    it is a placeholder); None when there is none or it is not a constant integer."""
    if value is None or isinstance(value, int):
        return value
    scalar = Expr(value).python_value() if Expr(value).variant_name() == "Literal" else None
    number = scalar.as_py() if isinstance(scalar, pa.Scalar) else scalar
    return number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else None


ROW_AT_A_TIME_SCAN_ROWS = 100_000
"""The most rows a table may hold that a whole query reads unfiltered and joins in a source without
hash joins (SQLite). TPC-H Q16 (partsupp's 800,000 rows unfiltered, joined with part and
supplier) took 258 ms whole in SQLite and 151 ms federated, where DataFusion hash-joins on two
cores and the run-time filters narrow the reads."""


_CHAIN = frozenset({"Projection", "Filter", "Aggregate", "Sort", "Limit", "SubqueryAlias"})
"""Plan nodes of one input that :func:`chain_sql` writes from an optimised plan."""


def chain_sql(plan: LogicalPlan, scans: Mapping[tuple[str, str], ProductScan]) -> str | None:
    """The optimised ``plan`` as SQL when it is one chain of projections (one on top), filters, one
    aggregate, sorts and limits over one table scan (its constants folded as DataFusion types them: TPC-H Q6's
    ``BETWEEN 0.06 - 0.01 AND 0.06 + 0.01`` is ``>= 0.05 AND <= 0.07`` of ``DECIMAL(15, 2)``), its
    columns qualified through the derived tables the unparser writes (so their types are known);
    else None. ``scans``: the products the plan reads."""
    if type(plan.to_variant()).__name__ != "Projection":
        return None  # the unparser writes a bare aggregate's outputs in another order (aggregates first)
    node, aggregates = plan, 0
    while True:
        kind = type(node.to_variant()).__name__
        if kind == "TableScan":
            break
        children = node.inputs()
        if kind not in _CHAIN or len(children) != 1:
            return None
        aggregates += kind == "Aggregate"
        node = children[0]
    if aggregates != 1 or _SUBQUERY_EXPRESSION.search(plan.display_indent()) or offset_over_fetch(plan):
        return None
    try:
        tree = parse_one(str(Unparser(Dialect.postgres()).plan_to_sql(plan)), read="postgres")
        return str(qualify_columns(tree, _types(scans), dialect="postgres").sql("postgres"))
    except Exception:  # the unparser cannot write every plan, nor sqlglot resolve every column
        return None


def offset_over_fetch(plan: LogicalPlan) -> bool:
    """Whether ``plan`` has an OFFSET above a node that limits its own rows.

    DataFusion's optimiser gives the sort or scan below ``LIMIT f OFFSET s`` a limit of ``s + f``
    rows, and DataFusion 55's unparser writes that limit beside the offset: ``LIMIT 5 OFFSET 3``
    becomes ``LIMIT 8 OFFSET 3``, three rows too many. Such a plan (a part of a federated query
    run ahead, an optimised chain) is not unparsed: DataFusion runs it. A query's own plan, as
    planned, has no such limits below its OFFSET and goes whole as before.
    """

    def limited(node: LogicalPlan) -> bool:
        variant = node.to_variant()
        kind = type(variant).__name__
        fetch = (
            variant.get_fetch_val() if kind == "Sort" else variant.fetch() if kind in ("TableScan", "Limit") else None
        )
        return fetch is not None or any(limited(child) for child in node.inputs())

    def walk(node: LogicalPlan) -> bool:
        variant = node.to_variant()
        skips = type(variant).__name__ == "Limit" and variant.skip() is not None and _count(variant.skip()) != 0
        if skips and any(limited(child) for child in node.inputs()):
            return True
        return any(walk(child) for child in node.inputs())

    return walk(plan)


_SET_JOIN = re.compile(r"\b(?:Left|Right)(?:Semi|Anti) Join:")


def nulls_join_equal(plan: LogicalPlan) -> bool:
    """Whether ``plan`` joins on keys whose NULLs match each other, which no SQL it unparses to says.

    DataFusion plans ``INTERSECT`` and ``EXCEPT`` as a semi or anti join whose NULL keys are equal
    (a NULL in both inputs is in the intersection), and its optimiser turns a join
    ``ON a IS NOT DISTINCT FROM b`` into such a join; DataFusion 55's unparser writes both with
    ``=``, under which NULLs match nothing. ``SELECT g FROM t INTERSECT SELECT h FROM t`` went whole
    to PostgreSQL, SQLite, DuckDB and MariaDB as ``... WHERE EXISTS (SELECT 1 FROM t WHERE g = h)``
    and lost the NULL row (the two reads of ``t`` became one, too). Such plans are not unparsed:
    DataFusion runs them. A plan as planned keeps its subqueries' joins out of its inputs; there,
    any semi or anti join (only set operations make one before the optimiser runs) counts.
    """
    if null_equal_keys(plan):
        return True
    text = plan.display_indent()
    return "Subquery:" in text and _SET_JOIN.search(text) is not None


def single_source_sql(
    dataframe: DataFrame,
    scans: Mapping[tuple[str, str], ProductScan],
    plan: LogicalPlan | None = None,
    text: str | None = None,
) -> tuple[str, str] | None:
    """The whole query in its one source's dialect, as ``(domain, sql)``; None if it cannot go whole.

    DataFusion's unparser writes the (unoptimised, already resolved) plan as SQL;
    sqlglot reads it, swaps each product for its source table or query, and writes
    the source's dialect. Anything sqlglot cannot render faithfully, or a function it
    does not know, keeps the query federated.

    Text must compare as DataFusion's bytes on this route too. Per dialect: PostgreSQL
    orders text by collation, so every text operand that orders (``ORDER BY``, ``min``/
    ``max``, ``<``, ``BETWEEN``, ...) is written with ``COLLATE "C"``, exact in PostgreSQL
    (:func:`gateway.bytewise.bytewise_ordering`; a query it cannot make exact stays
    federated). SQLite and DuckDB order text by bytes unless a column says otherwise; a
    column whose collation equates distinct strings (SQLite ``NOCASE``/``RTRIM``, a
    nondeterministic PostgreSQL collation) reaches this query already in the binary
    collation through its product's relation, for grouping, ``DISTINCT``, joins and
    equality as well. DuckDB's column collations are not detected.

    ``text``: the query as SQL to start from instead of the unparsed plan (:func:`chain_sql`).
    """
    if not scans:
        return None
    connectors = {id(scan.connector): scan for scan in scans.values()}
    if len(connectors) != 1:
        return None
    first = next(iter(scans.values()))
    connector = first.connector
    if not connector.capabilities.supports_full_query:
        return None
    if not connector.capabilities.hash_joins and plan is not None and _joins_big_unfiltered(plan, scans):
        return None
    output = dataframe.schema()
    if any(pa.types.is_duration(field.type) or pa.types.is_interval(field.type) for field in output):
        return None  # a difference of timestamps: an interval in the sources, which cannot be a duration exactly
    decimal_output = any(pa.types.is_decimal(field.type) for field in output)
    if decimal_output and not connector.capabilities.exact_decimals:
        return None
    planned = dataframe.logical_plan()  # what the unparser writes: as planned, or optimised (a part run ahead)
    if (text is None and offset_over_fetch(planned)) or nulls_join_equal(planned):
        return None
    try:
        text = text or str(Unparser(Dialect.postgres()).plan_to_sql(planned))
        # SQLite has no ``AS d(a, b)``: named_outputs moves such names onto the derived table's outputs.
        tree = hidden_qualifiers(named_outputs(selecting_something(once_each(parse_one(text, read="postgres")))))
    except (SqlglotError, Exception):  # the unparser cannot write every plan
        return None
    if sorted_outside(tree) is None:
        return None
    if any(isinstance(node, exp.Anonymous) for node in tree.walk()) or not joins_in_order(tree):
        return None
    if not qualifiers_seen(tree) or _non_finite(tree):
        return None
    distinct_on = any(node.args.get("on") for node in tree.find_all(exp.Distinct))
    if distinct_on and connector.capabilities.dialect not in _DISTINCT_ON:
        # sqlglot writes DISTINCT ON for SQLite as a ROW_NUMBER() filter and drops the query's
        # ORDER BY: the rows came back in another order than DataFusion's.
        return None
    if connector.refuses(tree):
        return None
    aside = literal_lists.set_aside(tree)  # put back before writing: see gateway/literal_lists.py
    types = _types(scans)
    if connector.capabilities.narrow_integer_literals:
        tree = integer_literals(tree, types)
    averages = any(isinstance(node, exp.Avg) for node in tree.walk())
    if decimal_output and (averages or any(isinstance(node, exp.Div) for node in tree.walk())):
        # Sources carry more fractional digits through AVG and division than DataFusion's
        # decimal types and round the last one differently: DataFusion computes these, unless
        # the source can average decimals exactly as DataFusion does (gateway/averages.py).
        if not connector.capabilities.truncating_division:
            return None
        averaged = exact_averages(tree, _schemas(scans))
        if averaged is None:
            return None
        tree = averaged
    elif averages and connector.capabilities.truncating_division:
        # An average compared, not returned (``x > (SELECT avg(x) ...)``): DataFusion's digits too.
        tree = exact_averages(tree, _schemas(scans), strict=False) or tree
    query = TypedQuery(tree, types)  # typed once, for the three guards below, when one needs the types
    binary = any(is_binary(f.type) for scan in scans.values() for f in scan.product.schema)
    if _uses_incomparable(tree, scans) or not _computes_as_datafusion(query, connector.capabilities, binary):
        return None
    if not date_arithmetic_as_datafusion(query):
        return None
    temporal = any(pa.types.is_temporal(f.type) for scan in scans.values() for f in scan.product.schema)
    if not dates_read_as_datafusion(query, connector.capabilities, temporal):
        return None
    distinct_windows = any(window.this.find(exp.Distinct) for window in tree.find_all(exp.Window))
    if distinct_windows and not connector.capabilities.distinct_windows:
        return None  # count(DISTINCT x) OVER (): PostgreSQL, SQLite and MariaDB fail it
    if not connector.capabilities.binary_string_order:
        ordered = bytewise_ordering(tree, types, connector.capabilities.string_collation)
        if ordered is None:
            return None
        tree = ordered
    # The tree is this function's own (parsed above): typed and swapped in place, not copied
    # twice more (each copy of a file-engine part's tree cost about a millisecond: TPC-H Q9, Q15).
    typed = float_literals(like_escapes(tree), copy=False)
    schemas = [scan.product.schema for scan in scans.values()]
    adapted = None if typed is None else connector.whole_query(typed, schemas, output)
    if adapted is None:
        return None
    replaced = _replace_tables(adapted, scans, connector)
    if replaced is None:
        return None
    if not literal_lists.put_back(replaced, aside):
        return None
    grouped = replaced.find(exp.Group, exp.Distinct) is not None  # asked before rendering rewrites the tree
    try:
        sql = connector.render(replaced, copy=False)  # the tree is this function's own (above)
    except SqlglotError:
        return None
    if not _groups_pay(grouped, sql, scans) or not connector.accepts(sql):
        return None
    if plan is not None and not _SUBQUERY_EXPRESSION.search(plan.display_indent()) and connector.per_row(sql):
        return None  # the source would run a subquery per row, which DataFusion has made a join
    return first.product.domain, sql


_VOLATILE = (exp.Rand, exp.Randn, exp.Randstr, exp.Uuid, exp.Anonymous)
"""Functions that may answer differently for each call: a condition holding one is not merged."""


def once_each(tree: exp.Expr) -> exp.Expr:
    """``tree`` with each condition that a WHERE, HAVING or join's ON repeats among its ANDed
    conditions kept once, in place.

    DataFusion's optimiser hands a Parquet read its filters and keeps them above it too (the
    read may not apply them exactly), and the unparser writes both into one WHERE: a part of
    TPC-H Q19 run ahead in the file engine carried its 485 part keys twice, parsed, typed,
    copied and written twice here (about 15 ms) and tested twice by DuckDB. A condition
    holding a function that may answer differently for each call is kept as often as written.

    >>> print(once_each(parse_one("SELECT a FROM t WHERE (a > 1 AND b IN (2, 3)) AND (a > 1 AND b IN (2, 3))")).sql())
    SELECT a FROM t WHERE a > 1 AND b IN (2, 3)
    """
    for clause in list(tree.find_all(exp.Where, exp.Having, exp.Join)):
        condition = clause.args.get("on") if isinstance(clause, exp.Join) else clause.this
        if not isinstance(condition, (exp.And, exp.Paren)):
            continue
        parts = _conjuncts(condition)
        kept: list[exp.Expr] = []
        for part in parts:
            if part.find(*_VOLATILE) is not None or not any(part == seen for seen in kept):
                kept.append(part)
        if len(kept) < len(parts):
            merged = exp.and_(*kept, copy=False)
            if isinstance(clause, exp.Join):
                clause.set("on", merged)
            else:
                clause.set("this", merged)
    return tree


def _conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    """The conditions ``condition`` ANDs, through parentheses."""
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this)
    if isinstance(condition, exp.And):
        return [*_conjuncts(condition.this), *_conjuncts(condition.expression)]
    return [condition]


def sorted_outside(tree: exp.Expr) -> exp.Expr | None:
    """``tree`` with the ORDER BY of the derived table it only selects from repeated outside, in place;
    None when a key cannot be named outside (the query is then not sent whole).

    DataFusion's unparser writes an ordering by what the query does not output as a derived
    table that sorts, selected from without an ORDER BY. SQL keeps no order through a derived
    table: MariaDB and roapi (DataFusion) returned ``SELECT id FROM t ORDER BY i > 0, id`` in
    ``id`` order alone::

        SELECT "derived_sort"."id" FROM (SELECT "t"."id", "t"."i" FROM t AS "t"
          ORDER BY ("t"."i" > 0) ASC, "t"."id" ASC) AS "derived_sort"
        -- gains
          ORDER BY ("derived_sort"."i" > 0) ASC, "derived_sort"."id" ASC

    >>> sql = "SELECT d.id FROM (SELECT t.id, t.i FROM t ORDER BY t.i > 0, t.id LIMIT 2) AS d"
    >>> print(sorted_outside(parse_one(sql)).sql())
    SELECT d.id FROM (SELECT t.id, t.i FROM t ORDER BY t.i > 0, t.id LIMIT 2) AS d ORDER BY "d"."i" > 0, "d"."id"
    """
    if not isinstance(tree, exp.Select) or tree.args.get("order"):
        return tree
    inner = tree.args.get("from_")
    derived = inner.this if inner is not None else None
    if not isinstance(derived, exp.Subquery) or not isinstance(derived.this, exp.Select):
        return tree
    order = derived.this.args.get("order")
    if order is None:
        return tree
    if tree.args.get("joins") or any(tree.args.get(k) for k in ("where", "group", "having", "distinct")):
        return tree  # not the unparser's bare selection: the sorted table is a subquery whose order SQL drops
    if any(output.find(exp.AggFunc, exp.Window) is not None for output in tree.expressions):
        return tree  # one row, or an order of its own (``SELECT avg(x) FROM (... ORDER BY x LIMIT 10) s``)
    # (a LIMIT and OFFSET outside, as the unparser writes a top N of the plan as planned, apply after the ORDER BY)
    outputs: dict[exp.Expr, str] = {}
    for output in derived.this.expressions:
        outputs.setdefault(output.unalias(), output.alias_or_name)
    alias = derived.alias_or_name

    def outside(node: exp.Expr) -> exp.Expr:
        name = outputs.get(node)
        if name is not None:
            return exp.column(name, table=alias, quoted=True)
        if isinstance(node, exp.Column):
            raise _Unnamed
        return node

    try:
        keys = [key.transform(outside) for key in order.expressions]
    except _Unnamed:
        return None
    tree.set("order", exp.Order(expressions=keys))
    return tree


class _Unnamed(Exception):
    """A sort key reads a column the derived table does not output."""


def selecting_something(tree: exp.Expr) -> exp.Expr:
    """``tree`` with a constant output in each SELECT that lists none, in place.

    The optimised plan of a count over a filtered read needs no column of it, and DataFusion's
    unparser writes that read as a derived table selecting nothing, which PostgreSQL takes and
    DuckDB and SQLite refuse ("SELECT clause without selection list")::

        SELECT COUNT(1) AS "n" FROM (SELECT FROM t AS "t" WHERE "t"."q" = 3) AS "derived_projection"
        -- becomes
        SELECT COUNT(1) AS "n" FROM (SELECT 1 FROM t AS "t" WHERE "t"."q" = 3) AS "derived_projection"

    >>> selecting_something(parse_one("SELECT COUNT(1) FROM (SELECT FROM t WHERE q = 3) AS d")).sql()
    'SELECT COUNT(1) FROM (SELECT 1 FROM t WHERE q = 3) AS d'
    """
    for select in tree.find_all(exp.Select):
        if not select.expressions:
            select.select(exp.Literal.number(1), copy=False)
    return tree


def hidden_qualifiers(tree: exp.Expr) -> exp.Expr:
    """``tree`` with each column qualified by a table its query cannot see (nor any query around it)
    qualified by the one derived table of its query that outputs a column of that name, in place.

    DataFusion's unparser writes a projection under a join as a derived table, and the join's
    condition still names the table inside it; every engine refuses that::

        ... FROM "keys" JOIN (SELECT "lineitem"."l_partkey" FROM ... AS "lineitem") AS "derived_projection"
            ON "keys"."k" = "lineitem"."l_partkey"     -- becomes ... = "derived_projection"."l_partkey"

    A column that no derived table, or more than one, outputs stays as it was (and the query is
    refused: :func:`qualifiers_seen`).
    """
    for scope in traverse_scope(tree):
        visible = _visible(scope)
        for column in scope.columns:
            if not column.table or column.table in visible:
                continue
            outputs = [
                name
                for name, source in scope.sources.items()
                if isinstance(source, Scope)
                and isinstance(source.expression, exp.Query)
                and column.name in source.expression.named_selects
            ]
            if len(outputs) == 1:
                column.set("table", exp.to_identifier(outputs[0], quoted=True))
    return tree


_DISTINCT_ON = frozenset({"postgres", "duckdb"})
"""Dialects with ``SELECT DISTINCT ON (...)`` of their own."""


def qualifiers_seen(tree: exp.Expr) -> bool:
    """Whether every column of ``tree`` names a table its query (or a query around it) can see.

    DataFusion's unparser writes an optimised plan's aliased subquery over a filtered read as one
    query that keeps the table's name in the filter: ``FROM "pq"."v" AS "r" WHERE "v"."m" > 0``.
    Sent to the file engine whole, ``SELECT count(*), sum(m) FROM (SELECT ... FROM pq.v WHERE m > 0) r``
    failed ("Referenced table v not found"); such SQL is not sent (the query is written from its
    plan as planned, or stays federated).

    >>> qualifiers_seen(parse_one('SELECT SUM("r"."m") FROM "pq"."v" AS "r" WHERE "v"."m" > 0'))
    False
    """
    return all(
        not column.table or column.table in visible
        for scope in traverse_scope(tree)
        for visible in (_visible(scope),)
        for column in scope.columns
    )


def _non_finite(tree: exp.Expr) -> bool:
    """Whether ``tree`` holds an infinite or NaN float constant, which DataFusion's unparser writes
    as a bare word (``x < inf``, ``NaN``): a source reads it as a column (MySQL failed a prepared
    ``x < ?`` given infinity, "Unknown column 'inf'"), so such SQL is not sent.

    >>> _non_finite(parse_one('SELECT "t"."x" FROM "t" WHERE ("t"."x" < inf)'))
    True
    """
    return any(
        not column.table
        and isinstance(column.this, exp.Identifier)
        and not column.this.quoted
        and column.name.lower() in ("inf", "nan")
        for column in tree.find_all(exp.Column)
    )


def _visible(scope: Scope) -> set[str]:
    """The names of the tables ``scope``'s query and the queries around it can see."""
    visible: set[str] = set()
    around: Scope | None = scope
    while around is not None:
        visible.update(around.sources)
        around = around.parent
    return visible


def joins_in_order(tree: exp.Expr) -> bool:
    """Whether each join condition of every query in ``tree`` names only tables of that query joined
    at or before it: what every engine requires.

    DataFusion's unparser writes a parenthesized join on the right, ``a JOIN (b JOIN c ON b.x = c.x)
    ON a.y = b.y``, as a chain whose first condition names ``b`` before it is joined (``a JOIN c ON
    b.x = c.x JOIN b ON ...``). PostgreSQL, DuckDB and MariaDB refuse it; SQLite takes it and
    answers otherwise (a ``LEFT JOIN`` of five rows counted two): such a query stays federated.
    A table of an outer query (a correlated condition) may be named anywhere.

    >>> joins_in_order(parse_one("SELECT * FROM a JOIN c ON b.x = c.x JOIN b ON a.y = b.y"))
    False
    >>> joins_in_order(parse_one("SELECT * FROM a JOIN b ON a.y = b.y JOIN c ON b.x = c.x"))
    True
    """
    for select in tree.find_all(exp.Select):
        items = [select.args.get("from_"), *(select.args.get("joins") or [])]
        units = [_joined_names(item.this) if item is not None else set() for item in items]
        ours = set().union(*units)
        seen: set[str] = set()
        for item, names in zip(items, units, strict=True):
            seen |= names
            condition = item.args.get("on") if isinstance(item, exp.Join) else None
            if condition is None:
                continue
            for column in condition.find_all(exp.Column):
                if column.table in ours and column.table not in seen and column.find_ancestor(exp.Select) is select:
                    return False
    return True


def _joined_names(relation: exp.Expr) -> set[str]:
    """The names a FROM or JOIN item makes visible: its alias, or its tables' in a parenthesized join."""
    names = {relation.alias_or_name}
    for join in relation.args.get("joins") or []:
        names |= _joined_names(join.this)
    if isinstance(relation, exp.Subquery) and isinstance(relation.this, exp.Table) and not relation.alias:
        names |= _joined_names(relation.this)  # ``(b JOIN c ON ...)``: b, and the tables joined to it
    return names - {""}


def _groups_pay(grouped: bool, sql: str, scans: Mapping[tuple[str, str], ProductScan]) -> bool:
    """Whether the groupings of the whole query ``sql`` (only one with a ``GROUP BY`` or a
    ``DISTINCT``, ``grouped``, is asked about) are few enough groups for its source to make, by the measure sub-plans
    are sent by (``same_source.few_groups``): PostgreSQL made TPC-H Q13's 150,000 groups of customers
    over 1.5 million orders in 1,150 ms, where the gateway fetched the orders and grouped them in 984 ms.
    Sources without an estimate, or whose groupings are fast (DuckDB), or that are slow at joins anyway
    (SQLite, see :func:`_joins_big_unfiltered`), get the query whole as before."""
    connector = next(iter(scans.values())).connector
    capabilities = connector.capabilities
    if capabilities.fast_groupings or not capabilities.hash_joins or not grouped:
        return True
    sizes = [scan.connector.estimate_rows(scan.product.source) for scan in scans.values()]
    groups = connector.estimate_groups(SourceObject(sql=sql))
    known = [size for size in sizes if size is not None]
    if groups is None or len(known) != len(sizes):
        return True
    return few_groups(groups, max(known))


def _joins_big_unfiltered(plan: LogicalPlan, scans: Mapping[tuple[str, str], ProductScan]) -> bool:
    """Whether the optimised ``plan`` joins and reads a table of more than
    :data:`ROW_AT_A_TIME_SCAN_ROWS` rows without a filter (one a source joining a row at a time
    scans whole, where federated the run-time filters may narrow it)."""
    joins = False
    unfiltered: list[ProductScan] = []

    def walk(node: LogicalPlan, parent: str | None) -> None:
        nonlocal joins
        variant = node.to_variant()
        kind = type(variant).__name__
        joins = joins or kind == "Join"
        if kind == "TableScan":
            _, schema, table = variant.fqn()
            scan = _scan_named(scans, None if schema is None else str(schema), str(table))
            if scan is not None and not list(variant.filters()) and parent != "Filter":
                unfiltered.append(scan)
            return
        for child in node.inputs():
            walk(child, kind)

    walk(plan, None)
    if not joins:
        return False
    estimates = (scan.connector.estimate_rows(scan.product.source) for scan in unfiltered)
    return any(rows is not None and rows > ROW_AT_A_TIME_SCAN_ROWS for rows in estimates)


def like_escapes(tree: exp.Expr) -> exp.Expr:
    """``tree`` (changed in place) with DataFusion's default escape character, a backslash, written
    out for each LIKE and ILIKE that names no other and whose pattern holds one, or may (a parameter,
    a column): SQLite and DuckDB have no default escape character, and took ``s LIKE 'a\\_b'`` (or
    ``s LIKE ?`` given ``a\\_b``) for a backslash followed by any character (no row of ``a_b``),
    where DataFusion and PostgreSQL match ``a_b``."""
    for like in list(tree.find_all(exp.Like, exp.ILike)):
        pattern = like.expression
        plain = isinstance(pattern, exp.Literal) and "\\" not in pattern.this
        if isinstance(like.parent, exp.Escape) or plain:
            continue
        like.replace(exp.Escape(this=like.copy(), expression=exp.Literal.string("\\")))
    return tree


def float_literals(tree: exp.Expr, copy: bool = True) -> exp.Expr | None:
    """Constants with a decimal point or an exponent, in arithmetic, typed as DataFusion types them:
    ``DOUBLE``; None when such arithmetic is compared (the query then stays federated).
    ``copy=False`` types ``tree`` itself (a tree of the caller's own, not used otherwise).

    Sources read ``1.1`` as an exact decimal: ``i * 1.1`` would be 3.3 there and
    3.3000000000000003 in DataFusion. A compared constant is left exact: DataFusion compares a
    decimal with a float as decimals, others as floats, and either way an exact constant selects
    the same rows. A compared expression with such a constant in it (``m >= 0.1 + 0.2``) would
    need the other side's type, which only DataFusion's analysis knows.
    """
    compared = False

    def typed(node: exp.Expr) -> exp.Expr:
        nonlocal compared
        if not isinstance(node, exp.Literal) or node.is_string or node.is_int:
            return node
        top: exp.Expr = node
        while isinstance(top.parent, (exp.Paren, exp.Neg)):
            top = top.parent
        if not isinstance(top.parent, _ARITHMETIC):
            return node  # a constant on its own (``-0.5`` too)
        while isinstance(top.parent, (*_ARITHMETIC, exp.Paren)):
            top = top.parent
        compared = compared or isinstance(top.parent, _COMPARISONS)
        return exp.cast(node.copy(), exp.DType.DOUBLE)

    typed_tree = tree.transform(typed, copy=copy)
    return None if compared else typed_tree


_INTEGER_KEEPING = (exp.AggFunc, exp.Case, exp.If, exp.Coalesce, exp.Nullif, exp.Abs, exp.Connector, exp.Cast)
"""Functions an integer constant in arithmetic may sit in and still be written as a BIGINT: the
others may take only a 32-bit integer in PostgreSQL (``left(text, int)`` has no BIGINT form)."""


def integer_literals(tree: exp.Expr, schema: MappingSchema) -> exp.Expr:
    """Integer constants in arithmetic with integers typed as DataFusion types them: ``BIGINT``.

    PostgreSQL and DuckDB read ``2`` as a 32-bit integer, so ``i * 2`` of a 32-bit column fails
    there past 2^31 where DataFusion computes in 64 bits (it widens the column to the constant's
    Int64; a product's ``int4`` column may be an Int64 to DataFusion already, so any integer column
    counts). A constant beside anything else is left as it is (``d + 1`` of a date has no BIGINT
    form in PostgreSQL), as is one inside a function's argument other than aggregates and
    conditionals (:data:`_INTEGER_KEEPING`). ``schema`` types the tables ``tree`` reads.

    >>> types = MappingSchema({"t": {"i": "INT", "d": "DATE", "s": "TEXT"}}, dialect="postgres")
    >>> sql = "SELECT t.i * 2, t.d + 1, t.i = 3, left(t.s, t.i + 1) FROM t"
    >>> print(integer_literals(parse_one(sql), types).sql())
    SELECT t.i * CAST(2 AS BIGINT), t.d + 1, t.i = 3, LEFT(t.s, t.i + 1) FROM t
    """

    def operand(node: exp.Expr) -> tuple[exp.Expr, exp.Expr] | None:
        """The operation an integer constant of 64 bits is an operand of, and the other operand."""
        if not isinstance(node, exp.Literal) or not node.is_int or abs(int(node.this)) >= 2**63:
            return None
        top: exp.Expr = node
        while isinstance(top.parent, (exp.Paren, exp.Neg)):
            top = top.parent
        arithmetic = top.parent
        if not isinstance(arithmetic, _ARITHMETIC) or isinstance(arithmetic, exp.Neg):
            return None
        return arithmetic, arithmetic.expression if top is arithmetic.this else arithmetic.this

    if not any(operand(node) is not None for node in tree.find_all(exp.Literal)):
        return tree  # nothing to type: no annotation (a primary-key lookup has no arithmetic)
    try:
        annotated = annotate_types(tree.copy(), schema=schema, dialect="postgres")
    except SqlglotError:
        return tree

    def typed(node: exp.Expr) -> exp.Expr:
        found = operand(node)
        if found is None:
            return node
        arithmetic, other = found
        if other.type is None or not other.type.is_type(*exp.DataType.INTEGER_TYPES):
            return node
        outer = arithmetic.parent
        while outer is not None and not isinstance(outer, exp.Query):
            if isinstance(outer, exp.Func) and not isinstance(outer, _INTEGER_KEEPING):
                return node
            outer = outer.parent
        return exp.cast(node.copy(), exp.DType.BIGINT)

    return annotated.transform(typed, copy=False)  # a copy already


def _schemas(scans: Mapping[tuple[str, str], ProductScan]) -> dict[str, dict[str, pa.Schema]]:
    """The products' schemas, by domain and product (for :func:`gateway.averages.exact_averages`)."""
    tables: dict[str, dict[str, pa.Schema]] = {}
    for (domain, name), scan in scans.items():
        tables.setdefault(domain, {})[name] = scan.product.schema
    return tables


def _types(scans: Mapping[tuple[str, str], ProductScan]) -> MappingSchema:
    """The products' columns as sqlglot types, by ``domain.product`` (for :func:`bytewise_ordering`)."""
    tables: dict[str, object] = {
        domain: {name: {field.name: sql_type(field.type) for field in schema} for name, schema in products.items()}
        for domain, products in _schemas(scans).items()
    }
    return MappingSchema(tables, dialect="postgres", normalize=False)


def _computes_as_datafusion(query: TypedQuery, capabilities: SqlCapabilities, binary: bool = False) -> bool:
    """Whether the source computes every ``/``, ``%``, cast to an integer and cast to text as DataFusion does.

    Each ``/`` and ``%`` must divide two integers, in a source that divides them so
    (``SqlCapabilities.integer_division`` and ``integer_remainder``): DataFusion divides reals by
    zero into infinities, where PostgreSQL fails; SQLite answers a zero divisor with NULL and takes
    a real remainder of integer parts; DuckDB divides integers into a DOUBLE. Each cast to an
    integer must cast an integer: DataFusion truncates a real or a decimal, PostgreSQL and DuckDB
    round it (``CAST(-7.5 AS BIGINT)`` is -7 against -8), and SQLite saturates one out of range.
    A real, a decimal or a timestamp is never cast to text: PostgreSQL writes the real 0.0 as ``0``,
    and a timestamp with a space where DataFusion writes ``T``. Nor is a sum divided: DataFusion's
    sum of integers is an integer, PostgreSQL's a NUMERIC (``sum(i) / count(*)`` came back as
    ``7.0000000000000000``, and 3.5 where DataFusion answers 3). Where casts are lenient
    (``SqlCapabilities.strict_casts`` false: SQLite, MySQL), only a number is cast to a real or a
    decimal: they read text that is not a number as 0 (``CAST('inf' AS DOUBLE)`` too), where
    DataFusion fails it or reads an infinity, and only a constant to a decimal: MySQL clamps a value
    too large for it, where DataFusion fails. No function but ``count``, ``md5`` and ``encode``, nor a
    cast but to bytes, takes bytes (``binary``: whether the products have a binary column):
    DataFusion reads them as UTF-8 text (``length(b)`` of the bytes of ``é`` is 1, 2 in
    PostgreSQL; a cast to text is ``é``, ``\\xc3a9`` in PostgreSQL). A ``||`` prints its operands as a cast to text does
    (``name || x`` of the real 0.0 was ``ß0`` in PostgreSQL and MySQL, ``ß0.0`` in DataFusion).
    """
    tree = query.tree
    divides, remainders = tree.find(exp.Div) is not None, tree.find(exp.Mod) is not None
    casts = [cast.to for cast in tree.find_all(exp.Cast)]
    narrows = any(to.is_type(*exp.DataType.INTEGER_TYPES) for to in casts)
    joined = tree.find(exp.DPipe) is not None
    prints = joined or any(to.is_type(*exp.DataType.TEXT_TYPES) for to in casts)
    reals = not capabilities.strict_casts and any(to.is_type(*exp.DataType.REAL_TYPES) for to in casts)
    if not divides and not remainders and not narrows and not prints and not reals and not binary:
        return True
    if reals and any(_decimal(cast.to) and not _number(cast.this) for cast in tree.find_all(exp.Cast)):
        return False  # MySQL clamps a value too large for the decimal (1e10 as DECIMAL(10,2): 99999999.99)
    if (divides and not capabilities.integer_division) or (remainders and not capabilities.integer_remainder):
        return False
    annotated = query.typed()
    if annotated is None:
        return False
    if binary and any(_reads_bytes_as_text(node) for node in annotated.find_all(exp.Func)):
        return False
    operands = [side for node in annotated.find_all(exp.Div, exp.Mod) for side in (node.this, node.expression)]
    if any(side.find(exp.Sum) is not None for side in operands):
        return False  # a sum of integers is a NUMERIC in PostgreSQL, a DECIMAL in MySQL: sum(i) / count(*) had digits
    operands += [c.this for c in annotated.find_all(exp.Cast) if c.to.is_type(*exp.DataType.INTEGER_TYPES)]
    integers = (*exp.DataType.INTEGER_TYPES, exp.DType.NULL)  # NULL: CAST(NULL AS BIGINT)
    printed = [c.this for c in annotated.find_all(exp.Cast) if c.to.is_type(*exp.DataType.TEXT_TYPES)]
    printed += [side for node in annotated.find_all(exp.DPipe) for side in (node.this, node.expression)]
    numbers = (*exp.DataType.NUMERIC_TYPES, exp.DType.NULL)
    made_real = [c.this for c in annotated.find_all(exp.Cast) if reals and c.to.is_type(*exp.DataType.REAL_TYPES)]
    return (
        all(side.type is not None and side.type.is_type(*integers) for side in operands)
        and not any(
            side.type is None or side.type.is_type(*exp.DataType.REAL_TYPES, *_PRINTED_OTHERWISE) for side in printed
        )
        and all(side.type is not None and side.type.is_type(*numbers) for side in made_real)
    )


_BYTES_KEPT = (exp.Count, exp.MD5, exp.Encode)
"""Functions that take bytes as the sources do: DataFusion's ``md5`` and ``encode`` hash and write
the bytes themselves, as PostgreSQL's and DuckDB's."""


def _reads_bytes_as_text(node: exp.Func) -> bool:
    """Whether ``node`` takes a binary argument that DataFusion would read as text (see above)."""
    if isinstance(node, _BYTES_KEPT) or (isinstance(node, exp.Cast) and node.to.is_type(*exp.DataType.BINARY_TYPES)):
        return False
    return any(
        isinstance(arg, exp.Expr) and arg.type is not None and arg.type.is_type(*exp.DataType.BINARY_TYPES)
        for arg in node.iter_expressions()
    )


def _decimal(kind: exp.DataType) -> bool:
    return kind.is_type(*exp.DataType.REAL_TYPES) and not kind.is_type(*exp.DataType.FLOAT_TYPES)


def _number(node: exp.Expr) -> bool:
    """Whether ``node`` is a numeric constant (``2.5``, ``-7``)."""
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string


_PRINTED_OTHERWISE = (
    exp.DType.UNKNOWN,
    exp.DType.BOOLEAN,  # SQLite writes 1 and 0, DataFusion true and false
    exp.DType.TIMESTAMP,
    exp.DType.TIMESTAMPTZ,
    exp.DType.TIMESTAMPNTZ,
    exp.DType.TIMESTAMPLTZ,
    exp.DType.DATETIME,
)
"""Types a source writes as text otherwise than DataFusion, besides reals: a timestamp's date and
time are parted by ``T`` in DataFusion and by a space in PostgreSQL and DuckDB; SQLite writes a
boolean as 1 or 0."""


def _uses_incomparable(tree: exp.Expr, scans: Mapping[tuple[str, str], ProductScan]) -> bool:
    """Whether the query reads a column the source compares differently (intervals, lists):
    the source could sort, group or compare it its own way, so DataFusion runs the query."""
    named = {column.name for column in tree.find_all(exp.Column)}
    star = any(True for _ in tree.find_all(exp.Star))
    return any(
        not comparable(field.type) and (star or field.name in named)
        for scan in scans.values()
        for field in scan.product.schema
    )


def _scan_named(scans: Mapping[tuple[str, str], ProductScan], schema: str | None, name: str) -> ProductScan | None:
    """The scan of table ``schema.name``; of an unqualified name (a session's default domain) only
    when one product is called that (only an unambiguous name is safe)."""
    if schema:
        return scans.get((schema, name))
    found = [scan for (_, product), scan in scans.items() if product == name]
    return found[0] if len(found) == 1 else None


def _replace_tables(
    tree: exp.Expr, scans: Mapping[tuple[str, str], ProductScan], connector: SqlConnector
) -> exp.Expr | None:
    """``tree`` (changed in place) with each product swapped for its source's relation; None when one is unknown."""
    missing = False
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}

    def swap(node: exp.Expr) -> exp.Expr:
        nonlocal missing
        if isinstance(node, exp.Table) and node.name:
            if not node.args.get("db") and node.name in ctes:
                return node
            scan = _scan_named(scans, node.db or None, node.name)
            if scan is None:
                missing = True
                return node
            relation = connector.relation(scan.product.source, node.alias_or_name)
            # A parenthesized join, ``(b JOIN c ON ...)``, is table b holding the join of c: it moves
            # over to b's relation with its own tables swapped too (the walk does not go below a
            # node it replaced, and c was lost with b: the query no longer joined c at all).
            for nested in ("joins", "laterals", "pivots"):
                if node.args.get(nested):
                    relation.set(nested, [item.transform(swap, copy=False) for item in node.args[nested]])
            return relation
        if isinstance(node, exp.Parameter):  # a placeholder the plan kept: bound at the source
            return bind_placeholder(node, connector.capabilities.dialect)
        if isinstance(node, exp.Column) and node.args.get("db"):
            # "mesh"."sales"."orders"."id" -> "orders"."id": the table now goes by its alias.
            return exp.column(node.name, table=node.table, quoted=True)
        return node

    replaced = tree.transform(swap, copy=False)
    return None if missing else replaced
