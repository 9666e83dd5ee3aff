"""The engine: plans SQL over the mesh with DataFusion and streams the results.

Each execution gets its own DataFusion context whose ``mesh`` catalog resolves
``domain.product`` names lazily: SQL sources become :class:`ProductDataset` scans
that push down what their source can evaluate, file sources are read by DataFusion
itself. Knows nothing about Flight.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datafusion import DataFrame, SessionConfig, SessionContext, SQLOptions
from datafusion.catalog import CatalogProvider, SchemaProvider, Table

from connectors.base import FileConnector, SqlConnector
from gateway.api import CallerContext, DomainInfo, ProductInfo
from gateway.catalog import MeshCatalog, Product
from gateway.errors import MeshgateError, NotFoundError, NotSupportedError, PlanningError, QueryCancelledError
from gateway.parameters import parameter_schema, parameter_values
from gateway.planner import negotiate_scans, single_source_sql
from gateway.scan import ProductDataset, ProductScan, SourceQuery, classic_types, conform

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
    batch_size: int = 65536


@dataclass(frozen=True)
class Query:
    """A planned query (the engine's PreparedQuery)."""

    sql: str
    schema: pa.Schema
    parameter_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    explain: bool = False
    analyze: bool = False
    inner_sql: str = ""


class Engine:
    """Plans and runs SQL over a :class:`MeshCatalog`."""

    def __init__(self, catalog: MeshCatalog, settings: EngineSettings | None = None) -> None:
        self.catalog = catalog
        self.settings = settings or EngineSettings()
        self._file_tables: dict[tuple[str, str], Table] = {}
        self._file_lock = threading.Lock()

    # -- catalog -------------------------------------------------------------------
    @property
    def catalog_name(self) -> str:
        return self.catalog.name

    def domains(self, caller: CallerContext) -> Sequence[DomainInfo]:
        return [
            DomainInfo(self.catalog.name, d.name, d.config.owner, d.config.description) for d in self.catalog.domains()
        ]

    def products(self, caller: CallerContext) -> Sequence[ProductInfo]:
        return [
            ProductInfo(
                self.catalog.name,
                p.domain,
                p.name,
                _described(p, self.catalog.domain(p.domain).config.owner),
                p.description,
            )
            for p in self.catalog.products()
        ]

    # -- queries -------------------------------------------------------------------
    def prepare(self, sql: str, caller: CallerContext) -> Query:
        match = _EXPLAIN.match(sql)
        if match:
            inner = sql[match.end() :]
            self.prepare(inner, caller)  # report errors of the explained query now
            return Query(sql, EXPLAIN_SCHEMA, explain=True, analyze=bool(match.group("analyze")), inner_sql=inner)
        dataframe = self._dataframe(self._context(caller, {}), sql, {})
        return Query(sql, classic_types(dataframe.schema()), parameter_schema(dataframe, sql))

    def execute(self, prepared: Any, caller: CallerContext, parameters: pa.RecordBatch | None = None) -> Execution:
        query = prepared if isinstance(prepared, Query) else self.prepare(prepared.sql, caller)
        if query.explain:
            return self._explain(query, caller)
        values = parameter_values(query.parameter_schema, parameters)
        planned = self._plan(query.sql, caller, values)
        schema = query.schema if not values else classic_types(planned.dataframe.schema())
        return planned.start(schema)

    def run(self, sql: str, caller: CallerContext | None = None) -> Execution:
        """Prepare and execute in one call (for the CLI and tests)."""
        caller = caller or CallerContext()
        return self.execute(self.prepare(sql, caller), caller)

    # -- planning ------------------------------------------------------------------
    def _plan(self, sql: str, caller: CallerContext, values: dict[str, pa.Scalar] | None = None) -> _Planned:
        scans: dict[tuple[str, str], ProductScan] = {}
        dataframe = self._dataframe(self._context(caller, scans), sql, values or {})
        try:
            plan = dataframe.optimized_logical_plan()
        except Exception as error:
            raise _planning_error(error, self.catalog) from None
        routed = single_source_sql(dataframe, scans)
        if routed is None:
            negotiate_scans(plan, scans)
        return _Planned(self, dataframe, scans, routed)

    def _dataframe(self, ctx: SessionContext, sql: str, values: dict[str, pa.Scalar]) -> DataFrame:
        try:
            return ctx.sql(sql, options=READ_ONLY, param_values=values)
        except Exception as error:
            if any(marker in str(error) for marker in _NOT_READ_ONLY):
                raise NotSupportedError(f"the mesh is read-only: {_clean(str(error))}") from None
            raise _planning_error(error, self.catalog) from None

    def _context(self, caller: CallerContext, scans: dict[tuple[str, str], ProductScan]) -> SessionContext:
        self._prepare_file_tables()
        config = (
            SessionConfig()
            .with_default_catalog_and_schema(self.catalog.name, caller.default_schema or UNQUALIFIED_SCHEMA)
            .with_information_schema(True)
            .with_target_partitions(self.settings.target_partitions)
            .with_batch_size(self.settings.batch_size)
            .set("datafusion.execution.parquet.schema_force_view_types", "false")
            .set("datafusion.sql_parser.map_string_types_to_utf8view", "false")
        )
        ctx = planning_context(config)
        ctx.register_catalog_provider(self.catalog.name, _MeshCatalogProvider(self, scans))
        return ctx

    def table_for(self, product: Product, scans: dict[tuple[str, str], ProductScan]) -> Table:
        """The DataFusion table a query reads ``product`` through."""
        connector = product.connector
        if isinstance(connector, SqlConnector):
            key = (product.domain, product.name)
            scan = scans.get(key)
            if scan is None:
                scan = scans[key] = ProductScan(product)
            return Table(ProductDataset(scan))
        table = self._file_tables.get((product.domain, product.name))
        if table is None:
            raise NotFoundError(f"data product '{product.qualified_name}' is not ready yet; try again")
        return table

    def _prepare_file_tables(self) -> None:
        """Build DataFusion tables for file products, ahead of planning.

        A table cannot be created from inside DataFusion's planner callbacks (that
        would start a runtime within its runtime), so it is built here, once.
        """
        for product in self.catalog.products():
            key = (product.domain, product.name)
            if key in self._file_tables or not isinstance(product.connector, FileConnector):
                continue
            with self._file_lock:
                if key in self._file_tables:
                    continue
                scratch = SessionContext(
                    SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false")
                )
                product.connector.register(scratch, "product", product.source)
                self._file_tables[key] = scratch.table_provider("product")

    # -- EXPLAIN -------------------------------------------------------------------
    def _explain(self, query: Query, caller: CallerContext) -> Execution:
        planned = self._plan(query.inner_sql, caller)
        rows: list[tuple[str, str]] = []
        started = time.perf_counter()
        result_rows = 0
        if query.analyze:
            execution = planned.start(classic_types(planned.dataframe.schema()))
            for batch in execution:
                result_rows += batch.num_rows
        if planned.routed is not None:
            domain = planned.routed[0]
            connector = next(iter(planned.scans.values())).connector
            rows.append(("route", f"single source: the whole query runs in domain '{domain}' ({connector.label})"))
        else:
            rows.append(("route", "federated: DataFusion joins the sources' results"))
            rows.append(("logical_plan", planned.dataframe.optimized_logical_plan().display_indent()))
        for scan in planned.scans.values():
            if query.analyze:
                rows.extend(_source_query_row(record, analyzed=True) for record in scan.queries)
            elif planned.routed is not None:
                break
            else:
                for occurrence in scan.occurrences:
                    spec, _ = scan.spec(occurrence.columns)
                    text = scan.connector.scan_sql(spec)
                    kept = f"\n  kept back for DataFusion: {' AND '.join(occurrence.kept)}" if occurrence.kept else ""
                    rows.append((_source_label(scan), text + kept))
        if planned.routed is not None and not query.analyze:
            rows.append((_source_label(next(iter(planned.scans.values()))), planned.routed[1]))
        if query.analyze:
            elapsed = time.perf_counter() - started
            rows.append(("result", f"rows={result_rows} seconds={elapsed:.3f}"))
        table = pa.table({"plan_type": [r[0] for r in rows], "plan": [r[1] for r in rows]}, schema=EXPLAIN_SCHEMA)
        return Execution(EXPLAIN_SCHEMA, iter(table.to_batches()), [])


def _described(product: Product, owner: str | None) -> pa.Schema:
    """The product's schema with its name, description and owner in the schema metadata."""
    metadata = dict(product.schema.metadata or {})
    metadata[b"meshgate.product"] = product.qualified_name.encode()
    if product.description:
        metadata[b"meshgate.description"] = product.description.encode()
    if owner:
        metadata[b"meshgate.owner"] = owner.encode()
    return product.schema.with_metadata(metadata)


def planning_context(config: SessionConfig | None = None) -> SessionContext:
    """A DataFusion context tuned for federation.

    Common-subexpression elimination is removed: it moves shared expressions into a
    projection between a filter and its scan (``__common_expr_1 > 3``), which would
    hide the filter from pushdown; the source evaluates them instead.
    """
    ctx = SessionContext(config or SessionConfig())
    ctx.remove_optimizer_rule("common_sub_expression_eliminate")
    return ctx


def _source_label(scan: ProductScan) -> str:
    return f"source_query[{scan.product.domain}/{scan.connector.label}]"


def _source_query_row(record: SourceQuery, *, analyzed: bool) -> tuple[str, str]:
    seconds = (record.finished or time.time()) - record.started
    return (
        f"source_query[{record.domain}/{record.source}]",
        f"{record.sql}\n  rows={record.rows} batches={record.batches} seconds={seconds:.3f}",
    )


@dataclass
class _Planned:
    engine: Engine
    dataframe: DataFrame
    scans: dict[tuple[str, str], ProductScan]
    routed: tuple[str, str] | None

    def start(self, schema: pa.Schema) -> Execution:
        if self.routed is not None:
            scan = next(iter(self.scans.values()))
            domain, sql = self.routed
            record = SourceQuery(domain, scan.connector.label, "(whole query)", sql, started=time.time())
            scan.queries.append(record)
            stream = scan.connector.execute(sql, schema)

            def counted() -> Iterator[pa.RecordBatch]:
                try:
                    for batch in stream:
                        record.rows += batch.num_rows
                        record.batches += 1
                        yield batch
                finally:
                    record.finished = time.time()

            return Execution(schema, counted(), list(self.scans.values()), cancel_source=stream.cancel)
        try:
            batches = self.dataframe.execute_stream()
        except Exception as error:
            raise _execution_error(error, self.scans.values()) from None
        return Execution(schema, (batch.to_pyarrow() for batch in batches), list(self.scans.values()))


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

    @property
    def source_queries(self) -> list[SourceQuery]:
        return [record for scan in self._scans for record in scan.queries]

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._batches:
                if self._cancelled.is_set():
                    raise QueryCancelledError("query cancelled")
                batch = conform(batch, self.schema)
                self.rows += batch.num_rows
                yield batch
        except MeshgateError:
            raise
        except Exception as error:
            raise _execution_error(error, self._scans) from None
        finally:
            self.close()

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self), schema=self.schema)

    def cancel(self) -> None:
        self._cancelled.set()
        for scan in self._scans:
            scan.cancel()
        if self._cancel_source is not None:
            self._cancel_source()

    def close(self) -> None:
        for scan in self._scans:
            for stream in scan.streams:
                stream.cancel()


