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

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.api import CallerContext
from gateway.catalog import Domain
from gateway.config import MeshConfig, load_config, parse_config_text, yaml_document
from gateway.engine import Engine
from gateway.errors import ConfigError, MeshgateError, NotFoundError, PermissionDeniedError
from gateway.policy import check_references, merge
from gateway.selfserve import SelfServe, check_apply, check_owner
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

    def __init__(
        self, engine: Engine, root: Path, interval: float = 2.0, installed: Callable[[], object] | None = None
    ) -> None:
        """``installed`` is called after each change the engine took (``meshgate serve``: ``gateway.heap.settle``)."""
        self.engine = engine
        self.installed = installed
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
                self.engine.audit.event("config_reload", None, "applied", f"{file.name}: {_changes(applied[-1])}")
            except MeshgateError as error:
                self.errors[file] = str(error)
                log.error("rejected %s, the last good version keeps serving: %s", file, error)
                self.engine.audit.event("config_reload", None, "failed", f"{file.name}: {error}")
            self._stamps[file] = stamp or ""
            if stamp is None:
                self._stamps.pop(file, None)
        return applied

    def _files(self) -> list[Path]:
        if self.root.is_dir():
            return sorted(p for p in self.root.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith("."))
        return [self.root] if self.root.exists() else []

    @property
    def self_serve(self) -> SelfServe:
        """The platform's self-serve registrations, as the config files declare them now."""
        return next((part.self_serve for part in self._parts.values() if part.self_serve.file is not None), SelfServe())

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

    def apply_text(self, caller: CallerContext, text: str) -> Applied:
        """Apply one domain's file sent by ``caller`` over the network (gateway/selfserve.py decides).

        The file holds one domain and nothing of the platform's (users, secrets, policies,
        self_serve). The gateway chooses where it goes: the file that holds that domain
        alone, or ``<domain>.yaml`` for a new one. It is checked in memory and written only
        once it has been applied, so a refused file leaves nothing on disk.
        """
        try:
            applied = self._apply_text(caller, _who(caller), text)
        except MeshgateError as error:
            self.engine.audit.event("domain_apply", caller.user, _outcome(error), str(error))
            raise
        detail = f"{applied.file.name}: " + (", ".join(applied.changed) or "nothing changed")
        self.engine.audit.event("domain_apply", caller.user, "applied", detail)
        return applied

    def _apply_text(self, caller: CallerContext, who: str, text: str) -> Applied:
        if not self.root.is_dir():
            raise ConfigError("this gateway serves a single config file: domains can only change in that file")
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"invalid YAML: {error}") from None
        platform_keys = sorted(str(key) for key in document if key != "domains") if isinstance(document, dict) else []
        if platform_keys:
            raise PermissionDeniedError(
                f"{who} may not send '{platform_keys[0]}' over the network: users, secrets, platform policies and"
                " self_serve live in the platform's files; a domain file sent over the network holds only 'domains'"
            )
        if not isinstance(document, dict) or not isinstance(document.get("domains"), list):
            raise ConfigError("a domain file holds a 'domains' list with one domain")
        declared = document["domains"]
        if len(declared) != 1 or not isinstance(declared[0], dict) or not isinstance(declared[0].get("name"), str):
            raise ConfigError("a domain file sent over the network holds exactly one domain, with its name")
        name = declared[0]["name"]
        with self._lock:
            return self._apply_checked(caller, who, self._file_for(name, who), text)

    def edit_domain(self, caller: CallerContext, name: str, edit: Callable[[Any], Any], event: str) -> Applied:
        """Change domain ``name`` by ``edit`` (its file's YAML document in, the new document out) as ``caller``.

        The caller must own the domain before ``edit`` sees anything of it, and the edited file goes
        through every check of :meth:`apply_text`. ``event`` is the audit event's kind.
        """
        who = _who(caller)
        try:
            with self._lock:
                current = {d.name: d.config for d in self.engine.catalog.domains()}.get(name)
                if current is None:
                    raise NotFoundError(f"unknown domain '{name}'")
                identities = self.engine.policies.identities_of(caller)
                if ADMIN_ROLE not in identities:
                    check_owner(who, identities, current, self.self_serve)
                if not self.root.is_dir():
                    raise ConfigError("this gateway serves a single config file: domains can only change in that file")
                target = self._file_for(name, who)
                document = yaml_document(target.read_text(encoding="utf-8"), target)
                text = yaml.safe_dump(edit(document), sort_keys=False, allow_unicode=True)
                applied = self._apply_checked(caller, who, target, text)
        except MeshgateError as error:
            self.engine.audit.event(event, caller.user, _outcome(error), str(error))
            raise
        self.engine.audit.event(event, caller.user, "applied", f"{applied.file.name}: domain {name}")
        return applied

    def _apply_checked(self, caller: CallerContext, who: str, target: Path, text: str) -> Applied:
        """Check one domain's file ``text`` as sent by ``caller``, install it, then write it to ``target``.

        The caller holds the lock.
        """
        config = parse_config_text(text, target)
        (incoming,) = config.domains
        identities = self.engine.policies.identities_of(caller)
        served = {d.name: d.config for d in self.engine.catalog.domains()}
        check_apply(
            who,
            identities,
            ADMIN_ROLE in identities,
            incoming,
            served.get(incoming.name),
            [d for n, d in served.items() if n != incoming.name],
            self.self_serve,
            {rule.tag for rule in self.engine.policies.rules},
        )
        applied = self._install(target, config)
        written = target.with_name(f".{target.name}.incoming")
        written.write_text(text, encoding="utf-8")
        written.replace(target)
        self._stamps[target] = _stamp(target)
        return applied

    def remove_domain(self, caller: CallerContext, name: str) -> Applied:
        """Remove a domain (an admin's change), deleting the file that holds it alone."""
        who = _who(caller)
        try:
            if ADMIN_ROLE not in self.engine.policies.roles_of(caller):
                raise PermissionDeniedError(
                    f"{who} may not remove domain '{name}': removing a domain is an admin's change"
                )
            with self._lock:
                target = self._file_for(name, who)
                if target not in self._parts:
                    raise NotFoundError(f"unknown domain '{name}'")
                parts = {f: part for f, part in self._parts.items() if f != target}
                self._check_and_install(parts, {}, {name})
                self._parts = parts
                target.unlink()
                self._stamps.pop(target, None)
        except MeshgateError as error:
            self.engine.audit.event("domain_remove", caller.user, _outcome(error), str(error))
            raise
        self.engine.audit.event("domain_remove", caller.user, "applied", f"{target.name}: domain {name} removed")
        log.info("user %s removed domain %s (%s)", caller.user, name, target)
        return Applied(target, (), (name,))

    def _file_for(self, domain: str, who: str) -> Path:
        """Where a domain sent over the network is written: the file holding it alone, or ``<domain>.yaml``."""
        for file, part in self._parts.items():
            if domain not in {d.name for d in part.domains}:
                continue
            if len(part.domains) != 1 or not _domain_only(file):
                raise PermissionDeniedError(
                    f"{who} may not change domain '{domain}' over the network: {file.name} holds it together with"
                    " other declarations; only the platform can change that file"
                )
            return file
        target = self.root / f"{domain}.yaml"
        if target.exists():
            raise PermissionDeniedError(
                f"{who} may not create domain '{domain}': {target.name} already exists and does not hold it alone"
            )
        return target

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
        if self.installed is not None:
            self.installed()


