"""Plan once: what planning a statement taught, kept for the next execution of it.

Planning a point lookup (a DataFusion context, the governed views, parsing, optimising,
unparsing, rewriting for the source) costs several milliseconds; running it at its source
a fraction of one. The engine keeps, per statement, a :class:`CachedPlan`: the result and
parameter schemas (so a plain statement is planned once per call, not by prepare and again
by execute) and, for a query that goes whole to one SQL source, its :class:`Route`: the
source's SQL with the parameters left as bind parameters (``$1`` for PostgreSQL and
DuckDB, ``?1`` for SQLite). An execution with new values then goes straight to the
connector, values bound with the types DataFusion inferred.

Entries live in a :class:`PlanCache` (an LRU bounded by count; statements longer than
:data:`MAX_TEXT` are not kept) under a :class:`PlanKey`:
the statement text, the caller's *access fingerprint* (:func:`access_fingerprint`:
everything the policies make of this caller for the products the text names) and the
engine's plan version (bumped by reloads, refreshes, a domain coming back online, drift
found at a load, and any change of policies). Two callers share an entry only when the
policies give them the same columns, masks and row filters of every product read.

A statement with literals in its WHERE clause (``WHERE id = 42``, what most tools send) is
also looked up as its *template* (:func:`parameterize`: ``WHERE id = $1``, value 42), so
lookups of different keys share one plan. A template is trusted only after it was planned
next to a literal statement of its shape and agreed with it (result schema, a route, types
that bind exactly); otherwise the cache remembers that it does not help.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from cachetools import LRUCache
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from gateway.api import CallerContext
from gateway.catalog import Product
from gateway.policy import Access
from gateway.tokens import tokens as sql_tokens

DEFAULT_SIZE = 1024
"""Plans kept (statements and templates, per access fingerprint)."""
MAX_TEXT = 64 * 1024
"""The longest statement (characters) whose plan is kept. Longer ones are planned at every call: they are
not the repeated lookups the cache is for, and kept they let any user hold memory with distinct texts
(300 statements of 900,000 characters held 273 MiB; 1,024 would hold about a GiB)."""


@dataclass(frozen=True)
class Route:
    """A query that runs whole in one SQL source: the source's SQL and what to tell the audit log."""

    domain: str
    product: Product  # the first product it reads: whose connector runs it
    sql: str  # in the source's dialect; parameters as bind parameters
    parameter_types: tuple[pa.DataType, ...]  # what each ``$n`` is bound as
    products: tuple[str, ...]  # domain.product read (audit)
    columns: tuple[str, ...]  # domain.product.column read (audit)
    policies: tuple[str, ...]  # policies applied (audit)


@dataclass(frozen=True)
class CachedPlan:
    """What planning a statement (or a template) taught.

    ``route`` is None when the query is federated (DataFusion plans each execution) or its
    parameters cannot be bound at the source as they are. ``template`` is False for a
    template that turned out not to stand for its statements (then only ``schema`` of
    the literal statements is meaningful, and nothing of this entry is used).
    """

    schema: pa.Schema
    parameter_schema: pa.Schema
    route: Route | None = None
    template: bool = True


@dataclass(frozen=True)
class PlanKey:
    """Statement text, access fingerprint, plan version; ``template``: the entry of a template made by
    :func:`parameterize` (apart from a client's statement of the same text: it binds no values)."""

    sql: str
    access: Hashable
    version: Hashable
    template: bool = False


@dataclass
class PlanCache:
    """A thread-safe LRU of :class:`CachedPlan` by :class:`PlanKey`, with counters for tests and metrics.

    ``maxsize=0`` keeps nothing: every statement is planned, as before the cache existed.
    """

    maxsize: int = DEFAULT_SIZE
    hits: int = 0
    misses: int = 0
    plannings: int = 0  # DataFusion plannings of a statement (each builds a SessionContext)
    routed: int = 0  # executions that went straight to their source on a cached route
    _entries: LRUCache[PlanKey, CachedPlan] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._entries = LRUCache(maxsize=max(self.maxsize, 1))

    def get(self, key: PlanKey) -> CachedPlan | None:
        if not self.maxsize:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def peek(self, key: PlanKey) -> CachedPlan | None:
        """The entry of ``key`` without counting a hit or a miss."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: PlanKey, plan: CachedPlan) -> None:
        if not self.maxsize:
            return
        with self._lock:
            self._entries[key] = plan

    def forget_route(self, key: PlanKey) -> None:
        """Keep ``key``'s schemas but stop routing it (its source refused the bound query)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.route is not None:
                self._entries[key] = CachedPlan(found.schema, found.parameter_schema, None, found.template)

    def counted_planning(self) -> None:
        with self._lock:
            self.plannings += 1

    def counted_execution(self) -> None:
        with self._lock:
            self.routed += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# -- the access fingerprint ---------------------------------------------------------------


