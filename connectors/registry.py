"""Connector kinds by configured ``type:``, from the ``meshgate.connectors`` entry point group.

Every kind, built-in or not, is an entry point naming a connector class::

    [project.entry-points."meshgate.connectors"]
    postgres = "connectors.postgres:PostgresConnector"
    "parquet+s3" = "connectors.objects:ObjectParquetConnector"

The entry point's name is the ``type:`` a domain configures. A name ``kind+scheme`` is the
class ``kind`` uses when the domain's ``uri`` starts with ``scheme://`` (Parquet and CSV in
S3). The kinds Meshgate itself declares are built-in; another distribution may add kinds
but not replace or extend a built-in one. Names are read once, on first use; a kind's
classes are imported when a domain first asks for it, so a mesh imports only the drivers it
uses. A kind that cannot be imported, that names no concrete connector class, or that
clashes with a built-in kind or another plugin's is logged (naming its distribution and
entry point) and left out: the gateway serves the rest, and a domain asking for that kind is
offline with the reason (:func:`open_connector`).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
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
        """The settings only an admin may set or change: those declared, and every option naming a file."""
        return frozenset().union(*(cls.admin_keys | cls.path_keys for cls in self.classes()))

    @property
    def path_keys(self) -> frozenset[str]:
        return frozenset().union(*(cls.path_keys for cls in self.classes()))


class Registry:
    """The kinds the entry points declare, each imported on first use and kept.

    ``kinds`` maps a kind's name to its :class:`Kind`, importing it when asked; a kind that
    cannot be had (see the module doc) is absent, and :meth:`problem` says why.
    """

    def __init__(self, found: Iterable[EntryPoint]) -> None:
        self._entries: dict[str, dict[str, EntryPoint]] = {}  # kind -> {scheme ("" for the kind): entry point}
        self._problems: dict[str, str] = {}
        self._loaded: dict[str, Kind] = {}
        self._lock = threading.RLock()
        self._declare(found)
        self.kinds: Mapping[str, Kind] = _Kinds(self)

    @property
    def names(self) -> frozenset[str]:
        """Every kind declared, whether or not it can be loaded (nothing is imported)."""
        return frozenset(self._entries) | frozenset(self._problems)

    def kind(self, name: str) -> Kind:
        """The kind ``name`` (raises ConfigError saying why it is unknown or unavailable)."""
        found = self.load(name)
        if found is not None:
            return found
        if name in self._problems:
            raise ConfigError(f"connector type {name!r} is unavailable: {self._problems[name]}")
        raise ConfigError(f"unknown connector type {name!r} (expected one of {self.known()})")

    def known(self) -> str:
        """The declared kinds, for messages (saying so when there are none at all)."""
        return ", ".join(sorted(self.names)) or "none: Meshgate's entry points are not installed (pip install .)"

    def problem(self, name: str) -> str | None:
        """Why a declared kind cannot be had (its loading logged it), or None."""
        self.load(name)
        return self._problems.get(name)

    def load(self, name: str) -> Kind | None:
        """The kind ``name``, imported on first call; None when unknown or unavailable."""
        with self._lock:
            if name in self._loaded or name in self._problems or name not in self._entries:
                return self._loaded.get(name)
            classes: dict[str, type[Connector]] = {}
            for scheme, ep in sorted(self._entries[name].items()):
                where = _where(ep)
                try:
                    loaded = ep.load()
                except Exception as error:  # a plugin's own import error: this kind only is lost
                    reason: str | None = f"{where} cannot be imported: {type(error).__name__}: {error}"
                else:
                    reason = _not_a_connector(loaded, where)
                if reason is not None:
                    self._unavailable(name, reason)
                    return None
                classes[scheme] = loaded
            base = classes.pop("")
            self._loaded[name] = Kind(name, base, _distribution(self._entries[name][""]), classes)
            return self._loaded[name]

    def _declare(self, found: Iterable[EntryPoint]) -> None:
        """Sort the entry points by kind, without importing them: built-in kinds first and unreplaceable."""
        declared = sorted(found, key=lambda ep: (_distribution(ep) != BUILT_IN, ep.name, _distribution(ep)))
        built_in = {ep.name.partition("+")[0] for ep in declared if _distribution(ep) == BUILT_IN}
        for ep in declared:
            kind, _, scheme = ep.name.partition("+")
            distribution = _distribution(ep)
            if distribution != BUILT_IN and kind in built_in:
                log.error("connector plugin ignored: %s: %r is a built-in connector type", _where(ep), kind)
                continue
            if kind in self._problems:
                continue
            entries = self._entries.setdefault(kind, {})
            owner = _distribution(next(iter(entries.values()))) if entries else distribution
            if owner == distribution and scheme in entries:
                continue  # the same distribution seen twice on the path
            if owner != distribution:
                del self._entries[kind]
                self._unavailable(kind, f"{_where(ep)} clashes with the one of distribution {owner!r}")
                continue
            entries[scheme] = ep
        for kind, entries in list(self._entries.items()):
            if "" not in entries:
                del self._entries[kind]
                named = ", ".join(_where(ep) for ep in entries.values())
                self._unavailable(kind, f"{named} adds a uri scheme to no kind {kind!r}")
        if not built_in:
            log.error("no built-in connector types: Meshgate's %r entry points are missing (reinstall it)", GROUP)

    def _unavailable(self, kind: str, reason: str) -> None:
        log.error("connector type %r is unavailable: %s", kind, reason)
        self._problems[kind] = reason


class _Kinds(Mapping[str, Kind]):
    """A registry's kinds by name, each imported when first looked up (iterating imports them all)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> Kind:
        found = self._registry.load(name)
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(name for name in self._registry.names if self._registry.load(name) is not None))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def load(found: Iterable[EntryPoint]) -> Registry:
    """The registry declared by ``found`` (entry points of :data:`GROUP`)."""
    return Registry(found)


def _where(ep: EntryPoint) -> str:
    return f"entry point '{ep.name} = {ep.value}' of distribution {_distribution(ep)!r}"


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
