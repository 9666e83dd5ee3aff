"""OpenLineage events: a START and a COMPLETE, FAIL or ABORT per query, written to a file (through
the engine) and posted to a collector (``meshgate serve --lineage-url``, a real HTTP receiver).

Every event read back is rebuilt into openlineage-python's typed model, which is generated from
the spec (``tests/telemetry/openlineage_events.py``): no installable package ships the standard's
JSON schemas themselves, so the events are not checked against those files."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from adbc_driver_manager import Error as AdbcError

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, MeshgateError
from gateway.telemetry.lineage import PRODUCER, Lineage
from gateway.telemetry.setup import Telemetry, TelemetrySettings
from tests.support.gateway import GatewayProcess, connect, query
from tests.telemetry.openlineage_events import InvalidEvent, validate_run_event
from tests.telemetry.receiver import receiving
from tests.telemetry.support import ALICE, ROOT, serve_error, wait_for, write_mesh


@pytest.fixture
def lineage_file(tmp_path: Path) -> Iterator[tuple[Engine, Lineage, Path]]:
    engine = Engine.from_config(load_config(write_mesh(tmp_path)))
    target = tmp_path / "lineage" / "events.jsonl"
    target.parent.mkdir()
    lineage = Lineage.to_file(engine, str(target), namespace="test-mesh")
    engine.audit.listen(lineage)
    try:
        yield engine, lineage, target
    finally:
        lineage.close()
        engine.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_query_is_a_start_and_a_complete_valid_in_the_openlineage_model(
    lineage_file: tuple[Engine, Lineage, Path],
) -> None:
    engine, lineage, target = lineage_file
    sql = "SELECT i.name, k.label FROM shop.items i JOIN ref.kinds k ON i.id = k.kind WHERE i.name <> 'item 3'"
    execution = engine.run(sql, CallerContext(user="root"))
    execution.read_all()
    lineage.close()
    events = read_events(target)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_run_event(event, PRODUCER)
    start, complete = events
    assert start["run"]["runId"] == complete["run"]["runId"] == str(uuid.UUID(hex=execution.query_id or ""))
    assert start["job"] == complete["job"]
    job = start["job"]
    assert job["namespace"] == "test-mesh" and job["name"].startswith("query_")
    assert job["facets"]["sql"]["query"] == sql.replace("'item 3'", "?")
    assert job["facets"]["jobType"]["jobType"] == "QUERY"
    assert complete["outputs"] == []
    inputs = {dataset["name"]: dataset for dataset in complete["inputs"]}
    assert set(inputs) == {f"{engine.catalog.name}.shop.items", f"{engine.catalog.name}.ref.kinds"}
    fields = inputs[f"{engine.catalog.name}.shop.items"]["facets"]["schema"]["fields"]
    assert [f["name"] for f in fields] == ["id", "name", "secret"]
    assert all(dataset["namespace"] == "test-mesh" for dataset in inputs.values())
    facet = complete["run"]["facets"]["meshgate"]
    assert facet["user"] == "root" and facet["outcome"] == "ok" and facet["rows"] == 1
    assert "shop.items.name" in facet["columns"] and "shop.items.secret" not in facet["columns"]
    assert "outcome" not in start["run"]["facets"]["meshgate"], "a START has no outcome yet"
    assert start["eventTime"] < complete["eventTime"]
    assert "item 3" not in target.read_text()


def test_the_same_statement_is_the_same_job_and_another_run(lineage_file: tuple[Engine, Lineage, Path]) -> None:
    engine, lineage, target = lineage_file
    for value in (1, 2):
        engine.run(f"SELECT name FROM shop.items WHERE id = {value}", CallerContext(user="root")).read_all()
    engine.run("SELECT label FROM ref.kinds", CallerContext(user="root")).read_all()
    lineage.close()
    events = read_events(target)
    jobs = [e["job"]["name"] for e in events]
    assert jobs[0] == jobs[1] == jobs[2] == jobs[3] != jobs[4]
    assert len({e["run"]["runId"] for e in events}) == 3


def test_a_failed_query_is_a_start_and_a_fail_with_its_error(lineage_file: tuple[Engine, Lineage, Path]) -> None:
    engine, lineage, target = lineage_file
    with pytest.raises(MeshgateError):
        engine.run("SELECT nope FROM shop.items", CallerContext(user="root"))
    lineage.close()
    events = read_events(target)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for event in events:
        validate_run_event(event, PRODUCER)
    assert "nope" in events[1]["run"]["facets"]["errorMessage"]["message"]
    assert events[1]["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to an event: the value at a dotted ``path`` (``-`` deletes it)."""

    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = event
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value == "-":
            del node[last]
        else:
            node[last] = value

    return change


