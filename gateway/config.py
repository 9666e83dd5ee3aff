"""The mesh configuration: validated, immutable, and precise about its errors.

A mesh is one YAML file or a directory of YAML files (one per domain, so that each
domain team owns its file). Every error names the file, the domain and the field.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import yaml
from sqlglot import parse_one
from sqlglot.errors import SqlglotError

from connectors.base import FileConnector
from connectors.registry import registry
from gateway.auth import (
    DEFAULT_TOKEN_TTL_SECONDS,
    RESERVED_ATTRIBUTES,
    USER_NAME_PATTERN,
    User,
    check_password_hash,
)
from gateway.contracts import parse_type
from gateway.errors import ConfigError
from gateway.policy import PolicySet, merge, parse_policies
from gateway.selfserve import SelfServe, parse_self_serve
from meshcore.config import ConnectorConfig as ConnectorConfig  # below gateway and connectors
from meshcore.config import redact_password as redact_password
from meshcore.config import without_password as without_password


@dataclass(frozen=True)
class ColumnContract:
    """One column a product promises: its Arrow type, what it means, how it is tagged."""

    name: str
    type: pa.DataType
    description: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Freshness:
    """How recent a product's newest row must be, judged by a timestamp (or date) column."""

    max_age: dt.timedelta
    column: str


@dataclass(frozen=True)
class CheckConfig:
    """One quality check of a product (gateway/quality.py runs them).

    ``kind`` is ``unique`` (over ``columns``), ``not_null`` (``columns[0]``, at most
    ``max_null_ratio`` NULLs), ``freshness``, ``row_count`` (``min_rows``/``max_rows``)
    or ``sql`` (a query returning one boolean, or the failing rows).
    """

    kind: str
    name: str
    columns: tuple[str, ...] = ()
    max_null_ratio: float = 0.0
    freshness: Freshness | None = None
    min_rows: int | None = None
    max_rows: int | None = None
    sql: str | None = None


