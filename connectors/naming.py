"""Product names for discovered tables and files: valid, unique, lower-case identifiers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_INVALID = re.compile(r"[^a-z0-9_]+")


def identifier(raw: str) -> str:
    """A lower-case SQL identifier for ``raw``: ``"Order Lines-2024"`` -> ``order_lines_2024``.

    Accents are dropped (``Zoë`` -> ``zoe``), runs of other characters become one
    underscore, and a leading digit gets a ``_`` prefix.
    """
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = _INVALID.sub("_", ascii_text.lower()).strip("_") or "product"
    return f"_{name}" if name[0].isdigit() else name


def unique(names: Iterable[str]) -> list[str]:
    """The names in order, later duplicates suffixed ``_2``, ``_3`` ...: ``[a, a] -> [a, a_2]``."""
    taken: set[str] = set()
    result = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate)
        result.append(candidate)
    return result


def qualified(schema: str, table: str, default_schema: str) -> str:
    """``orders`` in the default schema, ``sales_orders`` elsewhere."""
    return identifier(table) if schema == default_schema else identifier(f"{schema}_{table}")
