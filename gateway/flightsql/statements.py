"""Statements and prepared statements: engine queries behind opaque, expiring handles.

A prepared statement holds a planned query and the parameter rows bound to it. A
statement is a query *started* by GetFlightInfo (so that the schema announced there is
the schema of the stream: clients compare the two) and streamed by the DoGet of its
ticket. Bound parameter rows run one execution each, in order, concatenated.

A statement ends in one of five ways, and each stops the engine query (which stops the
source queries under it, a PostgreSQL backend included): its stream is read to the end,
the client goes away or abandons the stream, it is cancelled (CancelFlightInfo /
CancelQuery, or CloseSession of the session that started it), it runs past its
statement timeout, or its client reads nothing for the client timeout. A DoGet for a
statement that was cancelled or timed out says so.

The client timeout bounds how long a stream may wait on a client that holds its connection
open but reads no more (a notebook left with a half-read result): the server's write then
waits for as long as the client likes, and the query would hold its admission slot, its
memory and its source connections all that time. Past the timeout the query is stopped and
released; the call itself ends when the client reads again (it is told why) or goes away.

The statement timeout bounds the whole statement: its deadline is handed to the engine
(``execute(..., deadline=)``), which hands it to every source query (each source gives up
by then, and the gateway stops waiting for it: ``connectors/deadline.py``), and the
deadline thread cancels whatever still runs, DataFusion's work included. A statement
whose deadline has passed fails with the timeout error, whatever the failure that
surfaced first (a source's own timeout, an interrupted read).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from cachetools import TTLCache

from gateway.api import CallerContext, PreparedQuery, QueryEngine, QueryResult
from gateway.errors import (
    InvalidRequestError,
    MeshgateError,
    NotFoundError,
    PlanningError,
    QueryCancelledError,
    QueryTimeoutError,
)
from gateway.flightsql.handles import HandleRegistry
from gateway.parameters import check_parameters, plain_unions

log = logging.getLogger(__name__)

CANCELLED = "[Meshgate] the query was cancelled"


def timeout_message(seconds: float) -> str:
    """What a client is told when its statement timeout fires.

    >>> timeout_message(2.5)
    '[Meshgate] statement timeout: the query ran longer than 2.5 s and was cancelled'
    """
    return f"[Meshgate] statement timeout: the query ran longer than {seconds:g} s and was cancelled"


def stalled_message(seconds: float) -> str:
    """What a client is told when it read nothing for the client timeout.

    >>> stalled_message(300)
    '[Meshgate] the query was cancelled: its client read nothing for 300 s (client timeout)'
    """
    return f"{CANCELLED}: its client read nothing for {seconds:g} s (client timeout)"


def past_deadline(deadline: float | None, timeout: float | None) -> QueryTimeoutError | None:
    """The statement timeout's error once ``deadline`` (``time.monotonic()``) has passed, else None."""
    if deadline is None or timeout is None or time.monotonic() < deadline:
        return None
    return QueryTimeoutError(timeout_message(timeout))


@dataclass
class PreparedStatement:
    """A planned query, its owner, and the parameter batches bound by DoPut."""

    query: PreparedQuery
    user: str | None
    parameters: list[pa.RecordBatch] | None = None


HELD_BYTES = 256 << 20
"""What the statements (and, apart, the prepared statements) waiting for their client may hold together
in query text and bound parameters. Counted alone, 10,000 prepared statements of 1 MiB each (the longest
query text accepted) let any user hold 10 GiB; 500 held 480 MiB."""


def _held_bytes(held: PreparedStatement | Statement) -> int:
    """The query text and bound parameter rows a (prepared) statement keeps."""
    rows = held.parameters if isinstance(held, PreparedStatement) else held.more
    # Not ``nbytes``: pyarrow 26 crashes the process (SIGSEGV) on it for a dense union of no rows
    # read from IPC (its buffers are absent), which any client can bind (found by the fuzzer).
    return len(held.query.sql) + sum(batch.get_total_buffer_size() for batch in rows or ())


def _user(held: PreparedStatement | Statement) -> str | None:
    """Whose (prepared) statement it is: each user's make room for their new ones first."""
    return held.user


