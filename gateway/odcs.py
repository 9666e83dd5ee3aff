"""Open Data Contract Standard (ODCS v3) documents, read into and written from Meshgate's contracts.

A domain team publishes a contract written for other tools; :func:`read_contract` checks it with the
``open-data-contract-standard`` package (its JSON Schema, then its pydantic models) and maps it to the
product keys of the domain's YAML (``columns``, ``primary_key``, ``checks``, ``freshness`` ...)::

    >>> read_contract(text).products["orders"]["primary_key"]  # doctest: +SKIP
    ['order_id']

:func:`merge_contract` sets those keys in the domain's own document; the domain file then goes through
everything ``meshgate domain apply`` checks. :func:`contract_document` writes a served product's contract
as an ODCS document for one caller. The mapping, both ways, is the README's table "Open data contracts".
Whatever Meshgate cannot hold and that would weaken the contract if dropped (value constraints, rules
of other engines, relationships) is refused, naming the field; what only describes (servers, team,
pricing, SLA properties other than ``latency``) is reported in :attr:`Imported.notes`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema
import pyarrow as pa
import yaml
from open_data_contract_standard.model import (
    DataQuality,
    OpenDataContractStandard,
    SchemaObject,
    SchemaProperty,
)
from pydantic import ValidationError
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

from gateway.config import CHECK_KINDS, CheckConfig, parse_duration
from gateway.contracts import parse_type
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.catalog import Product
    from gateway.policy import Access

EXPORT_API_VERSION = "v3.1.0"
"""The ODCS version :func:`contract_document` writes (v3.1.0 and later readers take it)."""

MASK_PROPERTY = "meshgateMask"
"""The custom property that marks a column the caller receives masked (its value: the mask)."""

ON_DRIFT_PROPERTY = "meshgateOnDrift"
"""The schema object's custom property for Meshgate's ``on_drift`` (flag or block)."""

ENGINE = "meshgate"
"""``type: custom`` quality rules of this engine hold a Meshgate check as their implementation."""

CONTRACT_KEYS = ("columns", "primary_key", "checks", "freshness")
"""The product keys an imported contract replaces; description, tags, version and on_drift change only
when the document gives them."""

_LOGICAL = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "time": pa.time64("us"),
}
_SQL_TYPES = {
    exp.DataType.Type.BIGINT: pa.int64(),
    exp.DataType.Type.INT: pa.int32(),
    exp.DataType.Type.SMALLINT: pa.int16(),
    exp.DataType.Type.TINYINT: pa.int8(),
    exp.DataType.Type.BOOLEAN: pa.bool_(),
    exp.DataType.Type.DOUBLE: pa.float64(),
    exp.DataType.Type.FLOAT: pa.float32(),
    exp.DataType.Type.VARCHAR: pa.string(),
    exp.DataType.Type.CHAR: pa.string(),
    exp.DataType.Type.NVARCHAR: pa.string(),
    exp.DataType.Type.TEXT: pa.string(),
    exp.DataType.Type.DATE: pa.date32(),
    exp.DataType.Type.TIMESTAMP: pa.timestamp("us"),
    exp.DataType.Type.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    exp.DataType.Type.TIMESTAMPNTZ: pa.timestamp("us"),
    exp.DataType.Type.TIMESTAMPLTZ: pa.timestamp("us", tz="UTC"),
    exp.DataType.Type.DATETIME: pa.timestamp("us"),
    exp.DataType.Type.TIME: pa.time64("us"),
    exp.DataType.Type.VARBINARY: pa.binary(),
    exp.DataType.Type.BINARY: pa.binary(),
}
_SLA_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), "s"),
    **dict.fromkeys(("min", "minute", "minutes"), "m"),
    **dict.fromkeys(("h", "hr", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("w", "week", "weeks"), "w"),
}
_PLACEHOLDER = re.compile(r"\$\{\s*([A-Za-z_]+)\s*\}")
# Property keys that only describe; everything else a property may hold is mapped or refused.
_DESCRIPTIVE = (
    *("businessName", "physicalName", "synonyms", "authoritativeDefinitions", "examples"),
    *("partitioned", "partitionKeyPosition", "criticalDataElement", "semanticType", "deprecated"),
    *("transformSourceObjects", "transformLogic", "transformDescription"),
)
_CONSTRAINTS = ("enum", "relationships", "encryptedName", "items", "properties", "map")
_RULE_INFO = (
    *("id", "name", "description", "dimension", "severity", "businessImpact", "tags", "method", "unit"),
    *("schedule", "scheduler", "authoritativeDefinitions", "customProperties"),
)


class _Loader(yaml.SafeLoader):
    """YAML without aliases (``*name``): a small document cannot stand for a huge one."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted in a contract", mark)
        return super().compose_node(parent, index)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Imported:
    """An ODCS document as Meshgate's contract: the domain, each product's keys, and what was not kept."""

    domain: str
    products: dict[str, dict[str, Any]]
    notes: tuple[str, ...]


