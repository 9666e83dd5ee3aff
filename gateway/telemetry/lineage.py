"""OpenLineage events for every query: a START when it starts and a COMPLETE, FAIL or ABORT
(cancelled) when it ends, to a JSON-lines file or an HTTP collector (Marquez, DataHub).

- The job is the statement: namespace the configured one, name ``query_`` and a hash of its
  text without literals, so every run of one statement is a run of one job; the job's
  ``sql`` facet has that text (``gateway/telemetry/sqltext.py``: no literal, no parameter value).
- The run's id is the query's id in the audit log (``system.query_log``). Its facets: the
  processing engine, the error (FAIL), and ``meshgate``: the user, the columns read, the
  policies applied, the outcome and the rows sent.
- The inputs are the products read, ``<catalog>.<domain>.<product>`` in the configured
  namespace, each with its schema facet; there are no outputs. OpenLineage's column
  lineage maps an output's columns to input columns, so with no output dataset it has no
  place: the columns each query read are in the ``meshgate`` run facet instead.

A query that fails before it starts (a syntax error, a denied product) gets its START and
FAIL together. Events are sent by one background thread from a bounded queue, so a slow
collector never slows a query; when the queue is full, events are dropped and logged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import attr
from cachetools import LRUCache
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    processing_engine_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.generated.base import RunFacet
from openlineage.client.transport import FileTransport, HttpTransport, Transport
from openlineage.client.transport.file import FileConfig
from openlineage.client.transport.http import HttpConfig

from gateway import __version__
from gateway.audit import AuditEvent, QueryRecord, QueryRun
from gateway.errors import ConfigError
from gateway.telemetry.background import Background
from gateway.telemetry.sqltext import without_literals

if TYPE_CHECKING:
    from gateway.engine import Engine

log = logging.getLogger(__name__)

PRODUCER = f"urn:meshgate:gateway:{__version__}"
"""Who produced the events (OpenLineage asks for a URI)."""

_ENDS = {"ok": RunState.COMPLETE, "cancelled": RunState.ABORT}
# Each event is tried three times within about a second (the client's default: six times in
# about ten seconds, which a collector that is down would make the queue pay for every event).
_RETRY = {
    "total": 2,
    "read": 2,
    "connect": 2,
    "backoff_factor": 0.3,
    "status_forcelist": [500, 502, 503, 504],
    "allowed_methods": ["HEAD", "POST"],
}


@attr.define
class MeshgateRunFacet(RunFacet):
    """What Meshgate knows of a query beyond the standard facets."""

    user: str | None = attr.field(default=None)
    outcome: str | None = attr.field(default=None)
    rows: int | None = attr.field(default=None)
    columns: list[str] = attr.field(factory=list)
    policies: list[str] = attr.field(factory=list)
    _additional_skip_redact: ClassVar[list[str]] = ["outcome", "rows", "columns", "policies"]

    @staticmethod
    def _get_schema() -> str:
        return "urn:meshgate:facets:MeshgateRunFacet:1"


class Lineage:
    """Sends each query's events through ``transport`` (see the module docstring)."""

    def __init__(self, engine: Engine, transport: Transport, namespace: str = "meshgate") -> None:
        if not namespace.strip():
            raise ConfigError("--lineage-namespace: must not be empty")
        self._engine = engine
        self._client = OpenLineageClient(transport=transport)
        self.namespace = namespace
        self._started: LRUCache[str, None] = LRUCache(maxsize=65_536)  # queries whose START went out
        self._lock = threading.Lock()
        self._failed = 0  # events not sent since the last one that was (the sending thread's own)
        self._sender: Background[tuple[RunState, QueryRecord, dt.datetime]] = Background("lineage", self._send)

    @classmethod
    def to_file(cls, engine: Engine, path: str, namespace: str = "meshgate") -> Lineage:
        """Events appended to ``path``, one JSON object a line."""
        return cls(engine, FileTransport(FileConfig(log_file_path=path, append=True)), namespace)

    @classmethod
    def to_url(cls, engine: Engine, url: str, namespace: str = "meshgate", api_key: str | None = None) -> Lineage:
        """Events posted to a collector at ``url`` (``/api/v1/lineage`` is added), with ``api_key`` as bearer token."""
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--lineage-url: {url!r} is not an http:// or https:// URL")
        auth: dict[str, Any] = {"type": "api_key", "apiKey": api_key} if api_key else {}
        config = HttpConfig.from_dict({"url": url, "auth": auth, "retry": _RETRY})
        return cls(engine, HttpTransport(config), namespace)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds) and stop."""
        self._sender.close(timeout)
        self._client.close(timeout)

    # -- AuditListener -------------------------------------------------------------------
    def query_started(self, record: QueryRecord) -> None:
        with self._lock:
            self._started[record.query_id] = None
        self._put(RunState.START, record, record.started)

    def query_finished(self, record: QueryRecord, run: QueryRun) -> None:
        with self._lock:
            started = self._started.pop(record.query_id, "absent") != "absent"
        if not started:
            self._put(RunState.START, record, record.started)
        ended = record.started + dt.timedelta(milliseconds=record.duration_ms)
        self._put(_ENDS.get(record.outcome, RunState.FAIL), record, ended)

    def security_event(self, event: AuditEvent) -> None:
        """Log-ins and reloads are not lineage."""

    # -- events --------------------------------------------------------------------------
    def _event(self, state: RunState, record: QueryRecord, at: dt.datetime) -> RunEvent:
        sql = without_literals(record.sql)
        job_facets: dict[str, Any] = {
            "sql": sql_job.SQLJobFacet(query=sql, dialect="datafusion", producer=PRODUCER),
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="MESHGATE", jobType="QUERY", producer=PRODUCER
            ),
        }
        run_facets: dict[str, Any] = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__, name="Meshgate", producer=PRODUCER
            ),
            "meshgate": MeshgateRunFacet(
                user=record.user,
                outcome=None if state == RunState.START else record.outcome,
                rows=None if state == RunState.START else record.rows,
                columns=list(record.columns),
                policies=list(record.policies),
                producer=PRODUCER,
            ),
        }
        if state == RunState.FAIL:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=record.error or record.outcome, programmingLanguage="python", producer=PRODUCER
            )
        job_name = "query_" + hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return RunEvent(
            eventType=state,
            eventTime=at.isoformat(),
            run=Run(runId=str(uuid.UUID(hex=record.query_id)), facets=run_facets),
            job=Job(namespace=self.namespace, name=job_name, facets=job_facets),
            inputs=[self._input(product) for product in record.products],
            outputs=[],
            producer=PRODUCER,
        )

    def _input(self, qualified: str) -> InputDataset:
        domain, _, name = qualified.partition(".")
        catalog = self._engine.catalog
        facets: dict[str, Any] = {}
        product = catalog.find(domain, name)
        if product is not None:
            fields = [
                schema_dataset.SchemaDatasetFacetFields(name=column.name, type=str(column.type), ordinal_position=i)
                for i, column in enumerate(product.schema, start=1)
            ]
            facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)
        return InputDataset(namespace=self.namespace, name=f"{catalog.name}.{qualified}", facets=facets)

    # -- sending -------------------------------------------------------------------------
    def _put(self, state: RunState, record: QueryRecord, at: dt.datetime) -> None:
        """Queue an event; it is made and sent on the sending thread, off the query's path."""
        self._sender.put((state, dataclasses.replace(record), at))

    def _send(self, item: tuple[RunState, QueryRecord, dt.datetime]) -> None:
        try:
            self._client.emit(self._event(*item))
        except Exception as error:  # the collector is down or refuses: the query is long done
            self._failed += 1
            if self._failed == 1 or self._failed % 1000 == 0:  # one line, not one per query
                log.warning("lineage: %d events could not be sent so far; the last: %s", self._failed, error)
        else:
            if self._failed:
                log.info("lineage: events are sent again (%d could not be)", self._failed)
                self._failed = 0
