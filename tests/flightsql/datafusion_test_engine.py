"""A small but real QueryEngine for the Flight SQL tests: DataFusion over in-memory tables.

Queries are planned and run by DataFusion (``SessionContext.sql``), results stream with
``DataFrame.execute_stream()`` and view types are cast to classic ``string``/``binary``,
as the real engine promises. Every execution is recorded so that tests can see what
the server asked for (parameters, how far a stream was pulled, cancellation).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datafusion import SessionConfig, SessionContext, SQLOptions

from gateway.api import CallerContext, DomainInfo, ProductInfo
from gateway.errors import NotSupportedError, PlanningError, QueryCancelledError, SourceError
from gateway.parameters import parameter_schema, parameter_values
from gateway.scan import classic_types

READ_ONLY = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
_NOT_READ_ONLY = ("DDL not supported", "DML not supported", "Statement not supported")


@dataclass
class Execution:
    """What one ``execute`` call did, for assertions."""

    sql: str
    user: str | None
    parameters: dict[str, Any]
    batches: int = 0
    cancelled: bool = False
    closed: bool = False


@dataclass(frozen=True)
class DataFusionQuery:
    sql: str
    schema: pa.Schema
    parameter_schema: pa.Schema


class DataFusionResult:
    """A running DataFusion query, pulled one batch at a time."""

    def __init__(self, stream: Any, schema: pa.Schema, record: Execution) -> None:
        self._stream = stream
        self._schema = schema
        self._record = record
        self._cancelled = threading.Event()

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        batches = iter(self._stream)
        while True:
            try:
                batch = next(batches, None)
            except Exception as error:  # DataFusion execution errors
                raise SourceError("mesh", "datafusion", str(error)) from None
            if self._cancelled.is_set():
                raise QueryCancelledError("[mesh] query cancelled")
            if batch is None:
                return
            self._record.batches += 1
            yield batch.to_pyarrow().cast(self._schema)

    def cancel(self) -> None:
        self._record.cancelled = True
        self._cancelled.set()

    def close(self) -> None:
        self._record.closed = True
        self._stream = iter(())


@dataclass
class DataFusionEngine:
    """Domains are DataFusion schemas of catalog ``catalog_name``; products are their tables and views."""

    tables: Mapping[str, Mapping[str, pa.Table]]
    views: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    catalog_name: str = "mesh"
    owners: Mapping[str, str] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    callers: list[CallerContext] = field(default_factory=list)

    def __post_init__(self) -> None:
        first = next(iter(self.tables))
        config = SessionConfig().with_default_catalog_and_schema(self.catalog_name, first)
        self._ctx = SessionContext(config.with_create_default_catalog_and_schema(True))
        for domain in {*self.tables, *self.views}:
            self._ctx.sql(f'CREATE SCHEMA IF NOT EXISTS "{self.catalog_name}"."{domain}"')
        for domain, tables in self.tables.items():
            for name, table in tables.items():
                self._ctx.register_record_batches(f"{self.catalog_name}.{domain}.{name}", [table.to_batches()])
        for domain, views in self.views.items():
            for name, sql in views.items():
                self._ctx.sql(f'CREATE VIEW "{self.catalog_name}"."{domain}"."{name}" AS {sql}')

    def domains(self, caller: CallerContext) -> Sequence[DomainInfo]:
        self.callers.append(caller)
        return [DomainInfo(self.catalog_name, name, owner=self.owners.get(name)) for name in self._domain_names()]

    def products(self, caller: CallerContext) -> Sequence[ProductInfo]:
        self.callers.append(caller)
        products = []
        for domain in self._domain_names():
            for name in sorted(self._ctx.catalog(self.catalog_name).schema(domain).table_names()):
                schema = classic_types(self._ctx.table(f'"{self.catalog_name}"."{domain}"."{name}"').schema())
                kind = "VIEW" if name in self.views.get(domain, {}) else "TABLE"
                products.append(ProductInfo(self.catalog_name, domain, name, schema, table_type=kind))
        return products

    def prepare(self, sql: str, caller: CallerContext) -> DataFusionQuery:
        self.callers.append(caller)
        df = self._plan(sql, {})
        return DataFusionQuery(sql, classic_types(df.schema()), parameter_schema(df, sql))

    def execute(
        self,
        prepared: DataFusionQuery,
        caller: CallerContext,
        parameters: pa.RecordBatch | None = None,
        *,
        deadline: float | None = None,  # this engine has no sources to bound
    ) -> DataFusionResult:
        self.callers.append(caller)
        values = parameter_values(prepared.parameter_schema, parameters)
        df = self._plan(prepared.sql, values)
        record = Execution(prepared.sql, caller.user, {k: v.as_py() for k, v in values.items()})
        self.executions.append(record)
        return DataFusionResult(df.execute_stream(), classic_types(df.schema()), record)

    def _plan(self, sql: str, values: dict[str, pa.Scalar]) -> Any:
        try:
            return self._ctx.sql(sql, options=READ_ONLY, param_values=values)
        except Exception as error:  # DataFusion raises plain exceptions with good messages
            message = str(error)
            if any(marker in message for marker in _NOT_READ_ONLY):
                raise NotSupportedError(f"[{self.catalog_name}] read-only: {message}") from None
            raise PlanningError(message) from None

    def _domain_names(self) -> list[str]:
        return sorted(self._ctx.catalog(self.catalog_name).schema_names())