# --------------------------------------------------------------------------- reading


def parse_document(text: str) -> OpenDataContractStandard:
    """An ODCS v3 document from YAML text, validated by the package's JSON Schema and models.

    Raises:
        ConfigError: naming the field that is wrong (``schema[0].properties[2].logicalType: ...``).
    """
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"ODCS: invalid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    except RecursionError:
        raise ConfigError("ODCS: invalid YAML: nested too deeply") from None
    if not isinstance(document, dict) or "apiVersion" not in document or "kind" not in document:
        raise ConfigError("ODCS: not an ODCS contract: expected a mapping with apiVersion, kind: DataContract, id ...")
    if document["kind"] != "DataContract":
        raise ConfigError(f"ODCS kind: must be DataContract, got {document['kind']!r}")
    version = document["apiVersion"]
    if not isinstance(version, str) or not version.startswith("v3."):
        raise ConfigError(f"ODCS apiVersion: Meshgate reads ODCS v3 (v3.0.0 to v3.2.0), got {version!r}")
    problem = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if problem is not None:
        raise ConfigError(f"ODCS {_path(problem.absolute_path) or '(document)'}: {_shorten(problem.message)}")
    try:
        return OpenDataContractStandard.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"ODCS {_path(first['loc'])}: {first['msg']}") from None


def read_contract(text: str) -> Imported:
    """Parse ``text`` (:func:`parse_document`) and map it to the named domain's product keys.

    Raises:
        ConfigError: the document is not ODCS v3, or holds something Meshgate cannot keep.
    """
    contract = parse_document(text)
    if not contract.domain:
        raise ConfigError("ODCS domain: missing: name the Meshgate domain whose products this contract describes")
    if not contract.schema_:
        raise ConfigError("ODCS schema: missing: list the products (schema objects) this contract describes")
    notes = _top_level_notes(contract)
    products: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(contract.schema_):
        where = f"schema[{i}]"
        assert item.name is not None  # required by the JSON Schema
        if item.name in products:
            raise ConfigError(f"ODCS {where}.name: product '{item.name}' is described twice")
        products[item.name] = _product_keys(contract, item, where, notes)
    _freshness(contract, products, notes)
    return Imported(contract.domain, products, tuple(notes))


def merge_contract(document: Any, imported: Imported) -> dict[str, Any]:
    """The domain file's document with each imported product's contract keys set (a new dict).

    Raises:
        ConfigError: the file does not hold the domain, or not one of the contract's products.
    """
    plain = json.loads(json.dumps(document, default=str))
    domains = plain.get("domains") if isinstance(plain, dict) else None
    found = [d for d in domains or () if isinstance(d, dict) and d.get("name") == imported.domain]
    if len(found) != 1:
        raise ConfigError(f"ODCS domain: the file of domain '{imported.domain}' does not declare it")
    declared = {p.get("name"): p for p in found[0].get("products") or () if isinstance(p, dict)}
    for i, (name, keys) in enumerate(imported.products.items()):
        product = declared.get(name)
        if product is None:
            known = ", ".join(sorted(str(n) for n in declared)) or "none"
            raise ConfigError(
                f"ODCS schema[{i}].name: domain '{imported.domain}' declares no product '{name}' (it has: {known});"
                " a contract describes products the domain file already publishes"
            )
        for key in CONTRACT_KEYS:
            product.pop(key, None)
        product.update({key: value for key, value in keys.items() if value not in (None, [])})
    return dict(plain)


