"""gateway/tokens.py: a statement's tokens are made once, a long statement's too."""

from __future__ import annotations

from gateway.tokens import KEPT_TEXT, tokens


def test_a_short_text_is_tokenized_once() -> None:
    sql = "SELECT a FROM t WHERE a IN (1, 2, 3)"
    assert tokens(sql) is tokens(sql)


def test_the_latest_long_text_is_tokenized_once() -> None:
    """The checks before planning read a statement's tokens five times; a 100,000-constant IN list
    took 0.4 s each time."""
    long = "SELECT a FROM t WHERE a IN (" + ", ".join(str(i) for i in range(KEPT_TEXT)) + ")"
    other = long.replace("SELECT a", "SELECT b")
    first = tokens(long)
    assert tokens(long) is first
    assert [t.text for t in tokens(other)][:2] == ["SELECT", "b"]
    assert tokens(long) is not first and [t.text for t in tokens(long)] == [t.text for t in first]
