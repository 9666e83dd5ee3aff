"""``meshgate serve --log-format json``: every line one JSON object, with the query's id on the
lines logged while it runs; and SQL without literals (``gateway/telemetry/sqltext.py``)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit import QUERY_ID
from gateway.telemetry.logs import JsonFormatter
from gateway.telemetry.sqltext import UNREADABLE, without_literals
from tests.support.gateway import GatewayProcess, connect
from tests.telemetry.support import ROOT, wait_for, write_mesh


def test_serve_logs_one_json_object_a_line(tmp_path: Path) -> None:
    process = GatewayProcess(
        write_mesh(tmp_path),
        extra=("--log-format", "json"),
        credentials=ROOT,
        env={"MESHGATE_LOG_LEVEL": "DEBUG"},
    )
    try:
        with connect(process.uri, ROOT) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id FROM shop.items WHERE id < 3")
            cursor.fetch_arrow_table()
            cursor.execute("SELECT query_id FROM system.query_log WHERE sql LIKE '%id < 3'")
            (query_id,) = cursor.fetch_arrow_table().column("query_id").to_pylist()
        finished = wait_for(
            lambda: [line for line in process.output if "query finished" in line],
            lambda lines: len(lines) >= 2,
            "the queries' finishing lines",
        )
    finally:
        process.stop()
    lines = [json.loads(line) for line in [*process.startup_log, *process.output] if line.strip()]
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    serving = next(line for line in lines if "serving catalog" in line["message"])
    assert serving["level"] == "INFO" and serving["logger"] == "meshgate" and serving["time"].endswith("+00:00")
    first = json.loads(finished[0])
    assert first["query_id"] == query_id
    assert re.fullmatch(r"query finished: ok, 2 rows in \d+\.\d ms", first["message"])
    assert first["logger"] == "gateway.engine" and first["level"] == "DEBUG"


def test_the_formatter_adds_the_query_id_and_the_traceback() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("gateway.scan", logging.WARNING, __file__, 1, "source %s slow", ("shop",), None)
    assert "query_id" not in json.loads(formatter.format(record))
    token = QUERY_ID.set("abc123")
    try:
        line = json.loads(formatter.format(record))
    finally:
        QUERY_ID.reset(token)
    assert line["query_id"] == "abc123" and line["message"] == "source shop slow" and line["level"] == "WARNING"
    try:
        raise ValueError("bad \u00e9 \n line")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(failed)
    assert "\n" not in text and "ValueError: bad é" in json.loads(text)["exception"]


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        ("SELECT * FROM t WHERE id = 42 AND name = 'it''s'", "SELECT * FROM t WHERE id = ? AND name = ?"),
        ("SELECT a FROM t WHERE b IN (1, 2.5, -3) LIMIT 10", "SELECT a FROM t WHERE b IN (?, ?, -?) LIMIT ?"),
        ("SELECT * FROM t WHERE a = $1 AND b = $2", "SELECT * FROM t WHERE a = $1 AND b = $2"),
        ("SELECT E'a\\'b', X'ff', $$x$$ FROM \"t 'q'\"", "SELECT ?, ?, ? FROM \"t 'q'\""),
        ("SELECT `a` FROM `t` WHERE c = 'x'", "SELECT `a` FROM `t` WHERE c = ?"),
        ("SELECT 'unterminated", UNREADABLE),
    ],
)
def test_sql_without_literals(sql: str, shown: str) -> None:
    assert without_literals(sql) == shown


def test_an_unknown_log_format_is_named(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(write_mesh(tmp_path)), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MESHGATE_LOG_FORMAT": "yaml"},
    )
    assert done.returncode == 2
    assert "argument --log-format: 'yaml' is not one of: text, json" in done.stderr
    assert "Traceback" not in done.stderr
