"""``SIMILAR TO``, which DataFusion 55 evaluates as an unanchored regular expression, is refused.

DataFusion 55 hands a ``SIMILAR TO`` pattern to its regular expression engine as it is: ``%`` and
``_`` are no wildcards and the match is not anchored, so ``'a_b' SIMILAR TO 'a%'`` is false and
``'abc' SIMILAR TO 'b'`` true, where PostgreSQL answers true and false (apache/datafusion#22263,
fixed after DataFusion 55). A statement with ``SIMILAR TO`` is refused, naming what to write
instead: its answer would differ by route and from the standard's.
"""

from __future__ import annotations

from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from gateway.errors import PlanningError
from gateway.tokens import tokens as sql_tokens


def check_statement(sql: str) -> None:
    """Refuse ``sql`` when it uses ``SIMILAR TO`` (see the module doc).

    >>> check_statement("SELECT 'similar to' AS s")
    >>> check_statement("SELECT 'a_b' SIMILAR TO 'a%' AS s")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    meshcore.errors.PlanningError: SIMILAR TO is not supported (line 1, column ...
    """
    try:
        found = sql_tokens(sql)
    except SqlglotError:
        return  # the parser reports it, with its position
    for token in found:
        if token.token_type == TokenType.SIMILAR_TO:
            raise PlanningError(
                f"SIMILAR TO is not supported (line {token.line}, column {token.col}): DataFusion 55"
                " matches its pattern as an unanchored regular expression, without the % and _"
                " wildcards (apache/datafusion#22263). Write LIKE for % and _, or ~ with a regular"
                " expression anchored by ^ and $"
            )
