"""``IS [NOT] DISTINCT FROM`` as DataFusion 55's SQL parser reads it: its right operand runs on.

sqlparser (DataFusion 55) parses the right operand of ``IS [NOT] DISTINCT FROM`` at the lowest
precedence, so it swallows the ``AND`` and ``OR`` that follow: ``a IS DISTINCT FROM b OR c``
becomes ``a IS DISTINCT FROM (b OR c)`` (apache/datafusion#23692, fixed in sqlparser after
DataFusion 55). Over booleans that is another answer without a word (3 rows of three become 2);
over other types, a type error about ``Utf8 AND Boolean``. PostgreSQL, and every source, binds
``AND`` and ``OR`` looser than ``IS``.

- A client's statement that leaves such an operand unparenthesised is refused, naming the fix
  (:func:`check_statement`): its answer would depend on which parser read it.
- SQL the gateway writes for DataFusion (a policy's row filter) gets the parentheses
  (:func:`parenthesized`), so a policy means what its author wrote.

DataFusion 55's optimiser also turns a join ``ON a IS NOT DISTINCT FROM b`` into a hash join whose
NULL keys match, and then loses that when the query joins anything else: ``t a JOIN t b ON a.g IS
NOT DISTINCT FROM b.h CROSS JOIN one`` answered no row where the NULLs match (the same join alone
answered one). Such a statement is refused, naming what to write instead (:func:`check_join_keys`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from datafusion import LogicalPlan
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from gateway.errors import PlanningError
from gateway.tokens import one_level
from gateway.tokens import tokens as sql_tokens

_ENDS = {
    TokenType.COMMA,
    TokenType.SEMICOLON,
    TokenType.THEN,
    TokenType.WHEN,
    TokenType.ELSE,
    TokenType.END,
    TokenType.FROM,
    TokenType.WHERE,
    TokenType.GROUP_BY,
    TokenType.HAVING,
    TokenType.ORDER_BY,
    TokenType.LIMIT,
    TokenType.UNION,
    TokenType.EXCEPT,
    TokenType.INTERSECT,
    TokenType.JOIN,
    TokenType.ON,
    TokenType.ALIAS,
}
"""Tokens that end an operand at its own parenthesis level (a clause, a CASE branch, a list item)."""


def check_statement(sql: str) -> None:
    """Refuse ``sql`` when an ``IS [NOT] DISTINCT FROM``'s right operand is followed by ``AND`` or
    ``OR`` at its own parenthesis level (see the module doc).

    >>> check_statement("SELECT * FROM t WHERE (a IS DISTINCT FROM b) OR c")
    >>> check_statement("SELECT * FROM t WHERE a IS DISTINCT FROM b OR c")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    meshcore.errors.PlanningError: put IS DISTINCT FROM in parentheses when OR follows it (line 1, ...
    """
    try:
        found = sql_tokens(sql)
    except SqlglotError:
        return  # the parser reports it, with its position
    for i, token in enumerate(found):
        if token.token_type != TokenType.IS:
            continue
        start = i + 1 + (i + 1 < len(found) and found[i + 1].token_type == TokenType.NOT)
        words = [t.token_type for t in found[start : start + 2]]
        if words == [TokenType.DISTINCT, TokenType.FROM]:
            _check_operand(found, i, start + 2)


def _check_operand(found: Sequence[Token], at: int, start: int) -> None:
    betweens = 0
    for token, top in one_level(found, start):  # it ends with the parentheses around the whole test
        kind = token.token_type
        if not top:
            continue
        if kind == TokenType.BETWEEN:
            betweens += 1
        elif kind == TokenType.AND and betweens:
            betweens -= 1  # BETWEEN x AND y: part of the operand, as in PostgreSQL
        elif kind in (TokenType.AND, TokenType.OR):
            test = "IS NOT DISTINCT FROM" if found[at + 1].token_type == TokenType.NOT else "IS DISTINCT FROM"
            where = f"line {found[at].line}, column {found[at].col}"
            raise PlanningError(
                f"put {test} in parentheses when {token.text.upper()} follows it ({where}):"
                f" write (a {test} b) {token.text.upper()} c. DataFusion 55 would read everything after"
                f" {test} as its right operand and answer otherwise than PostgreSQL"
            )
        elif kind in _ENDS:
            return


def parenthesized(tree: exp.Expr) -> exp.Expr:
    """``tree`` with every ``IS [NOT] DISTINCT FROM`` in parentheses, for SQL that DataFusion parses."""

    def wrap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, (exp.NullSafeEQ, exp.NullSafeNEQ)) and not isinstance(node.parent, exp.Paren):
            return exp.Paren(this=node.copy())
        return node

    return tree.transform(wrap)


# Two qualified columns (``a.g``): no constant, NULL included (DataFusion may write ``x IS NOT
# DISTINCT FROM 5`` as ``x = 5``, ``x IS NOT DISTINCT FROM NULL`` as ``x IS NULL``).
_COLUMN = r'"?[A-Za-z_][\w"]*\.[\w."]+'
_COLUMNS_NOT_DISTINCT = re.compile(rf"(?<![\w)\"]){_COLUMN} IS NOT DISTINCT FROM {_COLUMN}(?![\w(])")


def check_join_keys(planned: LogicalPlan, optimized: LogicalPlan | None) -> None:
    """Refuse a statement whose ``IS NOT DISTINCT FROM`` of two columns DataFusion's optimiser
    dropped: it is in neither the ``optimized`` plan's conditions nor a join whose NULL keys match.
    ``planned``: the statement's plan before the optimiser."""
    if optimized is None:
        return
    written = len(_COLUMNS_NOT_DISTINCT.findall(planned.display_indent()))
    if not written:
        return
    kept = len(_COLUMNS_NOT_DISTINCT.findall(optimized.display_indent())) + null_equal_keys(optimized)
    if kept < written:
        raise PlanningError(
            "a join ON a IS NOT DISTINCT FROM b next to another join would lose its matching NULLs in"
            " DataFusion 55, which answers such a query without them: write (a = b OR (a IS NULL AND b IS NULL))"
            " instead, or join the other tables first"
        )


def null_equal_keys(plan: LogicalPlan) -> int:
    """How many keys of ``plan``'s joins match NULL with NULL (subqueries kept as expressions not looked into)."""
    variant = plan.to_variant()
    own = len(variant.on()) if type(variant).__name__ == "Join" and variant.null_equals_null() else 0
    return own + sum(null_equal_keys(child) for child in plan.inputs())
