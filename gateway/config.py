"""The mesh configuration: validated, immutable, and precise about its errors.

A mesh is one YAML file or a directory of YAML files (one per domain, so that each
domain team owns its file). Every error names the file, the domain and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError

CONNECTOR_TYPES = ("postgres", "sqlite", "parquet", "csv", "duckdb")


@dataclass(frozen=True)
class ConnectorConfig:
    """How a domain reaches its source.

    ``uri`` is used by network sources (postgres); ``path`` by file-based ones,
    already resolved against the directory of the config file. ``options`` holds the
    type-specific keys (for example CSV ``delimiter``).
    """

    type: str
    uri: str | None = None
    path: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        if self.uri is not None:
            return _redact_password(self.uri)
        return str(self.path)


@dataclass(frozen=True)
class ProductConfig:
    """A data product a domain publishes: a source table/file or a source query."""

    name: str
    source: str | None = None
    sql: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class DomainConfig:
    """One domain: its owner, its connector and (optionally) its products."""

    name: str
    connector: ConnectorConfig
    file: Path
    owner: str | None = None
    description: str | None = None
    products: tuple[ProductConfig, ...] | None = None


@dataclass(frozen=True)
class MeshConfig:
    """The whole mesh: a catalog name and its domains."""

    domains: tuple[DomainConfig, ...]
    catalog: str = "mesh"


def _redact_password(uri: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    credentials, at, host = rest.rpartition("@")
    if ":" in credentials:
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***{at}{host}"
    return uri


# --------------------------------------------------------------------------- loading

_TOP_KEYS = {"catalog", "domains"}
_DOMAIN_KEYS = {"name", "owner", "description", "connector", "products"}
_PRODUCT_KEYS = {"name", "source", "sql", "description"}
_CONNECTOR_KEYS: dict[str, set[str]] = {
    "postgres": {"type", "uri", "pool_size", "numeric_scale"},
    "sqlite": {"type", "path", "pool_size"},
    "duckdb": {"type", "path"},
    "parquet": {"type", "path"},
    "csv": {"type", "path", "delimiter", "has_header"},
}
_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")


class _LocatedDict(dict[str, Any]):
    """A YAML mapping that remembers the line it started on."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LocatedDict:
    mapping = _LocatedDict({str(key): value for key, value in loader.construct_mapping(node, deep=True).items()})
    mapping.line = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path) -> MeshConfig:
    """Load one YAML file, or every ``*.yaml``/``*.yml`` file of a directory.

    Raises:
        ConfigError: naming the file, line, domain and field of the first problem.
    """
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"{root}: config file or directory does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix in {".yaml", ".yml"}) if root.is_dir() else [root]
    if not files:
        raise ConfigError(f"{root}: no *.yaml or *.yml files in this directory")
    catalog: str | None = None
    catalog_file: Path | None = None
    domains: list[DomainConfig] = []
    seen: dict[str, Path] = {}
    for file in files:
        document = _read_yaml(file)
        file_catalog = _optional_str(document, "catalog", _Where(file, document.line))
        if file_catalog is not None:
            _check_name(file_catalog, _Where(file, document.line, field="catalog"))
            if catalog is not None and file_catalog != catalog:
                raise ConfigError(
                    f"{file}: catalog: '{file_catalog}' differs from '{catalog}' declared in {catalog_file}"
                )
            catalog, catalog_file = file_catalog, file
        for domain in _parse_domains(document, file):
            if domain.name in seen:
                raise ConfigError(
                    f"{file}: domain '{domain.name}': name: duplicate domain, already declared in {seen[domain.name]}"
                )
            seen[domain.name] = file
            domains.append(domain)
    if not domains:
        raise ConfigError(f"{root}: no domains declared")
    return MeshConfig(domains=tuple(domains), catalog=catalog or "mesh")


@dataclass(frozen=True)
class _Where:
    """Where a value sits, for error messages: file, line, domain, field path."""

    file: Path
    line: int
    domain: str | None = None
    field: str | None = None

    def at(self, field: str, line: int | None = None) -> _Where:
        path = f"{self.field}.{field}" if self.field else field
        return _Where(self.file, line if line is not None else self.line, self.domain, path)

    def error(self, message: str) -> ConfigError:
        parts = [f"{self.file}:{self.line}"]
        if self.domain:
            parts.append(f"domain '{self.domain}'")
        if self.field:
            parts.append(self.field)
        return ConfigError(": ".join([*parts, message]))


