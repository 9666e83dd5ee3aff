"""A collector for the tests: OTLP/HTTP traces at ``/v1/traces`` (protobuf, decoded with
opentelemetry-proto) and OpenLineage events at ``/api/v1/lineage`` (JSON), on a free port."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class Receiver:
    """What was received, by kind; ``headers`` of each lineage post."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.traces: list[ExportTraceServiceRequest] = []
        self.lineage: list[dict[str, Any]] = []
        self.lineage_headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def spans(self) -> list[Span]:
        with self.lock:
            return [
                span
                for request in self.traces
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.lineage)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver on a free loopback port, until the block ends."""
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver = holder[0]
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.traces.append(request)
                self._answer(200, "application/x-protobuf", ExportTraceServiceResponse().SerializeToString())
            elif self.path == "/api/v1/lineage":
                with receiver.lock:
                    receiver.lineage.append(json.loads(body))
                    receiver.lineage_headers.append(dict(self.headers.items()))
                self._answer(201, "application/json", b"{}")
            else:
                self._answer(404, "text/plain", b"no such endpoint")

        def _answer(self, status: int, media_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
