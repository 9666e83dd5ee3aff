"""The audit log: every query, who ran it, what it touched, what applied, how it ended.

Records go to an append-only JSON-lines file (one object per line, flushed as written)
and to a bounded in-memory log that ``system.query_log`` reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "error", "denied", "cancelled")


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


class AuditLog:
    """Thread-safe: many queries finish at once."""

    def __init__(self, path: Path | None = None, capacity: int = 10_000) -> None:
        self.path = path
        self._records: deque[QueryRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, record: QueryRecord) -> None:
        line = json.dumps(_jsonable(record), ensure_ascii=False)
        with self._lock:
            self._records.append(record)
            if self.path is not None:
                try:
                    with self.path.open("a", encoding="utf-8") as out:
                        out.write(line + "\n")
                except OSError as error:  # the query already ran; losing the line must be loud
                    log.error("cannot append to the audit log %s: %s", self.path, error)

    def records(self, user: str | None = None, *, everyone: bool = False) -> list[QueryRecord]:
        with self._lock:
            return [r for r in self._records if everyone or r.user == user]

    def table(self, user: str | None = None, *, everyone: bool = False) -> pa.Table:
        rows = [dataclasses.asdict(r) for r in self.records(user, everyone=everyone)]
        return pa.Table.from_pylist(rows, schema=QUERY_LOG_SCHEMA)


def _jsonable(record: QueryRecord) -> dict[str, object]:
    data = dataclasses.asdict(record)
    data["started"] = record.started.isoformat()
    return data