@dataclass(frozen=True)
class Statement:
    """A started query waiting for its DoGet.

    ``first`` runs the first parameter row (or the query without parameters), ``more``
    holds the remaining rows; ``first`` is None when zero rows were bound. ``session`` is
    the id of the session that started it, if any.
    """

    query: PreparedQuery
    user: str | None
    first: QueryResult | None
    more: tuple[pa.RecordBatch, ...] = ()
    session: str | None = None
    deadline: float | None = None  # time.monotonic() when its statement timeout fires
    timeout: float | None = None

    def timed_out(self) -> QueryTimeoutError | None:
        """The timeout error, once the statement's deadline has passed (else None)."""
        return past_deadline(self.deadline, self.timeout)

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
    """A statement being streamed: its current result, for cancellation and clean-up.

    ``ended`` says why it was stopped early (cancelled, timed out), None while it runs.
    """

    result: QueryResult
    user: str | None = None
    session: str | None = None
    ended: QueryCancelledError | None = None
    released: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def switch(self, result: QueryResult) -> None:
        with self.lock:
            self.result = result
            released = self.released
            if self.ended is not None:
                result.cancel()
        if released:  # stopped while the next parameter row's run started
            result.close()

    def cancel(self, reason: QueryCancelledError) -> None:
        with self.lock:
            if self.ended is None:
                self.ended = reason
            self.result.cancel()

    def error(self) -> QueryCancelledError:
        """A fresh exception saying why the run ended early."""
        assert self.ended is not None
        return type(self.ended)(str(self.ended))

    def release(self, finished: bool) -> None:
        """Close the current result, cancelling it unless it ran to the end; once only."""
        with self.lock:
            if self.released:
                return
            self.released = True
            result = self.result
        if not finished:
            result.cancel()
        result.close()


def parameter_rows(batches: Sequence[pa.RecordBatch] | None) -> list[pa.RecordBatch | None]:
    """One entry per execution: ``[None]`` when nothing is bound, else each bound row."""
    if batches is None:
        return [None]
    return [batch.slice(row, 1) for batch in batches for row in range(batch.num_rows)]


