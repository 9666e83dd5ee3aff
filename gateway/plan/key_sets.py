"""Key sets: a run-time filter's join keys, too many to write as a list, as one function of the plan.

A run-time filter (``gateway/plan/runtime_filter.py``) writes up to a thousand keys as
``key IN (...)``. Tens of thousands of literals would be planned, translated and rendered one
by one (TPC-H Q12's 29,099 order keys took 2.8 s that way), so more integer keys become one
call, ``meshgate_keys_<token>(key)``, of a function registered in the query's context:

- where a source takes key sets (:attr:`connectors.base.SqlCapabilities.key_sets`), the
  pushdown translator renders the call as one constant, ``key = ANY(CAST('{1,2,...}' AS
  BIGINT[]))`` for PostgreSQL, ``key IN (SELECT value FROM json_each('[1,2,...]'))`` for
  SQLite, ``key IN (SELECT UNNEST(CAST('[1,2,...]' AS BIGINT[])))`` for DuckDB (Q12's orders
  fetch: 369 ms whole, 103 ms with the key set, 152 ms with the same keys as an IN list);
- everywhere, DataFusion evaluates it (a binary search in the sorted keys), so the answer never
  depends on whether the source took it.

The function's name is new for every key set and cannot be guessed, and it is registered only
after the caller's SQL was planned, so a caller's SQL cannot call it. The keys live in the
function's closure and in a registry that forgets them with it.
"""

from __future__ import annotations

import functools
import secrets
import weakref

import numpy as np
import pyarrow as pa
from datafusion import SessionContext, udf
from sqlglot import exp

PREFIX = "meshgate_keys_"
STYLES = ("array", "json_each", "unnest")
"""How a source takes a key set: ``= ANY`` of an array constant (PostgreSQL), ``IN`` the rows of
``json_each`` over a JSON array (SQLite), ``IN`` the rows of ``UNNEST`` of a list constant (DuckDB)."""


class KeySet:
    """Distinct integer keys, sorted; callable as the filter function DataFusion evaluates."""

    def __init__(self, name: str, values: pa.Array) -> None:
        self.name = name
        self.type = values.type
        keys = np.sort(values.drop_null().cast(pa.int64()).to_numpy(zero_copy_only=False))
        self.keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, values: pa.Array) -> pa.Array:
        """Whether each value is a key; NULL for NULL. Never raises: native code calls it."""
        try:
            valid = values.is_valid().to_numpy(zero_copy_only=False)
            wanted = values.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
            at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
            return pa.array(self.keys[at] == wanted, pa.bool_(), mask=~valid)
        except Exception:  # cannot happen for the integer arrays the function is declared for
            return pa.nulls(len(values), pa.bool_())

    @functools.cached_property
    def digits(self) -> str:
        """The keys in decimal, separated by commas (written once: a query's plan renders them more than once).

        A Python list's own text, its brackets and blanks taken out: a third faster than joining
        the keys' texts (TPC-H Q8's 43,068 order keys: 3.2 against 4.9 ms)."""
        return str(self.keys.tolist())[1:-1].replace(" ", "")  # integers only: nothing to escape

    def sql(self, column: exp.Expr, style: str) -> exp.Expr:
        """``column`` is one of the keys, in a source's ``style`` (one of :data:`STYLES`)."""
        digits = self.digits
        if style == "array":
            array = exp.Cast(this=exp.Literal.string("{" + digits + "}"), to=exp.DataType.build("BIGINT[]"))
            return exp.EQ(this=column, expression=exp.Any(this=exp.Paren(this=array)))
        if style == "json_each":
            # Qualified: a scan qualifies the bare columns of its filter with its own table's alias.
            each = exp.func("json_each", exp.Literal.string("[" + digits + "]"))
            alias = exp.TableAlias(this=exp.to_identifier("meshgate_keys", quoted=True))
            rows = exp.select(exp.column("value", table="meshgate_keys", quoted=True)).from_(
                exp.Table(this=each, alias=alias)
            )
        elif style == "unnest":
            array = exp.Cast(this=exp.Literal.string("[" + digits + "]"), to=exp.DataType.build("BIGINT[]"))
            rows = exp.select(exp.func("unnest", array))
        else:
            raise ValueError(f"unknown key-set style {style!r}")
        return exp.In(this=column, query=exp.Subquery(this=rows))


_REGISTRY: weakref.WeakValueDictionary[str, KeySet] = weakref.WeakValueDictionary()


def register(ctx: SessionContext, values: pa.Array) -> KeySet:
    """A key set of ``values`` (integers), its function registered in ``ctx`` under a new name."""
    found = KeySet(f"{PREFIX}{secrets.token_hex(16)}", values)
    ctx.register_udf(udf(found, [values.type], pa.bool_(), "immutable", found.name))
    _REGISTRY[found.name] = found
    return found


def find(name: str) -> KeySet | None:
    """The key set a function of that name filters by, while its query lives."""
    return _REGISTRY.get(name) if name.startswith(PREFIX) else None


def takes(kind: pa.DataType) -> bool:
    """Whether keys of ``kind`` can be a key set (signed integers)."""
    return pa.types.is_integer(kind) and not pa.types.is_unsigned_integer(kind)
