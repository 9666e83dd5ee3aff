"""Long ``IN`` lists of constants set aside while a query is checked and rewritten for a source.

The run-time filters write a join's keys into the other side's query as ``x IN (k1, k2, ...)``,
hundreds of constants long (TPC-H Q19: 485 part keys). Every guard and rewrite that a query routed
to one source goes through (``gateway.planner.single_source_sql``) walks, types or copies the whole
tree, so the constants cost most of the time: 75 ms of Q19's file-engine part, against a few
without them. :func:`set_aside` keeps the first constant of each long list of numbers (so what is
checked sees a constant of the list's kind in the same place) and holds the others; :func:`put_back`
returns them just before the query is written. A list the rewrites did not keep as it was
(the ``IN`` node rebuilt, its first constant changed) cannot be put back, and the caller gives
the route up rather than send a query that misses keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

LONG_LIST = 16
"""Lists of more constants than this are set aside."""

_MARK = "meshgate_set_aside"


@dataclass
class SetAside:
    """The constants :func:`set_aside` took out of a tree, by list."""

    rest: dict[int, list[exp.Expr]] = field(default_factory=dict)
    first: dict[int, str] = field(default_factory=dict)


def set_aside(tree: exp.Expr) -> SetAside:
    """Take all but the first constant out of every long list of numbers of one kind in ``tree`` (in place)."""
    aside = SetAside()
    for node in tree.find_all(exp.In):
        items = node.expressions
        if len(items) <= LONG_LIST or not _numbers_of_one_kind(items):
            continue
        key = len(aside.rest)
        aside.rest[key], aside.first[key] = items[1:], items[0].sql()
        node.set("expressions", [items[0]])
        node.meta[_MARK] = key
    return aside


def put_back(tree: exp.Expr, aside: SetAside) -> bool:
    """Return the constants into ``tree`` (in place); False when a list is missing or was changed."""
    if not aside.rest:
        return True
    returned: set[int] = set()
    for node in tree.find_all(exp.In):
        key = node.meta.get(_MARK)
        if key is None:
            continue
        items = node.expressions
        if key not in aside.rest or key in returned or len(items) != 1 or items[0].sql() != aside.first[key]:
            return False
        node.set("expressions", [items[0], *aside.rest[key]])
        returned.add(key)
    return len(returned) == len(aside.rest)


def _numbers_of_one_kind(items: list[exp.Expr]) -> bool:
    """Whether ``items`` are all integer constants, or all other numbers. Not strings: the checks
    read each string constant for itself (``gateway/date_literals.py``: is it a date in its
    canonical form, a time with an offset), so a list of strings is kept whole."""
    if not all(isinstance(item, exp.Literal) and not item.is_string for item in items):
        return False
    return len({item.is_int for item in items}) == 1
