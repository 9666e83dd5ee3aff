"""SQL text as traces and lineage events carry it: every literal replaced by ``?``.

A query's literals may be values a user typed (``WHERE ssn = '123-45-6789'``) and a source
query's may be values read from another source (run-time filters); neither belongs in a
trace or a lineage store. Parameters are already placeholders and stay as they are.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

_LITERALS = {
    TokenType.STRING,
    TokenType.NUMBER,
    TokenType.NATIONAL_STRING,
    TokenType.BIT_STRING,
    TokenType.HEX_STRING,
    TokenType.BYTE_STRING,
    TokenType.RAW_STRING,
    TokenType.HEREDOC_STRING,
    TokenType.UNICODE_STRING,
}

UNREADABLE = "(SQL not shown: its literals could not be told apart)"

# Statements repeat (prepared statements, dashboards): each text is tokenized once while it is
# in this cache of at most 4 Mi characters of SQL (a short statement takes about 1 ms to tokenize).
_CACHED_CHARACTERS = 64 * 1024
_SEEN: LRUCache[str, str] = LRUCache(maxsize=4 * 1024 * 1024, getsizeof=len)
_LOCK = threading.Lock()


def without_literals(sql: str) -> str:
    """``sql`` with each literal replaced by ``?``, or :data:`UNREADABLE` if it cannot be tokenized.

    >>> without_literals("SELECT name FROM sales.customers WHERE id = 42 AND city = 'Zürich' LIMIT 5")
    'SELECT name FROM sales.customers WHERE id = ? AND city = ? LIMIT ?'
    >>> without_literals("SELECT * FROM t WHERE a = $1")
    'SELECT * FROM t WHERE a = $1'
    """
    with _LOCK:
        found = _SEEN.get(sql)
    if found is not None:
        return found
    shown = _without_literals(sql)
    if len(sql) <= _CACHED_CHARACTERS:
        with _LOCK:
            _SEEN[sql] = shown
    return shown


def _without_literals(sql: str) -> str:
    tokens = _tokens(sql)
    if tokens is None:
        return UNREADABLE
    pieces: list[str] = []
    position = 0
    for i, token in enumerate(tokens):
        if token.token_type in _LITERALS and not _parameter_number(tokens, i):
            pieces.append(sql[position : token.start])
            pieces.append("?")
            position = token.end + 1
    pieces.append(sql[position:])
    return "".join(pieces)


def _parameter_number(tokens: list[Token], i: int) -> bool:
    """Whether token ``i`` is the number of a ``$1`` parameter (tokenized as ``$`` then ``1``)."""
    before = tokens[i - 1] if i else None
    return before is not None and before.token_type == TokenType.PARAMETER and before.end + 1 == tokens[i].start


def _tokens(sql: str) -> list[Token] | None:
    """``sql``'s tokens as PostgreSQL reads them (the gateway's own dialect), else as MySQL does."""
    for dialect in _DIALECTS:
        try:
            return Dialect.get_or_raise(dialect).tokenize(sql)
        except SqlglotError:
            continue
    return None


_DIALECTS = ("postgres", "mysql")
