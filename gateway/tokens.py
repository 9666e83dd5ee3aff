"""A statement's sqlglot tokens, made once per text: the checks before planning each read them.

Preparing one statement tokenizes it for the expression limits (``gateway/limits.py``), for
``?`` placeholders (``gateway/parameters.py``) and for the plan cache's templates
(``gateway/plancache.py``); the latest texts' tokens are kept, so each is made once.
"""

from __future__ import annotations

import functools

from sqlglot.tokenizer_core import Token
from sqlglot.tokens import Tokenizer

KEPT_TEXT = 16 * 1024
"""Texts longer than this are tokenized each time, not kept (64 of them could hold much memory)."""


def tokens(sql: str) -> tuple[Token, ...]:
    """The tokens of ``sql`` (raises sqlglot's TokenError for text it cannot tokenize).

    >>> [t.text for t in tokens("SELECT a FROM t WHERE a = 'x'")]
    ['SELECT', 'a', 'FROM', 't', 'WHERE', 'a', '=', 'x']
    """
    return _kept(sql) if len(sql) <= KEPT_TEXT else _tokenize(sql)


def _tokenize(sql: str) -> tuple[Token, ...]:
    return tuple(Tokenizer().tokenize(sql))


_kept = functools.lru_cache(maxsize=64)(_tokenize)