def _product_keys(
    contract: OpenDataContractStandard, item: SchemaObject, where: str, notes: list[str]
) -> dict[str, Any]:
    columns: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    keyed: list[tuple[int | None, int, str]] = []  # (primaryKeyPosition, document order, column)
    table = f"{contract.domain}.{item.name}"
    for j, prop in enumerate(item.properties or ()):
        prop_where = f"{where}.properties[{j}]"
        column = _column(prop, prop_where, notes)
        if any(other["name"] == column["name"] for other in columns):
            raise ConfigError(f"ODCS {prop_where}.name: column '{column['name']}' is described twice")
        columns.append(column)
        name = column["name"]
        if prop.primaryKey:
            position = prop.primaryKeyPosition if prop.primaryKeyPosition not in (None, -1) else None
            keyed.append((position, j, name))
        if prop.required:
            checks.append({"not_null": name})
        if prop.unique:
            checks.append({"unique": [name]})
        for k, rule in enumerate(prop.quality or ()):
            check = _rule(rule, f"{prop_where}.quality[{k}]", table, name, notes)
            if check is not None:
                checks.append(check)
    if not columns:
        raise ConfigError(f"ODCS {where}.properties: missing: a product's contract lists its columns")
    positions = [position for position, _, _ in keyed if position is not None]
    if positions and len(positions) != len(keyed):
        raise ConfigError(
            f"ODCS {where}.properties: give every primary key column a primaryKeyPosition, or none (document order)"
        )
    if len(set(positions)) != len(positions):
        raise ConfigError(f"ODCS {where}.properties: two primary key columns have the same primaryKeyPosition")
    for k, rule in enumerate(item.quality or ()):
        check = _rule(rule, f"{where}.quality[{k}]", table, None, notes)
        if check is not None:
            checks.append(check)
    keys: dict[str, Any] = {
        "columns": columns,
        "primary_key": [name for _, _, name in sorted(keyed, key=lambda key: (key[0] or 0, key[1]))],
        "checks": checks,
    }
    if item.description:
        keys["description"] = item.description
    if item.tags:
        keys["tags"] = list(item.tags)
    if contract.version and contract.version != "0.0.0":  # 0.0.0: what an unversioned product exports
        keys["version"] = contract.version
    for k, custom in enumerate(item.customProperties or ()):
        if custom.property == ON_DRIFT_PROPERTY:
            keys["on_drift"] = custom.value
        else:
            notes.append(f"{where}.customProperties[{k}] ({custom.property}): not kept")
    if item.relationships is not None:
        raise ConfigError(
            f"ODCS {where}.relationships: Meshgate does not check relationships between products;"
            " express one as a sql quality rule, or remove it"
        )
    for key in ("businessName", "physicalName", "dataGranularityDescription", "synonyms", "context"):
        if getattr(item, key) is not None:
            notes.append(f"{where}.{key}: not kept (descriptive)")
    return keys


def _column(prop: SchemaProperty, where: str, notes: list[str]) -> dict[str, Any]:
    assert prop.name is not None  # required by the JSON Schema
    for key in _CONSTRAINTS:
        if getattr(prop, key) is not None:
            raise ConfigError(
                f"ODCS {where}.{key}: Meshgate cannot hold or check this in a contract"
                " (give a nested type as an Arrow physicalType such as list<string>; write value rules as sql rules)"
            )
    column: dict[str, Any] = {"name": prop.name, "type": str(_type(prop, where))}
    if prop.description:
        column["description"] = prop.description
    tags = list(prop.tags or ())
    if prop.classification:
        tags.append(prop.classification.lower())  # a classification is a tag policies can act on
    if tags:
        column["tags"] = list(dict.fromkeys(tags))
    for key in _DESCRIPTIVE:
        if getattr(prop, key) not in (None, False):
            notes.append(f"{where}.{key}: not kept (descriptive)")
    for k, custom in enumerate(prop.customProperties or ()):
        if custom.property != MASK_PROPERTY:  # how one caller saw the column: not part of the contract
            notes.append(f"{where}.customProperties[{k}] ({custom.property}): not kept")
    return column


