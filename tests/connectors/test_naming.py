"""Product names: lower-case identifiers, unique, qualified outside the default schema."""

from __future__ import annotations

import pytest

from connectors.naming import identifier, qualified, unique


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("orders", "orders"),
        ("Order Lines-2024", "order_lines_2024"),
        ("2024 report", "_2024_report"),
        ("Zoë Ångström", "zoe_angstrom"),
        ("日本", "product"),
        ("***", "product"),
        ("__x__", "x"),
    ],
)
def test_identifier(raw: str, name: str) -> None:
    assert identifier(raw) == name


def test_unique_suffixes_later_duplicates() -> None:
    assert unique(["a", "b", "a", "a", "a_2"]) == ["a", "b", "a_2", "a_3", "a_2_2"]


def test_qualified_only_outside_the_default_schema() -> None:
    assert qualified("public", "Orders", "public") == "orders"
    assert qualified("Sales", "Orders", "public") == "sales_orders"