def access_fingerprint(
    caller: CallerContext,
    referenced: set[tuple[str, str]] | None,
    products: Mapping[tuple[str, str], Product | None],
    access: Any,
) -> Hashable | None:
    """What the policies make of ``caller`` for the ``referenced`` products, as a hashable value.

    ``access(product) -> Access | None`` is the engine's policy decision. The fingerprint
    holds the session defaults (name resolution) and, per product, its columns, masks, row
    filter (the caller's attributes bound into it) and the policies applied (the audit log
    names them), or that nothing is granted. None (do not cache) when the products read
    are not known from the text.
    """
    if referenced is None:
        return None
    parts: list[Hashable] = [caller.default_catalog, caller.default_schema]
    for key in sorted(referenced):
        product = products.get(key)
        if product is None:
            parts.append((key, "unknown"))
            continue
        granted: Access | None = access(product)
        if granted is None:
            parts.append((key, None))
            continue
        parts.append((key, granted.columns, tuple(sorted(granted.masks.items())), granted.row_filter, granted.applied))
    return tuple(parts)


# -- literals as parameters -------------------------------------------------------------

_COMPARISONS = {TokenType.EQ, TokenType.NEQ, TokenType.LT, TokenType.LTE, TokenType.GT, TokenType.GTE}
_NAMES = {TokenType.VAR, TokenType.IDENTIFIER}
_BEFORE_COLUMN = {TokenType.WHERE, TokenType.AND, TokenType.OR, TokenType.L_PAREN, TokenType.NOT}
_AFTER_LITERAL = {
    TokenType.AND,
    TokenType.OR,
    TokenType.R_PAREN,
    TokenType.SEMICOLON,
    TokenType.ORDER_BY,
    TokenType.GROUP_BY,
    TokenType.LIMIT,
}
_CLAUSES = {
    TokenType.SELECT: "select",
    TokenType.WHERE: "where",
    TokenType.FROM: "other",
    TokenType.JOIN: "other",
    TokenType.ON: "other",
    TokenType.GROUP_BY: "other",
    TokenType.HAVING: "other",
    TokenType.ORDER_BY: "other",
    TokenType.LIMIT: "other",
    TokenType.UNION: "other",
}
_MAX_INT = 2**63


@dataclass(frozen=True)
class Literal:
    """A literal taken out of a statement: an integer or a text."""

    value: int | str

    def array(self, kind: pa.DataType) -> pa.Array | None:
        """The value as one ``kind`` element if that holds it exactly as DataFusion would compare it; else None."""
        if isinstance(self.value, int):
            if not pa.types.is_integer(kind):
                return None
            try:
                return pa.array([self.value], kind)
            except (pa.ArrowException, OverflowError):
                return None
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pa.array([self.value], kind)
        return None


def parameterize(sql: str) -> tuple[str, tuple[Literal, ...]] | None:
    """``sql`` with the literals it compares columns to in WHERE clauses as ``$1, $2 ...``, and the literals.

    Only ``column <op> literal`` directly under WHERE (joined by AND/OR, in parentheses),
    with ``op`` one of ``= <> != < <= > >=``, an unsigned integer or a plain ``'text'``:
    literals that name nothing (projections, GROUP BY, ORDER BY and LIMIT keep theirs)
    and whose type DataFusion takes from the column. None when there are none, or the
    statement already has parameters.

    >>> parameterize("SELECT * FROM sales.events WHERE id = 42 AND kind <> 'it''s' LIMIT 5")
    ('SELECT * FROM sales.events WHERE id = $1 AND kind <> $2 LIMIT 5', (Literal(value=42), Literal(value="it's")))
    >>> parameterize("SELECT a = 1 FROM t WHERE b > 2 + 3") is None
    True
    """
    if "=" not in sql and "<" not in sql and ">" not in sql:
        return None
    try:
        tokens = sql_tokens(sql)
    except SqlglotError:
        return None
    if not tokens or tokens[0].token_type not in (TokenType.SELECT, TokenType.WITH):
        return None
    found: list[tuple[int, int, Literal]] = []
    clause = "other"
    outer: list[str] = []
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind in (TokenType.PARAMETER, TokenType.PLACEHOLDER) or token.text.startswith("$"):
            return None
        if kind in _CLAUSES:
            clause = _CLAUSES[kind]
        elif kind == TokenType.L_PAREN:
            outer.append(clause)
        elif kind == TokenType.R_PAREN:
            clause = outer.pop() if outer else "other"
        elif kind in (TokenType.NUMBER, TokenType.STRING) and clause == "where":
            literal = _literal(sql, tokens, i)
            if literal is not None:
                found.append((token.start, token.end, literal))
    if not found:
        return None
    text = sql
    for number, (start, end, _) in reversed(list(enumerate(found, start=1))):
        text = f"{text[:start]}${number}{text[end + 1 :]}"
    return text, tuple(literal for _, _, literal in found)