def _type(prop: SchemaProperty, where: str) -> pa.DataType:
    """The column's Arrow type: its physicalType (Arrow or SQL type text), else its logicalType's."""
    options = dict(prop.logicalTypeOptions or {})
    timezone = options.pop("timezone", None)
    options.pop("format", None)  # how dates are written as text: nothing to keep for typed columns
    options.pop("defaultTimezone", None)
    if options:
        raise ConfigError(
            f"ODCS {where}.logicalTypeOptions.{sorted(options)[0]}: Meshgate does not check value constraints"
            " in a contract; express it as a sql quality rule, or remove it"
        )
    if prop.physicalType:
        found = _physical(prop.physicalType)
        if found is None:
            raise ConfigError(
                f"ODCS {where}.physicalType: unknown type {prop.physicalType!r}; use an Arrow type (int64, string,"
                " decimal(12,2), timestamp[us, tz=UTC], list<string>) or a SQL type (BIGINT, VARCHAR, DATE)"
            )
        if prop.logicalType and _logical(found) not in (prop.logicalType, None):
            raise ConfigError(
                f"ODCS {where}.logicalType: {prop.logicalType!r} does not match physicalType"
                f" {prop.physicalType!r} (which is {_logical(found)})"
            )
        return found
    if prop.logicalType in _LOGICAL:
        kind = _LOGICAL[prop.logicalType]
        if prop.logicalType == "timestamp" and timezone is True:
            kind = pa.timestamp("us", tz="UTC")
        return kind
    if prop.logicalType is None:
        raise ConfigError(f"ODCS {where}: give the column's type: logicalType and/or physicalType")
    raise ConfigError(
        f"ODCS {where}.logicalType: {prop.logicalType!r} columns need their Arrow type as physicalType,"
        " for example list<string>"
    )


def _physical(text: str) -> pa.DataType | None:
    """An Arrow type from Arrow type text, else from a SQL type name (None: neither)."""
    try:
        return parse_type(text)
    except ValueError:
        pass
    try:
        built = exp.DataType.build(text)
    except (SqlglotError, ValueError):
        return None
    if built.this == exp.DataType.Type.DECIMAL and len(built.expressions) == 2:
        try:
            return parse_type(f"decimal({built.expressions[0].sql()},{built.expressions[1].sql()})")
        except ValueError:
            return None
    return _SQL_TYPES.get(built.this)  # VARCHAR(20): the length is the source's; the contract types it string


def _rule(rule: DataQuality, where: str, table: str, column: str | None, notes: list[str]) -> dict[str, Any] | None:
    """One ODCS quality rule as a Meshgate check (a mapping of the domain YAML's ``checks``); None for text."""
    kind = rule.type or "library"
    if kind == "text":
        notes.append(f"{where}: a text rule describes; nothing runs it")
        return None
    allowed = {*_RULE_INFO, "type", *_KIND_KEYS.get(kind, ())}
    if kind in {"library", "sql"}:
        allowed |= {*_COMPARISONS, "mustBeBetween", "mustNotBeBetween"}
    extra = sorted(key for key in rule.model_fields_set if key not in allowed)
    if extra:
        raise ConfigError(f"ODCS {where}.{extra[0]}: not part of a {kind} rule that Meshgate can run")
    named = {"name": rule.name} if rule.name else {}
    if kind == "custom":
        if rule.engine != ENGINE or not isinstance(rule.implementation, dict):
            raise ConfigError(
                f"ODCS {where}.engine: Meshgate runs its own checks only (engine: {ENGINE} with a check as the"
                f" implementation), not {rule.engine!r}; translate the rule, or remove it"
            )
        unknown = sorted(set(rule.implementation) - {"name", "max_null_ratio", *CHECK_KINDS})
        if unknown:
            raise ConfigError(
                f"ODCS {where}.implementation.{unknown[0]}: not a key of a Meshgate check"
                f" (name, max_null_ratio, {', '.join(CHECK_KINDS)})"
            )
        return dict(rule.implementation)
    if kind == "sql":
        return {"name": rule.name or _rule_name(where), "sql": _sql(rule, where, table, column)}
    metric = rule.metric or rule.rule
    operator, value = _operator(rule, where)
    if rule.arguments and not (
        metric == "duplicateValues" and column is None and set(rule.arguments) == {"properties"}
    ):
        raise ConfigError(
            f"ODCS {where}.arguments: Meshgate's checks take none here (only a product's duplicateValues takes"
            " arguments.properties)"
        )
    if metric == "rowCount" and column is None:
        return {**named, "row_count": _row_bounds(operator, value, where)}
    if metric == "duplicateValues":
        columns = [column] if column is not None else _argument_columns(rule, where)
        if (operator, value) not in _NONE:
            raise ConfigError(f"ODCS {where}.{operator}: Meshgate's unique check allows no duplicates (mustBe: 0)")
        return {**named, "unique": columns}
    if metric == "nullValues" and column is not None:
        return {**named, "not_null": column, **_null_ratio(operator, value, rule.unit, where)}
    place = "a column's" if column is None else "the product's"
    raise ConfigError(
        f"ODCS {where}.metric: Meshgate cannot run {metric!r} here (it runs nullValues and duplicateValues on"
        f" columns, rowCount and duplicateValues on products); move it to {place} quality, or write it as sql"
    )


