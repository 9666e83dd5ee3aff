"""``meshgate serve --log-format json``: one JSON object a log line.

Keys: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``, and
``query_id`` while a query is planned or streamed on the thread that logs (the id of its
record in ``system.query_log``), ``exception`` with the traceback when one is logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from gateway.audit import QUERY_ID

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        query_id = QUERY_ID.get()
        if query_id is not None:
            line["query_id"] = query_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, log_format: str = "text") -> None:
    """Set up the root logger: ``level`` (a name such as INFO) in ``log_format`` (text or json)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
