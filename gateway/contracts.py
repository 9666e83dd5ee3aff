"""Data contracts: a product's declared columns checked against what its source holds.

A domain may declare, for each product, the columns it promises (name, Arrow type,
description, tags). At registration, on refresh and whenever a domain is retried, the
catalog compares them with the live schema its connector reports:

    >>> check_contract(declared, pa.schema([("id", pa.int64()), ("total", pa.string())]))  # doctest: +SKIP
    (Drift(kind='type_changed', column='total', declared='decimal128(12, 2)', found='string'),)

A missing column or a changed type is drift; a column the contract does not mention is
allowed (``system.columns`` shows it with ``in_contract = false``). Per the product's
``on_drift``, drift either blocks the product (not queryable, still listed with its
status) or flags it (queryable, the drift shown in discovery).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from gateway.errors import ContractError

if TYPE_CHECKING:
    from gateway.catalog import Product
    from gateway.config import ColumnContract

STATUSES = ("ok", "flagged", "blocked")

_DECIMAL = re.compile(r"^decimal(128|256)?\(\s*(\d+)\s*,\s*(-?\d+)\s*\)$")
_TIMESTAMP = re.compile(r"^timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([^\]]+?)\s*)?\]$")
_LIST = re.compile(r"^(list|large_list)<\s*(?:item\s*:\s*)?(.+)>$")


@dataclass(frozen=True)
class Drift:
    """One way the live source differs from the contract."""

    kind: str  # "missing" | "type_changed"
    column: str
    declared: str
    found: str | None = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"column '{self.column}' is missing (declared {self.declared})"
        return f"column '{self.column}' changed type: declared {self.declared}, found {self.found}"


def parse_type(text: str) -> pa.DataType:
    """An Arrow type from its text: ``int64``, ``string``, ``decimal(12,2)``, ``timestamp[us, tz=UTC]`` ...

    Accepts what ``str(arrow_type)`` prints (``double``, ``date32[day]``,
    ``decimal128(12, 2)``, ``list<item: string>``) and the usual aliases
    (``float64``, ``utf8``, ``boolean``, ``decimal(p,s)``, ``list<string>``).

    Raises:
        ValueError: the text names no Arrow type.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    decimal = _DECIMAL.match(lowered)
    if decimal:
        width, precision, scale = decimal.group(1), int(decimal.group(2)), int(decimal.group(3))
        if width == "256" or (width is None and precision > 38):
            return pa.decimal256(precision, scale)
        return pa.decimal128(precision, scale)
    timestamp = _TIMESTAMP.match(stripped)
    if timestamp:
        return pa.timestamp(timestamp.group(1), tz=timestamp.group(2))
    listed = _LIST.match(stripped)
    if listed:
        item = parse_type(listed.group(2))
        return pa.list_(item) if listed.group(1) == "list" else pa.large_list(item)
    try:
        return pa.type_for_alias(lowered)
    except ValueError:
        raise ValueError(
            f"'{text}' is not an Arrow type; use for example int64, string, bool, double, date32,"
            " decimal(12,2) or timestamp[us, tz=UTC]"
        ) from None


def check_contract(columns: Sequence[ColumnContract] | None, live: pa.Schema) -> tuple[Drift, ...]:
    """How ``live`` differs from the declared ``columns`` (empty without a contract)."""
    if columns is None:
        return ()
    drift: list[Drift] = []
    for column in columns:
        index = live.get_field_index(column.name)
        if index < 0:
            drift.append(Drift("missing", column.name, str(column.type)))
        elif live.field(index).type != column.type:
            drift.append(Drift("type_changed", column.name, str(column.type), str(live.field(index).type)))
    return tuple(drift)


def status(product: Product) -> str:
    """``ok``, ``flagged`` (drift, still served) or ``blocked`` (drift, not served)."""
    if not product.drift:
        return "ok"
    return "blocked" if product.declared is not None and product.declared.on_drift == "block" else "flagged"


def blocked_error(product: Product) -> ContractError:
    """Why a blocked product cannot be queried, naming each drift."""
    origin = f" in {product.declared.origin}" if product.declared is not None and product.declared.origin else ""
    return ContractError(
        f"data product '{product.qualified_name}' is blocked: its source no longer matches its contract"
        f" ({'; '.join(str(d) for d in product.drift)}); on_drift: block{origin}"
    )


def column_tags(product: Product) -> dict[str, tuple[str, ...]]:
    """Column name -> the tags its contract gives it."""
    if product.declared is None or product.declared.columns is None:
        return {}
    return {c.name: c.tags for c in product.declared.columns if c.tags}


def owner(product: Product, domain_owner: str | None) -> str | None:
    declared = product.declared.owner if product.declared is not None else None
    return declared or domain_owner


def described(product: Product, domain_owner: str | None, quality: str | None = None) -> pa.Schema:
    """The product's schema with its metadata for Flight SQL clients.

    Schema metadata: ``meshgate.product``, ``.description``, ``.owner``, ``.tags``
    (comma-separated), ``.version``, ``.status``, ``.drift`` (``; ``-separated) and
    ``.quality``; each contract column carries ``meshgate.description`` and
    ``meshgate.tags`` in its field metadata.
    """
    metadata = dict(product.schema.metadata or {})
    metadata[b"meshgate.product"] = product.qualified_name.encode()
    declared = product.declared
    text = {
        b"meshgate.description": product.description,
        b"meshgate.owner": owner(product, domain_owner),
        b"meshgate.tags": ",".join(declared.tags) if declared is not None and declared.tags else None,
        b"meshgate.version": declared.version if declared is not None else None,
        b"meshgate.status": status(product) if declared is not None and declared.columns is not None else None,
        b"meshgate.drift": "; ".join(str(d) for d in product.drift) or None,
        b"meshgate.quality": quality,
    }
    metadata.update({key: value.encode() for key, value in text.items() if value})
    contract = {c.name: c for c in declared.columns or ()} if declared is not None else {}
    fields = []
    for field in product.schema:
        column = contract.get(field.name)
        if column is not None and (column.description or column.tags):
            extra = dict(field.metadata or {})
            if column.description:
                extra[b"meshgate.description"] = column.description.encode()
            if column.tags:
                extra[b"meshgate.tags"] = ",".join(column.tags).encode()
            field = field.with_metadata(extra)
        fields.append(field)
    return pa.schema(fields, metadata=metadata)
