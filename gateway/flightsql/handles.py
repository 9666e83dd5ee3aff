"""Server-side state behind the opaque handles that Flight SQL clients hold."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

from gateway.errors import NotFoundError

T = TypeVar("T")

HANDLE_BYTES = 16

log = logging.getLogger(__name__)


class _ReleasingTTLCache(TTLCache[bytes, T]):
    """A TTLCache that hands every entry it drops (expired or evicted) to ``release``."""

    def __init__(
        self, maxsize: int, ttl: float, release: Callable[[T], None], getsizeof: Callable[[T], int] | None = None
    ) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, getsizeof=getsizeof)
        self._release = release

    def expire(self, time: float | None = None) -> list[tuple[bytes, T]]:
        expired = list(super().expire(time))
        for _handle, value in expired:
            _release_quietly(self._release, value)
        return expired

    def popitem(self) -> tuple[bytes, T]:
        handle, value = super().popitem()
        _release_quietly(self._release, value)
        return handle, value


def _release_quietly(release: Callable[[T], None], value: T) -> None:
    try:
        release(value)
    except Exception:  # a failing release must not fail the request that triggered it
        log.exception("releasing an expired handle failed")


class HandleRegistry(Generic[T]):
    """A bounded, expiring, thread-safe map from random handles to server state.

    Entries expire ``ttl`` seconds after they were last used; when ``maxsize`` entries
    are held the least recently used one is dropped, so a client that never closes
    its statements cannot grow the server without bound. With ``size`` (an entry's
    bytes), the entries also hold at most ``max_bytes`` together: an entry counts as one
    of ``maxsize`` per ``max_bytes / maxsize`` bytes it holds (at least one), so a few
    large entries take the room of many small ones. Dropped entries (expired, evicted or
    discarded, not popped) are passed to ``release``.

    >>> registry: HandleRegistry[str] = HandleRegistry("statement", maxsize=2, ttl=60)
    >>> registry.get(registry.add("SELECT 1"))
    'SELECT 1'
    """

    def __init__(
        self,
        kind: str,
        *,
        maxsize: int,
        ttl: float,
        release: Callable[[T], None] = lambda _value: None,
        size: Callable[[T], int] | None = None,
        max_bytes: int = 0,
    ) -> None:
        self.kind = kind
        self.ttl = ttl
        self._release = release
        weight = None
        if size is not None and max_bytes > 0:
            room = max(1, max_bytes // max(1, maxsize))  # the bytes one of maxsize stands for

            def weight(value: T) -> int:
                return min(maxsize, max(1, -(-size(value) // room)))  # never more than all of them

        self._entries: TTLCache[bytes, T] = _ReleasingTTLCache(maxsize, ttl, release, weight)
        self._lock = threading.Lock()

    def add(self, value: T) -> bytes:
        """Store ``value`` under a new unguessable handle and return the handle."""
        handle = secrets.token_bytes(HANDLE_BYTES)
        with self._lock:
            self._entries[handle] = value
        return handle

    def get(self, handle: bytes) -> T:
        """Return the value of ``handle`` and restart its expiry clock."""
        with self._lock:
            value = self._entries.get(handle)
            if value is None:
                raise self._unknown()
            self._entries[handle] = value
            return value

    def pop(self, handle: bytes) -> T:
        """Remove ``handle`` and return its value (for single-use handles)."""
        with self._lock:
            value = self._entries.pop(handle, None)
        if value is None:
            raise self._unknown()
        return value

    def discard(self, handle: bytes) -> bool:
        """Remove and release ``handle`` if present; return whether it was."""
        with self._lock:
            value = self._entries.pop(handle, None)
        if value is None:
            return False
        _release_quietly(self._release, value)
        return True

    def items(self) -> list[tuple[bytes, T]]:
        """A snapshot of the live entries (expiry clocks untouched)."""
        with self._lock:
            self._entries.expire()
            return list(self._entries.items())

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)

    def _unknown(self) -> NotFoundError:
        return NotFoundError(f"[Flight SQL] unknown or expired {self.kind} handle")