@dataclass(frozen=True)
class ProductConfig:
    """A data product a domain publishes: a source table/file or a source query.

    The rest is optional metadata: ``owner`` (the domain's unless given), ``tags``,
    ``version``, a ``freshness`` expectation, a schema contract (``columns``,
    ``primary_key``) with what to do when the source drifts from it (``on_drift``), and
    quality ``checks``. ``origin`` (``file:line``) names the declaration in messages.
    """

    name: str
    source: str | None = None
    sql: str | None = None
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    version: str | None = None
    freshness: Freshness | None = None
    columns: tuple[ColumnContract, ...] | None = None  # None: no contract
    primary_key: tuple[str, ...] = ()
    on_drift: str = "flag"
    checks: tuple[CheckConfig, ...] = ()
    catalog_sample: bool = False  # the web catalog shows a governed sample of rows (opt-in)
    as_of: int | str | None = None  # a lakehouse table's pinned version: a number, or an ISO 8601 timestamp
    origin: str = field(default="", compare=False)


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
    ``MESHGATE_TOKEN_KEY`` or generated at start; ``mask_key_file`` (resolved, its
    content checked at load) holds the key of the ``hash`` mask, when it is not in
    ``MESHGATE_MASK_KEY`` or generated at start.
    """

    users: tuple[User, ...]
    file: Path
    token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS
    token_key_file: Path | None = None
    mask_key_file: Path | None = None


@dataclass(frozen=True)
class MeshConfig:
    """The whole mesh: a catalog name, its domains and every policy (platform and domains)."""

    domains: tuple[DomainConfig, ...]
    catalog: str = "mesh"
    policies: PolicySet = field(default_factory=PolicySet)
    auth: AuthConfig | None = None  # None: no users declared (only `serve --demo --no-auth` runs then)
    self_serve: SelfServe = field(default_factory=lambda: SelfServe())  # who may change domains over the network


# --------------------------------------------------------------------------- loading

_TOP_KEYS = {"catalog", "domains", "policies", "auth", "self_serve"}
_AUTH_KEYS = {"users", "users_file", "token_ttl_seconds", "token_key_file", "mask_key_file"}
_USER_KEYS = {"name", "password_hash", "groups", "attributes"}
_DOMAIN_KEYS = {"name", "owner", "description", "connector", "products", "policies"}
_PRODUCT_KEYS = {
    "name",
    "source",
    "sql",
    "description",
    "owner",
    "tags",
    "version",
    "freshness",
    "columns",
    "primary_key",
    "on_drift",
    "checks",
    "catalog_sample",
    "as_of",
}
_COLUMN_KEYS = {"name", "type", "description", "tags"}
CHECK_KINDS = ("unique", "not_null", "freshness", "row_count", "sql")
_CHECK_KEYS = {"name", "max_null_ratio", *CHECK_KINDS}
ON_DRIFT = ("flag", "block")
_TAG_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")


class _LocatedDict(dict[str, Any]):
    """A YAML mapping that remembers the line it started on, and the line of each key."""

    line: int = 0
    key_lines: dict[str, int] = {}  # replaced per instance by the constructor

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


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
    mapping.key_lines = {
        str(key.value): key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)
    }
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
    config = _assemble([(file, _read_yaml(file)) for file in files], secrets_files=True)
    if not config.domains and require_domains:
        raise ConfigError(f"{root}: no domains declared")
    return config


def parse_config_text(text: str, file: Path) -> MeshConfig:
    """One mesh file's text, read as if it were ``file`` (relative paths resolve from its folder).

    Nothing is written: this is how a file sent over the network is checked before anything changes.
    ``${VAR}`` references expand from this process's environment; ``${file:...}`` is refused (a
    file sent over the network may not read the gateway's files).
    """
    return _assemble([(file, _document(_parse_yaml_text(text, file), file))], secrets_files=False)


def _assemble(documents: list[tuple[Path, _LocatedDict]], *, secrets_files: bool) -> MeshConfig:
    catalog: str | None = None
    catalog_file: Path | None = None
    auth: AuthConfig | None = None
    self_serve: SelfServe | None = None
    domains: list[DomainConfig] = []
    policies: list[PolicySet] = []
    seen: dict[str, Path] = {}
    for file, document in documents:
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
        if document.get("self_serve") is not None:
            if self_serve is not None:
                raise ConfigError(f"{file}: self_serve: already declared in {self_serve.file}; declare it once")
            self_serve = parse_self_serve(document["self_serve"], file, document.line)
        for domain in _parse_domains(document, file, secrets_files):
            if domain.name in seen:
                raise ConfigError(
                    f"{file}: domain '{domain.name}': name: duplicate domain, already declared in {seen[domain.name]}"
                )
            seen[domain.name] = file
            domains.append(domain)
            policies.append(domain.policies)
    return MeshConfig(
        domains=tuple(domains),
        catalog=catalog or "mesh",
        policies=merge(policies),
        auth=auth,
        self_serve=self_serve or SelfServe(),
    )


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
    return _document(_read_yaml_document(file), file)


def _document(document: Any, file: Path) -> _LocatedDict:
    if not isinstance(document, _LocatedDict):
        raise ConfigError(f"{file}: expected a mapping with a 'domains' list at the top level")
    _check_keys(document, _TOP_KEYS, _Where(file, document.line))
    return document


def _read_yaml_document(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: cannot read: not UTF-8 text") from None
    return _parse_yaml_text(text, file)


def _parse_yaml_text(text: str, file: Path) -> Any:
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    return document


def yaml_document(text: str, file: Path) -> Any:
    """``text`` read as the mesh config reads YAML (1.2 booleans; errors name ``file`` and the line)."""
    return _parse_yaml_text(text, file)


def _parse_domains(document: _LocatedDict, file: Path, secrets_files: bool) -> list[DomainConfig]:
    raw = document.get("domains")
    where = _Where(file, document.line, field="domains")
    if raw is None and ({"auth", "policies", "self_serve"} & set(document)):
        return []  # a platform file of its own: users (auth.yaml), policies or self_serve (platform.yaml)
    if raw is None:
        raise where.error("missing; declare a list of domains")
    if not isinstance(raw, list):
        raise where.error("must be a list of domains")
    return [
        _parse_domain(item, _Where(file, document.line, field=f"domains[{i}]"), secrets_files)
        for i, item in enumerate(raw)
    ]


def _parse_domain(raw: Any, where: _Where, secrets_files: bool) -> DomainConfig:
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping with name, connector and products")
    where = _Where(where.file, raw.line, field=where.field)
    name = _required_str(raw, "name", where)
    _check_name(name, where.at("name"))
    where = _Where(where.file, raw.line, domain=name)
    _check_keys(raw, _DOMAIN_KEYS, where)
    connector = _parse_connector(raw.get("connector"), where.at("connector"), secrets_files)
    owner = _optional_str(raw, "owner", where)
    products = _parse_products(raw.get("products"), where.at("products"), connector.type, owner)
    policies = PolicySet()
    if raw.get("policies") is not None:
        policies = parse_policies(raw["policies"], f"{where.file}:{raw.line}: domain '{name}'", domain=name)
    return DomainConfig(
        name=name,
        connector=connector,
        file=where.file,
        owner=owner,
        description=_optional_str(raw, "description", where),
        products=products,
        policies=policies,
    )


def _parse_connector(raw: Any, where: _Where, secrets_files: bool) -> ConnectorConfig:
    """The connector mapping, its ``${...}`` references expanded (every key but ``type``)."""
    if raw is None:
        raise where.error("missing; declare the domain's source, e.g. {type: sqlite, path: sales.db}")
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping with a 'type'")
    where = _Where(where.file, raw.line, where.domain, where.field)
    kind = _required_str(raw, "type", where)
    kinds = registry()
    if kind not in kinds.names:
        raise where.at("type").error(f"unknown connector type '{kind}'; expected one of {kinds.known()}")
    declared = kinds.kinds.get(kind)  # None: a plugin that failed to load (the domain will be offline, saying why)
    if declared is not None:
        _check_keys(raw, {"type", *declared.config_keys}, where)
    settings = _LocatedDict(raw)
    settings.line, settings.key_lines = raw.line, raw.key_lines
    shown_uri: str | None = None
    for key, value in raw.items():
        if key != "type" and isinstance(value, str):
            expanded = _expand(value, key, where.at(key, raw.line_of(key)), secrets_files)
            if expanded is not None:
                settings[key] = expanded[0]
                shown_uri = expanded[1] if key == "uri" else shown_uri
    uri: str | None = None
    path: Path | None = None
    local = declared.connector.config_keys if declared is not None else frozenset(raw)
    if declared is None and not {"uri", "path"} & local:
        why = kinds.problem(kind)
        raise where.error(f"missing 'uri' or 'path' (connector type '{kind}' is unavailable: {why})")
    if declared is not None and declared.schemes and "path" in local and ("uri" in raw or "path" not in raw):
        # Object storage (connectors/objects.py), or a local path: one or the other.
        uri = _object_uri(raw, settings, where, tuple(declared.schemes))
    elif "path" not in local:
        uri = _required_str(settings, "uri", where) if "uri" in local else None
    else:
        if declared is not None and (extra := sorted(set(raw) - {"type", *local})):
            schemes = " or ".join(f"{scheme}://..." for scheme in declared.schemes)
            raise where.at(extra[0], raw.line_of(extra[0])).error(f"applies to object storage only (a uri: {schemes})")
        written = _required_str(raw, "path", where)
        path = (where.file.parent / _required_str(settings, "path", where)).resolve()
        if not path.exists() and declared is not None:
            # A path built from references is not shown expanded: its variables are the gateway's.
            resolved = f" (resolved to {path})" if settings["path"] == written else ""
            raise where.at("path", raw.line_of("path")).error(f"'{written}' does not exist{resolved}")
    options = {key: value for key, value in settings.items() if key not in {"type", "uri", "path"}}
    for key in declared.path_keys if declared is not None else ():
        if isinstance(options.get(key), str):  # a file, like a path: relative to the YAML file
            options[key] = str((where.file.parent / options[key]).resolve())
    return ConnectorConfig(type=kind, uri=uri, path=path, options=options, shown_uri=shown_uri)


def _object_uri(raw: _LocatedDict, settings: _LocatedDict, where: _Where, schemes: tuple[str, ...]) -> str:
    """The ``uri`` of a file kind that also reads object storage (``s3://bucket/prefix``): a path or a
    uri is required, not both."""
    example = " or ".join(f"{scheme}://..." for scheme in schemes)
    if "uri" not in raw:
        raise where.error(f"missing 'path' (a file or folder) or 'uri' ({schemes[0]}://bucket/prefix)")
    if "path" in raw:
        raise where.at("path", raw.line_of("path")).error(f"give 'path' (local files) or 'uri' ({example}), not both")
    uri = _required_str(settings, "uri", where)
    if uri.partition("://")[0] not in schemes or "://" not in uri:
        shown = raw["uri"] if isinstance(raw["uri"], str) and "${" in raw["uri"] else uri
        named = " or ".join(f"{scheme}://" for scheme in schemes)
        raise where.at("uri", raw.line_of("uri")).error(f"'{shown}' is not an {named} uri (local files take 'path')")
    return uri


# ${...} references in connector settings: ${NAME}, ${NAME:-default}, ${file:path}; $${ is a literal ${.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_SCALAR_OPTION = (int, float, bool)


@dataclass(frozen=True)
class _Reference:
    """One ``${...}`` in a setting: a variable (with its default, if any) or a secrets file."""

    text: str
    variable: str | None = None
    default: str | None = None
    file: str | None = None

    @property
    def shown(self) -> str:
        """The reference as written, a password in its default masked."""
        if self.default is None:
            return self.text
        return f"${{{self.variable}:-{redact_password(self.default)}}}"


def _expand(text: str, key: str, where: _Where, secrets_files: bool) -> tuple[Any, str] | None:
    """``text`` with its references expanded, and how messages show it; None when it holds none.

    In a ``uri``, a reference inside the user information or in a query parameter's value is
    inserted percent-encoded (a secret is written as it is), and the uri is shown as written with
    its passwords masked. An option (any key but ``uri`` and ``path``) that is one reference alone
    is read as a YAML scalar, so ``pool_size: ${POOL:-4}`` is a number. Errors name the reference,
    never a value.
    """
    pieces = _pieces(text, where)
    if pieces is None:
        return None
    encoded = _encoded_references(pieces) if key == "uri" else set()
    expanded = "".join(
        piece if isinstance(piece, str) else _value(piece, where, secrets_files, encode=i in encoded)
        for i, piece in enumerate(pieces)
    )
    shown = _shown_uri(pieces) if key == "uri" else text
    references = [piece for piece in pieces if isinstance(piece, _Reference)]
    if key not in {"uri", "path"} and len(references) == 1 and references[0].text == text.strip():
        scalar = yaml.load(expanded, Loader=_Loader) if expanded.strip() else None
        if isinstance(scalar, _SCALAR_OPTION):
            return scalar, shown
    return expanded, shown


def _pieces(text: str, where: _Where) -> list[str | _Reference] | None:
    """``text`` cut into literal text and references; None when it holds no ``${``."""
    pieces: list[str | _Reference] = []
    end = 0
    for match in _REFERENCE.finditer(text):
        pieces.append(text[end : match.start()])
        end = match.end()
        if match.group(0) == "$${":
            pieces.append("${")
        elif match.group(1) is None:
            raise where.error(
                "'${' without a closing '}': write ${NAME}, ${NAME:-default} or ${file:path} (and $${ for a literal ${)"
            )
        else:
            pieces.append(_reference(match.group(0), match.group(1), where))
    if not pieces:
        return None
    pieces.append(text[end:])
    return pieces


def _shown_uri(pieces: list[str | _Reference]) -> str:
    """A uri as written, its passwords masked; each reference is read as one opaque token."""
    marked = "".join(piece if isinstance(piece, str) else f"\x00{i}\x01" for i, piece in enumerate(pieces))
    redacted = redact_password(marked)
    return re.sub(r"\x00(\d+)\x01", lambda m: cast(_Reference, pieces[int(m.group(1))]).shown, redacted)


def _reference(text: str, inner: str, where: _Where) -> _Reference:
    if inner.startswith("file:"):
        if not inner[5:].strip():
            raise where.error(f"{text}: name the secrets file, e.g. ${{file:/run/secrets/pg_password}}")
        return _Reference(text, file=inner[5:].strip())
    found = _VARIABLE.match(inner)
    if found is None:
        raise where.error(
            f"{text} is not a reference: write ${{NAME}} (letters, digits and _), ${{NAME:-default}} or"
            " ${file:path} (and $${ for a literal ${)"
        )
    return _Reference(text, variable=found.group(1), default=found.group(2))


def _value(reference: _Reference, where: _Where, secrets_files: bool, *, encode: bool) -> str:
    """What a reference stands for (percent-encoded when ``encode``)."""
    if reference.file is not None:
        value = _secrets_file(reference, where, secrets_files)
    else:
        assert reference.variable is not None
        found = os.environ.get(reference.variable)
        if reference.default is not None and not found:
            found = reference.default
        if found is None:
            raise where.error(
                f"variable {reference.variable} is not set (in {reference.text}); set it in the gateway's"
                f" environment, or give a default: ${{{reference.variable}:-default}}"
            )
        value = found
    return urllib.parse.quote(value, safe="") if encode else value


def _secrets_file(reference: _Reference, where: _Where, secrets_files: bool) -> str:
    """A secrets file's stripped text (relative to the YAML file); only for files read from disk."""
    assert reference.file is not None
    if not secrets_files:
        raise where.error(
            f"{reference.text}: a file sent over the network may not read files on the gateway;"
            " use a variable of the gateway's environment (${NAME}), or ask the platform team to"
            " put the domain's file on disk"
        )
    path = (where.file.parent / reference.file).resolve()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise where.error(f"{reference.text}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise where.error(f"{reference.text}: {path} is not UTF-8 text") from None
    if not value:
        raise where.error(f"{reference.text}: {path} is empty")
    return value


def _encoded_references(pieces: list[str | _Reference]) -> set[int]:
    """The references of a uri that sit in its user information or in a query parameter's value.

    The uri is read with each reference as an opaque placeholder, so a value holding ``@``, ``:``,
    ``/``, ``?``, ``#``, ``&`` or ``%`` cannot change where the uri's parts are.
    """
    marks = "".join(piece if isinstance(piece, str) else "\x00" for piece in pieces)
    start = marks.find("://")
    if start < 0:
        return set()
    positions = [i for i, piece in enumerate(pieces) if isinstance(piece, _Reference)]
    offsets: list[int] = []
    offset = 0
    for piece in pieces:
        offsets.append(offset)
        offset += len(piece) if isinstance(piece, str) else 1
    authority_end = min((i for i in (marks.find(c, start + 3) for c in "/?#") if i >= 0), default=len(marks))
    userinfo_end = marks.rfind("@", start + 3, authority_end)
    question = marks.find("?", start + 3)
    fragment = marks.find("#", question) if question >= 0 else -1
    encoded = set()
    for i in positions:
        at = offsets[i]
        if start + 3 <= at < userinfo_end:
            encoded.add(i)
        elif question >= 0 and at > question and (fragment < 0 or at < fragment):
            segment_start = marks.rfind("&", question, at) + 1 or question + 1
            if "=" in marks[max(segment_start, question + 1) : at]:
                encoded.add(i)
    return encoded


def _parse_products(raw: Any, where: _Where, kind: str, owner: str | None) -> tuple[ProductConfig, ...] | None:
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
        if sql is not None and _reads_files(kind):
            raise item_where.at("sql").error(f"a {kind} source has no SQL dialect; use 'source'")
        product = _parse_product(item, item_where, name, source, sql, owner)
        if "as_of" in item:
            product = replace(product, as_of=_parse_as_of(item["as_of"], item_where.at("as_of"), kind))
        products.append(product)
    return tuple(products)


def _reads_files(kind: str) -> bool:
    """Whether a kind's products are files or tables DataFusion reads itself (no SQL dialect)."""
    declared = registry().kinds.get(kind)
    return declared is not None and issubclass(declared.connector, FileConnector)


def _parse_as_of(raw: Any, where: _Where, kind: str) -> int | str:
    """A pinned version: a non-negative number (Delta version, Iceberg snapshot id) or an ISO 8601 timestamp."""
    declared = registry().kinds.get(kind)
    if declared is None or not any(cls.versioned for cls in declared.classes()):
        raise where.error(f"a {kind} source has no table versions to pin (as_of is for delta and iceberg tables)")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, dt.datetime | dt.date):  # YAML reads an unquoted timestamp as one
        return raw.isoformat()
    if isinstance(raw, str):
        try:
            dt.datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return raw
    raise where.error(
        f"must be a version number (Delta) or snapshot id (Iceberg), or an ISO 8601 timestamp such as"
        f" '2024-05-01T12:00:00Z', got {raw!r}"
    )


def _parse_product(
    item: _LocatedDict, where: _Where, name: str, source: str | None, sql: str | None, owner: str | None
) -> ProductConfig:
    """A product's source and its metadata: owner, tags, version, freshness, contract, checks."""
    columns = _parse_columns(item.get("columns"), where.at("columns"))
    primary_key = _parse_column_names(item.get("primary_key"), where.at("primary_key"), columns)
    freshness = _parse_freshness(item.get("freshness"), where.at("freshness"), columns)
    checks = _parse_checks(item.get("checks"), where.at("checks"), columns)
    if freshness is not None:  # the product's own expectation is checked as the check named "freshness"
        if any(check.name == "freshness" for check in checks):
            raise where.at("checks").error("'freshness' names the product's own freshness check; choose another name")
        checks += (CheckConfig("freshness", "freshness", freshness=freshness),)
    on_drift = item.get("on_drift", "flag")
    if on_drift not in ON_DRIFT:
        raise where.at("on_drift").error(f"must be one of {', '.join(ON_DRIFT)}, got {on_drift!r}")
    if "on_drift" in item and columns is None:
        raise where.at("on_drift").error("there is no contract to drift from: declare the product's columns")
    catalog_sample = item.get("catalog_sample", False)
    if not isinstance(catalog_sample, bool):
        raise where.at("catalog_sample").error(f"must be true or false, got {catalog_sample!r}")
    version = item.get("version")
    if version is not None and (not isinstance(version, str) or not _VERSION_PATTERN.match(version)):
        raise where.at("version").error(f'must be a quoted semantic version such as "1.2.0", got {version!r}')
    return ProductConfig(
        name=name,
        source=source,
        sql=sql,
        description=_optional_str(item, "description", where),
        owner=_optional_str(item, "owner", where) or owner,
        tags=_parse_tags(item.get("tags"), where.at("tags")),
        version=version,
        freshness=freshness,
        columns=columns,
        primary_key=primary_key,
        on_drift=on_drift,
        checks=checks,
        catalog_sample=catalog_sample,
        origin=f"{where.file}:{where.line}",
    )


def _parse_columns(raw: Any, where: _Where) -> tuple[ColumnContract, ...] | None:
    """The schema contract: ``[{name, type, description?, tags?}, ...]``."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise where.error("must be a non-empty list of columns, each with name and type")
    columns: list[ColumnContract] = []
    for i, item in enumerate(raw):
        if not isinstance(item, _LocatedDict):
            raise where.at(f"[{i}]").error("must be a mapping with name and type, e.g. {name: id, type: int64}")
        item_where = _Where(where.file, item.line, where.domain, f"{where.field}[{i}]")
        name = _required_str(item, "name", item_where)
        item_where = _Where(where.file, item.line, where.domain, f"{where.field}.{name}")
        _check_keys(item, _COLUMN_KEYS, item_where)
        if any(column.name == name for column in columns):
            raise item_where.at("name").error("declared twice")
        try:
            kind = parse_type(_required_str(item, "type", item_where))
        except ValueError as error:
            raise item_where.at("type").error(str(error)) from None
        columns.append(
            ColumnContract(
                name=name,
                type=kind,
                description=_optional_str(item, "description", item_where),
                tags=_parse_tags(item.get("tags"), item_where.at("tags")),
            )
        )
    return tuple(columns)


def _parse_tags(raw: Any, where: _Where) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.error("must be a list of tags, e.g. [pii, finance]")
    for tag in raw:
        if not isinstance(tag, str) or not _TAG_PATTERN.match(tag):
            raise where.error(f"{tag!r} is not a valid tag: use lower-case letters, digits, '_' and '-'")
    return tuple(dict.fromkeys(raw))


def _parse_column_names(
    raw: Any, where: _Where, columns: tuple[ColumnContract, ...] | None, *, single: bool = False
) -> tuple[str, ...]:
    """Column names (one name or a list; ``single``: exactly one), checked against the contract if any."""
    names = [raw] if isinstance(raw, str) else raw
    if raw is None:
        return ()
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise where.error("must be a column name" if single else "must be a list of column names")
    if single and len(names) != 1:
        raise where.error("must be one column name")
    if len(set(names)) != len(names):
        raise where.error("names a column twice")
    if columns is not None:
        declared = [column.name for column in columns]
        for name in names:
            if name not in declared:
                raise where.error(f"column '{name}' is not in the product's columns ({', '.join(declared)})")
    return tuple(names)


def _parse_freshness(raw: Any, where: _Where, columns: tuple[ColumnContract, ...] | None) -> Freshness | None:
    """``{max_age: 24h, column: updated_at}``: the newest row must be at most that old."""
    if raw is None:
        return None
    if not isinstance(raw, _LocatedDict):
        raise where.error("must be a mapping with max_age and the column to judge it by: {max_age: 24h, column: c}")
    where = _Where(where.file, raw.line, where.domain, where.field)
    _check_keys(raw, {"max_age", "column"}, where)
    try:
        max_age = parse_duration(_required_str(raw, "max_age", where))
    except ValueError as error:
        raise where.at("max_age").error(str(error)) from None
    (column,) = _parse_column_names(_required_str(raw, "column", where), where.at("column"), columns, single=True)
    declared = {c.name: c.type for c in columns or ()}
    kind = declared.get(column)
    if kind is not None and not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise where.at("column").error(f"column '{column}' is {kind}: freshness needs a timestamp or date column")
    return Freshness(max_age=max_age, column=column)


def _parse_checks(raw: Any, where: _Where, columns: tuple[ColumnContract, ...] | None) -> tuple[CheckConfig, ...]:
    """``checks:``: each item one of unique, not_null, freshness, row_count or sql, optionally named."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.error("must be a list of checks")
    checks: list[CheckConfig] = []
    for i, item in enumerate(raw):
        if not isinstance(item, _LocatedDict):
            raise where.at(f"[{i}]").error(f"must be a mapping with one of {', '.join(CHECK_KINDS)}")
        item_where = _Where(where.file, item.line, where.domain, f"{where.field}[{i}]")
        _check_keys(item, _CHECK_KEYS, item_where)
        kinds = [kind for kind in CHECK_KINDS if kind in item]
        if len(kinds) != 1:
            raise item_where.error(f"declare exactly one of {', '.join(CHECK_KINDS)}")
        check = _parse_check(item, kinds[0], item_where, columns)
        if any(other.name == check.name for other in checks):
            raise item_where.at("name").error(f"two checks are named '{check.name}'; give one a 'name'")
        checks.append(check)
    return tuple(checks)


def _parse_check(
    item: _LocatedDict, kind: str, where: _Where, columns: tuple[ColumnContract, ...] | None
) -> CheckConfig:
    name = _optional_str(item, "name", where)
    if "max_null_ratio" in item and kind != "not_null":
        raise where.at("max_null_ratio").error("only applies to a not_null check")
    value = item[kind]
    if kind == "unique":
        names = _parse_column_names(value, where.at(kind), columns)
        return CheckConfig(kind, name or f"unique({', '.join(names)})", columns=names)
    if kind == "not_null":
        (column,) = _parse_column_names(value, where.at(kind), columns, single=True)
        ratio = item.get("max_null_ratio", 0)
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
            raise where.at("max_null_ratio").error(f"must be a number from 0 to 1, got {ratio!r}")
        return CheckConfig(kind, name or f"not_null({column})", columns=(column,), max_null_ratio=float(ratio))
    if kind == "freshness":
        freshness = _parse_freshness(value, where.at(kind), columns)
        assert freshness is not None
        return CheckConfig(kind, name or f"freshness({freshness.column})", freshness=freshness)
    if kind == "row_count":
        if not isinstance(value, _LocatedDict) or not value or set(value) - {"min", "max"}:
            raise where.at(kind).error("must be a mapping with min and/or max, e.g. {min: 1, max: 1000000}")
        bounds = {key: value.get(key) for key in ("min", "max")}
        for key, bound in bounds.items():
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
                raise where.at(f"{kind}.{key}").error(f"must be a whole number of rows, at least 0, got {bound!r}")
        low, high = bounds["min"], bounds["max"]
        if low is not None and high is not None and low > high:
            raise where.at(kind).error(f"min ({low}) is greater than max ({high})")
        return CheckConfig(kind, name or "row_count", min_rows=low, max_rows=high)
    sql = _required_str(item, "sql", where)
    try:
        parse_one(sql, read="postgres")
    except SqlglotError as error:
        raise where.at("sql").error(f"not a valid SQL query: {error}") from None
    if name is None:
        raise where.at("name").error("missing: a sql check needs a name, e.g. name: no_negative_totals")
    return CheckConfig(kind, name, sql=sql)


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or a sum such as ``1h30m``.

    Raises:
        ValueError: ``text`` is not such a duration, or is zero.
    """
    compact = text.replace(" ", "").lower()
    if not re.fullmatch(r"(?:\d+[wdhms])+", compact):
        raise ValueError(f"'{text}' is not a duration; use for example 90s, 30m, 24h, 7d or 1h30m")
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in re.findall(r"(\d+)([wdhms])", compact))
    if seconds <= 0:
        raise ValueError(f"'{text}' is no time at all; give a duration longer than zero")
    return dt.timedelta(seconds=seconds)


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
    mask_key_file = _parse_mask_key_file(raw, where)
    return AuthConfig(
        users=tuple(users), file=file, token_ttl_seconds=ttl, token_key_file=key_file, mask_key_file=mask_key_file
    )


def _parse_mask_key_file(raw: _LocatedDict, where: _Where) -> Path | None:
    """``auth.mask_key_file``: resolved, and its key checked now (hex or base64, long enough)."""
    from gateway.governance import decode_mask_key

    name = _optional_str(raw, "mask_key_file", where)
    if name is None:
        return None
    path = (where.file.parent / name).resolve()
    if not path.is_file():
        raise where.at("mask_key_file").error(f"'{name}' does not exist (resolved to {path})")
    try:
        decode_mask_key(path.read_bytes())
    except OSError as exc:
        raise where.at("mask_key_file").error(f"cannot read '{name}' ({path}): {exc.strerror or exc}") from None
    except ValueError as exc:
        raise where.at("mask_key_file").error(f"'{name}' ({path}): {exc}") from None
    return path


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
