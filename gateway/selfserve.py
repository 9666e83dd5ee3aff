"""Self-serve changes over the network: who may change which domain, and where it may point.

A domain team sends its file with ``meshgate domain apply``; the gateway decides, from
what the *platform* recorded and never from the file being applied:

- **who owns a domain**: its ``self_serve.domains.<name>.owner`` registration, else the
  owner of the version the gateway serves now. Changing the owner is an admin's change.
- **who may create one**: only a domain the platform registered, by its registered
  owner or a holder of a ``self_serve.creators`` role.
- **where it may point**: a registered domain's connector must use one of its
  registered ``sources`` (URIs, compared without passwords) or stay under one of its
  ``paths`` (symlinks resolved; every file product too). An unregistered domain keeps
  the connector it has. A source another domain uses is refused unless the platform
  registered exactly that source for this domain too.
- **which tags stay**: a contract column carrying a tag that a platform tag rule governs
  keeps it (same source, same column); dropping it is an admin's change.

Admins (the ``admin`` role) may change anything.

    self_serve:
      creators: [platform-eng]
      domains:
        sales: {owner: sales-team, sources: ["postgresql://db:5432/sales"]}
        logistics: {owner: logistics-team, paths: [data/logistics]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import FileConnector
from connectors.registry import registry
from gateway.errors import ConfigError, PermissionDeniedError

if TYPE_CHECKING:
    from gateway.config import ConnectorConfig, DomainConfig

_KEYS = {"creators", "domains"}
_REGISTRATION_KEYS = {"owner", "sources", "paths"}

PLATFORM_OPTIONS = frozenset(
    {
        "endpoint",
        "region",
        "allow_http",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "tls_root_certs",
        "tls_override_hostname",
        "username",
        "password",
    }
)
"""Connector options only an admin may set or change, whatever the kind, besides those its classes
declare (``Connector.admin_keys``): an endpoint or certificate file is another place the gateway
would connect to or read (S3 with the gateway's own AWS credentials, any file it can open), and
credentials are the platform's. A self-serve change must keep them as they are."""


@dataclass(frozen=True)
class Registration:
    """What the platform allows one domain: its owner, its source URIs, its path roots."""

    owner: str | None = None
    sources: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class SelfServe:
    """The platform's ``self_serve`` section (empty: only admins create domains or re-point them)."""

    creators: tuple[str, ...] = ()
    domains: Mapping[str, Registration] = field(default_factory=dict)
    file: Path | None = None


def parse_self_serve(raw: Any, file: Path, line: int) -> SelfServe:
    """Validate a ``self_serve:`` section; relative paths resolve from ``file``'s folder."""
    where = f"{file}:{line}: self_serve"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with creators and domains")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(_KEYS))}")
    creators = _strings(raw.get("creators"), f"{where}.creators")
    domains_raw = raw.get("domains") or {}
    if not isinstance(domains_raw, Mapping):
        raise ConfigError(f"{where}.domains: must map domain names to {{owner, sources, paths}}")
    domains: dict[str, Registration] = {}
    for name, entry in domains_raw.items():
        entry_where = f"{where}.domains.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{entry_where}: must be a mapping with owner, sources and/or paths")
        unknown = sorted(set(entry) - _REGISTRATION_KEYS)
        if unknown:
            raise ConfigError(
                f"{entry_where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(_REGISTRATION_KEYS))}"
            )
        owner = entry.get("owner")
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise ConfigError(f"{entry_where}.owner: must be a user, group or role name")
        sources = tuple(_redacted(uri) for uri in _strings(entry.get("sources"), f"{entry_where}.sources"))
        paths = tuple((file.parent / p).resolve() for p in _strings(entry.get("paths"), f"{entry_where}.paths"))
        domains[str(name)] = Registration(owner, sources, paths)
    return SelfServe(creators, domains, file)