_KIND_KEYS = {
    "library": ("metric", "rule", "arguments"),
    "sql": ("query",),
    "custom": ("engine", "implementation"),
}
_NONE = {("mustBe", 0), ("mustBeLessOrEqualTo", 0), ("mustBeLessThan", 1)}
_COMPARISONS = {
    "mustBe": "=",
    "mustNotBe": "<>",
    "mustBeGreaterThan": ">",
    "mustBeGreaterOrEqualTo": ">=",
    "mustBeLessThan": "<",
    "mustBeLessOrEqualTo": "<=",
}


def _operator(rule: DataQuality, where: str) -> tuple[str, Any]:
    given = [(key, getattr(rule, key)) for key in (*_COMPARISONS, "mustBeBetween", "mustNotBeBetween")]
    given = [(key, value) for key, value in given if key in rule.model_fields_set]
    if len(given) != 1:
        raise ConfigError(f"ODCS {where}: give exactly one of mustBe, mustBeLessOrEqualTo, mustBeBetween ...")
    return given[0]


def _row_bounds(operator: str, value: Any, where: str) -> dict[str, int]:
    def whole(number: Any) -> int:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0 or number != int(number):
            raise ConfigError(f"ODCS {where}.{operator}: a row count is a whole number, got {number!r}")
        return int(number)

    if operator == "mustBe":
        return {"min": whole(value), "max": whole(value)}
    if operator == "mustBeBetween":
        return {"min": whole(value[0]), "max": whole(value[1])}
    if operator in {"mustBeGreaterThan", "mustBeGreaterOrEqualTo"}:
        return {"min": whole(math.floor(value) + 1 if operator == "mustBeGreaterThan" else math.ceil(value))}
    if operator in {"mustBeLessThan", "mustBeLessOrEqualTo"}:
        return {"max": whole(math.ceil(value) - 1 if operator == "mustBeLessThan" else math.floor(value))}
    raise ConfigError(f"ODCS {where}.{operator}: Meshgate's row_count check takes bounds (min, max), not {operator}")


def _null_ratio(operator: str, value: Any, unit: str | None, where: str) -> dict[str, float]:
    if (operator, value) in _NONE:
        return {}
    if operator == "mustBeLessOrEqualTo" and unit == "percent" and 0 <= value <= 100:
        return {"max_null_ratio": value / 100}
    raise ConfigError(
        f"ODCS {where}.{operator}: Meshgate bounds NULLs as a share of the rows: use mustBe: 0, or unit: percent"
        " with mustBeLessOrEqualTo"
    )


def _argument_columns(rule: DataQuality, where: str) -> list[str]:
    columns = (rule.arguments or {}).get("properties")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"ODCS {where}.arguments.properties: a product's duplicateValues rule names its columns")
    return columns


