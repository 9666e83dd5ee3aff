"""A small but real QueryEngine for the Flight SQL tests: DataFusion over in-memory tables.

Queries are planned and run by DataFusion (``SessionContext.sql``), results stream with
``DataFrame.execute_stream()`` and view types are cast to classic ``string``/``binary``,
as the real engine promises. Every execution is recorded so that tests can see what
the server asked for (parameters, how far a stream was pulled, cancellation).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datafusion import SessionConfig, SessionContext, SQLOptions

from gateway.api import CallerContext, DomainInfo, ProductInfo
from gateway.errors import NotSupportedError, PlanningError, QueryCancelledError, SourceError

READ_ONLY = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
_NOT_READ_ONLY = ("DDL not supported", "DML not supported", "Statement not supported")


def classic_type(data_type: pa.DataType) -> pa.DataType:
    """``string_view``/``binary_view`` (also nested) to ``string``/``binary``."""
    if data_type == pa.string_view():
        return pa.string()
    if data_type == pa.binary_view():
        return pa.binary()
    if pa.types.is_list(data_type):
        return pa.list_(data_type.value_field.with_type(classic_type(data_type.value_type)))
    if pa.types.is_struct(data_type):
        return pa.struct(
            [data_type.field(i).with_type(classic_type(data_type.field(i).type)) for i in range(data_type.num_fields)]
        )
    return data_type


def classic_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(classic_type(f.type)) for f in schema], metadata=schema.metadata)


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
                schema = classic_schema(self._ctx.table(f'"{self.catalog_name}"."{domain}"."{name}"').schema())
                kind = "VIEW" if name in self.views.get(domain, {}) else "TABLE"
                products.append(ProductInfo(self.catalog_name, domain, name, schema, table_type=kind))
        return products

    def prepare(self, sql: str, caller: CallerContext) -> DataFusionQuery:
        self.callers.append(caller)
        df = self._plan(sql, {})
        return DataFusionQuery(sql, classic_schema(df.schema()), _parameter_schema(df, sql))

    def execute(
        self, prepared: DataFusionQuery, caller: CallerContext, parameters: pa.RecordBatch | None = None
    ) -> DataFusionResult:
        self.callers.append(caller)
        values = _parameter_values(prepared, parameters)
        df = self._plan(prepared.sql, values)
        record = Execution(prepared.sql, caller.user, {k: v.as_py() for k, v in values.items()})
        self.executions.append(record)
        return DataFusionResult(df.execute_stream(), classic_schema(df.schema()), record)

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


def _parameter_values(prepared: DataFusionQuery, parameters: pa.RecordBatch | None) -> dict[str, pa.Scalar]:
    wanted = len(prepared.parameter_schema)
    if parameters is None:
        if wanted:
            raise PlanningError(f"the query has {wanted} parameter(s) ($1..${wanted}) and none were bound")
        return {}
    if parameters.num_rows != 1 or parameters.num_columns != wanted:
        raise PlanningError(
            f"expected one row of {wanted} parameter(s), got {parameters.num_rows} row(s) of {parameters.num_columns}"
        )
    values = {}
    for i in range(wanted):
        value = parameters.column(i)[0]
        # Some clients (flightsql-dbapi) send each parameter as a one-row dense union.
        values[str(i + 1)] = value.value if isinstance(value, pa.UnionScalar) else value
    return values


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _parameter_schema(df: Any, sql: str) -> pa.Schema:
    """Placeholders ``$n`` with the types DataFusion inferred (null where the plan hides them)."""
    found: dict[int, pa.DataType] = {}
    _collect_placeholders(df.logical_plan(), found)
    in_text = [int(n) for n in _PLACEHOLDER.findall(_QUOTED.sub("", sql))]
    count = max([*found, *in_text], default=0)
    return pa.schema([pa.field(f"${n}", found.get(n, pa.null())) for n in range(1, count + 1)])


def _collect_placeholders(plan: Any, found: dict[int, pa.DataType]) -> None:
    node = plan.to_variant()
    expressions = []
    for accessor in ("projections", "predicate", "group_by_exprs", "aggregate_exprs", "sort_exprs"):
        method = getattr(node, accessor, None)
        if method is not None:
            value = method()
            expressions.extend(value if isinstance(value, list) else [value])
    for expression in expressions:
        _collect_from_expression(expression, found)
    for child in plan.inputs():
        _collect_placeholders(child, found)


def _collect_from_expression(expression: Any, found: dict[int, pa.DataType]) -> None:
    try:
        node = expression.to_variant()
    except Exception:  # expression kinds the Python bindings cannot expose
        return
    kind = type(node).__name__
    if kind == "Placeholder":
        try:
            found[int(node.id().lstrip("$"))] = node.field().type
        except Exception:  # no type inferred
            found.setdefault(int(node.id().lstrip("$")), pa.null())
        return
    if kind in ("Column", "Literal"):
        return
    try:
        operands = expression.rex_call_operands()
    except Exception:
        return
    for operand in operands:
        _collect_from_expression(operand, found)