APPLY_ACTION = "meshgate.domain.apply"
REMOVE_ACTION = "meshgate.domain.remove"


def apply_action(reloader: Reloader) -> Callable[[CallerContext, bytes], bytes]:
    """The Flight action behind ``meshgate domain apply``: JSON ``{"yaml": ...}`` in, what changed out.

    A ``name`` in the request (older clients send the local file name) is ignored: the
    gateway chooses the file.
    """

    def apply(caller: CallerContext, body: bytes) -> bytes:
        request = action_request(body, "yaml", '{"yaml": "domains: ..."}')
        applied = reloader.apply_text(caller, request)
        log.info("user %s applied %s", caller.user, applied.file)
        return _answer(applied)

    return apply


def remove_action(reloader: Reloader) -> Callable[[CallerContext, bytes], bytes]:
    """The Flight action behind ``meshgate domain remove``: JSON ``{"domain": ...}`` in."""

    def remove(caller: CallerContext, body: bytes) -> bytes:
        return _answer(reloader.remove_domain(caller, action_request(body, "domain", '{"domain": "sales"}')))

    return remove


def action_request(body: bytes, key: str, example: str) -> str:
    """The text under ``key`` of a gateway action's JSON request (``example`` shows its form)."""
    try:
        value = json.loads(body)[key]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deeply
        raise ConfigError(f"this request is JSON: {example}") from None
    if not isinstance(value, str):
        raise ConfigError(f"this request is JSON: {example}")
    return value


def _answer(applied: Applied) -> bytes:
    return json.dumps({"file": applied.file.name, "changed": applied.changed, "removed": applied.removed}).encode()


def _changes(applied: Applied) -> str:
    """What a reload changed, in words."""
    words = [f"domain {name} changed" for name in applied.changed]
    words += [f"domain {name} removed" for name in applied.removed]
    return ", ".join(words) or "no domain changed"


def _who(caller: CallerContext) -> str:
    return f"user '{caller.user}'" if caller.user else "an anonymous caller"


def _outcome(error: MeshgateError) -> str:
    return "refused" if isinstance(error, PermissionDeniedError) else "failed"


def _domain_only(file: Path) -> bool:
    """Whether ``file`` holds nothing but its ``domains`` (no users, policies or self_serve of the platform)."""
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(document, dict) and set(document) == {"domains"}


def _stamp(file: Path) -> str:
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        return ""