def _same_types(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A later parameter row's result in the stream's schema (the first row's types)."""
    try:
        return batch.cast(schema)
    except (pa.ArrowException, ValueError):
        differs = next(
            (
                f"'{a.name}' is {a.type}, not {b.type}"
                for a, b in zip(batch.schema, schema, strict=False)
                if a.type != b.type
            ),
            "its columns differ",
        )
        raise InvalidRequestError(
            f"the bound parameter rows give results of different types ({differs} as for the first row): "
            "bind each parameter with one type"
        ) from None


class Statements:
    """The statements and prepared statements of one server, owned by their callers.

    Args:
        engine: runs the queries.
        ttl: seconds an unused handle lives; also how long the reason a statement ended
            (cancelled, timed out) is remembered for its DoGet.
        maxsize: most statements (and, separately, prepared statements) held.
        client_timeout: seconds a stream may wait for its client to read a batch, and a started
            statement for its client to ask for its stream, before its query is stopped; None
            for no limit.
    """

    def __init__(self, engine: QueryEngine, *, ttl: float, maxsize: int, client_timeout: float | None = None) -> None:
        self._engine = engine
        self._prepared: HandleRegistry[PreparedStatement] = HandleRegistry(
            "prepared statement", maxsize=maxsize, ttl=ttl, size=_held_bytes, max_bytes=HELD_BYTES, owner=_user
        )
        self._started: HandleRegistry[Statement] = HandleRegistry(
            "statement",
            maxsize=maxsize,
            ttl=ttl,
            release=Statement.abandon,
            size=_held_bytes,
            max_bytes=HELD_BYTES,
            owner=_user,
        )
        self._running: dict[bytes, Run] = {}
        self._ended: TTLCache[bytes, QueryCancelledError] = TTLCache(maxsize=maxsize, ttl=ttl)
        # Guards the hand-over of a handle from _started to _running, and _ended.
        self._lock = threading.Lock()
        self._deadlines = Deadlines(self._time_out)
        self._client_timeout = client_timeout
        # A batch handed to gRPC, not yet taken by its client.
        self._unread = Deadlines(self._client_stalled, name="meshgate-client-timeouts")
        self._watch = StreamWatch()

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
        """Bind parameter rows (DoPut), checked here: a bad value is refused before it is kept.

        The columns must match the statement's parameters in number, and every value must
        be well-formed Arrow data (strings valid UTF-8): native code reads them later.
        A refused binding also drops the rows bound before it.
        """
        prepared = self.prepared(handle, caller)
        prepared.parameters = None
        wanted = len(prepared.query.parameter_schema)
        for batch in parameters:
            if batch.num_columns != wanted:
                placeholders = f" ($1..${wanted})" if wanted else ""
                raise PlanningError(
                    f"the prepared statement has {wanted} parameter(s){placeholders}, "
                    f"but {batch.num_columns} parameter column(s) were bound"
                )
            check_parameters(batch)
        prepared.parameters = [plain_unions(batch) for batch in parameters]
        self.prepared(handle, caller)  # weighed again, with its rows (see HELD_BYTES)

    def close(self, handle: bytes, caller: CallerContext) -> None:
        self.prepared(handle, caller)
        self._prepared.discard(handle)

    # -- statements ----------------------------------------------------------------------

    def start(
        self,
        query: PreparedQuery,
        caller: CallerContext,
        parameters: Sequence[pa.RecordBatch] | None,
        *,
        timeout: float | None = None,
        session: str | None = None,
    ) -> tuple[bytes, pa.Schema]:
        """Start ``query`` (its first run); return the ticket handle and the stream schema.

        With a ``timeout`` (seconds), the statement is cancelled that long after now unless
        its stream has been read to the end by then; starting it (planning, sources that
        take long to answer or to connect) counts too.
        """
        deadline = time.monotonic() + timeout if timeout is not None else None
        runs = parameter_rows(parameters)
        try:
            first = self._execute(query, caller, runs[0], deadline) if runs else None
        except MeshgateError:
            timed_out = past_deadline(deadline, timeout)
            if timed_out is None:
                raise
            log.info("statement timeout (%g s) while starting the query", timeout)
            raise timed_out from None
        statement = Statement(query, caller.user, first, tuple(runs[1:]), session, deadline, timeout)
        handle = self._started.add(statement)
        if deadline is not None and timeout is not None and first is not None:
            self._deadlines.add(handle, deadline, timeout)
        if self._client_timeout is not None and first is not None:
            # A client that never asks for the stream has read nothing of it either: its query
            # (running since now, sources included) is stopped then, not when the handle expires.
            self._unread.add(handle, time.monotonic() + self._client_timeout, self._client_timeout)
        return handle, statement.schema

    def stream(
        self, handle: bytes, caller: CallerContext, client_gone: Callable[[], bool] | None = None
    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Take the statement of ``handle`` (single use) and stream its batches.

        With ``client_gone`` (the call's ``is_cancelled``), a client that disconnects while
        the query has nothing to send yet is noticed and its query cancelled, source queries
        included (:class:`StreamWatch`).
        """
        self._unread.discard(handle)  # asked for: the wait for its first read starts with its first batch
        with self._lock:
            try:
                statement = self._started.pop(handle)
            except NotFoundError:
                ended = self._ended.get(handle)
                if ended is None:
                    raise
                raise type(ended)(str(ended)) from None
            if statement.user != caller.user:
                statement.abandon()
                raise NotFoundError(f"[Flight SQL] unknown or expired {self._started.kind} handle")
            if statement.first is None:
                return statement.schema, iter(())
            run = Run(statement.first, statement.user, statement.session)
            self._running[handle] = run
        batches = self._batches(handle, statement, run, caller)
        if client_gone is not None:
            stop = functools.partial(run.cancel, QueryCancelledError(f"{CANCELLED}: {GONE}"))
            batches = self._watch.watched(batches, client_gone, stop)
        # Releases the query even if the stream is dropped before its first batch is pulled.
        weakref.finalize(batches, self._release_dropped, handle, run)
        return statement.schema, batches

    def cancel(self, handles: Iterable[bytes], caller: CallerContext) -> bool:
        """Cancel the caller's statements of ``handles``, started or streaming; whether any was."""
        found = False
        for handle in handles:
            found |= self._stop(handle, QueryCancelledError(CANCELLED), user=caller.user)
        return found

    def cancel_session(self, session: str) -> int:
        """Cancel every statement a session started (it was closed); how many there were."""
        with self._lock:
            handles = [handle for handle, run in self._running.items() if run.session == session]
        handles += [handle for handle, statement in self._started.items() if statement.session == session]
        reason = QueryCancelledError(f"{CANCELLED}: its session was closed")
        return sum(self._stop(handle, reason, any_user=True) for handle in handles)

    def active(self) -> int:
        """How many statements hold a query: started and not yet read, or streaming."""
        with self._lock:
            running = len(self._running)
        return running + len(self._started)

    def shutdown(self) -> None:
        """Stop every statement and the timeout thread (the server is going away)."""
        self._deadlines.close()
        self._unread.close()
        self._watch.close()
        with self._lock:
            running = list(self._running)
        for handle in running:
            self._stop(handle, QueryCancelledError(f"{CANCELLED}: the server is shutting down"), any_user=True)
        for handle, _statement in self._started.items():
            self._started.discard(handle)

    def _stop(
        self, handle: bytes, reason: QueryCancelledError, *, user: str | None = None, any_user: bool = False
    ) -> bool:
        """Stop the statement of ``handle`` for ``reason``: ``user``'s only, unless ``any_user``.

        The engine is asked to cancel outside the lock: that can take a round trip to a source.
        """
        with self._lock:
            run = self._running.get(handle)
            if run is not None:
                if not any_user and run.user != user:
                    return False
            else:
                try:
                    statement = self._started.get(handle)
                except NotFoundError:
                    return False
                if not any_user and statement.user != user:
                    return False
                self._started.pop(handle)
                self._ended[handle] = reason
        if run is not None:
            run.cancel(reason)  # the stream then ends with ``reason``
            # Released now, not when its handler next pulls a batch: that thread may sit in a
            # write to a client that has stopped reading, for as long as the client likes.
            self._release(handle, run, False)
        else:
            statement.abandon()
            self._deadlines.discard(handle)
            self._unread.discard(handle)
        return True

    def _time_out(self, handle: bytes, seconds: float) -> None:
        if self._stop(handle, QueryTimeoutError(timeout_message(seconds)), any_user=True):
            log.info("statement timeout (%g s): query cancelled", seconds)

    def _client_stalled(self, handle: bytes, seconds: float) -> None:
        if self._stop(handle, QueryCancelledError(stalled_message(seconds)), any_user=True):
            log.info("client timeout: its client read nothing for %g s; query cancelled", seconds)

    def _batches(
        self, handle: bytes, statement: Statement, run: Run, caller: CallerContext
    ) -> Iterator[pa.RecordBatch]:
        schema = statement.schema
        finished = False
        try:
            for parameters in [None, *statement.more]:
                if parameters is not None:
                    run.switch(self._execute(statement.query, caller, parameters, statement.deadline))
                result = run.result
                for batch in result:
                    out = batch if batch.schema.equals(schema) else _same_types(batch, schema)
                    if self._client_timeout is not None:  # from here gRPC writes it, as fast as the client reads
                        self._unread.add(handle, time.monotonic() + self._client_timeout, self._client_timeout)
                    yield out
                    if self._client_timeout is not None:
                        self._unread.discard(handle)
                if run.ended is not None:
                    break
                result.close()
            else:
                finished = True
        except Exception:
            timed_out = statement.timed_out()
            if run.ended is None and timed_out is not None:
                run.cancel(timed_out)  # the source's own timeout (or a read it interrupted) came first
            if run.ended is None:
                raise
        finally:
            self._release(handle, run, finished)
        # However the engine words (or does not word) a stopped query, say why it stopped.
        if not finished and run.ended is not None:
            raise run.error()

    def _execute(
        self, query: PreparedQuery, caller: CallerContext, parameters: pa.RecordBatch | None, deadline: float | None
    ) -> QueryResult:
        """Start one run of ``query``, its source queries bound to ``deadline``."""
        return self._engine.execute(query, caller, parameters, deadline=deadline)

    def _release_dropped(self, handle: bytes, run: Run) -> None:
        """Release a run whose stream was dropped unread, in a thread of its own: the garbage
        collector runs this wherever it runs, possibly in a thread that holds ``self._lock``."""
        if not run.released:
            threading.Thread(target=self._release, args=(handle, run, False), daemon=True).start()

    def _release(self, handle: bytes, run: Run, finished: bool) -> None:
        with self._lock:
            if self._running.get(handle) is run:
                del self._running[handle]
        self._deadlines.discard(handle)
        self._unread.discard(handle)
        run.release(finished)


_END = object()
GONE = "the client went away"


class StreamWatch:
    """Notices clients that go away while their query has nothing to send yet.

    pyarrow only learns that a client disconnected when it next writes a batch, so a query
    blocked at its source (a slow PostgreSQL query) would run on for nothing. A stream is
    registered while it waits for its next batch; one thread asks each waiting stream's
    ``client_gone()`` (the call context's ``is_cancelled``) every ``poll`` seconds and calls
    its ``stop()`` once. That is safe because the call cannot end while its stream is
    waiting inside :meth:`watched` (the handler thread is in there), and cheap: a stream
    that is not waiting costs nothing, and a waiting one two lock operations per batch.
    """

    def __init__(self, poll: float = 0.2) -> None:
        self._poll = poll
        self._waiting: dict[int, tuple[Callable[[], bool], Callable[[], None]]] = {}
        self._ids = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread sleeps until a stream waits
        self._closed = False

    def watched(
        self, batches: Iterator[pa.RecordBatch], client_gone: Callable[[], bool], stop: Callable[[], None]
    ) -> Iterator[pa.RecordBatch]:
        """``batches``, with ``stop()`` called if ``client_gone()`` while waiting for one."""
        key = next(self._ids)
        try:
            while True:
                with self._condition:
                    self._waiting[key] = (client_gone, stop)
                    self._wake()
                try:
                    batch = next(batches, _END)
                finally:
                    with self._condition:
                        self._waiting.pop(key, None)
                if batch is _END:
                    return
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _wake(self) -> None:
        if self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="meshgate-stream-watch", daemon=True)
            self._thread.start()
        elif self._idle:
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._closed and not self._waiting:
                    self._idle = True
                    self._condition.wait()
                    self._idle = False
                if self._closed:
                    return
                gone = [key for key, (client_gone, _stop) in self._waiting.items() if client_gone()]
                stops = [self._waiting.pop(key)[1] for key in gone]
            for stop in stops:
                log.info("client went away: query cancelled")
                try:
                    stop()
                except Exception:
                    log.exception("cancelling the query of a client that went away failed")
            with self._condition:
                if not self._closed:
                    self._condition.wait(self._poll)


class Deadlines:
    """One thread that calls ``fire(handle, seconds)`` when a statement's deadline passes.

    Entries of statements that ended in time are discarded (and the heap compacted), so
    a long timeout under many short queries does not pile up entries.
    """

    def __init__(self, fire: Callable[[bytes, float], None], name: str = "meshgate-statement-timeouts") -> None:
        self._fire = fire
        self._name = name  # its thread's
        self._heap: list[tuple[float, int, bytes]] = []
        self._pending: dict[bytes, tuple[int, float]] = {}  # handle -> (entry id, timeout)
        self._ids = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, handle: bytes, deadline: float, seconds: float) -> None:
        with self._condition:
            if self._closed:
                return
            entry = next(self._ids)
            self._pending[handle] = (entry, seconds)
            sooner = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, entry, handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if sooner:  # else the thread wakes in time already (a stream re-arms its entry every batch)
                self._condition.notify()

    def discard(self, handle: bytes) -> None:
        with self._condition:
            if self._pending.pop(handle, None) is not None and len(self._heap) > 2 * len(self._pending) + 64:
                live = {entry for entry, _seconds in self._pending.values()}
                self._heap = [item for item in self._heap if item[1] in live]
                heapq.heapify(self._heap)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._condition.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                _deadline, entry, handle = heapq.heappop(self._heap)
                pending = self._pending.get(handle)
                if pending is None or pending[0] != entry:
                    continue  # ended in time (or re-armed)
                del self._pending[handle]
            # In a thread of its own: a cancel that blocks (a source that does not answer) must
            # not hold the other statements' timeouts.
            threading.Thread(target=self._fire_once, args=(handle, pending[1]), daemon=True).start()

    def _fire_once(self, handle: bytes, seconds: float) -> None:
        try:
            self._fire(handle, seconds)
        except Exception:  # logged: nobody else would see it
            log.exception("cancelling a statement at its timeout failed")