def _read_yaml(file: Path) -> _LocatedDict:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    if not isinstance(document, _LocatedDict):
        raise ConfigError(f"{file}: expected a mapping with a 'domains' list at the top level")
    _check_keys(document, _TOP_KEYS, _Where(file, document.line))
    return document


def _parse_domains(document: _LocatedDict, file: Path) -> list[DomainConfig]:
    raw = document.get("domains")
    where = _Where(file, document.line, field="domains")
    if raw is None:
        raise where.error("missing; declare a list of domains")
    if not isinstance(raw, list):
        raise where.error("must be a list of domains")
    return [_parse_domain(item, _Where(file, document.line, field=f"domains[{i}]")) for i, item in enumerate(raw)]


def _parse_domain(raw: Any, where: _Where) -> DomainConfig:
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping with name, connector and products")
    where = _Where(where.file, raw.line, field=where.field)
    name = _required_str(raw, "name", where)
    _check_name(name, where.at("name"))
    where = _Where(where.file, raw.line, domain=name)
    _check_keys(raw, _DOMAIN_KEYS, where)
    connector = _parse_connector(raw.get("connector"), where.at("connector"))
    products = _parse_products(raw.get("products"), where.at("products"), connector.type)
    return DomainConfig(
        name=name,
        connector=connector,
        file=where.file,
        owner=_optional_str(raw, "owner", where),
        description=_optional_str(raw, "description", where),
        products=products,
    )


def _parse_connector(raw: Any, where: _Where) -> ConnectorConfig:
    if raw is None:
        raise where.error("missing; declare the domain's source, e.g. {type: sqlite, path: sales.db}")
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping with a 'type'")
    where = _Where(where.file, raw.line, where.domain, where.field)
    kind = _required_str(raw, "type", where)
    if kind not in _CONNECTOR_KEYS:
        raise where.at("type").error(f"unknown connector type '{kind}'; expected one of {', '.join(CONNECTOR_TYPES)}")
    _check_keys(raw, _CONNECTOR_KEYS[kind], where)
    uri: str | None = None
    path: Path | None = None
    if "uri" in _CONNECTOR_KEYS[kind]:
        uri = _required_str(raw, "uri", where)
    else:
        path = (where.file.parent / _required_str(raw, "path", where)).resolve()
        if not path.exists():
            raise where.at("path").error(f"'{raw['path']}' does not exist (resolved to {path})")
    options = {key: value for key, value in raw.items() if key not in {"type", "uri", "path"}}
    return ConnectorConfig(type=kind, uri=uri, path=path, options=options)


def _parse_products(raw: Any, where: _Where, kind: str) -> tuple[ProductConfig, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise where.error("must be a list of products")
    products: list[ProductConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        item_where = where.at(f"[{i}]")
        if not isinstance(item, _LocatedDict):
            raise item_where.error("must be a mapping with name and source (or sql)")
        item_where = _Where(where.file, item.line, where.domain, f"{where.field}[{i}]")
        name = _required_str(item, "name", item_where)
        _check_name(name, item_where.at("name"))
        item_where = _Where(where.file, item.line, where.domain, f"products.{name}")
        _check_keys(item, _PRODUCT_KEYS, item_where)
        if name in seen:
            raise item_where.at("name").error("duplicate product name in this domain")
        seen.add(name)
        source = _optional_str(item, "source", item_where)
        sql = _optional_str(item, "sql", item_where)
        if (source is None) == (sql is None):
            raise item_where.error("declare exactly one of 'source' (a table or file) or 'sql' (a query)")
        if sql is not None and kind in {"parquet", "csv"}:
            raise item_where.at("sql").error(f"a {kind} source has no SQL dialect; use 'source'")
        products.append(
            ProductConfig(name=name, source=source, sql=sql, description=_optional_str(item, "description", item_where))
        )
    return tuple(products)


def _check_keys(raw: _LocatedDict, allowed: set[str], where: _Where) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise where.at(unknown[0]).error(f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _required_str(raw: _LocatedDict, key: str, where: _Where) -> str:
    value = raw.get(key)
    if value is None:
        raise where.at(key).error("missing")
    if not isinstance(value, str) or not value.strip():
        raise where.at(key).error(f"must be a non-empty string, got {value!r}")
    return value


def _optional_str(raw: _LocatedDict, key: str, where: _Where) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise where.at(key).error(f"must be a string, got {value!r}")
    return value


def _check_name(name: str, where: _Where) -> None:
    if not _NAME_PATTERN.match(name):
        raise where.error(
            f"'{name}' is not a valid name: use lower-case letters, digits and '_' (not starting with a digit)"
        )
