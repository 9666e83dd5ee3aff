"""The audit log: every query (who ran it, what it touched, what applied, how it ended) and
every security event (log-ins, domain changes).

Both go to one append-only JSON-lines file (one object per line, flushed as written), told
apart by the ``"record"`` field: ``"query"`` for a :class:`QueryRecord`, ``"event"`` for an
:class:`AuditEvent`. Each also goes to a bounded in-memory log: ``system.query_log`` reads
the queries, ``system.events`` the events.

Security events (:meth:`AuditLog.event`), by kind, with their outcomes:

- ``login``: a log-in attempt (``gateway/auth.py``). ``ok``; ``failed`` (wrong password,
  unknown user, unusable hash); ``locked`` (refused without a password check: too many
  failed log-ins for the user or from the address). ``user`` is the name given, which
  for an unknown user may be anything the client typed; ``peer`` the client's address
  when known. The password is never part of an event.
- ``domain_apply`` and ``domain_remove``: a domain file applied or a domain removed while
  the gateway runs (``gateway/reload.py``). ``applied``; ``refused`` (the caller may not,
  or the file is not acceptable); ``failed`` (it could not be applied).
- ``contract_import``: an ODCS contract imported into a domain's products
  (``meshgate contract import``; ``gateway/contract_actions.py``), with the same outcomes.
- ``config_reload``: a changed config file that the watcher applied (``applied``) or
  rejected, the last good version serving on (``failed``); ``user`` is None.

``detail`` is a short human-readable sentence. An event of another kind or outcome is still
recorded (an audit call must never break what it audits) and logged as an error, so a
misspelled kind is seen.

Listeners (:class:`AuditListener`: metrics, traces, lineage in ``gateway/telemetry/``) hear
of every query's start and end and of every event, on the thread that records it; one that
raises is logged and never breaks what is audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

log = logging.getLogger(__name__)

QUERY_ID: ContextVar[str | None] = ContextVar("meshgate_query_id", default=None)
"""The query being planned or streamed on this thread, for log lines (``gateway/telemetry/logs.py``)."""

OUTCOMES = ("ok", "error", "denied", "cancelled")

KEPT_SQL_CHARACTERS = 4_096
"""How much of a query's SQL the in-memory log (``system.query_log``) keeps."""

EVENT_OUTCOMES: dict[str, tuple[str, ...]] = {
    "login": ("ok", "failed", "locked"),
    "domain_apply": ("applied", "refused", "failed"),
    "domain_remove": ("applied", "refused", "failed"),
    "contract_import": ("applied", "refused", "failed"),
    "config_reload": ("applied", "failed"),
}
"""The kinds of security event and the outcomes each may have (see the module docstring)."""


@dataclass
class QueryRecord:
    """One query as the audit log keeps it."""

    query_id: str
    user: str | None
    started: dt.datetime
    sql: str
    products: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    rows: int = 0
    duration_ms: float = 0.0
    outcome: str = "ok"
    error: str | None = None


QUERY_LOG_SCHEMA = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("user", pa.string()),
        pa.field("started", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("sql", pa.string(), nullable=False),
        pa.field("products", pa.list_(pa.string())),
        pa.field("columns", pa.list_(pa.string())),
        pa.field("policies", pa.list_(pa.string())),
        pa.field("rows", pa.int64()),
        pa.field("duration_ms", pa.float64()),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class AuditEvent:
    """One security event as the audit log keeps it (kinds and outcomes: :data:`EVENT_OUTCOMES`)."""

    event_id: str
    kind: str
    user: str | None
    at: dt.datetime  # UTC
    outcome: str
    detail: str
    peer: str | None = None


EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("user", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("peer", pa.string()),
    ]
)


@dataclass(frozen=True)
class SourceRun:
    """One query a source received for a query, as listeners are told of it."""

    domain: str
    source: str  # the connector's kind (postgres, parquet, ...): never its location
    product: str
    sql: str  # as the gateway sent it: parameters are placeholders, their values are not in it
    rows: int
    bytes: int
    started: float  # time.time()
    finished: float | None
    error: str | None = None


@dataclass(frozen=True)
class QueryRun:
    """What a finished query did beyond its record: for listeners (spans, metrics per source)."""

    planned: float | None = None  # time.time() when planning (or the plan cache) handed over to execution
    sources: Sequence[SourceRun] = ()
    bytes: int = 0  # of the result sent
    cached: bool = False  # it ran on a cached plan's route, unplanned
    trace_parent: str | None = None  # the W3C traceparent the client sent (CallerContext.trace_parent)