class _MeshCatalogProvider(CatalogProvider):
    def __init__(self, engine: Engine, scans: dict[tuple[str, str], ProductScan]) -> None:
        self._engine = engine
        self._scans = scans

    def schema_names(self) -> set[str]:
        return {domain.name for domain in self._engine.catalog.domains()}

    def schema(self, name: str) -> SchemaProvider | None:  # type: ignore[override]  # a Python provider works too
        if name not in self.schema_names():
            return None
        return _DomainSchema(self._engine, name, self._scans)


class _DomainSchema(SchemaProvider):
    def __init__(self, engine: Engine, domain: str, scans: dict[tuple[str, str], ProductScan]) -> None:
        self._engine = engine
        self._domain = domain
        self._scans = scans

    @property
    def table_names(self) -> list[str]:  # type: ignore[override]
        # DataFusion's Rust side reads this attribute without calling it and wants a
        # sequence (information_schema lists nothing otherwise): a property, not a method.
        domain = self._engine.catalog.domain(self._domain)
        return sorted(domain.products)

    def table(self, name: str) -> Table | None:
        # A domain that is offline raises here: DataFusion reports it and the
        # engine maps it back to the domain's own error.
        product = self._engine.catalog.product(self._domain, name) if self.table_exist(name) else None
        return None if product is None else self._engine.table_for(product, self._scans)

    def table_exist(self, name: str) -> bool:
        domain = self._engine.catalog.domain(self._domain)
        if domain.error is not None:
            raise domain.error
        return name in domain.products


# -- errors ---------------------------------------------------------------------------

_NOT_FOUND = re.compile(r"table '(?:[^.']+\.)?([^.']+)\.([^.']+)' not found")
_SQL_POSITION = re.compile(r"(?:at )?Line: (\d+), Column: (\d+)")


def _clean(message: str) -> str:
    message = re.sub(r"^(DataFusion error: |Execution error: |Error during planning: |External error: )+", "", message)
    return message.strip()


def _planning_error(error: Exception, catalog: MeshCatalog) -> MeshgateError:
    message = str(error)
    found = _find_meshgate_error(error)
    if found is not None:
        return found
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
    return found if found is not None else PlanningError(_clean(str(error)))


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
