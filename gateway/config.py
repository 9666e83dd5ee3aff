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

from gateway.auth import (
    DEFAULT_TOKEN_TTL_SECONDS,
    RESERVED_ATTRIBUTES,
    USER_NAME_PATTERN,
    User,
    check_password_hash,
)
from gateway.errors import ConfigError
from gateway.policy import PolicySet, merge, parse_policies

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
    policies: PolicySet = field(default_factory=PolicySet)


@dataclass(frozen=True)
class AuthConfig:
    """Who may connect: the users (declared inline and/or in a users file) and token settings.

    ``file`` is the mesh file that declared the ``auth`` section; ``token_key_file``
    (already resolved) holds the token signing key, when it is not in
    ``MESHGATE_TOKEN_KEY`` or generated at start.
    """

    users: tuple[User, ...]
    file: Path
    token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS
    token_key_file: Path | None = None


@dataclass(frozen=True)
class MeshConfig:
    """The whole mesh: a catalog name, its domains and every policy (platform and domains)."""

    domains: tuple[DomainConfig, ...]
    catalog: str = "mesh"
    policies: PolicySet = field(default_factory=PolicySet)
    auth: AuthConfig | None = None  # None: no users declared (only `serve --demo --no-auth` runs then)


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

_TOP_KEYS = {"catalog", "domains", "policies", "auth"}
_AUTH_KEYS = {"users", "users_file", "token_ttl_seconds", "token_key_file"}
_USER_KEYS = {"name", "password_hash", "groups", "attributes"}
_DOMAIN_KEYS = {"name", "owner", "description", "connector", "products", "policies"}
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
    """YAML with 1.2 booleans: only true/false, so a key such as ``on:`` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LocatedDict:
    mapping = _LocatedDict({str(key): value for key, value in loader.construct_mapping(node, deep=True).items()})
    mapping.line = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path, *, require_domains: bool = True) -> MeshConfig:
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
    auth: AuthConfig | None = None
    domains: list[DomainConfig] = []
    policies: list[PolicySet] = []
    seen: dict[str, Path] = {}
    for file in files:
        document = _read_yaml(file)
        if document.get("policies") is not None:
            policies.append(parse_policies(document["policies"], f"{file}:{document.line}"))
        file_catalog = _optional_str(document, "catalog", _Where(file, document.line))
        if file_catalog is not None:
            _check_name(file_catalog, _Where(file, document.line, field="catalog"))
            if catalog is not None and file_catalog != catalog:
                raise ConfigError(
                    f"{file}: catalog: '{file_catalog}' differs from '{catalog}' declared in {catalog_file}"
                )
            catalog, catalog_file = file_catalog, file
        file_auth = _parse_auth(document, file)
        if file_auth is not None:
            if auth is not None:
                raise ConfigError(f"{file}: auth: already declared in {auth.file}; declare users in one file")
            auth = file_auth
        for domain in _parse_domains(document, file):
            if domain.name in seen:
                raise ConfigError(
                    f"{file}: domain '{domain.name}': name: duplicate domain, already declared in {seen[domain.name]}"
                )
            seen[domain.name] = file
            domains.append(domain)
            policies.append(domain.policies)
    if not domains and require_domains:
        raise ConfigError(f"{root}: no domains declared")
    return MeshConfig(domains=tuple(domains), catalog=catalog or "mesh", policies=merge(policies), auth=auth)


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
    document = _read_yaml_document(file)
    if not isinstance(document, _LocatedDict):
        raise ConfigError(f"{file}: expected a mapping with a 'domains' list at the top level")
    _check_keys(document, _TOP_KEYS, _Where(file, document.line))
    return document


def _read_yaml_document(file: Path) -> Any:
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
    return document


def _parse_domains(document: _LocatedDict, file: Path) -> list[DomainConfig]:
    raw = document.get("domains")
    where = _Where(file, document.line, field="domains")
    if raw is None and ("auth" in document or "policies" in document):
        return []  # a platform file of its own: users (auth.yaml) or policies (policies.yaml)
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
    policies = PolicySet()
    if raw.get("policies") is not None:
        policies = parse_policies(raw["policies"], f"{where.file}:{raw.line}: domain '{name}'", domain=name)
    return DomainConfig(
        name=name,
        connector=connector,
        file=where.file,
        owner=_optional_str(raw, "owner", where),
        description=_optional_str(raw, "description", where),
        products=products,
        policies=policies,
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


def _parse_auth(document: _LocatedDict, file: Path) -> AuthConfig | None:
    """The optional ``auth`` section: users inline and/or ``users_file``, token settings."""
    raw = document.get("auth")
    where = _Where(file, document.line, field="auth")
    if raw is None:
        return None
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping with 'users' and/or 'users_file'")
    where = _Where(file, raw.line, field="auth")
    _check_keys(raw, _AUTH_KEYS, where)
    users = _parse_users(raw.get("users"), where.at("users"))
    users_file = _optional_str(raw, "users_file", where)
    if users_file is not None:
        users += _read_users_file(users_file, where.at("users_file"))
    seen: set[str] = set()
    for user in users:
        if user.name in seen:
            raise where.at("users").error(f"user '{user.name}' is declared twice")
        seen.add(user.name)
    if not users:
        raise where.error("declares no users; add 'users' (or 'users_file') with at least one user")
    ttl = raw.get("token_ttl_seconds", DEFAULT_TOKEN_TTL_SECONDS)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
        raise where.at("token_ttl_seconds").error(f"must be a positive whole number of seconds, got {ttl!r}")
    key_file: Path | None = None
    key_name = _optional_str(raw, "token_key_file", where)
    if key_name is not None:
        key_file = (file.parent / key_name).resolve()
        if not key_file.is_file():
            raise where.at("token_key_file").error(f"'{key_name}' does not exist (resolved to {key_file})")
    return AuthConfig(users=tuple(users), file=file, token_ttl_seconds=ttl, token_key_file=key_file)


def _read_users_file(name: str, where: _Where) -> list[User]:
    """A users file (relative to the mesh file): a mapping with one key, ``users``."""
    path = (where.file.parent / name).resolve()
    if not path.is_file():
        raise where.error(f"'{name}' does not exist (resolved to {path})")
    document = _read_yaml_document(path)
    if not isinstance(document, _LocatedDict):
        raise ConfigError(f"{path}: expected a mapping with a 'users' list at the top level")
    file_where = _Where(path, document.line)
    _check_keys(document, {"users"}, file_where)
    return _parse_users(document.get("users"), file_where.at("users"))


def _parse_users(raw: Any, where: _Where) -> list[User]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise where.error("must be a list of users, each with name and password_hash")
    users = []
    for i, item in enumerate(raw):
        item_where = where.at(f"[{i}]")
        if not isinstance(item, _LocatedDict):
            raise item_where.error("must be a mapping with name and password_hash")
        item_where = _Where(where.file, item.line, field=f"{where.field}[{i}]")
        name = _required_str(item, "name", item_where)
        if not USER_NAME_PATTERN.match(name):
            raise item_where.at("name").error(
                f"'{name}' is not a valid user name: use at most 128 letters, digits and _ . @ + -"
            )
        item_where = _Where(where.file, item.line, field=f"{where.field}.{name}")
        if "password" in item:
            raise item_where.at("password").error(
                f"plain-text passwords are refused: replace it with the password_hash that `meshgate user hash {name}`"
                " prints"
            )
        _check_keys(item, _USER_KEYS, item_where)
        password_hash = _required_str(item, "password_hash", item_where)
        problem = check_password_hash(password_hash)
        if problem is not None:
            raise item_where.at("password_hash").error(problem)
        groups = _parse_groups(item.get("groups"), item_where.at("groups"))
        attributes = _parse_attributes(item.get("attributes"), item_where.at("attributes"))
        users.append(User(name=name, password_hash=password_hash, groups=groups, attributes=attributes))
    return users


def _parse_groups(raw: Any, where: _Where) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.error("must be a list of group names")
    for group in raw:
        if not isinstance(group, str) or not group.strip() or "," in group:
            raise where.error(f"group names must be non-empty strings without ',', got {group!r}")
    return tuple(raw)


def _parse_attributes(raw: Any, where: _Where) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping of attribute names to strings")
    for key, value in raw.items():
        if not _NAME_PATTERN.match(key):
            raise where.at(key).error(f"'{key}' is not a valid attribute name: use lower-case letters, digits and '_'")
        if key in RESERVED_ATTRIBUTES:
            raise where.at(key).error(f"reserved: the gateway sets '{key}' itself")
        if not isinstance(value, str):
            raise where.at(key).error(f"must be a string (quote numbers and booleans), got {value!r}")
    return dict(raw)


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


_RESERVED = {"system", "information_schema"}


def _check_name(name: str, where: _Where) -> None:
    if name in _RESERVED:
        raise where.error(f"'{name}' is reserved for the gateway's own tables; choose another name")
    if not _NAME_PATTERN.match(name):
        raise where.error(
            f"'{name}' is not a valid name: use lower-case letters, digits and '_' (not starting with a digit)"
        )