def _sql(rule: DataQuality, where: str, table: str, column: str | None) -> str:
    """``SELECT (<query>) <comparison>``: one boolean, as Meshgate's sql checks answer."""
    assert rule.query is not None  # required by the JSON Schema for sql rules

    def substitute(found: re.Match[str]) -> str:
        name = found.group(1)
        if name in {"table", "object"}:
            return table
        if name in {"column", "property"} and column is not None:
            return exp.to_identifier(column, quoted=True).sql("postgres")
        raise ConfigError(
            f"ODCS {where}.query: unknown placeholder ${{{name}}} (Meshgate fills ${{table}}, ${{column}})"
        )

    query = _PLACEHOLDER.sub(substitute, rule.query).strip().rstrip(";")
    try:
        parsed = parse_one(query, read="postgres")
    except SqlglotError as error:
        raise ConfigError(f"ODCS {where}.query: not a valid SQL query: {_shorten(str(error))}") from None
    if not isinstance(parsed, exp.Query):
        raise ConfigError(f"ODCS {where}.query: must be a query (SELECT ...), got {parsed.key.upper()}")
    operator, value = _operator(rule, where)
    if operator in {"mustBeBetween", "mustNotBeBetween"}:
        low, high = (_literal(v, where, operator) for v in value)
        comparison = f"{'NOT ' if operator == 'mustNotBeBetween' else ''}BETWEEN {low} AND {high}"
    else:
        comparison = f"{_COMPARISONS[operator]} {_literal(value, where, operator)}"
    end = "\n" if "--" in query else ""  # the query as written (what the gateway runs), a line comment closed
    return f"SELECT ({query}{end}) {comparison}"


def _literal(value: Any, where: str, operator: str) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return exp.Literal.string(value).sql("postgres")
    raise ConfigError(f"ODCS {where}.{operator}: compare with a number, text or boolean, not {value!r}")


def _rule_name(where: str) -> str:
    return "odcs_" + re.sub(r"[^a-z0-9]+", "_", where.lower()).strip("_")


def _freshness(contract: OpenDataContractStandard, products: dict[str, dict[str, Any]], notes: list[str]) -> None:
    """SLA ``latency`` with an ``element`` (``product.column``) is that product's freshness expectation."""
    for i, sla in enumerate(contract.slaProperties or ()):
        where = f"slaProperties[{i}]"
        if sla.property != "latency":
            notes.append(f"{where} ({sla.property}): not kept (Meshgate checks latency, as freshness)")
            continue
        element = (sla.element or "").split(".")
        if len(element) != 2 or element[0] not in products:
            raise ConfigError(
                f"ODCS {where}.element: name the product and its timestamp column, e.g. orders.updated_at"
                f" (products here: {', '.join(products)})"
            )
        unit = _SLA_UNITS.get((sla.unit or "").lower())
        value = sla.value
        if unit is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"ODCS {where}: latency needs a whole number value and a unit (s, min, h, d, w)")
        try:
            parse_duration(f"{int(value)}{unit}")
        except ValueError as error:
            raise ConfigError(f"ODCS {where}.value: {error}") from None
        products[element[0]]["freshness"] = {"max_age": f"{int(value)}{unit}", "column": element[1]}


def _top_level_notes(contract: OpenDataContractStandard) -> list[str]:
    notes = []
    for key, why in (
        ("servers", "where data is read is the domain connector's, which the platform controls"),
        ("team", "a domain's owner is recorded by the platform"),
        ("roles", "access is granted by the mesh's policies"),
        ("support", "descriptive"),
        ("price", "descriptive"),
        ("description", "descriptive; each product's description comes from its schema object"),
        ("tags", "descriptive; each product's tags come from its schema object"),
        ("customProperties", "descriptive"),
        ("authoritativeDefinitions", "descriptive"),
        ("dataProduct", "each schema object names a product of the domain"),
        ("tenant", "descriptive"),
        ("context", "descriptive"),
    ):
        if getattr(contract, key) is not None:
            notes.append(f"{key}: not kept ({why})")
    return notes


# --------------------------------------------------------------------------- writing


