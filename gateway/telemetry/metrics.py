"""Prometheus metrics of one gateway (``/metrics`` on the HTTP listener).

Each gateway has its own :class:`~prometheus_client.CollectorRegistry`, so several in one
process never mix their numbers. Counters are fed by the audit log (:class:`Metrics` is an
:class:`~gateway.audit.AuditListener`: a few label look-ups per finished query); what the
engine already counts (running queries, the plan cache, which domains are online) is read
when Prometheus scrapes, costing the queries nothing.

Labels are ``domain``, ``source`` (a connector's kind), ``outcome`` and ``kind``: never SQL,
user names, product names or other values without a bound.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from gateway.audit import EVENT_OUTCOMES, OUTCOMES, AuditEvent, QueryRecord, QueryRun

if TYPE_CHECKING:
    from gateway.engine import Engine

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_RELOAD_KINDS = ("domain_apply", "domain_remove", "config_reload")


class Metrics:
    """The metrics of the gateway around ``engine``; listens to its audit log from creation on."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.queries = Counter("meshgate_queries", "Queries finished, by outcome", ["outcome"], registry=registry)
        self.query_seconds = Histogram(
            "meshgate_query_duration_seconds",
            "Time from the start of a query's execution (or its failed planning) to its last row, by outcome",
            ["outcome"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.result_rows = Counter("meshgate_result_rows", "Rows sent to clients", registry=registry)
        self.result_bytes = Counter("meshgate_result_bytes", "Bytes of Arrow data sent to clients", registry=registry)
        self.domain_queries = Counter(
            "meshgate_domain_queries",
            "Queries that read a domain's products, by domain and outcome",
            ["domain", "outcome"],
            registry=registry,
        )
        self.source_queries = Counter(
            "meshgate_source_queries",
            "Queries sent to a domain's source",
            ["domain", "source"],
            registry=registry,
        )
        self.source_errors = Counter(
            "meshgate_source_errors",
            "Source queries that failed (the source refused, failed or could not be reached)",
            ["domain", "source"],
            registry=registry,
        )
        self.source_rows = Counter(
            "meshgate_source_rows", "Rows read from a domain's source", ["domain", "source"], registry=registry
        )
        self.source_bytes = Counter(
            "meshgate_source_bytes",
            "Bytes of Arrow data read from a domain's source",
            ["domain", "source"],
            registry=registry,
        )
        self.source_seconds = Histogram(
            "meshgate_source_query_duration_seconds",
            "Time a source query ran, to its last row",
            ["domain", "source"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.logins = Counter("meshgate_logins", "Log-in attempts, by outcome", ["outcome"], registry=registry)
        self.reloads = Counter(
            "meshgate_reloads",
            "Domain files applied or removed over the network (domain_apply, domain_remove) and config files"
            " reloaded by the watcher (config_reload), by outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self._outcomes: dict[str, tuple[Any, Any]] = {}
        self._domains: dict[tuple[str, str], Any] = {}
        self._sources: dict[tuple[str, str], tuple[Any, Any, Any, Any, Any]] = {}
        for outcome in OUTCOMES:  # every series from the start: a rate over a counter that appears later misses
            self._by_outcome(outcome)
        for outcome in EVENT_OUTCOMES["login"]:
            self.logins.labels(outcome)
        for kind in _RELOAD_KINDS:
            for outcome in EVENT_OUTCOMES[kind]:
                self.reloads.labels(kind, outcome)
        registry.register(_EngineCollector(engine))
        engine.audit.listen(self)

    # -- AuditListener -------------------------------------------------------------------
    def query_started(self, record: QueryRecord) -> None:
        """Running queries are read from the engine's admission at scrape time."""

    def query_finished(self, record: QueryRecord, run: QueryRun) -> None:
        outcome = record.outcome if record.outcome in OUTCOMES else "error"
        count, seconds = self._by_outcome(outcome)
        count.inc()
        seconds.observe(record.duration_ms / 1000)
        if record.rows:
            self.result_rows.inc(record.rows)
        if run.bytes:
            self.result_bytes.inc(run.bytes)
        for domain in {product.partition(".")[0] for product in record.products}:
            self._domain(domain, outcome).inc()
        for source in run.sources:
            queries, errors, rows, size, duration = self._source(source.domain, source.source)
            queries.inc()
            rows.inc(source.rows)
            size.inc(source.bytes)
            if source.finished is not None:
                duration.observe(max(0.0, source.finished - source.started))
            if source.error is not None:
                errors.inc()

    # The labelled series, looked up once each (``labels()`` costs a few microseconds a call).
    def _by_outcome(self, outcome: str) -> tuple[Any, Any]:
        found = self._outcomes.get(outcome)
        if found is None:
            found = self._outcomes[outcome] = (self.queries.labels(outcome), self.query_seconds.labels(outcome))
        return found

    def _domain(self, domain: str, outcome: str) -> Any:
        found = self._domains.get((domain, outcome))
        if found is None:
            found = self._domains[(domain, outcome)] = self.domain_queries.labels(domain, outcome)
        return found

    def _source(self, domain: str, source: str) -> tuple[Any, Any, Any, Any, Any]:
        found = self._sources.get((domain, source))
        if found is None:
            metrics = (
                self.source_queries,
                self.source_errors,
                self.source_rows,
                self.source_bytes,
                self.source_seconds,
            )
            children = tuple(metric.labels(domain, source) for metric in metrics)
            found = self._sources[(domain, source)] = (children[0], children[1], children[2], children[3], children[4])
        return found

    def security_event(self, event: AuditEvent) -> None:
        if event.kind == "login":
            self.logins.labels(event.outcome).inc()
        elif event.kind in _RELOAD_KINDS:
            self.reloads.labels(event.kind, event.outcome).inc()

    # -- exposition ----------------------------------------------------------------------
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Every metric, and the media type, in the format the ``Accept`` header asks for: OpenMetrics,
        the Prometheus text format 1.0.0, or (by default) the text format 0.0.4."""
        encode, media_type = choose_encoder(accept or "")
        return encode(self.registry), media_type


class _EngineCollector(Collector):
    """What the engine counts anyway, read at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        yield GaugeMetricFamily(
            "meshgate_active_queries", "Queries executing now (admitted, not yet finished)", engine.admission.running
        )
        plans = engine.plans
        yield CounterMetricFamily("meshgate_plan_cache_hits", "Plan cache look-ups that found a plan", plans.hits)
        yield CounterMetricFamily("meshgate_plan_cache_misses", "Plan cache look-ups that found none", plans.misses)
        yield CounterMetricFamily(
            "meshgate_plannings", "Statements planned by DataFusion (misses and uncacheable ones)", plans.plannings
        )
        yield CounterMetricFamily(
            "meshgate_plan_cache_routed",
            "Executions that went straight to their source on a cached route, without planning",
            plans.routed,
        )
        up = GaugeMetricFamily(
            "meshgate_source_up",
            "1 if the domain's source is online (its products served), 0 if the domain is offline",
            labels=["domain", "source"],
        )
        for domain in engine.catalog.domains():
            # the connector's kind, as the source label of the other metrics (mariadb is mysql's)
            kind = domain.connector.kind if domain.connector is not None else domain.config.connector.type
            up.add_metric([domain.name, kind], 0.0 if domain.error is not None else 1.0)
        yield up


def scrape_allowed(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as a bearer token (compared in constant time)."""
    if authorization is None:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))
