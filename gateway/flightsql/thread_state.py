"""One Python thread state for the whole of a Flight call, instead of one per callback.

pyarrow's Flight server runs each call on a thread of gRPC's synchronous server, which is
not a Python thread: every time it calls into Python (the auth handler's ``is_valid``, each
middleware's ``start_call``, ``sending_headers`` and ``call_completed``, the handler, each
batch of a streamed answer) it takes the GIL with ``PyGILState_Ensure`` and lets go with
``PyGILState_Release``. On a thread with no Python thread state of its own, that pair
creates one and deletes it again: a point lookup (a statement query and its DoGet) made
4.2 thread states, each with a fresh frame stack that is mapped and unmapped again (an
unmapping makes the kernel flush the other core's address translations).

:func:`hold` takes one more ``PyGILState_Ensure`` at the first callback of a call (the auth
handler's ``is_valid``, or the first middleware's ``start_call``), so the thread state
outlives each callback. The gateway's middleware factories make their middleware through
:func:`started`, and each middleware's ``call_completed`` calls :func:`completed`: the last
one gives the hold back (or a refused ``start_call``, when no middleware was made before it),
and pyarrow's own release then deletes the thread state as before. All callbacks of one call
run on the thread that took it (Arrow's gRPC transport handles a call within one synchronous
handler) and the hold is thread-local, so a release never comes without its hold; at worst,
a hold with no release would keep one thread state until the process ends
(``tests/flightsql/test_thread_state.py`` checks that none does, for every way a call ends).

Measured with two gateways side by side (README, "Where a lookup's time goes"): frame-stack
mappings fell from 4.2 to 2.1 a lookup, the gateway's CPU per lookup by 8-16 %, and lookups
per second rose by 10-17 % at 4, 16 and 64 clients.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import TypeVar

_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.argtypes = []
_ensure.restype = ctypes.c_int
_release = ctypes.pythonapi.PyGILState_Release
_release.argtypes = [ctypes.c_int]
_release.restype = None

M = TypeVar("M")


class _Call(threading.local):
    state: int | None = None  # what PyGILState_Ensure returned, while held
    pending = 0  # middleware of the call whose call_completed is still to come


_call = _Call()


def hold() -> None:
    """Keep this thread's Python thread state until the call ends (nothing if already kept)."""
    if _call.state is None:
        _call.state = _ensure()


def started(make: Callable[[], M]) -> M:
    """A middleware factory's ``start_call``: ``make()`` the call's middleware within the hold.

    The middleware's ``call_completed`` must call :func:`completed`. When ``make`` raises, the
    call is refused, and the hold ends unless a middleware made before will still complete.
    """
    hold()
    try:
        middleware = make()
    except BaseException:
        if _call.pending == 0:
            _let_go()
        raise
    _call.pending += 1
    return middleware


def completed() -> None:
    """A middleware's ``call_completed``: the hold ends with the call's last one."""
    _call.pending -= 1
    if _call.pending <= 0:
        _let_go()


def _let_go() -> None:
    state, _call.state, _call.pending = _call.state, None, 0
    if state is not None:
        _release(state)


def held() -> bool:
    """Whether this thread keeps its thread state for a call (for tests)."""
    return _call.state is not None