BROKEN = {
    "runId not a UUID": (_set("run.runId", "query-42"), r"event\.run: Run refuses it"),
    "job without a name": (_set("job.name", "-"), r"event\.job\.name: required by Job and missing"),
    "job name not a string": (_set("job.name", 7), r"event\.job\.name: expected str"),
    "eventTime without an offset": (_set("eventTime", "2026-12-02T17:00:00"), "not an RFC 3339 date-time"),
    "eventTime a date": (_set("eventTime", "2026-12-02"), "not an RFC 3339 date-time"),
    "eventTime missing": (_set("eventTime", "-"), r"event\.eventTime: required"),
    "eventType unknown": (_set("eventType", "DONE"), r"event\.eventType: 'DONE' is not one of"),
    "producer not a URI": (_set("producer", "meshgate gateway"), r"event\.producer: .* not an absolute URI"),
    "producer another's": (_set("producer", "urn:someone:else"), r"event\.producer: expected"),
    "schemaURL of another type": (
        _set("schemaURL", "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent"),
        r"event\.schemaURL: expected",
    ),
    "unknown top-level field": (_set("runId", "x"), r"event: unknown fields \['runId'\] for RunEvent"),
    "unknown field in a facet": (_set("job.facets.sql.text", "x"), r"unknown fields \['text'\] for SQLJobFacet"),
    "inputs not a list": (_set("inputs", {}), r"event\.inputs: expected a list"),
    "a facet without its required field": (_set("job.facets.sql.query", "-"), r"sql\.query: required"),
    "a facet's schema URL of another version": (
        _set("job.facets.sql._schemaURL", "https://openlineage.io/spec/facets/1-0-0/SQLJobFacet.json"),
        r"sql\._schemaURL: expected",
    ),
    "a facet's producer missing": (_set("run.facets.processing_engine._producer", "-"), r"_producer: expected"),
    "a facet's producer not a URI": (_set("job.facets.jobType._producer", "a b"), "not an absolute URI"),
    "an unknown facet": (_set("job.facets.sqlx", {}), r"'sqlx' is not one of the JobFacets"),
    "rows as a string": (_set("run.facets.meshgate.rows", "1"), r"meshgate\.rows: expected int"),
    "rows as a boolean": (_set("run.facets.meshgate.rows", True), r"meshgate\.rows: expected int"),
    "a schema field's position as text": (
        _set("inputs.0.facets.schema.fields.0.ordinal_position", "1"),
        r"fields\[0\]\.ordinal_position: expected int",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_the_validation_refuses_broken_events(case: str, lineage_file: tuple[Engine, Lineage, Path]) -> None:
    engine, lineage, target = lineage_file
    engine.run("SELECT name FROM shop.items", CallerContext(user="root")).read_all()
    lineage.close()
    complete = read_events(target)[-1]
    assert validate_run_event(complete, PRODUCER).run.runId == complete["run"]["runId"]
    breaking, message = BROKEN[case]
    broken = copy.deepcopy(complete)
    breaking(broken)
    with pytest.raises(InvalidEvent, match=message):
        validate_run_event(broken, PRODUCER)


def test_a_collector_that_is_down_is_logged_once_and_queries_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine.from_config(load_config(write_mesh(tmp_path)))
    with receiving() as receiver:
        down = receiver.url  # a port nobody listens on once the block ends
    lineage = Lineage.to_url(engine, down)
    engine.audit.listen(lineage)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.telemetry.lineage"):
            for _ in range(3):
                assert engine.run("SELECT label FROM ref.kinds", CallerContext(user="root")).read_all().num_rows == 2
            lineage.close(timeout=60)
    finally:
        engine.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.telemetry.lineage"]
    assert len(warnings) == 1 and warnings[0].startswith("lineage: 1 events could not be sent so far")


def test_serve_posts_events_to_a_collector(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("collector-api-key\n")
    with receiving() as receiver:
        process = GatewayProcess(
            write_mesh(tmp_path),
            extra=("--lineage-url", receiver.url, "--lineage-api-key-file", str(tmp_path / "key")),
            credentials=ROOT,
        )
        try:
            query(process.uri, "SELECT id FROM shop.items WHERE name = 'item 2'", ROOT)
            with pytest.raises(AdbcError, match=r"(?i)denied"):
                query(process.uri, "SELECT secret FROM shop.items", ALICE)
            with connect(process.uri, ROOT) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT id FROM shop.items WHERE name = ?", parameters=("item 4",))
                cursor.fetch_arrow_table()
            events = wait_for(receiver.events, lambda events: len(events) == 6, "six events posted")
        finally:
            process.stop()
    for event in events:
        validate_run_event(event, PRODUCER)
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert sorted(by_run.values()) == [["START", "COMPLETE"], ["START", "COMPLETE"], ["START", "FAIL"]]
    denied = next(e for e in events if e["eventType"] == "FAIL")
    assert denied["run"]["facets"]["meshgate"]["user"] == "alice"
    assert denied["run"]["facets"]["meshgate"]["outcome"] == "denied"
    assert all(h.get("Authorization") == "Bearer collector-api-key" for h in receiver.lineage_headers)
    assert "item 2" not in json.dumps(events) and "item 4" not in json.dumps(events)
    assert any(e["job"]["facets"]["sql"]["query"].endswith("name = $1") for e in events)


def test_bad_lineage_flags_are_named(tmp_path: Path) -> None:
    config = ("--config", str(write_mesh(tmp_path)))
    assert "is not an http:// or https:// URL" in serve_error(*config, "--lineage-url", "marquez:5000")
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    try:
        for settings, message in [
            (TelemetrySettings(lineage_file=tmp_path / "l.jsonl", lineage_url="http://x"), "not both"),
            (TelemetrySettings(lineage_file=tmp_path / "nowhere" / "l.jsonl"), "no such directory"),
            (TelemetrySettings(lineage_file=tmp_path), "cannot be written"),
            (TelemetrySettings(lineage_api_key_file=tmp_path / "key"), "is for --lineage-url"),
            (TelemetrySettings(lineage_url="http://x", lineage_api_key_file=tmp_path / "key"), "cannot be read"),
            (TelemetrySettings(lineage_file=tmp_path / "l.jsonl", lineage_namespace=" "), "must not be empty"),
        ]:
            with pytest.raises(ConfigError, match=message):
                Telemetry.start(engine, settings)
    finally:
        engine.close()
