"""What the Flight SQL server needs from the engine, and nothing more.

The server translates RPCs into calls on a :class:`QueryEngine`; the engine knows
nothing about Flight. Keeping this seam small lets the protocol layer be tested on
its own and lets the engine change freely behind it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True)
class CallerContext:
    """Who is asking, and their session defaults (used for name resolution)."""

    user: str | None = None
    default_catalog: str | None = None
    default_schema: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # Names a service caller acts as (a domain's quality checks act as its owner: a user,
    # group or role name). Set by the gateway itself, never from anything a client sends.
    acts_as: tuple[str, ...] = ()
    # The W3C trace context (``traceparent``) the client sent, for tracing only: the gateway's
    # spans of its queries join that trace. Never for policies; not part of the caller's identity.
    trace_parent: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ProductInfo:
    """A data product as the catalog shows it: a table in schema ``domain``."""

    catalog: str
    domain: str
    name: str
    schema: pa.Schema
    description: str | None = None
    table_type: str = "TABLE"
    primary_key: tuple[str, ...] = ()


@dataclass(frozen=True)
class DomainInfo:
    """A domain as the catalog shows it: a database schema of the mesh catalog."""

    catalog: str
    name: str
    owner: str | None = None
    description: str | None = None


class QueryResult(Protocol):
    """A running query: a stream of record batches with classic (non-view) types."""

    @property
    def schema(self) -> pa.Schema: ...

    def __iter__(self) -> Iterator[pa.RecordBatch]: ...

    def cancel(self) -> None:
        """Stop the query (and the source queries under it); safe from any thread."""

    def close(self) -> None:
        """Release everything the query holds; idempotent."""


class PreparedQuery(Protocol):
    """A planned query: its result schema is known before anything runs."""

    @property
    def sql(self) -> str: ...

    @property
    def schema(self) -> pa.Schema: ...

    @property
    def parameter_schema(self) -> pa.Schema:
        """Schema of the ``$1, $2 ...`` parameters (empty when there are none)."""


class QueryEngine(Protocol):
    """The engine behind the server."""

    @property
    def catalog_name(self) -> str: ...

    def domains(self, caller: CallerContext) -> Sequence[DomainInfo]: ...

    def products(self, caller: CallerContext) -> Sequence[ProductInfo]: ...

    def prepare(self, sql: str, caller: CallerContext) -> PreparedQuery:
        """Parse and plan ``sql``; raises PlanningError/NotFoundError with positions."""

    def execute(
        self,
        prepared: PreparedQuery,
        caller: CallerContext,
        parameters: pa.RecordBatch | None = None,
        *,
        deadline: float | None = None,
    ) -> QueryResult:
        """Start the query; batches stream while it runs. Raises MeshgateError kinds.

        ``deadline`` (``time.monotonic()``; None: none) is when its source queries must be over.
        """
