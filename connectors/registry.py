"""Connector kinds by configured ``type:``, from the ``meshgate.connectors`` entry point group.

Every kind, built-in or not, is an entry point naming a connector class::

    [project.entry-points."meshgate.connectors"]
    postgres = "connectors.postgres:PostgresConnector"
    "parquet+s3" = "connectors.objects:ObjectParquetConnector"

The entry point's name is the ``type:`` a domain configures. A name ``kind+scheme`` is the
class ``kind`` uses when the domain's ``uri`` starts with ``scheme://`` (Parquet and CSV in
S3). The kinds Meshgate itself declares are built-in; another distribution may add kinds
but not replace or extend a built-in one. Entry points are read once, on first use. One
that cannot be imported, that names no concrete connector class, or that clashes with a
built-in kind or another plugin's is logged (naming its distribution and entry point) and
left out: the gateway serves the rest, and a domain asking for that kind is offline with
the reason (:func:`open_connector`).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from connectors.base import Connector, FileConnector, SqlConnector
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError

log = logging.getLogger(__name__)

GROUP = "meshgate.connectors"
"""The entry point group connector kinds are declared in."""
BUILT_IN = "meshgate"
"""The distribution whose kinds are built-in."""


@dataclass(frozen=True)
class Kind:
    """One connector kind: its class, its classes by uri scheme, and the distribution declaring it."""

    name: str
    connector: type[Connector]
    distribution: str
    schemes: Mapping[str, type[Connector]] = field(default_factory=dict)

    def classes(self) -> tuple[type[Connector], ...]:
        return (self.connector, *self.schemes.values())

    def class_for(self, uri: str | None) -> type[Connector]:
        """The class for a domain whose ``uri`` is ``uri``: a scheme's own class, else the kind's."""
        scheme = uri.partition("://")[0] if uri is not None and "://" in uri else None
        return self.schemes.get(scheme, self.connector) if scheme is not None else self.connector

    @property
    def config_keys(self) -> frozenset[str]:
        """Every setting some class of the kind accepts."""
        return frozenset().union(*(cls.config_keys for cls in self.classes()))

    @property
    def admin_keys(self) -> frozenset[str]:
        return frozenset().union(*(cls.admin_keys for cls in self.classes()))

    @property
    def path_keys(self) -> frozenset[str]:
        return frozenset().union(*(cls.path_keys for cls in self.classes()))


@dataclass(frozen=True)
class Registry:
    """The kinds there are, and those declared but unavailable (with why, for messages)."""

    kinds: Mapping[str, Kind]
    unavailable: Mapping[str, str]

    def kind(self, name: str) -> Kind:
        """The kind ``name`` (raises ConfigError saying why it is unknown or unavailable)."""
        found = self.kinds.get(name)
        if found is not None:
            return found
        if name in self.unavailable:
            raise ConfigError(f"connector type {name!r} is unavailable: {self.unavailable[name]}")
        known = ", ".join(sorted(self.kinds)) or "none"
        hint = "" if self.kinds else f" (no {GROUP!r} entry points are installed: reinstall Meshgate)"
        raise ConfigError(f"unknown connector type {name!r} (expected one of {known}){hint}")


def load(found: Iterable[EntryPoint]) -> Registry:
    """The registry declared by ``found`` (entry points of :data:`GROUP`); logs each one it leaves out."""
    declared = sorted(found, key=lambda ep: (_distribution(ep) != BUILT_IN, ep.name, _distribution(ep)))
    built_in = {ep.name.partition("+")[0] for ep in declared if _distribution(ep) == BUILT_IN}
    classes: dict[str, type[Connector]] = {}
    owners: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    for ep in declared:
        distribution = _distribution(ep)
        where = f"entry point '{ep.name} = {ep.value}' of distribution {distribution!r}"
        kind = ep.name.partition("+")[0]
        reason: str | None = None
        if distribution != BUILT_IN and kind in built_in:
            log.error("connector plugin ignored: %s: %r is a built-in connector type", where, kind)
            continue
        if kind in unavailable:
            continue
        if owners.get(ep.name) == distribution:
            continue  # the same distribution seen twice on the path
        if ep.name in owners:
            reason = f"{where} clashes with the one of distribution {owners[ep.name]!r}"
            classes.pop(ep.name, None)
        else:
            owners[ep.name] = distribution
            try:
                loaded = ep.load()
            except Exception as error:  # a plugin's own import error: this kind only is lost
                reason = f"{where} cannot be imported: {type(error).__name__}: {error}"
            else:
                reason = _not_a_connector(loaded, where)
                if reason is None:
                    classes[ep.name] = loaded
        if reason is not None:
            log.error("connector type %r is unavailable: %s", kind, reason)
            unavailable[kind] = reason
    kinds: dict[str, Kind] = {}
    for name, cls in classes.items():
        kind, plus, scheme = name.partition("+")
        if kind in unavailable:
            continue
        if not plus:
            kinds[kind] = Kind(kind, cls, owners[name])
    for name, cls in classes.items():
        kind, plus, scheme = name.partition("+")
        if plus and kind in kinds:
            base = kinds[kind]
            kinds[kind] = Kind(kind, base.connector, base.distribution, {**base.schemes, scheme: cls})
        elif plus and kind not in unavailable:
            reason = f"entry point '{name}' of distribution {owners[name]!r} adds a uri scheme to no kind {kind!r}"
            log.error("connector plugin ignored: %s", reason)
    if not any(k.distribution == BUILT_IN for k in kinds.values()):
        log.error("no built-in connector types: Meshgate's %r entry points are missing (reinstall it)", GROUP)
    return Registry(kinds, unavailable)


def _distribution(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "(unknown)"


def _not_a_connector(loaded: object, where: str) -> str | None:
    """Why ``loaded`` cannot be a connector kind, or None when it can."""
    if not (inspect.isclass(loaded) and issubclass(loaded, (SqlConnector, FileConnector))):
        return f"{where} names {loaded!r}, not a connector class (a subclass of SqlConnector or FileConnector)"
    if inspect.isabstract(loaded):
        missing = ", ".join(sorted(getattr(loaded, "__abstractmethods__", ())))
        return f"{where} names {loaded.__name__}, which does not implement {missing}"
    if not isinstance(getattr(loaded, "kind", None), str):
        return f"{where} names {loaded.__name__}, which declares no kind"
    if not {"uri", "path"} & loaded.config_keys:
        return f"{where} names {loaded.__name__}, whose config_keys name neither 'uri' nor 'path' (where its source is)"
    return None


_lock = threading.Lock()
_loaded: Registry | None = None


def registry() -> Registry:
    """The installed kinds, read from the entry points on first use."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = load(entry_points(group=GROUP))
        return _loaded


def open_connector(domain: str, config: ConnectorConfig) -> Connector:
    """The connector for ``config.type`` (connections open lazily, on first use).

    Raises:
        ConfigError: for an unknown or unavailable type or a missing uri/path, naming the domain.
    """
    try:
        kind = registry().kind(config.type)
    except ConfigError as error:
        raise ConfigError(f"domain {domain!r}: {error}") from None
    return kind.class_for(config.uri)(domain, config)
