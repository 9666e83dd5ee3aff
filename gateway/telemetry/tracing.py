"""OpenTelemetry spans for each query, exported over OTLP/HTTP when switched on.

A query's spans are made after it finishes, on a thread of their own, from the times the
engine and its scans already record: ``meshgate.query`` (the whole query) with ``meshgate.plan`` (planning, or
the plan cache's look-up), one ``meshgate.source_query`` per query a source received (its
SQL and rows) and ``meshgate.stream`` (from the end of planning to the last row sent).
Nothing runs while the query does, and with tracing off (no :class:`Tracing` listening)
nothing runs at all.

A client that sends a W3C ``traceparent`` header with its Flight SQL calls (the ADBC driver:
option ``adbc.flight.sql.rpc.call_header.traceparent``) gets the query's spans in its trace.

SQL text in spans has its literals replaced by ``?`` (``gateway/telemetry/sqltext.py``):
parameter values and values a user typed or a source returned stay out. Spans name the
user (``enduser.id``): they go only to the endpoint the admin configured.
"""

from __future__ import annotations

import dataclasses
import os

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.audit import AuditEvent, QueryRecord, QueryRun
from gateway.errors import ConfigError
from gateway.telemetry.background import Background
from gateway.telemetry.sqltext import without_literals

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""The standard variables that switch tracing on when set (the OTLP exporter reads them itself)."""


class Tracing:
    """Turns each finished query into spans, handed to ``processor`` (a batching exporter in production)."""

    def __init__(self, processor: SpanProcessor) -> None:
        resource = Resource.create({"service.name": "meshgate", "service.version": __version__})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("meshgate", __version__)
        self._maker: Background[tuple[QueryRecord, QueryRun]] = Background("tracing", self._spans)

    @classmethod
    def otlp(cls, endpoint: str | None) -> Tracing | None:
        """Tracing to an OTLP/HTTP collector: ``endpoint`` (its base URL, ``/v1/traces`` is added) or the
        standard environment variables; None when neither is given (tracing off)."""
        if endpoint is None and not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        traces = None
        if endpoint is not None:
            if not endpoint.startswith(("http://", "https://")):
                raise ConfigError(f"--otlp-endpoint: {endpoint!r} is not an http:// or https:// URL")
            traces = endpoint.rstrip("/") + "/v1/traces"
        exporter: SpanExporter = OTLPSpanExporter(endpoint=traces)
        return cls(BatchSpanProcessor(exporter))

    def shutdown(self) -> None:
        """Make and send what is queued, and stop."""
        self._maker.close()
        self.provider.shutdown()

    def flush(self) -> None:
        """Make the spans of every query finished so far and hand them to the processor."""
        self._maker.flush()

    # -- AuditListener -------------------------------------------------------------------
    def query_started(self, record: QueryRecord) -> None:
        """Spans are made when the query finishes."""

    def security_event(self, event: AuditEvent) -> None:
        """Log-ins and reloads are not traced."""

    def query_finished(self, record: QueryRecord, run: QueryRun) -> None:
        self._maker.put((dataclasses.replace(record), run))

    def _spans(self, item: tuple[QueryRecord, QueryRun]) -> None:
        record, run = item
        started = _ns(record.started.timestamp())
        ended = started + int(record.duration_ms * 1_000_000)
        parent = _PROPAGATOR.extract({"traceparent": run.trace_parent}) if run.trace_parent else None
        root = self._tracer.start_span(
            "meshgate.query",
            parent,
            kind=trace.SpanKind.SERVER,
            start_time=started,
            attributes={
                "db.system.name": "meshgate",
                "db.query.text": without_literals(record.sql),
                "meshgate.query_id": record.query_id,
                "meshgate.outcome": record.outcome,
                "meshgate.products": list(record.products),
                "meshgate.policies": list(record.policies),
                "meshgate.rows": record.rows,
                "meshgate.bytes": run.bytes,
                **({"enduser.id": record.user} if record.user is not None else {}),
            },
        )
        if record.outcome != "ok":
            root.set_status(Status(StatusCode.ERROR, record.error or record.outcome))
        context = trace.set_span_in_context(root)
        planned = _ns(run.planned) if run.planned is not None else ended
        plan = self._tracer.start_span(
            "meshgate.plan", context, start_time=started, attributes={"meshgate.plan.cached": run.cached}
        )
        if run.planned is None and record.outcome != "ok":
            plan.set_status(Status(StatusCode.ERROR, record.error or record.outcome))
        plan.end(end_time=min(planned, ended))
        if run.planned is not None:
            stream = self._tracer.start_span("meshgate.stream", context, start_time=planned)
            stream.set_attribute("meshgate.rows", record.rows)
            stream.end(end_time=max(planned, ended))
        self._sources(run, context, ended)
        root.end(end_time=ended)

    def _sources(self, run: QueryRun, context: Context, ended: int) -> None:
        for source in run.sources:
            span = self._tracer.start_span(
                "meshgate.source_query",
                context,
                kind=trace.SpanKind.CLIENT,
                start_time=_ns(source.started),
                attributes={
                    "db.system.name": source.source,
                    "db.query.text": without_literals(source.sql),
                    "meshgate.domain": source.domain,
                    "meshgate.product": source.product,
                    "meshgate.rows": source.rows,
                    "meshgate.bytes": source.bytes,
                },
            )
            if source.error is not None:
                span.set_status(Status(StatusCode.ERROR, source.error))
            span.end(end_time=_ns(source.finished) if source.finished is not None else ended)


_PROPAGATOR = TraceContextTextMapPropagator()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)
