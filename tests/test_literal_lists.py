"""Long IN lists set aside while a routed query is checked, and put back before it is written (gateway/literal_lists.py)."""

from __future__ import annotations

from sqlglot import exp, parse_one

from gateway import literal_lists

KEYS = ", ".join(str(k) for k in range(100, 140))
SQL = f"SELECT a FROM t WHERE a IN ({KEYS}) AND b IN (1, 2) AND s IN ({', '.join(repr(str(k)) for k in range(30))})"


def test_long_lists_keep_their_first_constant_until_they_are_put_back() -> None:
    tree = parse_one(SQL)
    aside = literal_lists.set_aside(tree)
    strings = ", ".join(repr(str(k)) for k in range(30))
    # Strings stay whole: the checks read each of them (gateway/date_literals.py).
    assert tree.sql() == f"SELECT a FROM t WHERE a IN (100) AND b IN (1, 2) AND s IN ({strings})"
    assert literal_lists.put_back(tree, aside)
    assert tree.sql() == parse_one(SQL).sql()


def test_a_copied_tree_is_put_back_too() -> None:
    tree = parse_one(SQL)
    aside = literal_lists.set_aside(tree)
    copied = tree.copy()
    assert literal_lists.put_back(copied, aside) and copied.sql() == parse_one(SQL).sql()


def test_a_list_a_rewrite_rebuilt_or_changed_is_not_put_back() -> None:
    tree = parse_one(SQL)
    aside = literal_lists.set_aside(tree)
    first = next(node for node in tree.find_all(exp.In) if node.this.name == "a")
    first.replace(exp.In(this=first.this.copy(), expressions=[exp.Literal.number(100)]))  # the mark is lost
    assert not literal_lists.put_back(tree, aside)

    tree = parse_one(SQL)
    aside = literal_lists.set_aside(tree)
    changed = next(node for node in tree.find_all(exp.In) if node.this.name == "a")
    changed.set("expressions", [exp.cast(exp.Literal.number(100), exp.DType.BIGINT)])
    assert not literal_lists.put_back(tree, aside)


def test_lists_of_mixed_kinds_or_of_expressions_stay_whole() -> None:
    mixed = ", ".join(["1", "2.5", *(str(k) for k in range(20))])
    computed = ", ".join(f"{k} + 1" for k in range(20))
    sql = f"SELECT a FROM t WHERE a IN ({mixed}) AND b IN ({computed})"
    tree = parse_one(sql)
    aside = literal_lists.set_aside(tree)
    assert tree.sql() == parse_one(sql).sql() and literal_lists.put_back(tree, aside)
