"""Statements and prepared statements: engine queries behind opaque, expiring handles.

A prepared statement holds a planned query and the parameter rows bound to it. A
statement is a query *started* by GetFlightInfo (so that the schema announced there is
the schema of the stream: clients compare the two) and streamed by the DoGet of its
ticket. Bound parameter rows run one execution each, in order, concatenated.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from gateway.api import CallerContext, PreparedQuery, QueryEngine, QueryResult
from gateway.errors import NotFoundError, QueryCancelledError
from gateway.flightsql.handles import HandleRegistry


@dataclass
class PreparedStatement:
    """A planned query, its owner, and the parameter batches bound by DoPut."""

    query: PreparedQuery
    user: str | None
    parameters: list[pa.RecordBatch] | None = None


@dataclass(frozen=True)
class Statement:
    """A started query waiting for its DoGet.

    ``first`` runs the first parameter row (or the query without parameters), ``more``
    holds the remaining rows; ``first`` is None when zero rows were bound.
    """

    query: PreparedQuery
    user: str | None
    first: QueryResult | None
    more: tuple[pa.RecordBatch, ...] = ()

    @property
    def schema(self) -> pa.Schema:
        """The stream's schema: the first run's (all nullable when more runs follow)."""
        if self.first is None:
            return self.query.schema
        if not self.more:
            return self.first.schema
        fields = [f.with_nullable(True) for f in self.first.schema]
        return pa.schema(fields, metadata=self.first.schema.metadata)

    def abandon(self) -> None:
        """Stop the started query: its ticket expired, was cancelled or was misused."""
        if self.first is not None:
            self.first.cancel()
            self.first.close()


@dataclass
class Run:
    """A statement being streamed: its current result, for cancellation and clean-up."""

    result: QueryResult
    cancelled: bool = False
    released: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def switch(self, result: QueryResult) -> None:
        with self.lock:
            self.result = result
            if self.cancelled:
                result.cancel()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            self.result.cancel()

    def release(self, finished: bool) -> None:
        """Close the current result, cancelling it unless it ran to the end; once only."""
        with self.lock:
            if self.released:
                return
            self.released = True
        if not finished:
            self.result.cancel()
        self.result.close()


def parameter_rows(batches: Sequence[pa.RecordBatch] | None) -> list[pa.RecordBatch | None]:
    """One entry per execution: ``[None]`` when nothing is bound, else each bound row."""
    if batches is None:
        return [None]
    return [batch.slice(row, 1) for batch in batches for row in range(batch.num_rows)]


class Statements:
    """The statements and prepared statements of one server, owned by their callers."""

    def __init__(self, engine: QueryEngine, *, ttl: float, maxsize: int) -> None:
        self._engine = engine
        self._prepared: HandleRegistry[PreparedStatement] = HandleRegistry(
            "prepared statement", maxsize=maxsize, ttl=ttl
        )
        self._started: HandleRegistry[Statement] = HandleRegistry(
            "statement", maxsize=maxsize, ttl=ttl, release=Statement.abandon
        )
        self._running: dict[bytes, Run] = {}
        self._lock = threading.Lock()

    # -- prepared statements -----------------------------------------------------------

    def prepare(self, sql: str, caller: CallerContext) -> tuple[bytes, PreparedQuery]:
        query = self._engine.prepare(sql, caller)
        return self._prepared.add(PreparedStatement(query, caller.user)), query

    def prepared(self, handle: bytes, caller: CallerContext) -> PreparedStatement:
        """The caller's prepared statement (NotFoundError for anyone else's)."""
        prepared = self._prepared.get(handle)
        if prepared.user != caller.user:
            raise NotFoundError(f"[Flight SQL] unknown or expired {self._prepared.kind} handle")
        return prepared

    def bind(self, handle: bytes, caller: CallerContext, parameters: list[pa.RecordBatch]) -> None:
        self.prepared(handle, caller).parameters = parameters

    def close(self, handle: bytes, caller: CallerContext) -> None:
        self.prepared(handle, caller)
        self._prepared.discard(handle)

    # -- statements ----------------------------------------------------------------------

    def start(
        self, query: PreparedQuery, caller: CallerContext, parameters: Sequence[pa.RecordBatch] | None
    ) -> tuple[bytes, pa.Schema]:
        """Start ``query`` (its first run); return the ticket handle and the stream schema."""
        runs = parameter_rows(parameters)
        first = self._engine.execute(query, caller, runs[0]) if runs else None
        statement = Statement(query, caller.user, first, tuple(runs[1:]))
        return self._started.add(statement), statement.schema

    def stream(self, handle: bytes, caller: CallerContext) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Take the statement of ``handle`` (single use) and stream its batches."""
        statement = self._started.pop(handle)
        if statement.user != caller.user:
            statement.abandon()
            raise NotFoundError(f"[Flight SQL] unknown or expired {self._started.kind} handle")
        if statement.first is None:
            return statement.schema, iter(())
        run = Run(statement.first)
        with self._lock:
            self._running[handle] = run
        batches = self._batches(handle, statement, run, caller)
        # Releases the query even if the stream is dropped before its first batch is pulled.
        weakref.finalize(batches, self._release, handle, run, False)
        return statement.schema, batches

    def cancel(self, handles: Iterable[bytes]) -> bool:
        """Cancel the statements of ``handles``, started or streaming; whether any was found."""
        found = False
        for handle in handles:
            found |= self._started.discard(handle)
            with self._lock:
                run = self._running.get(handle)
            if run is not None:
                run.cancel()
                found = True
        return found

    def _batches(
        self, handle: bytes, statement: Statement, run: Run, caller: CallerContext
    ) -> Iterator[pa.RecordBatch]:
        schema = statement.schema
        finished = False
        try:
            for parameters in [None, *statement.more]:
                if parameters is not None:
                    run.switch(self._engine.execute(statement.query, caller, parameters))
                result = run.result
                for batch in result:
                    yield batch if batch.schema.equals(schema) else batch.cast(schema)
                if run.cancelled:
                    raise QueryCancelledError("[Meshgate] the query was cancelled")
                result.close()
            finished = True
        finally:
            self._release(handle, run, finished)

    def _release(self, handle: bytes, run: Run, finished: bool) -> None:
        with self._lock:
            if self._running.get(handle) is run:
                del self._running[handle]
        run.release(finished)