def contract_document(
    product: Product, access: Access, *, catalog: str, owner: str | None, show_sql: bool
) -> OpenDataContractStandard:
    """``product``'s contract as ``access`` lets one caller see it, as a validated ODCS document.

    Only granted columns appear (with their contract's type; a product without declared columns gives
    the types it serves); a masked column carries :data:`MASK_PROPERTY`; checks on columns the caller
    may not see are left out, and a sql check's SQL only shows to its domain's owners and admins
    (``show_sql``; others see its name as a text rule).
    """
    declared = product.declared
    visible = set(access.columns)
    contract_columns = declared.columns if declared is not None else None
    if contract_columns is not None:
        columns = [(c.name, c.type, c.description, c.tags) for c in contract_columns if c.name in visible]
    else:
        columns = [(f.name, f.type, None, ()) for f in product.schema if f.name in visible]
    checks = [c for c in (declared.checks if declared is not None else ()) if set(_check_columns(c)) <= visible]
    freshness = declared.freshness if declared is not None else None
    key = list(product.primary_key) if set(product.primary_key) <= visible else []
    flags: dict[str, dict[str, Any]] = {name: {} for name, *_ in columns}
    column_rules: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in columns}
    product_rules: list[dict[str, Any]] = []
    for check in checks:
        if check.kind == "freshness" and check.name == "freshness" and check.freshness == freshness:
            continue  # the product's own expectation: its SLA latency below
        if check.kind == "not_null" and check.max_null_ratio == 0 and check.name == f"not_null({check.columns[0]})":
            flags[check.columns[0]]["required"] = True
        elif check.kind == "unique" and len(check.columns) == 1 and check.name == f"unique({check.columns[0]})":
            flags[check.columns[0]]["unique"] = True
        elif check.kind == "not_null":
            percent = round(check.max_null_ratio * 100, 9)
            bound = {"unit": "percent", "mustBeLessOrEqualTo": percent} if percent else {"mustBe": 0}
            rule = {**_named(check), "metric": "nullValues", **bound}
            column_rules[check.columns[0]].append({"type": "library", **rule})
        elif check.kind == "unique":
            arguments = {"properties": list(check.columns)}
            rule = {**_named(check), "metric": "duplicateValues", "arguments": arguments, "mustBe": 0}
            product_rules.append({"type": "library", **rule})
        elif check.kind == "row_count":
            product_rules.append({"type": "library", **_named(check), "metric": "rowCount", **_bounds(check)})
        elif check.kind == "sql" and not show_sql:
            text = "a SQL check of the domain; its SQL shows to the domain's owners and admins"
            product_rules.append({"type": "text", "name": check.name, "description": text})
        else:
            product_rules.append(
                {"type": "custom", "name": check.name, "engine": ENGINE, "implementation": _check_yaml(check)}
            )
    properties = []
    for name, kind, description, tags in columns:
        prop: dict[str, Any] = {"name": name, "physicalType": str(kind)}
        logical = _logical(kind)
        if logical is not None:
            prop["logicalType"] = logical
        if description:
            prop["description"] = description
        if tags:
            prop["tags"] = list(tags)
        if name in key:
            prop |= {"primaryKey": True, "primaryKeyPosition": key.index(name) + 1}
        prop |= flags[name]
        if column_rules[name]:
            prop["quality"] = column_rules[name]
        mask = access.masks.get(name)
        if mask is not None:
            prop["customProperties"] = [
                {"property": MASK_PROPERTY, "value": mask, "description": f"you receive this column masked ({mask})"}
            ]
        properties.append(prop)
    schema: dict[str, Any] = {
        "name": product.name,
        "logicalType": "object",
        "physicalType": "table",
        "properties": properties,
    }
    if product.description:
        schema["description"] = product.description
    if declared is not None and declared.tags:
        schema["tags"] = list(declared.tags)
    if product_rules:
        schema["quality"] = product_rules
    if declared is not None and declared.on_drift != "flag":
        schema["customProperties"] = [{"property": ON_DRIFT_PROPERTY, "value": declared.on_drift}]
    document: dict[str, Any] = {
        "apiVersion": EXPORT_API_VERSION,
        "kind": "DataContract",
        "id": f"{catalog}.{product.domain}.{product.name}",
        "name": product.name,
        "version": (declared.version if declared is not None else None) or "0.0.0",
        "status": "active",
        "domain": product.domain,
        "schema": [schema],
    }
    if owner:
        document["team"] = {"name": owner}
    if freshness is not None and freshness.column in visible:
        value, unit = _sla_duration(freshness.max_age)
        element = f"{product.name}.{freshness.column}"
        document["slaProperties"] = [{"property": "latency", "value": value, "unit": unit, "element": element}]
    return validated(document)


