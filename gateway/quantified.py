"""Quantified comparisons with a subquery (``x > ANY (SELECT ...)``) that DataFusion 55 answers wrongly.

When the outer query and the subquery of an ``ANY``, ``SOME`` or ``ALL`` comparison read the same
table and neither names it with an alias, DataFusion 55 answers without an error but wrongly:
``salary = ANY (SELECT salary FROM emp WHERE id <= 2)`` over ``emp`` keeps every row, and ``>``,
``<``, ``>=``, ``<=`` keep none (apache/datafusion#25258, open). An alias on either side, or another
table, gives the right rows. Such a statement is refused, naming the fix (:func:`check_statement`):
its answer would be wrong on the federated route and right when a source computes it whole.
"""

from __future__ import annotations

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from gateway.errors import PlanningError
from gateway.tokens import tokens as sql_tokens

_QUANTIFIERS = {TokenType.ANY, TokenType.SOME, TokenType.ALL}
_SUBQUERY_STARTS = {TokenType.SELECT, TokenType.WITH}


def check_statement(sql: str) -> None:
    """Refuse ``sql`` when a quantified comparison's subquery reads, without an alias, a table
    that the query around it reads without an alias too (see the module doc).

    >>> check_statement("SELECT id FROM emp e WHERE salary > ANY (SELECT salary FROM emp WHERE id < 3)")
    >>> check_statement("SELECT id FROM emp WHERE salary > ANY (SELECT salary FROM emp WHERE id < 3)")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    meshcore.errors.PlanningError: give emp an alias in the ANY subquery or around it ...
    """
    try:
        found = sql_tokens(sql)
    except SqlglotError:
        return  # the parser reports it, with its position
    quantified = any(
        token.token_type in _QUANTIFIERS
        and found[i + 1].token_type == TokenType.L_PAREN
        and found[i + 2].token_type in _SUBQUERY_STARTS
        for i, token in enumerate(found[:-2])
    )
    if not quantified:
        return  # most statements: no parse
    try:
        tree = parse_one(sql, read="postgres")
    except SqlglotError:
        return  # DataFusion's parser reports it
    for node in tree.find_all(exp.Any, exp.All):
        inner = node.this.this if isinstance(node.this, exp.Subquery) else node.this
        outer = node.find_ancestor(exp.Select)
        if not isinstance(inner, exp.Select) or outer is None:
            continue
        shared = _unaliased(inner) & _unaliased(outer)
        if shared:
            word = "ALL" if isinstance(node, exp.All) else "ANY"
            name = sorted(shared)[0]
            raise PlanningError(
                f"give {name} an alias in the {word} subquery or around it (FROM {name} AS t): when"
                f" both read {name} without one, DataFusion 55 may answer {word} (SELECT ...) wrongly"
                " (apache/datafusion#25258)"
            )


def _unaliased(select: exp.Select) -> set[str]:
    """The tables ``select``'s own FROM and joins read without an alias, by their whole name."""
    sources = [select.args.get("from_") or select.args.get("from"), *select.args.get("joins", [])]
    names: set[str] = set()
    for source in sources:
        table = source.this if source is not None else None
        if isinstance(table, exp.Table) and not table.alias and isinstance(table.this, exp.Identifier):
            names.add(".".join(part.name for part in table.parts).lower())
    return names