class AuditListener(Protocol):
    """Hears of what the audit log records (see the module docstring)."""

    def query_started(self, record: QueryRecord) -> None:
        """``record`` planned and starting (its products known); not called for queries that fail planning."""

    def query_finished(self, record: QueryRecord, run: QueryRun) -> None:
        """``record`` finished with its outcome (whether or not it was started)."""

    def security_event(self, event: AuditEvent) -> None:
        """A log-in, a domain change or a reload."""


class AuditLog:
    """Thread-safe: many queries finish, and many clients log in, at once."""

    def __init__(self, path: Path | None = None, capacity: int = 10_000, event_capacity: int = 10_000) -> None:
        self.path = path
        self._records: deque[QueryRecord] = deque(maxlen=capacity)
        self._events: deque[AuditEvent] = deque(maxlen=event_capacity)
        self._lock = threading.Lock()
        self.listeners: tuple[AuditListener, ...] = ()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def listen(self, listener: AuditListener) -> None:
        """Tell ``listener`` of every query and event from now on."""
        with self._lock:
            self.listeners = (*self.listeners, listener)

    def started(self, record: QueryRecord) -> None:
        """``record``'s query starts (only listeners hear of it: the log keeps finished queries)."""
        for listener in self.listeners:
            _notify(listener.query_started, record)

    def record(self, record: QueryRecord, run: QueryRun | None = None) -> None:
        # Written only with a file (about 5% of a point lookup's Python time was this line's JSON).
        line = json.dumps({"record": "query", **_jsonable(record)}, ensure_ascii=False) if self.path else ""
        kept = dataclasses.replace(record, sql=kept_sql(record.sql))
        with self._lock:
            self._records.append(kept)
            self._append(line)
        for listener in self.listeners:
            _notify(listener.query_finished, record, run or QueryRun())

    def event(self, kind: str, user: str | None, outcome: str, detail: str, peer: str | None = None) -> None:
        """Record a security event now (UTC). Never raises for an unknown kind or outcome: logs it."""
        if outcome not in EVENT_OUTCOMES.get(kind, ()):
            log.error("audit event of unknown kind or outcome: %r, %r (recorded anyway)", kind, outcome)
        event = AuditEvent(uuid.uuid4().hex, kind, user, dt.datetime.now(dt.UTC), outcome, detail, peer)
        data = dataclasses.asdict(event)
        data["at"] = event.at.isoformat()
        line = json.dumps({"record": "event", **data}, ensure_ascii=False)
        with self._lock:
            self._events.append(event)
            self._append(line)
        for listener in self.listeners:
            _notify(listener.security_event, event)

    def _append(self, line: str) -> None:
        """Append one line to the file (under ``self._lock``, so lines never interleave)."""
        if self.path is None:
            return
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as error:  # what is audited already happened; losing the line must be loud
            log.error("cannot append to the audit log %s: %s", self.path, error)

    def records(self, user: str | None = None, *, everyone: bool = False) -> list[QueryRecord]:
        with self._lock:
            return [r for r in self._records if everyone or r.user == user]

    def table(self, user: str | None = None, *, everyone: bool = False) -> pa.Table:
        rows = [dataclasses.asdict(r) for r in self.records(user, everyone=everyone)]
        return pa.Table.from_pylist(rows, schema=QUERY_LOG_SCHEMA)

    def events(self, user: str | None = None, *, everyone: bool = False) -> list[AuditEvent]:
        """The kept events, oldest first: ``user``'s own (none for no user), or all with ``everyone``."""
        with self._lock:
            return [e for e in self._events if everyone or (user is not None and e.user == user)]

    def events_table(self, user: str | None = None, *, everyone: bool = False) -> pa.Table:
        rows = [dataclasses.asdict(e) for e in self.events(user, everyone=everyone)]
        return pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)


def kept_sql(sql: str) -> str:
    """``sql`` as the in-memory log keeps it: whole, or its start and how much was cut."""
    if len(sql) <= KEPT_SQL_CHARACTERS:
        return sql
    cut = len(sql) - KEPT_SQL_CHARACTERS
    return f"{sql[:KEPT_SQL_CHARACTERS]} ... [{cut:,} more characters; the audit file has the whole text]"


def _notify(method: Callable[..., None], *args: object) -> None:
    """Call a listener's ``method``; what it raises is logged, never passed on."""
    try:
        method(*args)
    except Exception:
        log.exception("audit listener %r failed", method)


def _jsonable(record: QueryRecord) -> dict[str, object]:
    data = {f.name: getattr(record, f.name) for f in _RECORD_FIELDS}  # not asdict: it deep-copies every list
    data["started"] = record.started.isoformat()
    return data


_RECORD_FIELDS = dataclasses.fields(QueryRecord)