def validated(document: Mapping[str, Any]) -> OpenDataContractStandard:
    """``document`` checked by the package's JSON Schema and parsed by its models.

    Raises:
        ConfigError: it is not valid ODCS (naming the field).
    """
    problem = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if problem is not None:
        raise ConfigError(f"ODCS {_path(problem.absolute_path) or '(document)'}: {_shorten(problem.message)}")
    return OpenDataContractStandard.model_validate(document)


def to_yaml(contract: OpenDataContractStandard) -> str:
    """The document as YAML, checked once more by the JSON Schema as it will be read back."""
    text = contract.to_yaml()
    validated(yaml.safe_load(text))
    return text


def _named(check: CheckConfig) -> dict[str, str]:
    """The check's name for a library rule, unless it is the one Meshgate would give it anyway."""
    default = {"row_count": "row_count", "unique": f"unique({', '.join(check.columns)})"}
    default["not_null"] = f"not_null({check.columns[0]})" if check.columns else ""
    return {} if default.get(check.kind) == check.name else {"name": check.name}


def _check_columns(check: CheckConfig) -> tuple[str, ...]:
    if check.freshness is not None:
        return (check.freshness.column,)
    return check.columns


def _check_yaml(check: CheckConfig) -> dict[str, Any]:
    """A check as the domain YAML writes it (what ``engine: meshgate`` rules hold)."""
    if check.kind == "freshness":
        assert check.freshness is not None
        return {
            "name": check.name,
            "freshness": {"max_age": _duration(check.freshness.max_age), "column": check.freshness.column},
        }
    return {"name": check.name, "sql": check.sql}


def _bounds(check: CheckConfig) -> dict[str, Any]:
    if check.min_rows is not None and check.max_rows is not None:
        if check.min_rows == check.max_rows:
            return {"mustBe": check.min_rows}
        return {"mustBeBetween": [check.min_rows, check.max_rows]}
    if check.min_rows is not None:
        return {"mustBeGreaterOrEqualTo": check.min_rows}
    return {"mustBeLessOrEqualTo": check.max_rows}


def _duration(age: dt.timedelta) -> str:
    seconds, parts = int(age.total_seconds()), []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _sla_duration(age: dt.timedelta) -> tuple[int, str]:
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return seconds // size, unit
    return seconds, "s"


def _logical(kind: pa.DataType) -> str | None:
    """The ODCS logicalType of an Arrow type (None: ODCS has none, e.g. durations)."""
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_time(kind):
        return "time"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "array"
    if pa.types.is_struct(kind):
        return "object"
    if pa.types.is_map(kind):
        return "map"
    return None


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """The package's JSON Schema, with upstream's fix of its ``logicalType`` conditionals applied.

    The schema of open-data-contract-standard 3.2.0 guards each per-``logicalType`` rule with an
    ``if`` that also holds when a property has no ``logicalType``, so a property typed by
    ``physicalType`` alone fails (``'map' is a required property``). Upstream fixed it by requiring
    ``logicalType`` in those ``if``s (bitol-io/open-data-contract-standard#322, #324, #328); this does
    the same until a release carries it.
    """
    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    _guard_logical_type(schema, within_if=False)
    validator: jsonschema.protocols.Validator = jsonschema.validators.validator_for(schema)(schema)
    return validator


def _guard_logical_type(node: Any, *, within_if: bool) -> None:
    if isinstance(node, list):
        for item in node:
            _guard_logical_type(item, within_if=within_if)
    elif isinstance(node, dict):
        if within_if and set(node.get("properties", {})) == {"logicalType"} and "required" not in node:
            node["required"] = ["logicalType"]
        for key, value in node.items():
            _guard_logical_type(value, within_if=within_if or key == "if")


def _path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