def check_apply(
    who: str,
    identities: set[str],
    admin: bool,
    incoming: DomainConfig,
    current: DomainConfig | None,
    others: Sequence[DomainConfig],
    self_serve: SelfServe,
    governed_tags: set[str],
) -> None:
    """Raise PermissionDeniedError unless the caller may install ``incoming`` (see the module doc).

    Args:
        who: how messages name the caller (``user 'olga'``).
        identities: the caller's user name, groups and roles.
        admin: whether the caller holds the admin role (anything goes).
        incoming: the domain as the applied file declares it.
        current: the version served now, None for a new domain.
        others: every other domain served now.
        self_serve: the platform's registrations.
        governed_tags: tags some platform tag rule masks.
    """
    if admin:
        return
    name = incoming.name
    registration = self_serve.domains.get(name)
    recorded = registration.owner if registration is not None and registration.owner else None
    if recorded is None and current is not None:
        recorded = current.owner
    if current is None:
        if registration is None:
            raise PermissionDeniedError(
                f"{who} may not create domain '{name}': the platform has not registered it"
                " (self_serve.domains in a platform file); ask an admin"
            )
        creator = bool(identities & set(self_serve.creators))
        if not creator and (recorded is None or recorded not in identities):
            raise PermissionDeniedError(
                f"{who} may not create domain '{name}': it is registered to '{recorded or 'nobody'}',"
                " and creating domains needs one of the roles in self_serve.creators"
            )
    else:
        recorded = check_owner(who, identities, current, self_serve)
    if incoming.owner != recorded:
        raise PermissionDeniedError(
            f"{who} may not change the owner of domain '{name}' to '{incoming.owner or 'nobody'}': the platform"
            f" records '{recorded or 'nobody'}' (an ownership change is an admin's)"
        )
    _check_source(who, incoming, current, registration, others)
    if current is not None:
        _check_tags(who, incoming, current, governed_tags)


def _admin_keys(kind: str) -> frozenset[str]:
    """The options of ``kind`` its connector classes say only an admin may set (none for an unknown kind)."""
    declared = registry().kinds.get(kind)
    return declared.admin_keys if declared is not None else frozenset()


def check_owner(who: str, identities: set[str], current: DomainConfig, self_serve: SelfServe) -> str:
    """The recorded owner of a served domain; PermissionDeniedError unless the caller answers to it."""
    registration = self_serve.domains.get(current.name)
    recorded = registration.owner if registration is not None and registration.owner else current.owner
    if recorded is None or recorded not in identities:
        raise PermissionDeniedError(
            f"{who} may not change domain '{current.name}': it is owned by '{recorded or 'nobody'}'"
        )
    return recorded


def _check_source(
    who: str,
    incoming: DomainConfig,
    current: DomainConfig | None,
    registration: Registration | None,
    others: Sequence[DomainConfig],
) -> None:
    connector = incoming.connector
    name = incoming.name
    before = current.connector.options if current is not None else {}
    admin = PLATFORM_OPTIONS | _admin_keys(connector.type) | (_admin_keys(current.connector.type) if current else set())
    for option in sorted(admin & (set(connector.options) | set(before))):
        if connector.options.get(option) != before.get(option):
            raise PermissionDeniedError(
                f"{who} may not set connector option {option} of domain '{name}': where a source is"
                " reached and with which credentials (endpoints, certificates, keys) is an admin's change"
            )
    refused = f"{who} may not point domain '{name}' at {connector.type} '{connector.location}'"
    if registration is not None:
        allowed = _within(connector, registration)
        where = "the sources and paths the platform registered for it (self_serve.domains)"
    else:
        assert current is not None  # a new domain is always registered
        allowed = _same_source(connector, current.connector)
        where = f"the source it uses now ({current.connector.type} '{current.connector.location}')"
    if not allowed:
        raise PermissionDeniedError(f"{refused}: it may only use {where}")
    for path in _product_paths(incoming):
        if registration is not None:
            inside = any(path.is_relative_to(root) for root in registration.paths)
        else:
            assert connector.path is not None
            inside = path.is_relative_to(connector.path)
        if not inside:
            raise PermissionDeniedError(f"{who} may not publish '{path}' in domain '{name}': it lies outside {where}")
    explicitly = registration is not None and _registered_exactly(connector, registration)
    for other in others:
        if other.name != name and not explicitly and _overlaps(_reach(incoming), _reach(other)):
            raise PermissionDeniedError(
                f"{refused}: that source belongs to domain '{other.name}' (a source belongs to one domain"
                " unless the platform registers it for both)"
            )


