"""A statement's sqlglot tokens, made once per text: the checks before planning each read them.

Preparing one statement tokenizes it for the expression limits (``gateway/limits.py``), for
``?`` placeholders (``gateway/parameters.py``) and for the plan cache's templates
(``gateway/plancache.py``); the latest texts' tokens are kept, so each is made once.
:func:`one_level` walks what stands inside one pair of parentheses (a call's arguments, an operand).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

from sqlglot.tokenizer_core import Token, TokenType
from sqlglot.tokens import Tokenizer

KEPT_TEXT = 16 * 1024
"""Texts up to this long are kept by the 64 (64 longer ones could hold much memory: see ``_last_long``)."""


def tokens(sql: str) -> tuple[Token, ...]:
    """The tokens of ``sql`` (raises sqlglot's TokenError for text it cannot tokenize).

    >>> [t.text for t in tokens("SELECT a FROM t WHERE a = 'x'")]
    ['SELECT', 'a', 'FROM', 't', 'WHERE', 'a', '=', 'x']
    """
    global _last_long
    if len(sql) <= KEPT_TEXT:
        return _kept(sql)
    last = _last_long
    if last is not None and last[0] == sql:
        return last[1]
    found = _tokenize(sql)
    _last_long = (sql, found)  # one assignment: another thread sees the old pair or the new
    return found


def _tokenize(sql: str) -> tuple[Token, ...]:
    return tuple(Tokenizer().tokenize(sql))


_kept = functools.lru_cache(maxsize=64)(_tokenize)
_last_long: tuple[str, tuple[Token, ...]] | None = None
"""The latest longer text and its tokens: the checks of one statement read them five times (a
100,000-constant ``IN`` list took 0.4 s a time); one such text is kept, not 64."""


def one_level(found: Sequence[Token], start: int) -> Iterator[tuple[Token, bool]]:
    """The tokens from ``start`` up to the parenthesis that closes the level ``start`` stands at
    (or the end), each with whether it stands at that level itself rather than inside parentheses.

    >>> [t.text + ("" if top else "*") for t, top in one_level(tokens("f(a, g(b, c), d) + e"), 2)]
    ['a', ',', 'g', '(', 'b*', ',*', 'c*', ')*', ',', 'd']
    """
    depth = 0
    for token in found[start:]:
        kind = token.token_type
        if kind == TokenType.R_PAREN and depth == 0:
            return
        yield token, depth == 0
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
