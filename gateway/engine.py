"""The engine: plans SQL over the mesh with DataFusion and streams the results.

Each execution gets its own DataFusion context whose ``mesh`` catalog resolves
``domain.product`` names lazily: SQL sources become :class:`ProductDataset` scans
that push down what their source can evaluate, file sources are read by DataFusion
itself. Knows nothing about Flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from cachetools import LRUCache, TTLCache
from datafusion import DataFrame, LogicalPlan, RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions, col
from datafusion.catalog import CatalogProvider, SchemaProvider, Table

from connectors.base import STATS_SECONDS, Connector, FileConnector, FileVersion, SqlConnector
from connectors.file_engine import ComputedTables, DuckdbFiles, FileEngine, computed_source, file_source
from connectors.files import ParquetConnector
from gateway import distinct_from, quantified, similar_to
from gateway.api import CallerContext, DomainInfo, ProductInfo
from gateway.audit import QUERY_ID, AuditLog, QueryRecord, QueryRun, SourceRun
from gateway.catalog import Domain, MeshCatalog, Product
from gateway.config import MeshConfig
from gateway.contracts import column_tags, described
from gateway.errors import (
    EXITS,
    MeshgateError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    PlanningError,
    QueryCancelledError,
    ResourceLimitError,
    SourceError,
    SourceUnavailableError,
    internal_message,
)
from gateway.governance import generate_mask_key, governed_schema, referenced_products, register_masks, view_sql
from gateway.limits import Admission, Limits, MiB, Ticket, check_expressions
from gateway.parameters import number_placeholders, parameter_schema, parameter_values
from gateway.plan.late_materialisation import LATE_SETTING, file_spans, late_materialisation
from gateway.plan.rules import Planning, rewrite
from gateway.plan.same_source import DERIVED_SCHEMA
from gateway.plancache import (
    MAX_TEXT,
    CachedPlan,
    Literal,
    PlanCache,
    PlanKey,
    Route,
    access_fingerprint,
    bindable,
    bound_values,
    parameterize,
    placeholders_only_in_filters,
)
from gateway.planner import chain_sql, negotiate_scans, scan_key, single_source_sql, touched
from gateway.policy import Access, PolicySet, check_references
from gateway.quality import QualityLog
from gateway.scan import Guard, ProductDataset, ProductScan, SourceQuery, classic_types, conform, guard
from gateway.system_tables import ADMIN_ROLE, SYSTEM_SCHEMA, TABLES, TableDataset
from meshcore.sql import quote_identifier

log = logging.getLogger(__name__)

_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?P<analyze>ANALYZE\s+)?(?P<verbose>VERBOSE\s+)?", re.IGNORECASE)
EXPLAIN_SCHEMA = pa.schema([pa.field("plan_type", pa.string()), pa.field("plan", pa.string())])
# The mesh is read-only: no DDL, no DML, no COPY ... TO, no SET.
READ_ONLY = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
_NOT_READ_ONLY = ("DDL not supported", "DML not supported", "Statement not supported")
# Where unqualified names resolve when the session names no default domain.
UNQUALIFIED_SCHEMA = "public"


@dataclass(frozen=True)
class EngineSettings:
    """Execution knobs; defaults suit a 2-core machine."""

    target_partitions: int = 2
    # Rows per batch in a query that joins, aggregates or uses windows: hash tables and decimal
    # columns of 16 k rows stay in the CPU's caches (TPC-H: geometric mean 4 % below 64 k batches).
    batch_size: int = 16384
    # Rows per batch in a query that only reads, filters, sorts and limits: a result streamed as
    # read, where each batch costs the same fixed work to leave (6 M rows of lineitem: 592 ms in
    # 64 k batches, 777 ms in 16 k).
    stream_batch_size: int = 65536
    limits: Limits = field(default_factory=Limits)  # memory, admission, result size, expressions
    plan_rules: bool = True  # the federated planner's rules (gateway/plan/rules.py): off plans as DataFusion alone
    # Whole queries that aggregate Parquet products only run in DuckDB (connectors/file_engine.py).
    file_engine: bool = True
    # Evaluate filters while decoding Parquet (late materialisation) where the plan shows it pays
    # (gateway/plan/late_materialisation.py); False: never.
    parquet_pushdown: bool = True


@dataclass(frozen=True)
class Query:
    """A planned query (the engine's PreparedQuery)."""

    sql: str
    schema: pa.Schema
    parameter_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    explain: bool = False
    analyze: bool = False
    inner_sql: str = ""
    # What planning taught (gateway/plancache.py): the cached plan, its key, and the literals
    # its template took out of ``sql``, bound as the template's parameters.
    plan: CachedPlan | None = field(default=None, compare=False)
    key: PlanKey | None = field(default=None, compare=False)
    literals: pa.RecordBatch | None = field(default=None, compare=False)


@dataclass(frozen=True)
class _FileTable:
    """The table a file product is read through: one version of its files, or why it cannot be read."""

    product: Product  # the catalog's product it was built for (a refresh makes a new one)
    stamp: Hashable | None  # the connector's stamp it was built for; None: the files could not be stamped
    version: FileVersion | None = None
    table: Table | None = None
    error: MeshgateError | None = None


class Engine:
    """Plans and runs SQL over a :class:`MeshCatalog`."""

    def __init__(
        self,
        catalog: MeshCatalog,
        settings: EngineSettings | None = None,
        policies: PolicySet | None = None,
        audit: AuditLog | None = None,
        quality: QualityLog | None = None,
        *,
        mask_key: bytes | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings or EngineSettings()
        self._policy_generation = 0
        self.policies = policies or PolicySet()
        self.plans = PlanCache()
        self._referenced: LRUCache[tuple[str, str | None], frozenset[tuple[str, str]] | None] = LRUCache(4096)
        self.audit = audit or AuditLog()
        self.quality = quality or QualityLog()
        self.admission = Admission(self.settings.limits)
        self._file_tables: dict[tuple[str, str], _FileTable] = {}
        self._spans: dict[tuple[str, str], tuple[Hashable | None, dict[str, tuple[float, float]]]] = {}
        self._file_lock = threading.Lock()
        self._estimates: TTLCache[Hashable, float | None] = TTLCache(4096, STATS_SECONDS)
        self._estimates_lock = threading.Lock()
        limits = self.settings.limits
        self._duckdb_files = DuckdbFiles(self.settings.target_partitions, limits.query_memory, limits.spill_path)
        self._file_engines: dict[str, FileEngine] = {}  # by domain, over the one database
        # The hash mask's HMAC key (gateway/governance.py); random when not given (hashes then change per process).
        self.mask_key = mask_key if mask_key is not None else generate_mask_key()

    @classmethod
    def from_config(
        cls,
        config: MeshConfig,
        settings: EngineSettings | None = None,
        audit: AuditLog | None = None,
        quality: QualityLog | None = None,
        *,
        mask_key: bytes | None = None,
    ) -> Engine:
        """Open every domain of ``config`` and check its policies against what exists."""
        catalog = MeshCatalog(config)
        try:
            online = {(p.domain, p.name): p.schema for p in catalog.products()}
            offline = {d.name for d in catalog.domains() if d.error is not None}
            check_references(config.policies, online, offline)
        except BaseException:
            catalog.close()
            raise
        return cls(catalog, settings, config.policies, audit, quality, mask_key=mask_key)

    def close(self) -> None:
        self.catalog.close()
        self._duckdb_files.close()

    @property
    def policies(self) -> PolicySet:
        return self._policies

    @policies.setter
    def policies(self, policies: PolicySet) -> None:
        """New policies; plans cached under the old ones are never used again."""
        self._policies = policies
        self._policy_generation += 1

    @property
    def plan_version(self) -> tuple[int, int]:
        """What a cached plan must have been planned under: the catalog's version and the policies'."""
        return self.catalog.version, self._policy_generation

    def install(self, added: dict[str, Domain], removed: set[str], policies: PolicySet) -> None:
        """Swap in new domain versions and the policies that go with them (hot reload).

        Policies change first, so a new domain version is never visible under older,
        looser policies; queries already running finish on what they resolved.
        """
        self.policies = policies
        with self._file_lock:
            for key in [k for k in self._file_tables if k[0] in added or k[0] in removed]:
                _retire(self._file_tables.pop(key))
        self.catalog.replace(added, removed)

    def refresh(self, domain: str) -> Domain:
        """Read ``domain`` again from its source: new schemas, its contracts checked again."""
        loaded = self.catalog.refresh(domain)
        with self._file_lock:
            for key in [k for k in self._file_tables if k[0] == domain]:
                _retire(self._file_tables.pop(key))
        return loaded

    # -- catalog -------------------------------------------------------------------
    @property
    def catalog_name(self) -> str:
        return self.catalog.name

    def domains(self, caller: CallerContext) -> Sequence[DomainInfo]:
        return [
            DomainInfo(self.catalog.name, d.name, d.config.owner, d.config.description) for d in self.catalog.domains()
        ]

    def products(self, caller: CallerContext) -> Sequence[ProductInfo]:
        """The products ``caller`` may read, with the schema they see (granted, masked)."""
        visible = []
        for p in self.catalog.products():
            access = self.access(caller, p)
            if access is None:
                continue
            quality = self.quality.latest(p.domain, p.name)
            owner = self.catalog.domain(p.domain).config.owner
            schema = governed_schema(described(p, owner, quality.status if quality else None), access)
            schema = _with_nullability(schema, set(p.not_null), access)
            key = p.primary_key if set(p.primary_key) <= set(schema.names) else ()  # not a key once columns are hidden
            visible.append(ProductInfo(self.catalog.name, p.domain, p.name, schema, p.description, primary_key=key))
        return visible

    def access(self, caller: CallerContext, product: Product) -> Access | None:
        """What ``caller`` may see of ``product`` under the policies (tag rules included)."""
        return self.policies.access(caller, product.domain, product.name, product.schema, column_tags(product))

    # -- queries -------------------------------------------------------------------
    def prepare(self, sql: str, caller: CallerContext) -> Query:
        """Plan ``sql`` for ``caller``; every failure is in the audit log before it propagates.

        The text is checked first (size, nesting depth: :func:`check_query_text`), before
        any parser recurses into it. A parser that still runs out of Python stack gives a
        PlanningError too; anything else unexpected is audited as an internal error under
        the reference the client is told (``gateway.errors.internal_message``) and raised
        as it is, for the server to log with its traceback.
        """
        try:
            check_query_text(sql)
            check_expressions(sql, self.settings.limits)
            distinct_from.check_statement(sql)
            quantified.check_statement(sql)
            similar_to.check_statement(sql)
            return self._prepare(number_placeholders(sql), caller)
        except MeshgateError as error:
            shown = self.shown_error(error, caller)
            self._audit_failure(sql, caller, shown)
            if shown is error:
                raise
            raise shown from None
        except RecursionError:
            too_deep = PlanningError(f"{TOO_DEEP} for the SQL parser")
            self._audit_failure(sql, caller, too_deep)
            raise too_deep from None
        except EXITS:
            raise
        except BaseException as error:  # a Rust panic in DataFusion is a BaseException
            self._audit_failure(sql, caller, MeshgateError(internal_message(error)))
            raise

    def _prepare(self, sql: str, caller: CallerContext) -> Query:
        match = _EXPLAIN.match(sql)
        if match:
            inner = sql[match.end() :]
            self._prepare(inner, caller)  # report errors of the explained query now
            return Query(sql, EXPLAIN_SCHEMA, explain=True, analyze=bool(match.group("analyze")), inner_sql=inner)
        shape = parameterize(sql)
        key = self._plan_key(sql, shape[0] if shape else sql, caller)
        if key is not None:
            cached = self._cached_query(sql, key, shape)
            if cached is not None:
                return cached
        schema, parameters, route = self._statement(sql, caller, routed=key is not None)
        if key is None:
            return Query(sql, schema, parameters)
        plan = CachedPlan(schema, parameters, route)
        self.plans.put(key, plan)
        if shape is not None:
            self._learn_template(PlanKey(shape[0], key.access, key.version, True), shape[1], schema, caller)
        return Query(sql, schema, parameters, plan=plan, key=key)

    def _statement(self, sql: str, caller: CallerContext, routed: bool) -> tuple[pa.Schema, pa.Schema, Route | None]:
        """``sql`` planned without values: its result's schema, its parameters' and, when ``routed``,
        the route its executions may take without planning (:meth:`_route`)."""
        scope = _Scope(caller)
        ctx = self._context(scope, sql)
        dataframe = self._dataframe(ctx, sql, {}, caller)
        self.plans.counted_planning()
        optimized = _optimized(dataframe)
        if "distinct" in sql.lower():  # the plans' texts are read only for such statements
            distinct_from.check_join_keys(dataframe.logical_plan(), optimized)
        schema, parameters = result_schema(dataframe, ctx, optimized), parameter_schema(dataframe, sql)
        return schema, parameters, self._route(dataframe, optimized, scope, parameters) if routed else None

    # -- the plan cache (gateway/plancache.py) -------------------------------------------
    def _plan_key(self, sql: str, names: str, caller: CallerContext) -> PlanKey | None:
        """The cache key of ``sql`` for ``caller`` (``names``: a text naming the same products); None: not cached."""
        if not self.plans.maxsize:
            return None  # caching is off: every statement is planned, and planned again by execute
        if len(sql) > MAX_TEXT:
            return None  # too long to keep (gateway/plancache.py)
        version = self.plan_version
        if not self.policies.enabled:
            return PlanKey(sql, (caller.default_catalog, caller.default_schema), version)
        if _SHOW.match(sql):
            return None
        try:
            referenced = self._referenced[(names, caller.default_schema)]
        except KeyError:  # parsed once per text (sqlglot), not per execution
            found = referenced_products(names, self.catalog.name, caller.default_schema)
            referenced = None if found is None else frozenset(found)
            self._referenced[(names, caller.default_schema)] = referenced
        if referenced is None or any(domain in _LISTINGS or domain == SYSTEM_SCHEMA for domain, _ in referenced):
            return None  # the products read are not known from the text, or tables made per caller
        products = {key: self.catalog.find(*key) for key in referenced}
        access = access_fingerprint(caller, set(referenced), products, lambda p: self.access(caller, p))
        return None if access is None else PlanKey(sql, access, version)

    def _cached_query(self, sql: str, key: PlanKey, shape: tuple[str, tuple[Literal, ...]] | None) -> Query | None:
        """``sql`` as a cached plan knows it: its own entry, or its template's with the literals bound."""
        found = self.plans.get(key)
        if found is not None:
            return Query(sql, found.schema, found.parameter_schema, plan=found, key=key)
        if shape is None:
            return None
        template_key = PlanKey(shape[0], key.access, key.version, True)
        template = self.plans.get(template_key)
        if template is None or not template.template or template.route is None:
            return None
        bound = bound_values(template.route.parameter_types, {}, shape[1])
        if bound is None:
            return None  # a literal the template's types do not hold: plan this statement itself
        return Query(sql, template.schema, pa.schema([]), plan=template, key=template_key, literals=bound)

    def _route(
        self, dataframe: DataFrame, plan: LogicalPlan | None, scope: _Scope, parameters: pa.Schema
    ) -> Route | None:
        """The route of a query planned without values (``plan``: optimised, None if that failed), if
        it goes whole to one source with its parameters bound there exactly (else None: each execution plans)."""
        if scope.masked or plan is None:
            return None
        try:
            routed, scans = self._whole_route(dataframe, plan, scope)
        except Exception:  # execution reports it, as it always has
            return None
        if routed is None:
            return None
        scan = next(iter(scans.values()))
        types = tuple(field.type for field in parameters)
        if types and not (
            scan.connector.binds_parameters
            and bindable(types, scan.connector.capabilities.dialect)
            and placeholders_only_in_filters(dataframe.logical_plan())
        ):
            return None
        products, columns = touched(plan, _default_domain(scope.caller))
        applied = tuple(dict.fromkeys(scope.applied))
        return Route(routed[0], scan.product, routed[1], types, tuple(products), tuple(columns), applied)

    def _learn_template(
        self, key: PlanKey, literals: tuple[Literal, ...], schema: pa.Schema, caller: CallerContext
    ) -> None:
        """Plan the template of a statement just planned; keep it if it stands for such statements."""
        if self.plans.peek(key) is not None:
            return
        trusted: Route | None = None
        template_schema = schema
        try:
            template_schema, parameters, route = self._statement(key.sql, caller, routed=True)
            if (
                route is not None
                and template_schema.equals(schema)
                and len(parameters) == len(literals)
                and bound_values(route.parameter_types, {}, literals) is not None
            ):
                trusted = route
        except EXITS:
            raise
        except BaseException as error:  # the statement itself planned: only the template is given up
            log.debug("no template plan for %r: %s", key.sql, error)
        self.plans.put(key, CachedPlan(template_schema, pa.schema([]), trusted, template=trusted is not None))

    def _run_cached(
        self,
        query: Query,
        caller: CallerContext,
        values: dict[str, pa.Scalar],
        record: QueryRecord,
        deadline: float | None,
    ) -> Execution | None:
        """Run ``query``'s cached route with its values bound, without planning; None: plan it instead.

        The plan must be of the current version, and ``caller``'s access must be what it was
        planned for (a prepared statement may outlive a policy change or be run by a caller
        whose attributes changed).
        """
        plan, key = query.plan, query.key
        if plan is None or plan.route is None or key is None or key.version != self.plan_version:
            return None
        if self.policies.enabled:
            current = self._plan_key(key.sql, key.sql, caller)
            if current is None or current.access != key.access:
                return None
        route = plan.route
        parameters = query.literals if query.literals is not None else bound_values(route.parameter_types, values)
        if parameters is None or not self._held_still(route):
            return None
        try:
            scans = [ProductScan(route.product)]
            execution = _start_route(scans, route.domain, route.sql, query.schema, deadline, parameters)
        except (SourceUnavailableError, QueryCancelledError):
            raise
        except SourceError as error:  # the source reads the bound query otherwise: plan, as before
            log.info("cached route of %r refused by its source, planning instead: %s", key.sql, error)
            self.plans.forget_route(key)
            return None
        self.plans.counted_execution()
        record.products, record.columns = list(route.products), list(route.columns)
        record.policies = list(route.policies)
        return execution

    def execute(
        self,
        prepared: Any,
        caller: CallerContext,
        parameters: pa.RecordBatch | None = None,
        *,
        deadline: float | None = None,
    ) -> Execution:
        """Start ``prepared`` for ``caller``; ``deadline`` (``time.monotonic()``) bounds its source queries."""
        query = prepared if isinstance(prepared, Query) else self.prepare(prepared.sql, caller)
        record = QueryRecord(uuid.uuid4().hex, caller.user, dt.datetime.now(dt.UTC), query.sql)
        ticket: Ticket | None = None
        cached: Execution | None = None
        current = QUERY_ID.set(record.query_id)
        try:
            ticket = self.admission.enter(caller.user)
            if query.explain:
                execution = self._explain(query, caller, deadline)
            else:
                values = parameter_values(query.parameter_schema, parameters)
                cached = self._run_cached(query, caller, values, record, deadline)
                if cached is not None:
                    execution = cached
                else:
                    planned = self._plan(query.sql, caller, values, deadline)
                    schema = query.schema if not values else planned.result_schema()
                    record.products, record.columns = touched(planned.plan, _default_domain(caller))
                    record.policies = list(dict.fromkeys(planned.scope.applied))
                    execution = planned.start(schema, deadline)
        except BaseException as error:
            if ticket is not None:
                ticket.release()
            if not isinstance(error, MeshgateError):
                raise
            shown = self.shown_error(error, caller)
            self._audit_failure(query.sql, caller, shown, record)
            if shown is error:
                raise
            raise shown from None
        finally:
            QUERY_ID.reset(current)
        execution.hold(ticket, self.settings.limits.max_result_bytes)
        execution.query_id = record.query_id
        execution.planned = time.time()
        execution.cached = cached is not None
        execution.trace_parent = caller.trace_parent
        execution.on_finish = lambda outcome, error: self._audit_finish(record, execution, outcome, error)
        execution.shown = lambda error: self.shown_error(error, caller)
        if self.audit.listeners:
            self.audit.started(record)
        return execution

    def shown_error(self, error: MeshgateError, caller: CallerContext) -> MeshgateError:
        """``error`` as ``caller`` may see it: a source's location and the driver's words about reaching
        it are for the domain's owners and admins (they are logged here for the operator)."""
        if not isinstance(error, SourceError) or self.sees_sources(caller)(error.domain):
            return error
        kind, _, location = error.source.partition(":")
        log.info("source error shown without its location to user %s: %s", caller.user, error)
        if isinstance(error, SourceUnavailableError):
            return SourceUnavailableError(error.domain, kind, "the source cannot be reached right now")
        text = str(error).removeprefix(f"[{error.domain}/{error.source}] ")
        return SourceError(error.domain, kind, text.replace(location, kind) if location else text)

    def _audit_finish(self, record: QueryRecord, execution: Execution, outcome: str, error: str | None) -> None:
        record.rows = execution.rows
        record.outcome = outcome
        record.error = error
        record.duration_ms = (dt.datetime.now(dt.UTC) - record.started).total_seconds() * 1000
        # Flight calls back on threads of its own, each call in a new context: the id is set here again.
        current = QUERY_ID.set(record.query_id)
        try:
            log.debug("query finished: %s, %d rows in %.1f ms", outcome, record.rows, record.duration_ms)
            self.audit.record(record, execution.run() if self.audit.listeners else None)
        finally:
            QUERY_ID.reset(current)

    def _audit_failure(
        self, sql: str, caller: CallerContext, error: MeshgateError, record: QueryRecord | None = None
    ) -> None:
        record = record or QueryRecord(uuid.uuid4().hex, caller.user, dt.datetime.now(dt.UTC), sql)
        record.outcome = "denied" if isinstance(error, PermissionDeniedError) else "error"
        record.error = str(error)
        record.duration_ms = (dt.datetime.now(dt.UTC) - record.started).total_seconds() * 1000
        self.audit.record(record, QueryRun(trace_parent=caller.trace_parent) if self.audit.listeners else None)

    def run(self, sql: str, caller: CallerContext | None = None) -> Execution:
        """Prepare and execute in one call (for the CLI and tests)."""
        caller = caller or CallerContext()
        return self.execute(self.prepare(sql, caller), caller)

    # -- planning ------------------------------------------------------------------
    def _plan(
        self,
        sql: str,
        caller: CallerContext,
        values: dict[str, pa.Scalar] | None = None,
        deadline: float | None = None,
    ) -> _Planned:
        self.plans.counted_planning()
        scope = _Scope(caller)
        scans = scope.scans
        ctx = self._context(scope, sql)
        dataframe = self._dataframe(ctx, sql, values or {}, caller)
        if scans:  # it reads SQL sources
            dataframe = without_cse(ctx, dataframe)
        try:
            plan = dataframe.optimized_logical_plan()
        except Exception as error:
            raise _planning_error(error, self.catalog) from None
        routed, scans = self._whole_route(dataframe, plan, scope)
        federated, fired = plan, tuple[str, ...]()
        if routed is None:
            dataframe, federated, fired = self._rewrite(ctx, dataframe, plan, scope, deadline)
            negotiate_scans(federated, scans, _default_domain(caller), subqueries_separated="subquery_scans" in fired)
            late = self._late_materialisation(ctx, federated, scope)
            fired = (*fired, "late_materialisation") if late and "late_materialisation" not in fired else fired
            streams = not _holds(federated, _COMPUTING)
            if streams:
                ctx.sql(f"SET datafusion.execution.batch_size = {self.settings.stream_batch_size}")
            if late or streams:  # the session's settings are read when the DataFrame is made
                dataframe = ctx.create_dataframe_from_logical_plan(dataframe.logical_plan())
            if streams:
                dataframe = _classic_output(dataframe)
        return _Planned(self, dataframe, plan, scans, routed, scope, federated, fired, ctx)

    def _whole_route(
        self, dataframe: DataFrame, plan: LogicalPlan, scope: _Scope
    ) -> tuple[tuple[str, str] | None, dict[tuple[str, str], ProductScan]]:
        """Where the whole query goes, as ``(domain, sql)`` (None: federated), and the scans it reads:
        its one SQL source, or the file engine (``connectors/file_engine.py``)."""
        # Masks are DataFusion expressions a source may not evaluate alike: such queries stay federated.
        # So does a query that also reads a file product: asked to write it for its SQL source,
        # single_source_sql would find that out only after unparsing it (4-6 ms: TPC-H Q3, Q10, Q18).
        routed = None
        if scope.scans and not scope.masked:
            read = touched(plan, _default_domain(scope.caller))[0]
            if all(tuple(name.split(".", 1)) in scope.scans for name in read):  # domain names hold no dot
                routed = single_source_sql(dataframe, scope.scans, plan)
        if routed is not None or scope.scans:
            return routed, scope.scans
        scans = self._engine_scans(plan, scope) if _holds(plan, _AGGREGATE) else {}
        routed = _engine_sql(dataframe, plan, scans)
        return routed, scans if routed is not None else scope.scans

    def _in_file_engine(
        self,
        plan: LogicalPlan,
        limit: int,
        computed: Mapping[str, pa.Table],
        ctx: SessionContext,
        scope: _Scope,
        deadline: float | None,
    ) -> pa.Table | None:
        """``plan``, a part of a federated query that the rules run ahead, run by the file engine:
        at most ``limit`` rows of it, in its schema; None when it reads anything but Parquet held
        unrestricted and the ``computed`` tables of the query, or cannot be written for DuckDB
        (DataFusion runs it). EXPLAIN ANALYZE lists its query (``scope.engine_reads``)."""
        scans = self._engine_scans(plan, scope, computed)
        if not scans:
            return None
        dataframe = ctx.create_dataframe_from_logical_plan(plan)
        if type(plan.to_variant()).__name__ != "Projection":
            # Written as is, a bare aggregate's SQL lists the aggregates before the groups.
            try:
                dataframe = dataframe.select(*(col('"' + f.name.replace('"', '""') + '"') for f in dataframe.schema()))
            except Exception:  # two outputs of one name (a join's): DataFusion runs it
                return None
        routed = _engine_sql(dataframe, plan, scans)
        if routed is None:
            return None
        schema = dataframe.schema()
        reads = list(scans.values())
        scope.engine_reads.extend(reads)
        execution = _start_route(reads, routed[0], routed[1], schema, deadline)
        batches, rows = [], 0
        try:
            for batch in execution:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= limit:
                    break
        finally:
            execution.close()
        return pa.Table.from_batches(batches, schema).slice(0, limit)

    def _held_still(self, route: Route) -> bool:
        """Whether the files a cached file-engine route reads are the versions the query would read
        now (each file product is stat'ed, as every query does: a changed file is a new version)."""
        if not isinstance(route.product.connector, FileEngine):
            return True
        self._prepare_file_tables()
        for name in route.products:
            domain, _, product = name.partition(".")
            location = self._held_location((domain, product))
            if location is None or str(location) not in route.sql:
                return False
        return True

    def _held_location(self, key: tuple[str, str]) -> Path | None:
        """Where the version of file product ``key`` that queries read now is held (None: none is)."""
        held = self._file_tables.get(key)
        location = getattr(held.version, "location", None) if held is not None and held.error is None else None
        return location if isinstance(location, Path) else None

    def _engine_scans(
        self, plan: LogicalPlan, scope: _Scope, computed: Mapping[str, pa.Table] | None = None
    ) -> dict[tuple[str, str], ProductScan]:
        """Scans of ``plan``'s products in the file engine (connectors/file_engine.py), when the plan
        reads only Parquet products the engine may read (:meth:`_engine_scan`) and tables of
        ``computed`` (the query's own, made under its policies), all of one domain; else none."""
        if scope.masked or not self.settings.file_engine:
            return {}
        scans: dict[tuple[str, str], ProductScan] = {}
        tables: dict[str, pa.Table] = {}
        for name in touched(plan, _default_domain(scope.caller))[0]:
            if name.startswith(f"{DERIVED_SCHEMA}."):
                table = name.removeprefix(f"{DERIVED_SCHEMA}.")
                rows = (computed or {}).get(table)
                if rows is None:
                    return {}
                tables[table] = rows
                continue
            domain, _, product_name = name.partition(".")
            scan = self._engine_scan((domain, product_name), scope)
            if scan is None:
                return {}
            scans[(domain, product_name)] = scan
        if not tables or not scans:
            return scans
        domains = {scan.product.domain for scan in scans.values()}
        if len(domains) != 1:
            return {}
        with_tables = ComputedTables(self._file_engines[domains.pop()], tables)
        scans = {key: ProductScan(replace(scan.product, connector=with_tables)) for key, scan in scans.items()}
        for table, rows in tables.items():
            product = Product(with_tables.domain, table, computed_source(table, rows.schema), rows.schema, with_tables)
            scans[(DERIVED_SCHEMA, table)] = ProductScan(product)
        return scans

    def _engine_scan(self, key: tuple[str, str], scope: _Scope) -> ProductScan | None:
        """The file engine's scan of product ``key``: a Parquet product held in one file, unrestricted
        for the caller (no policy narrows it: a governed view is never sent); None for any other."""
        if scope.masked or not self.settings.file_engine:
            return None
        if scope.views is not None and (key not in scope.views or scope.views[key] is not None):
            return None
        held = self._file_tables.get(key)
        location = self._held_location(key)
        if (
            held is None
            or location is None
            or location.is_dir()
            or not isinstance(held.product.connector, ParquetConnector)
            or getattr(held.version, "uuids", None)
        ):
            return None
        source = file_source(location, held.product.schema)
        domain = key[0]
        engine = self._file_engines.get(domain) or self._file_engines.setdefault(
            domain, FileEngine(domain, self._duckdb_files)
        )
        return ProductScan(replace(held.product, source=source, connector=engine))

    def _rewrite(
        self, ctx: SessionContext, dataframe: DataFrame, plan: LogicalPlan, scope: _Scope, deadline: float | None
    ) -> tuple[DataFrame, LogicalPlan, tuple[str, ...]]:
        """The query after the planner's rules (gateway/plan/rules.py): its DataFrame, optimised plan
        and the rules that changed it.

        Products a policy restricts for this caller (a guard) are never sent to a source as part
        of a join, queries with masks are left as they are, and so is any plan the rules cannot
        rewrite (it runs as DataFusion planned it).
        """
        if scope.masked or not self.settings.plan_rules:
            return dataframe, plan, ()
        domain = _default_domain(scope.caller)
        # Within the rules every SQL scan inside a subquery has a scan of its own (subquery_scans runs first).
        negotiate = functools.partial(
            negotiate_scans, scans=scope.scans, default_domain=domain, subqueries_separated=True
        )
        planning = Planning(
            ctx,
            scope.scans,
            _pushable,
            self.catalog.find,
            negotiate,
            deadline,
            late=functools.partial(self._late_pays, scope=scope),
            in_file_engine=functools.partial(self._in_file_engine, ctx=ctx, scope=scope, deadline=deadline),
            engine_reads=lambda names: len(names) >= 2 and self._engine_scan((names[-2], names[-1]), scope) is not None,
            remember=self._remember_estimate,
            spans=self._column_spans,
        )
        try:
            rewritten_plan = rewrite(plan, planning)
            if rewritten_plan is not None:
                rewritten = ctx.create_dataframe_from_logical_plan(rewritten_plan)
                if rewritten.schema().equals(dataframe.schema()):
                    return rewritten, rewritten.optimized_logical_plan(), tuple(planning.fired)
                log.info("plan not rewritten: the rewritten plan's schema differs")  # the round trip changed a type
        except EXITS:
            raise
        except BaseException as error:  # a plan Substrait cannot carry (DataFusion may panic): federated as planned
            log.info("plan not rewritten: %s", _clean(str(error))[:300])
        for key in [key for key in scope.scans if key[0] == DERIVED_SCHEMA]:
            del scope.scans[key]  # scans of a rewrite that is not used
        return dataframe, plan, ()

    def _remember_estimate(self, key: Hashable, compute: Callable[[], float | None]) -> float | None:
        """A source's estimate of a filtered read, kept across queries for as long as connectors
        keep theirs (``STATS_SECONDS``): working it out reads the plan back and renders SQL."""
        with self._estimates_lock:
            if key in self._estimates:
                return self._estimates[key]
        value = compute()
        with self._estimates_lock:
            self._estimates[key] = value
        return value

    def _late_materialisation(self, ctx: SessionContext, plan: LogicalPlan, scope: _Scope) -> bool:
        """Turn on Parquet's filter evaluation while decoding in ``ctx`` if ``plan`` is a query
        where it pays (:meth:`_late_pays`); whether it did (the query's DataFrame must then be
        made again)."""
        if not self._late_pays(plan, scope):
            return False
        ctx.sql(f"SET {LATE_SETTING} = true")
        return True

    def _late_pays(self, plan: LogicalPlan, scope: _Scope) -> bool:
        """Whether Parquet's filter evaluation while decoding pays for ``plan``
        (gateway/plan/late_materialisation.py)."""
        if not self.settings.parquet_pushdown:
            return False
        domain = _default_domain(scope.caller)

        def kind(table_scan: Any) -> str | None:
            key = scan_key(table_scan, domain)
            if key in scope.scans:
                return "sql"
            product = self.catalog.find(*key)
            return "files" if product is not None and product.connector.kind in _COLUMNAR else None

        def bounds(table_scan: Any, column: str) -> tuple[float, float] | None:
            return self._column_spans(scan_key(table_scan, domain)).get(column)

        return late_materialisation(plan, kind, bounds)

    def _column_spans(self, key: tuple[str, str]) -> dict[str, tuple[float, float]]:
        """Each column's smallest and largest value in a Parquet product's files, from their
        footers' statistics (as numbers: ``late_materialisation.number``), read once per version
        of the files; empty when unknown (not Parquet, too many files, no statistics)."""
        held = self._file_tables.get(key)
        links = getattr(held.version, "links", None) if held is not None else None
        if held is None or not links or held.product.connector.kind != "parquet" or len(links) > _MAX_SPAN_FILES:
            return {}
        cached = self._spans.get(key)
        if cached is not None and cached[0] == held.stamp:
            return cached[1]
        try:
            spans = file_spans(pq.read_metadata(link) for link in links)
        except Exception as error:  # a footer that cannot be read here fails the query's scan, not this
            log.debug("no column statistics for %s.%s: %s", *key, error)
            spans = {}
        self._spans[key] = (held.stamp, spans)
        return spans

    def _dataframe(
        self, ctx: SessionContext, sql: str, values: dict[str, pa.Scalar], caller: CallerContext
    ) -> DataFrame:
        try:
            return ctx.sql(sql, options=READ_ONLY, param_values=values)
        except Exception as error:
            if any(marker in str(error) for marker in _NOT_READ_ONLY):
                raise NotSupportedError(f"the mesh is read-only: {_clean(str(error))}") from None
            raise self._named_for(_planning_error(error, self.catalog), caller) from None

    def _named_for(self, error: MeshgateError, caller: CallerContext) -> MeshgateError:
        """``error`` naming only products ``caller`` may read (an unknown product's message lists its domain's)."""
        listing = _DOMAIN_LISTING.match(str(error)) if isinstance(error, NotFoundError) else None
        if listing is None or not self.policies.enabled:
            return error
        domain = listing.group("domain")
        readable = sorted(p.name for p in self.catalog.products() if p.domain == domain and self.access(caller, p))
        listed = ", ".join(readable) or "none you may read"
        return NotFoundError(f"{listing.group('head')} (domain '{domain}' has: {listed})")

    def _context(self, scope: _Scope, sql: str) -> SessionContext:
        self._prepare_file_tables()
        caller = scope.caller
        config = (
            SessionConfig()
            .with_default_catalog_and_schema(self.catalog.name, _default_domain(caller))
            .with_information_schema(True)
            .with_target_partitions(self.settings.target_partitions)
            .with_batch_size(self.settings.batch_size)
            .set("datafusion.execution.parquet.schema_force_view_types", "false")
            .set("datafusion.sql_parser.map_string_types_to_utf8view", "false")
            # Off until the plan shows late materialisation pays (_late_materialisation).
            .set(LATE_SETTING, "false")
            .set("datafusion.execution.parquet.reorder_filters", "true")
            # A SQL source's scan (a Python dataset) has no statistics, so DataFusion cannot see a
            # small build input and would hash-partition both inputs of every such join: TPC-H Q8
            # repartitioned 6 M lineitem rows to join them with 1,451 parts. The build input is
            # the one estimated smaller (gateway/plan/build_side.py), collected once and shared
            # by the probe's partitions (Q8 395 -> 324 ms, Q5 265 -> 224, Q21 383 -> 348 in process).
            .set("datafusion.optimizer.repartition_joins", "false")
        )
        ctx = planning_context(config, self.settings.limits)
        self._prepare_stores(ctx)
        if self.policies.enabled:
            self._govern(config, scope, sql)
        ctx.register_catalog_provider(self.catalog.name, _MeshCatalogProvider(self, scope))
        return ctx

    def _prepare_stores(self, ctx: SessionContext) -> None:
        """Register the object stores file products read through (``FileConnector.prepare``) in ``ctx``."""
        prepared: set[int] = set()
        for product in self.catalog.products():
            connector = product.connector
            if isinstance(connector, FileConnector) and id(connector) not in prepared:
                prepared.add(id(connector))
                try:
                    connector.prepare(ctx)
                except Exception:  # a connector's bug (a plugin's): its products fail when read; the others serve
                    domain = product.domain
                    log.exception("domain '%s': its %s connector failed to prepare a query", domain, connector.kind)

    def _govern(self, config: SessionConfig, scope: _Scope, sql: str) -> None:
        """Prepare the governed view of every product ``sql`` reads (see gateway/governance.py).

        The views are planned in a context of their own, where the raw products live in a
        catalog with an unguessable name; the query's context never holds that catalog (no
        listing can show it), and its domain schemas hand out only these views, so a product
        not prepared here cannot be read. Each SQL product's scan also gets a :class:`Guard`,
        so that every query its source receives carries the row filter and asks only for the
        columns the caller may see, whatever shape the plan takes.
        """
        scope.views = {}
        scope.raw_catalog = f"__raw_{uuid.uuid4().hex}"
        raw = planning_context(config)
        self._prepare_stores(raw)
        raw.register_catalog_provider(scope.raw_catalog, _RawCatalogProvider(self, scope))
        hash_function = register_masks(raw, self.mask_key)  # a name of this context's own, like raw_catalog
        referenced = referenced_products(sql, self.catalog.name, scope.caller.default_schema)
        if referenced is None or _SHOW.match(sql) or any(domain in _LISTINGS for domain, _ in referenced):
            referenced = {(p.domain, p.name) for p in self.catalog.products()}
            denied_is_error = False
        else:
            denied_is_error = True
        for domain_name, name in sorted(referenced):
            product = self.catalog.find(domain_name, name)
            if product is None or product.blocked:
                continue  # unknown, offline or blocked: DataFusion reports it, with the catalog's own message
            if not denied_is_error and self.unreadable(product):
                continue  # a listing leaves out a product whose files cannot be read (see unreadable)
            access = self.access(scope.caller, product)
            if access is None:
                if denied_is_error:
                    who = f"user '{scope.caller.user}'" if scope.caller.user else "an anonymous caller"
                    raise PermissionDeniedError(f"access denied: {who} has no grant on {domain_name}.{name}")
                continue
            scope.applied.extend(access.applied)
            if access.unrestricted and access.columns == tuple(product.schema.names):
                scope.views[(domain_name, name)] = None
                continue
            scope.masked = scope.masked or bool(access.masks)
            try:
                view = raw.sql(view_sql(scope.raw_catalog, domain_name, name, product.schema, access, hash_function))
            except Exception as error:
                raise PlanningError(f"the policies on {domain_name}.{name} do not plan: {_clean(str(error))}") from None
            held = scope.guards[(domain_name, name)] = guard(product, access, _row_filter_of(view.logical_plan()))
            if (domain_name, name) in scope.scans:  # planning the view opened its scan already
                scope.scans[(domain_name, name)].guard = held
            scope.views[(domain_name, name)] = Table(view)

    def table_for(self, product: Product, scope: _Scope) -> Table:
        """The DataFusion table a query reads ``product`` through."""
        connector = product.connector
        if isinstance(connector, SqlConnector):
            key = (product.domain, product.name)
            scan = scope.scans.get(key)
            if scan is None:
                scan = scope.scans[key] = ProductScan(product, guard=scope.guards.get(key))
            return Table(ProductDataset(scan))
        held = self._file_tables.get((product.domain, product.name))
        if held is None or held.product is not product:
            raise NotFoundError(f"data product '{product.qualified_name}' is not ready yet; try again")
        if held.error is not None:
            raise held.error
        assert held.table is not None
        return held.table

    def _prepare_file_tables(self) -> None:
        """Build DataFusion tables for file products, ahead of planning, and again when their files change.

        A table cannot be created from inside DataFusion's planner callbacks (that
        would start a runtime within its runtime), so it is built here. Every query
        stats each file product's files (``FileConnector.stamp``); a product whose files
        changed gets a new version, checked against the schema it registered, and the
        old one is retired (queries that started on it keep reading it). A product that
        cannot be read keeps its error, raised by :meth:`table_for` for queries naming it
        only, and is not read again until its files change.
        """
        for product in self.catalog.products():
            connector = product.connector
            if not isinstance(connector, FileConnector) or product.blocked:
                continue
            key = (product.domain, product.name)
            try:
                stamp: Hashable | None = connector.stamp(product.name, product.source)
                failure: MeshgateError | None = None
            except MeshgateError as error:
                stamp, failure = None, error
            except Exception as error:  # a connector's bug (a plugin's): this product fails, the others serve
                stamp, failure = None, _connector_bug(product, connector, error)
            held = self._file_tables.get(key)
            if held is not None and held.product is product and stamp is not None and held.stamp == stamp:
                continue
            with self._file_lock:
                held = self._file_tables.get(key)
                if held is not None and held.product is product and stamp is not None and held.stamp == stamp:
                    continue
                if failure is not None:
                    built = _FileTable(product, None, error=failure)
                else:
                    built = self._file_table(product, connector, stamp, held)
                self._file_tables[key] = built
                if held is not None and held.version is not built.version:
                    _retire(held)

    @staticmethod
    def _file_table(
        product: Product, connector: FileConnector, stamp: Hashable | None, held: _FileTable | None
    ) -> _FileTable:
        previous = held.version if held is not None and held.product is product else None
        try:
            version = connector.open_version(product.name, product.source, product.schema, previous)
        except MeshgateError as error:
            return _FileTable(product, stamp, error=error)
        except Exception as error:  # a bug: this product fails, under a reference in the log; the others serve
            return _FileTable(product, stamp, error=_connector_bug(product, connector, error))
        scratch = SessionContext(SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false"))
        try:
            version.register(scratch, "product")
        except Exception as error:
            version.retire()
            failure = error if isinstance(error, MeshgateError) else _connector_bug(product, connector, error)
            return _FileTable(product, stamp, error=failure)
        return _FileTable(product, version.stamp, version, scratch.table_provider("product"))

    def unreadable(self, product: Product) -> bool:
        """Whether ``product``'s files cannot be read right now (missing, cut, of another schema):
        listings leave it out, so one broken file does not fail ``information_schema``; a query
        naming it still gets its error."""
        held = self._file_tables.get((product.domain, product.name))
        return held is not None and held.product is product and held.error is not None

    # -- EXPLAIN -------------------------------------------------------------------
    def sees_sources(self, caller: CallerContext) -> Callable[[str], bool]:
        """Whether EXPLAIN shows ``caller`` a domain's sources (locations, SQL): admins and its owners only."""
        if not self.policies.enabled:
            return lambda domain: True
        identities = self.policies.identities_of(caller)
        if ADMIN_ROLE in identities:
            return lambda domain: True
        owners = {d.name: d.config.owner for d in self.catalog.domains()}
        return lambda domain: owners.get(domain) in identities

    def _explain(self, query: Query, caller: CallerContext, deadline: float | None = None) -> Execution:
        planned = self._plan(query.inner_sql, caller, deadline=deadline)
        rows: list[tuple[str, str]] = []
        started = time.perf_counter()
        result_rows = 0
        if query.analyze:
            execution = planned.start(planned.result_schema(), deadline)
            # It runs before the statement exists: stop it at its deadline here (DataFusion's work too).
            timer = threading.Timer(max(0.0, (deadline or 0) - time.monotonic()), execution.cancel)
            if deadline is not None:
                timer.start()
            try:
                for batch in execution:
                    result_rows += batch.num_rows
            finally:
                timer.cancel()
        shown = self.sees_sources(caller)
        if planned.routed is not None:
            domain = planned.routed[0]
            scan = next(iter(planned.scans.values()))
            source = scan.connector.label if shown(domain) else scan.connector.kind
            rows.append(("route", f"single source: the whole query runs in domain '{domain}' ({source})"))
        else:
            rules = f" (planner rules applied: {', '.join(planned.fired)})" if planned.fired else ""
            rows.append(("route", f"federated: DataFusion joins the sources' results{rules}"))
            rows.append(("logical_plan", planned.federated.display_indent()))
        for scan in planned.scope.engine_reads:  # parts of the query run while it was planned
            visible = shown(scan.product.domain)
            rows.extend((_source_label(scan, visible), _source_query_text(r, visible, True)) for r in scan.queries)
        for scan in planned.scans.values():
            visible = shown(scan.product.domain)
            label = _source_label(scan, visible)
            if query.analyze:
                # Rows a source returned are shown only where they are rows the caller may see.
                counted = visible or scan.guard is None or scan.guard.complete
                rows.extend((label, _source_query_text(record, visible, counted)) for record in scan.queries)
            elif planned.routed is not None:
                rows.append((label, planned.routed[1] if visible else _SOURCE_SQL_HIDDEN))
            else:
                for occurrence in scan.occurrences:
                    spec, _ = scan.spec(occurrence.columns)
                    kept = f"\n  kept back for DataFusion: {' AND '.join(occurrence.kept)}" if occurrence.kept else ""
                    rows.append((label, (scan.connector.scan_sql(spec) if visible else _SOURCE_SQL_HIDDEN) + kept))
        if query.analyze:
            elapsed = time.perf_counter() - started
            rows.append(("result", f"rows={result_rows} seconds={elapsed:.3f}"))
        table = pa.table({"plan_type": [r[0] for r in rows], "plan": [r[1] for r in rows]}, schema=EXPLAIN_SCHEMA)
        return Execution(EXPLAIN_SCHEMA, iter(table.to_batches()), [])


def result_schema(
    dataframe: DataFrame, ctx: SessionContext | None = None, optimized: LogicalPlan | None = None
) -> pa.Schema:
    """The schema a query's result is sent in (classic string types: see ``classic_types``).

    ``optimized`` (``dataframe``'s optimised plan, in ``ctx``) gives the types: DataFusion reports a
    query's schema as written, before its type coercion, and announced ``CASE WHEN ... THEN i ELSE f
    END`` of a BIGINT and a DOUBLE as a BIGINT, which the DOUBLEs it computes then failed to fit
    ("Float value 2.5 was truncated converting to int64"). Names and nullability stay the query's.
    """
    schema = _exported(dataframe)
    if ctx is not None and optimized is not None:
        typed = _exported(ctx.create_dataframe_from_logical_plan(optimized))
        if typed.names == schema.names and typed.types != schema.types:
            schema = pa.schema(
                [field.with_type(kind.type) for field, kind in zip(schema, typed, strict=True)], schema.metadata
            )
    return classic_types(schema)


def _exported(dataframe: DataFrame) -> pa.Schema:
    try:
        return dataframe.schema()
    except pa.ArrowException as error:  # exported over the C data interface, which refuses some names
        if "Null byte" in str(error):
            raise PlanningError("a result column's name contains a NUL character: choose another alias") from None
        raise PlanningError(f"the result's schema cannot be sent: {_clean(str(error))}") from None


def _optimized(dataframe: DataFrame) -> LogicalPlan | None:
    """``dataframe``'s optimised plan; None when DataFusion cannot optimise it (execution reports why)."""
    try:
        return dataframe.optimized_logical_plan()
    except Exception:
        return None


def _pushable(scan: ProductScan) -> bool:
    """Whether ``scan`` may be part of a sub-plan pushed to its source: read unrestricted, joins taken."""
    return scan.guard is None and scan.connector.capabilities.pushes_joins


def _with_nullability(schema: pa.Schema, not_null: set[str], access: Access) -> pa.Schema:
    """Columns the source declares NOT NULL marked non-nullable, unless a mask can make them NULL."""
    fields = []
    for column in schema:
        mask = access.masks.get(column.name)
        can_be_null = mask == "null" or (mask == "redact" and not pa.types.is_string(column.type))
        fields.append(column.with_nullable(False) if column.name in not_null and not can_be_null else column)
    return pa.schema(fields, metadata=schema.metadata)


def _row_filter_of(plan: LogicalPlan) -> Any:
    """The predicate of a governed view's Filter (its row filter), or None."""
    variant = plan.to_variant()
    if type(variant).__name__ == "Filter":
        return variant.predicate()
    for child in plan.inputs():
        found = _row_filter_of(child)
        if found is not None:
            return found
    return None


def _connector_bug(product: Product, connector: Connector, error: Exception) -> SourceError:
    """A connector's unexpected exception as the error of its product: logged whole under a reference,
    told to clients by the reference only."""
    message = f"data product '{product.qualified_name}' cannot be read: {internal_message(error)}"
    log.exception("%s", message)
    return SourceError(product.domain, connector.kind, message)


def _retire(held: _FileTable) -> None:
    """Let a file table's files go once the queries that started on it had time to finish."""
    if held.version is not None:
        held.version.retire()


def _default_domain(caller: CallerContext) -> str:
    """Where unqualified names resolve for ``caller``."""
    return caller.default_schema or UNQUALIFIED_SCHEMA


def planning_context(config: SessionConfig | None = None, limits: Limits | None = None) -> SessionContext:
    """A DataFusion context tuned for federation; with ``limits``, its own memory pool that spills to disk."""
    runtime = None
    if limits is not None:
        runtime = RuntimeEnvBuilder().with_fair_spill_pool(limits.query_memory)
        spill = limits.spill_path
        runtime = runtime.with_disk_manager_specified(str(spill)) if spill else runtime.with_disk_manager_os()
    return SessionContext(config or SessionConfig(), runtime)


_COMPUTING = frozenset({"Join", "Aggregate", "Window", "Distinct", "Subquery", "RecursiveQuery", "Extension"})
"""Plan nodes that hold rows in hash tables or buffers (see ``EngineSettings.batch_size``)."""


_AGGREGATE = frozenset({"Aggregate"})
"""A plan holding one returns a few rows: what the file engine is for (``Engine._engine_scans``)."""


def _holds(plan: LogicalPlan, kinds: frozenset[str]) -> bool:
    """Whether ``plan`` holds a node of one of ``kinds``: with :data:`_COMPUTING`, whether it joins,
    aggregates or computes windows rather than only reading, filtering, sorting and limiting."""
    return type(plan.to_variant()).__name__ in kinds or any(_holds(child, kinds) for child in plan.inputs())


def _engine_sql(
    dataframe: DataFrame, plan: LogicalPlan, scans: dict[tuple[str, str], ProductScan]
) -> tuple[str, str] | None:
    """``plan`` (``dataframe``'s, optimised) as the file engine's query over ``scans``, as
    ``(domain, sql)``: written from the optimised plan when it can be (its constants folded),
    else as planned; None when it cannot go there (or ``scans`` is empty)."""
    if not scans:
        return None
    chain = chain_sql(plan, scans)
    routed = single_source_sql(dataframe, scans, plan, chain) if chain else None
    return routed or single_source_sql(dataframe, scans, plan)


def _classic_output(dataframe: DataFrame) -> DataFrame:
    """``dataframe`` with its text and binary view columns cast to the classic types by DataFusion,
    on the threads that read its partitions rather than the one that sends the batches (all of
    TPC-H's lineitem to an ADBC client in process: 1.36-1.56 s -> 1.07-1.25 s); as it is when it
    has none, or two columns of one name (``conform`` then casts each batch)."""
    fields = list(dataframe.schema())
    names = [field.name for field in fields]
    views = [pa.types.is_string_view(field.type) or pa.types.is_binary_view(field.type) for field in fields]
    if not any(views) or len(set(names)) != len(names):
        return dataframe
    classic = classic_types(pa.schema(fields))
    columns = [col(quote_identifier(name)) for name in names]
    return dataframe.select(
        *(
            column.cast(target.type).alias(target.name) if view else column
            for column, target, view in zip(columns, classic, views, strict=True)
        )
    )


def without_cse(ctx: SessionContext, dataframe: DataFrame) -> DataFrame:
    """``dataframe`` planned again in ``ctx`` without common-subexpression elimination.

    For queries that read SQL sources: the rule moves shared expressions into a projection
    between a filter and its scan (``__common_expr_1 > 3``), which hides the filter from
    pushdown. Queries of files only keep it: DataFusion pushes their filters into the scan
    before the rule runs, and it saves recomputing shared expressions (TPC-H Q1's
    ``l_extendedprice * (1 - l_discount)``: 452 ms without it, 365 ms with it, on SF1).
    """
    ctx.remove_optimizer_rule("common_sub_expression_eliminate")
    return ctx.create_dataframe_from_logical_plan(dataframe.logical_plan())


_MAX_SPAN_FILES = 64
"""The most files of a product whose footers are read for column spans (one read per file)."""


_COLUMNAR = frozenset({"parquet", "delta", "iceberg"})
"""File connectors whose products DataFusion reads as Parquet."""

_SOURCE_SQL_HIDDEN = "(the source's own SQL is shown to the domain's owners and admins)"


def _source_label(scan: ProductScan, visible: bool) -> str:
    source = scan.connector.label if visible else scan.connector.kind
    return f"source_query[{scan.product.domain}/{source}]"


def _source_query_text(record: SourceQuery, visible: bool, counted: bool) -> str:
    seconds = (record.finished or time.time()) - record.started
    sql = record.sql if visible else _SOURCE_SQL_HIDDEN
    rows = (
        f"rows={record.rows} batches={record.batches}"
        if counted
        else "rows=(hidden: a row filter applies in DataFusion)"
    )
    split = f"\n  {record.detail}" if record.detail else ""
    return f"{sql}\n  {rows} seconds={seconds:.3f}{split}"


@dataclass
class _Scope:
    """One query's view of the mesh: who asks, the scans it opened, the governed views."""

    caller: CallerContext
    scans: dict[tuple[str, str], ProductScan] = field(default_factory=dict)
    views: dict[tuple[str, str], Table | None] | None = None  # None: no policies in force
    raw_catalog: str = ""
    guards: dict[tuple[str, str], Guard] = field(default_factory=dict)
    masked: bool = False
    applied: list[str] = field(default_factory=list)
    engine_reads: list[ProductScan] = field(default_factory=list)  # parts the file engine ran while planning


@dataclass
class _Planned:
    engine: Engine
    dataframe: DataFrame
    plan: LogicalPlan  # optimised, as the caller's SQL reads the products (the audit log's)
    scans: dict[tuple[str, str], ProductScan]
    routed: tuple[str, str] | None
    scope: _Scope
    federated: LogicalPlan  # optimised, as it runs: after the rules of gateway/plan/rules.py (or ``plan``)
    fired: tuple[str, ...] = ()  # the rules that changed it
    ctx: SessionContext | None = None  # where it was planned

    def result_schema(self) -> pa.Schema:
        """The schema its answer is sent in, typed as its optimised plan (:func:`result_schema`)."""
        return result_schema(self.dataframe, self.ctx, self.plan)

    def start(self, schema: pa.Schema, deadline: float | None = None) -> Execution:
        if self.routed is not None:
            domain, sql = self.routed
            return _start_route(list(self.scans.values()), domain, sql, schema, deadline)
        for product_scan in self.scans.values():
            product_scan.deadline = deadline
        try:
            batches = _DataFusionBatches(self.dataframe.execute_stream())
        except Exception as error:
            raise _execution_error(error, self.scans.values()) from None
        return Execution(schema, batches, list(self.scans.values()), cancel_source=batches.stop)


def _start_route(
    scans: list[ProductScan],
    domain: str,
    sql: str,
    schema: pa.Schema,
    deadline: float | None,
    parameters: pa.RecordBatch | None = None,
) -> Execution:
    """Run a whole query at the source of ``scans`` (``parameters``: one row bound to its placeholders)."""
    scan = scans[0]
    record = SourceQuery(domain, scan.connector.label, "(whole query)", sql, started=time.time())
    scan.queries.append(record)
    if parameters is not None and parameters.num_columns:
        stream = scan.connector.execute_bound(sql, schema, parameters, deadline)
    else:
        stream = scan.connector.execute(sql, schema, deadline)
    stream.start()  # the source answers while the client takes the ticket and comes back for the rows

    def counted() -> Iterator[pa.RecordBatch]:
        try:
            for batch in stream:
                record.rows += batch.num_rows
                record.bytes += batch.nbytes
                record.batches += 1
                yield batch
        except QueryCancelledError:
            raise
        except Exception as error:  # kept for the metrics' and traces' source errors
            record.error = error
            raise
        finally:
            record.finished = time.time()

    return Execution(schema, counted(), scans, cancel_source=stream.close)


class _DataFusionBatches:
    """The batches of a DataFusion ``execute_stream()``, stoppable from any thread by :meth:`stop`.

    ``RecordBatchStream.__next__`` waits in Rust until the next batch (another thread cannot
    interrupt it), and the query's work runs in tokio tasks that end only when the stream is
    dropped. So each batch is awaited as the asyncio future the Rust stream's ``__anext__``
    answers, on one event loop thread: :meth:`stop` cancels that future (the Rust side drops
    its poll) and drops the stream, which aborts DataFusion's tasks. A heavy sort stops using
    CPU within 0.1-0.2 s; each batch costs about 0.2 ms more than a blocking ``__next__``.
    """

    def __init__(self, stream: Any) -> None:
        self._stream: Any = stream.rbs  # the Rust stream under datafusion's RecordBatchStream
        self._answer: Future[Any] | None = None  # what the consumer waits for
        self._pending: Any = None  # the asyncio future of the batch being awaited
        self._done = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        answer: Future[Any] = Future()
        with self._lock:
            if self._done:
                raise StopIteration
            if self._stream is None:
                raise QueryCancelledError("query cancelled")
            self._answer = answer
            _event_loop().call_soon_threadsafe(self._await_next, self._stream, answer)
        try:
            batch = answer.result()
        except CancelledError:
            raise QueryCancelledError("query cancelled") from None
        except StopAsyncIteration:
            self._done = True
            self.stop()
            raise StopIteration from None
        return batch.to_pyarrow()

    def stop(self) -> None:
        """Cancel the wait for the next batch and drop the stream (any thread, idempotent)."""
        with self._lock:
            self._stream = None
            answer, self._answer = self._answer, None
            pending, self._pending = self._pending, None
        if pending is not None:
            _event_loop().call_soon_threadsafe(pending.cancel)
        if answer is not None:
            answer.cancel()

    def _await_next(self, stream: Any, answer: Future[Any]) -> None:
        """On the event loop: ask the Rust stream for its next batch, for ``answer``."""
        if answer.cancelled():
            return
        try:
            pending = stream.__anext__()
        except BaseException as error:  # handed to the consumer, who raises it
            _settle(answer, error=error)
            return
        with self._lock:
            if self._stream is None:  # stopped meanwhile
                pending.cancel()
                return
            self._pending = pending
        pending.add_done_callback(lambda done: self._arrived(done, answer))

    def _arrived(self, done: Any, answer: Future[Any]) -> None:
        with self._lock:
            if self._pending is done:
                self._pending = None
        if done.cancelled():
            answer.cancel()
        elif done.exception() is not None:
            _settle(answer, error=done.exception())
        else:
            _settle(answer, result=done.result())


def _settle(answer: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Complete ``answer`` unless it was cancelled meanwhile."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)


_LOOP: list[asyncio.AbstractEventLoop] = []
_LOOP_LOCK = threading.Lock()


def _event_loop() -> asyncio.AbstractEventLoop:
    """The event loop DataFusion streams are awaited on (one daemon thread, started on first use)."""
    with _LOOP_LOCK:
        if not _LOOP:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="datafusion-streams", daemon=True).start()
            _LOOP.append(loop)
        return _LOOP[0]


class Execution:
    """A running query (the engine's QueryResult): iterate to stream its batches."""

    def __init__(
        self,
        schema: pa.Schema,
        batches: Iterator[pa.RecordBatch],
        scans: list[ProductScan],
        cancel_source: Any = None,
    ) -> None:
        self.schema = schema
        self._batches = batches
        self._scans = scans
        self._cancel_source = cancel_source
        self._cancelled = threading.Event()
        self.rows = 0
        self.on_finish: Callable[[str, str | None], None] | None = None
        self.shown: Callable[[MeshgateError], MeshgateError] = lambda error: error  # as the caller may see it
        self._finished = False
        self._finish_lock = threading.Lock()  # close() may come from another thread (a cancelled run)
        self._ticket: Ticket | None = None
        self._max_bytes: int | None = None
        self.bytes = 0
        self.query_id: str | None = None  # the audit record's
        self.planned: float | None = None  # time.time() when it started executing
        self.cached = False  # on a cached plan's route
        self.trace_parent: str | None = None  # the client's W3C traceparent

    def hold(self, ticket: Ticket, max_bytes: int) -> None:
        """Keep the query's admission ``ticket`` until it finishes, and stop it past ``max_bytes`` of results."""
        self._ticket = ticket
        self._max_bytes = max_bytes

    @property
    def source_queries(self) -> list[SourceQuery]:
        return [record for scan in self._scans for record in scan.queries]

    def run(self) -> QueryRun:
        """What this execution did, for the audit log's listeners."""
        sources = [
            SourceRun(
                q.domain,
                q.source.partition(":")[0],
                q.product,
                q.sql,
                q.rows,
                q.bytes,
                q.started,
                q.finished,
                None if q.error is None else str(q.error),
            )
            for q in self.source_queries
        ]
        return QueryRun(self.planned, sources, self.bytes, self.cached, self.trace_parent)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._batches:
                if self._cancelled.is_set():
                    raise QueryCancelledError("query cancelled")
                batch = conform(batch, self.schema)
                self.rows += batch.num_rows
                self.bytes += batch.nbytes
                if self._max_bytes is not None and self.bytes > self._max_bytes:
                    raise ResourceLimitError(
                        f"the result is larger than the limit of {self._max_bytes / MiB:,.0f} MiB (max_result_bytes):"
                        " add a LIMIT, a filter or an aggregate"
                    )
                yield batch
            self._finish("ok", None)
        except QueryCancelledError as error:
            self._finish("cancelled", str(error))
            raise
        except MeshgateError as error:
            shown = self.shown(error)
            self._finish("denied" if isinstance(error, PermissionDeniedError) else "error", str(shown))
            if shown is error:
                raise
            raise shown from None
        except Exception as error:
            failure = self.shown(_execution_error(error, self._scans))
            self._finish("cancelled" if isinstance(failure, QueryCancelledError) else "error", str(failure))
            raise failure from None
        finally:
            self.close()

    def _finish(self, outcome: str, error: str | None) -> None:
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
        if self._ticket is not None:
            self._ticket.release()
        if self.on_finish is not None:
            self.on_finish(outcome, error)

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self), schema=self.schema)

    def cancel(self) -> None:
        self._cancelled.set()
        for scan in self._scans:
            scan.cancel()
        if self._cancel_source is not None:
            self._cancel_source()

    def close(self) -> None:
        self._finish("cancelled", "query cancelled" if self._cancelled.is_set() else "closed before all rows were read")
        for scan in self._scans:
            for stream in scan.streams:
                stream.cancel()
        if self._cancel_source is not None:  # stops DataFusion's work, or the source query
            self._cancel_source()


_LISTINGS = {"information_schema"}
_SHOW = re.compile(r"^\s*SHOW\b", re.IGNORECASE)  # SHOW TABLES / COLUMNS read information_schema


class _MeshCatalogProvider(CatalogProvider):
    def __init__(self, engine: Engine, scope: _Scope) -> None:
        self._engine = engine
        self._scope = scope

    def schema_names(self) -> set[str]:
        return {domain.name for domain in self._engine.catalog.domains()} | {SYSTEM_SCHEMA}

    def schema(self, name: str) -> SchemaProvider | None:  # type: ignore[override]  # a Python provider works too
        if name == SYSTEM_SCHEMA:
            return _SystemSchema(self._engine, self._scope.caller)
        if name not in self.schema_names():
            return None
        return _DomainSchema(self._engine, name, self._scope)


class _SystemSchema(SchemaProvider):
    """``system.*`` for one caller (see gateway/system_tables.py)."""

    def __init__(self, engine: Engine, caller: CallerContext) -> None:
        self._engine = engine
        self._caller = caller

    @property
    def table_names(self) -> list[str]:  # type: ignore[override]
        return sorted(TABLES)

    def table(self, name: str) -> Table | None:
        build = TABLES.get(name)
        return Table(TableDataset(build(self._engine, self._caller))) if build is not None else None

    def table_exist(self, name: str) -> bool:
        return name in TABLES


class _DomainSchema(SchemaProvider):
    """A domain as one query sees it: governed views when policies are in force."""

    def __init__(self, engine: Engine, domain: str, scope: _Scope) -> None:
        self._engine = engine
        self._domain = domain
        self._scope = scope

    @property
    def table_names(self) -> list[str]:  # type: ignore[override]
        # DataFusion's Rust side reads this attribute without calling it and wants a
        # sequence (information_schema lists nothing otherwise): a property, not a method.
        domain = self._engine.catalog.domain(self._domain)
        if self._scope.views is None:
            return sorted(
                name
                for name, product in domain.products.items()
                if not product.blocked and not self._engine.unreadable(product)
            )
        return sorted(name for (d, name) in self._scope.views if d == self._domain)

    def table(self, name: str) -> Table | None:
        # A domain that is offline raises here: DataFusion reports it and the
        # engine maps it back to the domain's own error.
        product = self._engine.catalog.product(self._domain, name) if self.table_exist(name) else None
        if product is None:
            return None
        views = self._scope.views
        if views is None:
            return self._engine.table_for(product, self._scope)
        key = (self._domain, name)
        if key not in views:
            raise PermissionDeniedError(f"access denied: {self._domain}.{name} was not checked against the policies")
        view = views[key]
        return view if view is not None else self._engine.table_for(product, self._scope)

    def table_exist(self, name: str) -> bool:
        domain = self._engine.catalog.domain(self._domain)
        if domain.error is not None:
            raise domain.error
        return name in domain.products


class _RawCatalogProvider(CatalogProvider):
    """The products as their sources hold them: only the governed views read from here.

    It resolves names but lists none, so information_schema shows nothing of it.
    """

    def __init__(self, engine: Engine, scope: _Scope) -> None:
        self._engine = engine
        self._scope = scope

    def schema_names(self) -> set[str]:
        return set()

    def schema(self, name: str) -> SchemaProvider | None:  # type: ignore[override]
        known = {domain.name for domain in self._engine.catalog.domains()}
        return _RawDomainSchema(self._engine, name, self._scope) if name in known else None


class _RawDomainSchema(SchemaProvider):
    def __init__(self, engine: Engine, domain: str, scope: _Scope) -> None:
        self._engine = engine
        self._domain = domain
        self._scope = scope

    @property
    def table_names(self) -> list[str]:  # type: ignore[override]
        return []

    def table(self, name: str) -> Table | None:
        product = self._engine.catalog.product(self._domain, name)
        return self._engine.table_for(product, self._scope)

    def table_exist(self, name: str) -> bool:
        return name in self._engine.catalog.domain(self._domain).products


# -- errors ---------------------------------------------------------------------------

_DOMAIN_LISTING = re.compile(
    r"^(?P<head>unknown data product '[^']*') \(domain '(?P<domain>[^']*)' has: .*\)$", re.DOTALL
)
_NOT_FOUND = re.compile(r"table '(?:[^.']+\.)?([^.']+)\.([^.']+)' not found")
_SQL_POSITION = re.compile(r"(?:at )?Line: (\d+), Column: (\d+)")
_RECURSION_LIMIT = re.compile(r"RecursionLimitExceeded(?: \(current limit: (\d+)\))?")

MAX_SQL_BYTES = 1 << 20
"""The longest query text accepted (UTF-8 bytes)."""
MAX_NESTING = 32
"""The deepest nesting of parentheses accepted. DataFusion's parser stops at 50 levels of
expressions (fewer for subqueries) and sqlglot, which reads the text first when policies
are in force, exhausts Python's stack from about 40 levels of function calls."""
TOO_DEEP = "query too deeply nested"

# Text in which parentheses do not nest: string literals (E'' with backslash escapes,
# dollar-quoted), quoted identifiers and comments, each possibly unterminated; and the
# parentheses themselves.
_NESTING_TOKENS = re.compile(
    r"(?<![\w$])[eE]'(?:[^'\\]|\\[\s\S]|'')*'?"
    r"|'[^']*(?:''[^']*)*'?"
    r'|"[^"]*(?:""[^"]*)*"?'
    r"|`[^`]*`?"
    r"|--[^\n]*"
    r"|/\*[\s\S]*?(?:\*/|\Z)"
    r"|\$((?:[A-Za-z_]\w*)?)\$[\s\S]*?(?:\$\1\$|\Z)"
    r"|[()]"
)


def check_query_text(sql: str) -> None:
    """Refuse query text no parser should recurse into: over 1 MiB, or nested too deeply.

    Counts the nesting of parentheses outside string literals, quoted identifiers and
    comments, in one pass that stops at the first level too deep (about 0.1 s for 1 MiB
    of parentheses; none for text with fewer parentheses than the limit).

    >>> check_query_text("SELECT ((1)), ')))(((' AS x -- (((")
    >>> check_query_text("SELECT " + "(" * 33 + "1" + ")" * 33)
    Traceback (most recent call last):
    ...
    meshcore.errors.PlanningError: query too deeply nested (at most 32 levels of parentheses)
    """
    size = len(sql.encode("utf-8", "surrogatepass"))
    if size > MAX_SQL_BYTES:
        raise PlanningError(f"query text too long: {size:,} bytes (at most {MAX_SQL_BYTES:,} bytes, 1 MiB)")
    if sql.count("(") <= MAX_NESTING:
        return
    depth = 0
    for token in _NESTING_TOKENS.finditer(sql):
        kind = token.group()[0]
        if kind == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise PlanningError(f"{TOO_DEEP} (at most {MAX_NESTING} levels of parentheses)")
        elif kind == ")" and depth:
            depth -= 1


def _clean(message: str) -> str:
    message = re.sub(r"^(DataFusion error: |Execution error: |Error during planning: |External error: )+", "", message)
    return message.strip()


def _planning_error(error: Exception, catalog: MeshCatalog) -> MeshgateError:
    message = str(error)
    found = _find_meshgate_error(error)
    if found is not None:
        return found
    if isinstance(error, RecursionError):
        return PlanningError(f"{TOO_DEEP} for the SQL parser")
    limit = _RECURSION_LIMIT.search(message)
    if limit:
        levels = f" (the SQL parser stops at {limit.group(1)} levels)" if limit.group(1) else ""
        return PlanningError(f"{TOO_DEEP}{levels}")
    missing = _NOT_FOUND.search(message)
    if missing:
        domain, product = missing.groups()
        if domain not in {d.name for d in catalog.domains()} and domain == UNQUALIFIED_SCHEMA:
            known = ", ".join(sorted(d.name for d in catalog.domains()))
            return NotFoundError(
                f"unknown data product '{product}': name products as domain.product (domains: {known})"
            )
        try:
            catalog.product(domain, product)
        except MeshgateError as precise:
            return precise
        return NotFoundError(f"unknown data product '{domain}.{product}'")
    text = _clean(message)
    if "ParserError" in text or "SQL error" in text:
        position = _SQL_POSITION.search(text)
        detail = re.sub(r"^SQL error: ParserError\(\"?|\"?\)$", "", text)
        if position:
            line, column = position.groups()
            detail = _SQL_POSITION.sub("", detail).strip().rstrip(",").strip()
            return PlanningError(f"SQL syntax error at line {line}, column {column}: {detail}")
        return PlanningError(f"SQL syntax error: {detail}")
    return PlanningError(text)


def _execution_error(error: Exception, scans: Any) -> MeshgateError:
    for scan in scans:
        if scan.error is not None:
            return scan.error if isinstance(scan.error, MeshgateError) else PlanningError(str(scan.error))
        if scan.cancelled.is_set():
            return QueryCancelledError("query cancelled")
    found = _find_meshgate_error(error)
    if found is not None:
        return found
    text = _clean(str(error))
    if "Resources exhausted" in text:
        return ResourceLimitError(
            f"the query needs more memory than its limit (query_memory), even spilling to disk: {text}"
        )
    return PlanningError(text)


def _find_meshgate_error(error: BaseException) -> MeshgateError | None:
    """DataFusion wraps Python exceptions from our providers; find ours again."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, MeshgateError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
