"""``/healthz`` (the process answers) and ``/readyz`` (the config is loaded and every domain's source answers).

Neither needs a sign-in. An anonymous caller learns counts only (how many domains are
online and offline); a signed-in caller also sees each domain's name and state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from gateway.engine import Engine
    from gateway.web.app import WebState

PROBE_TIMEOUT_SECONDS = 2.0
"""How long /readyz waits for a domain's source to answer before calling it offline."""

PROBE_CACHE_SECONDS = 2.0
"""A probe's answer is reused this long, so a busy health checker does not load the sources."""


@dataclass(frozen=True)
class DomainState:
    name: str
    online: bool
    reason: str | None = None


class DomainProbe:
    """Asks each domain's source to list its products (``Connector.discover``), at most once per
    :data:`PROBE_CACHE_SECONDS`; a domain the catalog holds offline is loaded again, as the
    catalog allows it (``MeshCatalog.domain``: after its retry interval).

    A source that does not answer within :data:`PROBE_TIMEOUT_SECONDS` is offline; its probe
    (a daemon thread) is not started again while the last one still hangs.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pending: dict[str, Future[object]] = {}
        self._cached: tuple[float, list[DomainState]] | None = None

    def states(self) -> list[DomainState]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < PROBE_CACHE_SECONDS:
                return self._cached[1]
            states = self._probe()
            self._cached = (time.monotonic(), states)
            return states

    def _probe(self) -> list[DomainState]:
        futures: dict[str, Future[object]] = {}
        for domain in self._engine.catalog.domains():
            pending = self._pending.get(domain.name)
            if pending is None or pending.done():
                check = self._loads if domain.error is not None or domain.connector is None else self._answers
                pending = _in_thread(partial(check, domain.name), f"meshgate-probe-{domain.name}")
                self._pending[domain.name] = pending
            futures[domain.name] = pending
        deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
        states = []
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                states.append(DomainState(name, False, f"its source did not answer within {PROBE_TIMEOUT_SECONDS:g} s"))
            except Exception:  # the source's own error: the domain is down, whatever it says
                states.append(DomainState(name, False, "its source could not be reached"))
            else:
                states.append(DomainState(name, True))
        return states

    def _answers(self, name: str) -> object:
        """An online domain's source lists its products now (raises when it cannot)."""
        domain = self._engine.catalog.domain(name)
        if domain.connector is None:  # it went offline since the probe began
            raise domain.error or RuntimeError(f"domain '{name}' has no source")
        return domain.connector.discover()

    def _loads(self, name: str) -> object:
        """An offline domain loads now: the catalog tries again once its retry interval is over."""
        domain = self._engine.catalog.domain(name)
        if domain.error is not None:
            raise domain.error
        return domain


def _in_thread(call: Callable[[], object], name: str) -> Future[object]:
    """``call()`` in a daemon thread of its own: a source that hangs never holds up the gateway's exit."""
    future: Future[object] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as error:  # handed to the waiter, which treats any as "offline"
            future.set_exception(error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def routes(state: WebState) -> list[BaseRoute]:
    def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def readyz(request: Request) -> JSONResponse:
        states = state.probe.states()
        offline = sum(not s.online for s in states)
        body: dict[str, object] = {
            "status": "ready" if not offline else "not ready",
            "config": "loaded",
            "domains": {"online": len(states) - offline, "offline": offline},
        }
        if _signed_in(request, state):
            body["domain_states"] = {s.name: "online" if s.online else "offline" for s in states}
        return JSONResponse(body, status_code=200 if not offline else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]


def _signed_in(request: Request, state: WebState) -> bool:
    from gateway.web.session import caller_of

    return caller_of(request, state) is not None