def _literal(sql: str, tokens: Sequence[Any], i: int) -> Literal | None:
    """The literal at ``tokens[i]`` if it is the right side of ``column <op> literal``, alone."""
    token = tokens[i]
    following = tokens[i + 1].token_type if i + 1 < len(tokens) else None
    if following is not None and following not in _AFTER_LITERAL:
        return None
    if i < 2 or tokens[i - 1].token_type not in _COMPARISONS or tokens[i - 2].token_type not in _NAMES:
        return None
    j = i - 2  # the column's first part: a.b.c
    while j >= 2 and tokens[j - 1].token_type == TokenType.DOT and tokens[j - 2].token_type in _NAMES:
        j -= 2
    if j == 0 or tokens[j - 1].token_type not in _BEFORE_COLUMN:
        return None
    raw = sql[token.start : token.end + 1]
    if token.token_type == TokenType.NUMBER:
        if not raw.isdigit() or int(raw) >= _MAX_INT:
            return None
        return Literal(int(raw))
    if not (raw.startswith("'") and raw.endswith("'")) or "\\" in raw:
        return None
    return Literal(token.text)


# -- binding ------------------------------------------------------------------------------

_ANYWHERE = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float64(), pa.string(), pa.large_string())
BINDABLE: dict[str, tuple[pa.DataType, ...]] = {
    "postgres": (*_ANYWHERE, pa.bool_(), pa.date32()),
    "duckdb": (*_ANYWHERE, pa.bool_(), pa.date32()),
    "sqlite": _ANYWHERE,
}
"""Arrow types each source binds with the same meaning its SQL gives the literal DataFusion would
write (checked by tests/test_plan_cache.py); other parameters keep the query planned per execution."""


def bindable(types: Sequence[pa.DataType], dialect: str) -> bool:
    return all(kind in BINDABLE.get(dialect, ()) for kind in types)


def bind_placeholder(node: exp.Parameter, dialect: str) -> exp.Expr:
    """``$n`` (how DataFusion's unparser writes a placeholder) as ``dialect`` binds it: SQLite ``?n``."""
    if dialect == "sqlite":
        return exp.var(f"?{node.name}")
    return node


def bound_values(
    types: Sequence[pa.DataType], values: Mapping[str, pa.Scalar], literals: Sequence[Literal] = ()
) -> pa.RecordBatch | None:
    """One row of parameters for a route, or None when a value would not bind exactly as planned.

    ``values`` (by placeholder number, from the client) or ``literals`` (taken out of the
    text) fill ``$1..$n``. A value of another integer type than planned is cast when it fits,
    a NULL of any type becomes a NULL of the planned type, text is text; anything else
    (a date sent as text, a float for an integer) is left to DataFusion, which plans it.
    """
    if not types:
        return None if values or literals else pa.record_batch([], schema=pa.schema([]))
    arrays = []
    if literals and len(literals) != len(types):
        return None
    for number, kind in enumerate(types, start=1):
        if literals:
            array = literals[number - 1].array(kind)
        else:
            scalar = _as(values.get(str(number)), kind)
            array = None if scalar is None else pa.array([scalar.as_py()], kind)
        if array is None:
            return None
        arrays.append(array)
    return pa.record_batch(arrays, names=[f"${n}" for n in range(1, len(types) + 1)])


def _as(value: pa.Scalar | None, kind: pa.DataType) -> pa.Scalar | None:
    if value is None:
        return None
    if value.type == kind:
        return value
    if not value.is_valid:
        return pa.scalar(None, kind)
    integers = pa.types.is_integer(value.type) and pa.types.is_integer(kind)
    if not integers and not (_is_text(value.type) and _is_text(kind)):
        return None
    try:
        return value.cast(kind)
    except (pa.ArrowException, OverflowError):
        return None


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def placeholders_only_in_filters(plan: Any) -> bool:
    """Whether every placeholder of a logical plan sits in a Filter's predicate.

    Such placeholders change which rows come back, never the result's column names or
    types: the schema planned without values is the schema with any values.
    """
    for node in _nodes(plan):
        variant = node.to_variant()
        if type(variant).__name__ == "Filter":
            continue
        for accessor in ("projections", "group_by_exprs", "aggregate_exprs", "sort_exprs"):
            method = getattr(variant, accessor, None)
            if method is None:
                continue
            value = method()
            if any("$" in str(expression) for expression in (value if isinstance(value, list) else [value])):
                return False
    return True


def _nodes(plan: Any) -> list[Any]:
    found = [plan]
    for child in plan.inputs():
        found.extend(_nodes(child))
    return found
