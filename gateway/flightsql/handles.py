"""Server-side state behind the opaque handles that Flight SQL clients hold."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Generic, TypeVar

from cachetools import TTLCache

from gateway.errors import NotFoundError, ResourceLimitError

T = TypeVar("T")

HANDLE_BYTES = 16

log = logging.getLogger(__name__)


class _ReleasingTTLCache(TTLCache[bytes, T]):
    """A TTLCache that hands every entry it drops (expired or evicted) to ``dropped``."""

    def __init__(
        self, maxsize: int, ttl: float, dropped: Callable[[bytes, T], None], getsizeof: Callable[[T], int]
    ) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, getsizeof=getsizeof)
        self._dropped = dropped

    def expire(self, time: float | None = None) -> list[tuple[bytes, T]]:
        expired = list(super().expire(time))
        for handle, value in expired:
            self._dropped(handle, value)
        return expired

    def popitem(self) -> tuple[bytes, T]:
        handle, value = super().popitem()
        self._dropped(handle, value)
        return handle, value


def _release_quietly(release: Callable[[T], None], value: T) -> None:
    try:
        release(value)
    except Exception:  # a failing release must not fail the request that triggered it
        log.exception("releasing an expired handle failed")


class HandleRegistry(Generic[T]):
    """A bounded, expiring, thread-safe map from random handles to server state, fair among owners.

    Entries expire ``ttl`` seconds after they were last used (released by the next call at most
    ``min(1 s, ttl / 4)`` later: expiry is looked for that often, not on every call). When
    ``maxsize`` entries are held, room for a new one is made by dropping the least recently used
    entry of the owner (``owner(value)``, a user) that holds the most, the new entry counted as its
    owner's: so a client that never closes its statements cannot grow the server without
    bound, and one that opens thousands only drops its own, never another user's. An entry
    that fits only by dropping those of owners who hold less than its own owner then would
    is refused (:class:`ResourceLimitError`). With one owner this is a plain LRU.

    With ``size`` (an entry's bytes), the entries also hold at most ``max_bytes`` together:
    an entry counts as one of ``maxsize`` per ``max_bytes / maxsize`` bytes it holds (at
    least one), so a few large entries take the room of many small ones. Dropped entries
    (expired, evicted or discarded, not popped) are passed to ``release``.

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
        owner: Callable[[T], str | None] = lambda _value: None,
    ) -> None:
        self.kind = kind
        self.ttl = ttl
        self._maxsize = maxsize
        self._release = release
        self._owner = owner
        self._weight: Callable[[T], int] = lambda _value: 1
        if size is not None and max_bytes > 0:
            room = max(1, max_bytes // max(1, maxsize))  # the bytes one of maxsize stands for

            def weight(value: T) -> int:
                return min(maxsize, max(1, -(-size(value) // room)))  # never more than all of them

            self._weight = weight
        self._owned: dict[str | None, TTLCache[bytes, T]] = {}  # each owner's entries, least recently used first
        self._owner_of: dict[bytes, tuple[str | None, int]] = {}  # each live entry's owner and weight
        self._held: dict[str | None, int] = {}  # each owner's entries' weight
        self._total = 0
        self._next_expiry = 0.0
        self._expiry_interval = min(1.0, ttl / 4)  # get() sees an entry's expiry itself; releasing may wait that long
        self._lock = threading.Lock()

    def add(self, value: T) -> bytes:
        """Store ``value`` under a new unguessable handle and return the handle."""
        handle = secrets.token_bytes(HANDLE_BYTES)
        with self._lock:
            self._expire()
            self._put(handle, value)
        return handle

    def get(self, handle: bytes) -> T:
        """Return the value of ``handle`` and restart its expiry clock (it is weighed again)."""
        with self._lock:
            self._expire()
            value = self._take(handle)
            if value is None:
                raise self._unknown()
            self._put(handle, value)
            return value

    def pop(self, handle: bytes) -> T:
        """Remove ``handle`` and return its value (for single-use handles)."""
        with self._lock:
            value = self._take(handle)
        if value is None:
            raise self._unknown()
        return value

    def discard(self, handle: bytes) -> bool:
        """Remove and release ``handle`` if present; return whether it was."""
        with self._lock:
            value = self._take(handle)
        if value is None:
            return False
        _release_quietly(self._release, value)
        return True

    def items(self) -> list[tuple[bytes, T]]:
        """A snapshot of the live entries (expiry clocks untouched)."""
        with self._lock:
            self._expire(now=True)
            return [item for entries in self._owned.values() for item in entries.items()]

    def __len__(self) -> int:
        with self._lock:
            self._expire(now=True)
            return len(self._owner_of)

    def _put(self, handle: bytes, value: T) -> None:
        """Make room for ``value`` fairly (see the class), then store it as its owner's newest entry."""
        owner, weight = self._owner(value), self._weight(value)

        def holds(name: str | None) -> int:
            """What ``name`` holds, with the new entry counted as its owner's."""
            return self._held.get(name, 0) + (weight if name == owner else 0)

        while self._total + weight > self._maxsize:  # so some owner holds entries: one entry always fits
            victim = max((name for name in self._owned if self._held.get(name, 0) > 0), key=holds)
            if holds(victim) < holds(owner):  # its owner would hold the most, with nothing of its own to drop
                _release_quietly(self._release, value)
                raise ResourceLimitError(
                    f"[Flight SQL] this {self.kind} does not fit beside the ones other users hold;"
                    " retry when theirs have been closed or have expired"
                )
            # Its least recently used goes, released (_dropped); KeyError: every entry it had was
            # past its time, and popitem's expiry released them all.
            with suppress(KeyError):
                self._owned[victim].popitem()
        if owner not in self._owned:
            self._owned[owner] = _ReleasingTTLCache(self._maxsize, self.ttl, self._dropped, self._weight)
        self._owned[owner][handle] = value
        self._count(handle, owner, weight)

    def _take(self, handle: bytes) -> T | None:
        """Remove ``handle``'s live entry, unreleased (None if there is none)."""
        found = self._uncount(handle)
        if found is None:
            return None
        return self._owned[found[0]].pop(handle, None)  # None once expired: the next expiry pass releases it

    def _dropped(self, handle: bytes, value: T) -> None:
        self._uncount(handle)
        _release_quietly(self._release, value)

    def _count(self, handle: bytes, owner: str | None, weight: int) -> None:
        self._owner_of[handle] = (owner, weight)
        self._held[owner] = self._held.get(owner, 0) + weight
        self._total += weight

    def _uncount(self, handle: bytes) -> tuple[str | None, int] | None:
        """Forget ``handle``'s weight; its owner and weight, or None when it was not counted."""
        found = self._owner_of.pop(handle, None)
        if found is not None:
            owner, weight = found
            self._held[owner] -= weight
            self._total -= weight
        return found

    def _expire(self, now: bool = False) -> None:
        """Drop (and release) every entry past its time, at most once an interval unless ``now``;
        owners left with none go."""
        moment = time.monotonic()
        if not now and moment < self._next_expiry:
            return
        self._next_expiry = moment + self._expiry_interval
        for owner, entries in list(self._owned.items()):
            entries.expire()
            if not entries:
                del self._owned[owner]
                if not self._held.get(owner):
                    self._held.pop(owner, None)

    def _unknown(self) -> NotFoundError:
        return NotFoundError(f"[Flight SQL] unknown or expired {self.kind} handle")
