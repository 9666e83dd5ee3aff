"""Self-serve changes to a running mesh: domain files picked up without a restart.

A :class:`Reloader` watches the config directory (polling: no extra dependency, and it
works on every file system) and applies a changed file in three steps: parse it,
build its domains off to the side (connect, read products, check the policies against
what will exist), then install domains and policies in one step. A file that fails
any step is rejected with its precise error and the last good version keeps serving;
other domains are never touched. :meth:`Reloader.apply_text` does the same for a file
sent over the network (``meshgate domain apply``), after checking that the caller
owns the domains it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.api import CallerContext
from gateway.catalog import Domain
from gateway.config import MeshConfig, load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, MeshgateError, PermissionDeniedError
from gateway.policy import check_references, merge
from gateway.system_tables import ADMIN_ROLE

log = logging.getLogger(__name__)

_SUFFIXES = {".yaml", ".yml"}


@dataclass(frozen=True)
class Applied:
    """What one applied file changed."""

    file: Path
    changed: tuple[str, ...]
    removed: tuple[str, ...]


class Reloader:
    """Keeps a running engine in step with its config directory (or single file)."""

    def __init__(self, engine: Engine, root: Path, interval: float = 2.0) -> None:
        self.engine = engine
        self.root = root
        self.interval = interval
        self.errors: dict[Path, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._parts: dict[Path, MeshConfig] = {}
        self._stamps: dict[Path, str] = {}
        for file in self._files():
            self._parts[file] = load_config(file, require_domains=False)
            self._stamps[file] = _stamp(file)

    # -- watching ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="meshgate-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the watcher must outlive any one bad change
                log.exception("config reload failed")

    def poll(self) -> list[Applied]:
        """Apply every file added, changed or removed since the last poll."""
        applied: list[Applied] = []
        files = set(self._files())
        for file in sorted(files | set(self._stamps)):
            stamp = _stamp(file) if file in files else None
            if stamp == self._stamps.get(file):
                continue
            try:
                applied.append(self.apply_file(file) if stamp is not None else self.remove_file(file))
                self.errors.pop(file, None)
            except MeshgateError as error:
                self.errors[file] = str(error)
                log.error("rejected %s, the last good version keeps serving: %s", file, error)
            self._stamps[file] = stamp or ""
            if stamp is None:
                self._stamps.pop(file, None)
        return applied

    def _files(self) -> list[Path]:
        if self.root.is_dir():
            return sorted(p for p in self.root.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith("."))
        return [self.root] if self.root.exists() else []

    # -- applying ------------------------------------------------------------------
    def apply_file(self, file: Path) -> Applied:
        """Install ``file``'s domains and policies, or raise and change nothing."""
        with self._lock:
            return self._install(file, load_config(file, require_domains=False))

    def remove_file(self, file: Path) -> Applied:
        with self._lock:
            old = self._parts.get(file)
            removed = {d.name for d in old.domains} if old is not None else set()
            parts = {f: part for f, part in self._parts.items() if f != file}
            self._check_and_install(parts, {}, removed)
            self._parts = parts
            log.info("removed %s: domains %s", file, ", ".join(sorted(removed)) or "none")
            return Applied(file, (), tuple(sorted(removed)))

    def apply_text(self, caller: CallerContext, name: str, text: str) -> Applied:
        """Apply a domain file sent by ``caller``: they must own every domain it changes.

        The file is written into the config directory (so that it survives a restart)
        only once it has been applied.
        """
        if not self.root.is_dir():
            raise ConfigError("this gateway serves a single config file: domains can only change in that file")
        if not name or "/" in name or name.startswith(".") or Path(name).suffix not in _SUFFIXES:
            raise ConfigError(f"'{name}' is not a file name for the config directory (name.yaml)")
        target = self.root / name
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{name}: invalid YAML: {error}") from None
        platform_policies = isinstance(document, dict) and document.get("policies") is not None
        incoming = self.root / f".{name}.incoming"
        incoming.write_text(text, encoding="utf-8")
        try:
            with self._lock:
                config = load_config(incoming, require_domains=False)
                self._authorise(caller, config, platform_policies)
                applied = self._install(target, _moved(config, incoming, target))
            incoming.replace(target)
            self._stamps[target] = _stamp(target)
            return applied
        finally:
            incoming.unlink(missing_ok=True)

    def _authorise(self, caller: CallerContext, config: MeshConfig, platform_policies: bool) -> None:
        """Admins may change anything; a domain's owner (user, group or role) only that domain."""
        roles = self.engine.policies.roles_of(caller)
        if ADMIN_ROLE in roles:
            return
        who = f"user '{caller.user}'" if caller.user else "an anonymous caller"
        if platform_policies:
            raise PermissionDeniedError(f"{who} may not change platform policies (only the {ADMIN_ROLE} role may)")
        groups = {g.strip() for g in caller.attributes.get("groups", "").split(",") if g.strip()}
        identities = {name for name in (caller.user, *groups, *roles) if name and name != "*"}
        current = {d.name: d.config.owner for d in self.engine.catalog.domains()}
        for domain in config.domains:
            owner = current.get(domain.name, domain.owner)
            if owner is None or owner not in identities:
                raise PermissionDeniedError(
                    f"{who} may not change domain '{domain.name}': it is owned by '{owner or 'nobody'}'"
                )

    def _install(self, file: Path, config: MeshConfig) -> Applied:
        old = self._parts.get(file)
        elsewhere = {d.name: f for f, part in self._parts.items() if f != file for d in part.domains}
        for declared in config.domains:
            if declared.name in elsewhere:
                raise ConfigError(
                    f"{file}: domain '{declared.name}': name: duplicate domain,"
                    f" already declared in {elsewhere[declared.name]}"
                )
        previous = {d.name: d for d in old.domains} if old is not None else {}
        changed = [d for d in config.domains if previous.get(d.name) != d]
        removed = set(previous) - {d.name for d in config.domains}
        built: dict[str, Domain] = {}
        try:
            for declared in changed:
                built[declared.name] = self.engine.catalog.build(declared)
            parts = {**self._parts, file: config}
            self._check_and_install(parts, built, removed)
        except BaseException:
            for loaded in built.values():
                if loaded.connector is not None:
                    loaded.connector.close()
            raise
        self._parts = parts
        log.info(
            "applied %s: %s",
            file,
            ", ".join([f"domain {n} changed" for n in sorted(built)] + [f"domain {n} removed" for n in sorted(removed)])
            or "no domain changed",
        )
        return Applied(file, tuple(sorted(built)), tuple(sorted(removed)))

    def _check_and_install(self, parts: dict[Path, MeshConfig], built: dict[str, Domain], removed: set[str]) -> None:
        policies = merge(part.policies for part in parts.values())
        products = {
            (p.domain, p.name): p.schema
            for p in self.engine.catalog.products()
            if p.domain not in built and p.domain not in removed
        }
        for domain in built.values():
            products.update({(p.domain, p.name): p.schema for p in domain.products.values()})
        offline = {d.name for d in self.engine.catalog.domains() if d.error is not None and d.name not in built}
        check_references(policies, products, offline)
        self.engine.install(built, removed, policies)


APPLY_ACTION = "meshgate.domain.apply"


def apply_action(reloader: Reloader) -> Callable[[CallerContext, bytes], bytes]:
    """The Flight action behind ``meshgate domain apply``: JSON ``{name, yaml}`` in, what changed out."""

    def apply(caller: CallerContext, body: bytes) -> bytes:
        try:
            request = json.loads(body)
            name, text = request["name"], request["yaml"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError('a domain apply request is JSON: {"name": "sales.yaml", "yaml": "..."}') from None
        applied = reloader.apply_text(caller, str(name), str(text))
        log.info("user %s applied %s", caller.user, applied.file)
        return json.dumps({"file": applied.file.name, "changed": applied.changed, "removed": applied.removed}).encode()

    return apply


def _moved(config: MeshConfig, source: Path, target: Path) -> MeshConfig:
    """The config as if read from ``target`` (paths inside resolve the same: same folder)."""
    return dataclasses.replace(
        config, domains=tuple(dataclasses.replace(d, file=target) if d.file == source else d for d in config.domains)
    )


def _stamp(file: Path) -> str:
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        return ""