def _check_tags(who: str, incoming: DomainConfig, current: DomainConfig, governed: set[str]) -> None:
    """A column a platform tag rule governs keeps its tag in every product reading the same source."""
    kept: dict[tuple[str | None, str | None], dict[str, set[str]]] = {}
    for product in incoming.products or ():
        columns = {c.name: set(c.tags) for c in product.columns or ()}
        kept[(product.source, product.sql)] = columns
    for product in current.products or ():
        for column in product.columns or ():
            lost = governed & set(column.tags)
            if not lost:
                continue
            now = kept.get((product.source, product.sql))
            if now is None:
                if not _same_source_elsewhere(incoming, product.source, product.sql):
                    continue  # the product is gone: nothing is served without the tag
                now = {}
            missing = sorted(lost - now.get(column.name, set()))
            if missing:
                raise PermissionDeniedError(
                    f"{who} may not drop tag '{missing[0]}' from column '{column.name}' of"
                    f" {current.name}.{product.name}: a platform tag rule governs it (an admin's change)"
                )


def _same_source_elsewhere(incoming: DomainConfig, source: str | None, sql: str | None) -> bool:
    return any((p.source, p.sql) == (source, sql) for p in incoming.products or ())


def _within(connector: ConnectorConfig, registration: Registration) -> bool:
    if connector.uri is not None:
        return _redacted(connector.uri) in registration.sources
    assert connector.path is not None
    return any(connector.path.is_relative_to(root) for root in registration.paths)


def _registered_exactly(connector: ConnectorConfig, registration: Registration) -> bool:
    if connector.uri is not None:
        return _redacted(connector.uri) in registration.sources
    return connector.path in registration.paths


def _same_source(a: ConnectorConfig, b: ConnectorConfig) -> bool:
    return a.type == b.type and _redacted(a.uri or "") == _redacted(b.uri or "") and a.path == b.path


def _reach(domain: DomainConfig) -> list[str | Path]:
    """What a domain reads: its source URI, or its connector path and every file product's path."""
    connector = domain.connector
    if connector.uri is not None:
        return [_redacted(connector.uri)]
    assert connector.path is not None
    return [connector.path, *_product_paths(domain)]


def _overlaps(a: list[str | Path], b: list[str | Path]) -> bool:
    for x in a:
        for y in b:
            if isinstance(x, Path) and isinstance(y, Path):
                if x.is_relative_to(y) or y.is_relative_to(x):
                    return True
            elif x == y:
                return True
    return False


def _product_paths(domain: DomainConfig) -> list[Path]:
    """The files and folders a file domain's products read (resolved, symlinks followed)."""
    connector = domain.connector
    declared = registry().kinds.get(connector.type)
    if connector.path is None or declared is None or not issubclass(declared.connector, FileConnector):
        return []  # files and lakehouse tables only: a SQL source's products are tables inside it
    root = connector.path if connector.path.is_dir() else connector.path.parent
    return [(root / p.source).resolve() for p in domain.products or () if p.source is not None]


def _redacted(uri: str) -> str:
    """A URI without its password (user information and query parameters): what source allow-lists compare."""
    from gateway.config import without_password

    return without_password(uri)


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise ConfigError(f"{where}: must be a list of non-empty strings")
    return tuple(raw)
