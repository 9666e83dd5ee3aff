"""The served process's long-lived objects, kept out of the garbage collector's full collections.

Python's cyclic collector walks every tracked object in a full (generation 2) collection. After
start-up the gateway holds some 130,000 of them (modules, the catalog, sqlglot's and DataFusion's
tables), so a full collection took 75-110 ms, and it stopped whatever query was being planned at
the time: TPC-H's queries set one off every 60 or so (Q2, Q12 and Q20 each took one in five runs;
one run of Q15 took 197 ms against 98-105). :func:`settle` collects once, then freezes what is left
(``gc.freeze``): full collections skip those objects and took 14 ms instead; the collector's time
over six TPC-H queries run five times each went from 37 to 10 ms.

A frozen object is still freed as soon as nothing refers to it; only a cycle of frozen objects
would stay. A reload (``gateway/reload.py``), which replaces whole domains, settles again.
"""

from __future__ import annotations

import gc
import logging
import threading

log = logging.getLogger(__name__)

_LOCK = threading.Lock()


def settle() -> int:
    """Collect everything unreachable (frozen objects included), then freeze what is left; how many."""
    with _LOCK:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
    log.debug("%d long-lived objects kept out of full garbage collections", frozen)
    return frozen
