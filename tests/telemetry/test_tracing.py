"""OpenTelemetry spans of each query: through the engine into the SDK's in-memory exporter, and
from ``meshgate serve --otlp-endpoint`` to a real OTLP/HTTP receiver (protobuf decoded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from adbc_driver_manager import Error as AdbcError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import MeshgateError
from gateway.flightsql.middleware import trace_parent
from gateway.telemetry.tracing import Tracing
from tests.support.gateway import GatewayProcess, connect, query
from tests.telemetry.receiver import receiving
from tests.telemetry.support import ROOT, serve_error, wait_for, write_mesh

ROOT_CALLER = CallerContext(user="root")
TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Engine, Tracing, InMemorySpanExporter]]:
    engine = Engine.from_config(load_config(write_mesh(tmp_path)))
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    engine.audit.listen(tracing)
    try:
        yield engine, tracing, exporter
    finally:
        tracing.shutdown()
        engine.close()


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_a_federated_query_has_plan_source_and_stream_spans(
    traced: tuple[Engine, Tracing, InMemorySpanExporter],
) -> None:
    engine, tracing, exporter = traced
    sql = "SELECT i.name, k.label FROM shop.items i JOIN ref.kinds k ON i.id - 1 = k.kind WHERE i.name <> 'item 9'"
    table = engine.run(sql, ROOT_CALLER).read_all()
    assert table.num_rows == 2
    tracing.flush()  # spans are made on a thread of their own
    spans = exporter.get_finished_spans()
    (root,) = by_name(spans, "meshgate.query")
    (plan,) = by_name(spans, "meshgate.plan")
    (stream,) = by_name(spans, "meshgate.stream")
    sources = by_name(spans, "meshgate.source_query")
    assert len(sources) == 1, "the CSV domain is read by DataFusion itself; SQLite gets one scan"
    (source,) = sources
    assert root.parent is None and root.attributes is not None
    for child in (plan, stream, source):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        assert root.start_time is not None and child.start_time is not None and child.end_time is not None
        assert root.end_time is not None
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    assert root.attributes["meshgate.outcome"] == "ok"
    assert root.attributes["meshgate.rows"] == 2
    assert root.attributes["enduser.id"] == "root"
    assert set(root.attributes["meshgate.products"]) == {"shop.items", "ref.kinds"}  # type: ignore[arg-type]
    text = str(root.attributes["db.query.text"])
    assert "'item 9'" not in text and "<> ?" in text and "- ?" in text
    assert source.attributes is not None
    assert source.attributes["db.system.name"] == "sqlite"
    assert source.attributes["meshgate.domain"] == "shop"
    assert source.attributes["meshgate.rows"] == 5  # the filter on name went to SQLite; no item has that name
    assert "item 9" not in str(source.attributes["db.query.text"])
    assert "items" in str(source.attributes["db.query.text"])
    assert root.status.status_code == StatusCode.UNSET


def test_a_failed_query_is_one_span_with_its_error(traced: tuple[Engine, Tracing, InMemorySpanExporter]) -> None:
    engine, tracing, exporter = traced
    with pytest.raises(MeshgateError):
        engine.run("SELECT nope FROM shop.items WHERE name = 'x'", ROOT_CALLER)
    tracing.flush()  # spans are made on a thread of their own
    spans = exporter.get_finished_spans()
    (root,) = by_name(spans, "meshgate.query")
    assert root.status.status_code == StatusCode.ERROR and "nope" in (root.status.description or "")
    assert root.attributes is not None and root.attributes["meshgate.outcome"] == "error"
    assert "'x'" not in str(root.attributes["db.query.text"])
    (plan,) = by_name(spans, "meshgate.plan")
    assert plan.status.status_code == StatusCode.ERROR
    assert by_name(spans, "meshgate.stream") == [] and by_name(spans, "meshgate.source_query") == []


def test_serve_sends_spans_to_an_otlp_receiver(tmp_path: Path) -> None:
    with receiving() as receiver:
        process = GatewayProcess(
            write_mesh(tmp_path),
            extra=("--otlp-endpoint", receiver.url),
            credentials=ROOT,
            env={"OTEL_BSP_SCHEDULE_DELAY": "50"},
        )
        try:
            assert query(process.uri, "SELECT id FROM shop.items WHERE id > 3", ROOT).num_rows == 2
            with pytest.raises(AdbcError):
                query(process.uri, "SELECT * FROM shop.nothing", ROOT)
            for header in (TRACE_PARENT, "00-not-a-trace-parent-01"):
                options = {"adbc.flight.sql.rpc.call_header.traceparent": header}
                with connect(process.uri, ROOT, **options) as connection, connection.cursor() as cursor:
                    cursor.execute("SELECT label FROM ref.kinds")
                    cursor.fetch_arrow_table()
            with connect(process.uri, ROOT) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT id FROM shop.items WHERE name = ?", parameters=("item 4",))
                assert cursor.fetch_arrow_table().column("id").to_pylist() == [4]
            spans = wait_for(
                receiver.spans,
                lambda spans: len([s for s in spans if s.name == "meshgate.query"]) == 5,
                "five query spans received",
            )
        finally:
            process.stop()
    resource = receiver.traces[0].resource_spans[0].resource
    service = {a.key: a.value.string_value for a in resource.attributes}
    assert service["service.name"] == "meshgate"
    queries = [s for s in spans if s.name == "meshgate.query"]
    joined = [s for s in queries if s.trace_id.hex() == TRACE_PARENT.split("-")[1]]
    assert len(joined) == 1, "the client's trace: one query, its own trace for the bad header"
    assert joined[0].parent_span_id.hex() == TRACE_PARENT.split("-")[2]
    assert len({s.trace_id for s in queries}) == 5
    bound = [s for s in queries if any(a.value.string_value.endswith("name = $1") for a in s.attributes)]
    assert len(bound) == 1, "a bound parameter stays a placeholder"
    assert all(b"item 4" not in request.SerializeToString() for request in receiver.traces), "its value never leaves"
    queries = [s for s in queries if s not in bound]
    queries = [s for s in queries if all("kinds" not in a.value.string_value for a in s.attributes)]
    assert len(queries) == 2
    attributes = [{a.key: a.value for a in span.attributes} for span in queries]
    ok = next(a for a in attributes if a["meshgate.outcome"].string_value == "ok")
    assert ok["db.query.text"].string_value == "SELECT id FROM shop.items WHERE id > ?"
    assert ok["meshgate.rows"].int_value == 2 and ok["enduser.id"].string_value == "root"
    failed = next(span for span in queries if span.status.code == span.status.STATUS_CODE_ERROR)
    assert "nothing" in failed.status.message
    source = next(s for s in spans if s.name == "meshgate.source_query")
    source_attributes = {a.key: a.value for a in source.attributes}
    assert source_attributes["meshgate.rows"].int_value == 2
    assert "3" not in source_attributes["db.query.text"].string_value.split("WHERE", 1)[-1]
    assert source.parent_span_id == next(s.span_id for s in queries if s.trace_id == source.trace_id), (
        "the source query is a child of its query's span"
    )


def test_a_bad_otlp_endpoint_is_named(tmp_path: Path) -> None:

    message = serve_error("--config", str(write_mesh(tmp_path)), "--otlp-endpoint", "collector:4318")
    assert "--otlp-endpoint: 'collector:4318' is not an http:// or https:// URL" in message


@pytest.mark.parametrize(
    ("values", "kept"),
    [
        ([TRACE_PARENT], TRACE_PARENT),
        ([TRACE_PARENT.encode()], TRACE_PARENT),
        ([TRACE_PARENT, TRACE_PARENT], None),  # two headers: neither is the one
        (["00-00000000000000000000000000000000-00f067aa0ba902b7-01"], None),  # the invalid all-zero trace id
        (["ff" + TRACE_PARENT[2:]], None),  # the forbidden version
        ([TRACE_PARENT.upper()], None),
        (["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"], None),
        ([b"\xff\xfe"], None),
        ([], None),
    ],
)
def test_only_a_valid_traceparent_is_kept(values: list[str | bytes], kept: str | None) -> None:
    assert trace_parent({"traceparent": values} if values else {}) == kept
