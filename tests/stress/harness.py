"""Send a case to a gateway subprocess and judge the answer.

Every answer must be a result or a clean Flight error: a known status, no traceback, file
path or Python exception class name (``tests/support/errors.py``), and an INTERNAL error
only with the reference the gateway gives unexpected failures. A dropped connection, a
client-side deadline (the gateway's own statement timeout is shorter), or the process
dying are failures of their own kinds. The process is polled after every case, so a
crash is pinned on the case that caused it (or one sent just before it, while the
process was still dying); every ``check_every`` cases a fresh client must get ``SELECT 1``.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import pickle
import re
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import Message

from gateway.flightsql import commands
from gateway.flightsql import flight_sql_pb2 as pb
from tests.stress.cases import Case, ParameterCase, ProtocolCase, SqlCase, describe
from tests.stress.mesh import StressGateway
from tests.support.errors import assert_clean

CALL_TIMEOUT = 60.0
"""Seconds a client waits for one call; the gateway's statement timeout (10 s) is much shorter."""

_STATUS_OF_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
    (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
    (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
    (flight.FlightCancelledError, "CANCELLED"),
    (flight.FlightUnavailableError, "UNAVAILABLE"),
    (flight.FlightInternalError, "INTERNAL"),
    (flight.FlightServerError, "UNKNOWN"),
)
_STATUS_OF_DETAIL = {
    "Failed": "UNKNOWN",
    "Internal": "INTERNAL",
    "Unavailable": "UNAVAILABLE",
    "Unauthorized": "PERMISSION_DENIED",
    "Unauthenticated": "UNAUTHENTICATED",
    "TimedOut": "DEADLINE_EXCEEDED",
    "Cancelled": "CANCELLED",
}
_REFERENCE = re.compile(r"internal error \(reference [0-9a-f]{12}\)")
# What pyarrow writes for statuses that have no FlightError class (INVALID_ARGUMENT,
# UNIMPLEMENTED, NOT_FOUND, RESOURCE_EXHAUSTED ...): "Flight returned <words> error, with message: ..."
_OTHER_STATUS = re.compile(r"(?:Flight|gRPC) returned ([a-z ]+?) error, with message")


@dataclass(frozen=True)
class Outcome:
    """What one case got.

    ``verdict``: ``result``; ``error`` (a clean Flight error); ``unclean`` (an error that
    leaks or is not a clean status); ``crash`` (the process died); ``hang`` (no answer
    within :data:`CALL_TIMEOUT`); ``unresponsive`` (alive but not answering ``SELECT 1``).
    """

    verdict: str
    status: str = "OK"
    message: str = ""
    why: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict not in ("result", "error")


@dataclass
class Failure:
    number: int
    case: Case | None
    outcome: Outcome
    log: str = ""

    @property
    def signature(self) -> str:
        """What kind of failure, where: failures with one signature are one finding."""
        outcome, case = self.outcome, self.case
        why = outcome.why
        if " leaks in " in why:
            site = re.search(r" \[from [\w.]+\]$", why)
            why = why.split(" leaks in ")[0] + " leaks" + (site.group() if site else "")
        if isinstance(case, SqlCase):
            where = f"SQL as {case.path}"
        elif isinstance(case, ParameterCase):
            where = "parameters"
        elif isinstance(case, ProtocolCase):
            where = f"{case.rpc}" + (f" {case.action}" if case.action else "")
        else:
            where = "liveness check"
        return f"{outcome.verdict} {outcome.status}: {why} ({where})"


@dataclass
class Stats:
    """Counts of a run and its failures (with the cases and the gateway's log tail)."""

    inputs: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    slowest: list[tuple[float, int, Case]] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    internal: list[tuple[Case, Outcome]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    checks: int = 0
    restarts: int = 0

    @property
    def total(self) -> int:
        return sum(self.inputs.values())

    def timed(self, kind: str, seconds: float, case: Case, keep: int = 8) -> None:
        """Add one answer's time; the ``keep`` slowest cases are kept."""
        self.seconds[kind] += seconds
        heapq.heappush(self.slowest, (seconds, self.total, case))
        if len(self.slowest) > keep:
            heapq.heappop(self.slowest)

    def count(self, verdict: str) -> int:
        return sum(1 for f in self.failures if f.outcome.verdict == verdict)


def judge(error: BaseException, alive: bool) -> Outcome:
    """The verdict on an exception a Flight call raised (``alive``: the gateway process after it)."""
    message = str(error)
    server_part = message.split(". gRPC client debug context:")[0]
    shown = server_part[:600]
    if not alive:
        return Outcome("crash", _status(error), shown, "the gateway process died")
    status = _status(error)
    if status == "CLIENT":
        return Outcome("unclean", status, shown, f"not a Flight status: {type(error).__name__}")
    try:
        assert_clean(message)
    except AssertionError as leak:
        site = re.search(r"in (pyarrow\._flight\._\w+)", message)  # the pyarrow callback that let it through
        return Outcome("unclean", status, shown, str(leak)[:300] + (f" [from {site.group(1)}]" if site else ""))
    if status == "INTERNAL" and not _REFERENCE.search(server_part):
        return Outcome("unclean", status, shown, "INTERNAL without a reference")
    if _dropped(error):
        # The gateway's UNAVAILABLE (a source that cannot be reached) carries pyarrow's status
        # detail; the client's own (connection refused, reset, closed) does not.
        return Outcome("unclean", status, shown, "UNAVAILABLE that is not the gateway's: a dropped connection")
    if "metadata size exceeds" in server_part:
        return Outcome(
            "unclean", status, shown, "the error did not reach the client: its message is over gRPC's metadata limit"
        )
    if status == "DEADLINE_EXCEEDED" and "[Meshgate] statement timeout" not in server_part:
        return Outcome("hang", status, shown, f"no answer within {CALL_TIMEOUT:g} s")
    return Outcome("error", status, shown)


def _status(error: BaseException) -> str:
    """The gRPC status behind ``error``, or ``CLIENT`` for an error the client made up.

    pyarrow's client maps statuses to ``FlightError`` classes for most calls but not for
    ``get_schema``, which raises a plain ``ArrowException`` (UNKNOWN: ``Unknown error: ...``)
    or ``OSError`` with the status detail (``... Detail: Unauthenticated``): those are
    read back from the message.
    """
    for cls, status in _STATUS_OF_CLASS:
        if type(error) is cls:
            return status
    message = str(error).split(". gRPC client debug context:")[0]
    found = _OTHER_STATUS.search(message)
    if found:
        return found.group(1).upper().replace(" ", "_")
    detail = re.search(r"\. Detail: (\w+)$", message)
    if detail and detail.group(1) in _STATUS_OF_DETAIL:
        return _STATUS_OF_DETAIL[detail.group(1)]
    if message.startswith("Unknown error: "):
        return "UNKNOWN"
    return "CLIENT"


def _dropped(error: BaseException) -> bool:
    """An UNAVAILABLE from the client's side (a connection lost), not the gateway's own."""
    server_part = str(error).split(". gRPC client debug context:")[0]
    return _status(error) == "UNAVAILABLE" and not server_part.endswith(". Detail: Unavailable")


def descriptor(command: Message | bytes) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(command if isinstance(command, bytes) else commands.pack(command))


def drain(reader: Any) -> int:
    """Read a stream to its end with ``read_chunk`` (``read_all`` turns CANCELLED into a Ctrl-C); rows read."""
    rows = 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return rows
        if chunk.data is not None:
            rows += chunk.data.num_rows


class Target:
    """A gateway subprocess and logged-in raw Flight clients (alice: a governed analyst; root: the admin)."""

    USERS = ("alice", "root")

    def __init__(self, config: Path, *, statement_timeout: float = 10.0) -> None:
        self.config = config
        self.statement_timeout = statement_timeout
        self.gateway: StressGateway
        self.clients: dict[str, flight.FlightClient] = {}
        self.headers: dict[str, tuple[bytes, bytes]] = {}
        self.start()

    def start(self) -> None:
        self.gateway = StressGateway(self.config, statement_timeout=self.statement_timeout)
        for user in self.USERS:
            client = flight.connect(self.gateway.uri)
            self.headers[user] = client.authenticate_basic_token(user, self.gateway.login(user).password)
            self.clients[user] = client

    def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()
        if self.gateway.alive():
            self.gateway.stop()

    def restart(self) -> None:
        self.close()
        self.start()

    def options(self, user: str, auth: str = "token") -> flight.FlightCallOptions:
        if auth == "token":
            headers = [self.headers[user]]
        elif auth == "none":
            headers = []
        else:
            scheme, _, text = auth.partition(":")
            headers = [(b"authorization", f"{scheme.capitalize()} {text}".encode())]
        return flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=headers)

    # -- sending --------------------------------------------------------------------------
    def send(self, case: Case) -> Outcome:
        """Send ``case``; its outcome (the first unclean or failed step wins over clean ones)."""
        outcomes: list[Outcome] = []
        for step in self._steps(case):
            if any(o.verdict != "result" for o in outcomes) and not isinstance(step, _Cleanup):
                continue  # after a failed step only clean-ups run
            outcomes.append(self._attempt(step))
        if not self.gateway.alive():
            return Outcome("crash", "", "", f"the gateway process died ({self.gateway.death()})")
        failed = [o for o in outcomes if o.failed]
        if failed:
            return failed[0]
        errors = [o for o in outcomes if o.verdict == "error"]
        return errors[0] if errors else Outcome("result")

    def _attempt(self, step: Callable[[], object]) -> Outcome:
        try:
            step()
        except Exception as error:  # pyarrow raises FlightError classes, ArrowException and OSError
            if _dropped(error):  # a dying process drops its connections first: give it time to die
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.gateway.process.wait(timeout=3)
            return judge(error, self.gateway.alive())
        return Outcome("result")

    def _steps(self, case: Case) -> Iterator[Callable[[], object]]:
        if isinstance(case, SqlCase):
            yield from self._sql_steps(case)
        elif isinstance(case, ParameterCase):
            yield from self._parameter_steps(case)
        else:
            yield self._protocol_step(case)

    def _sql_steps(self, case: SqlCase) -> Iterator[Callable[[], object]]:
        client, options = self.clients[case.user], self.options(case.user)
        if case.path == "statement":
            yield lambda: self._statement(client, pb.CommandStatementQuery(query=case.sql), options)
        elif case.path == "schema":
            yield lambda: client.get_schema(descriptor(pb.CommandStatementQuery(query=case.sql)), options)
        else:
            handle: list[bytes] = []
            yield lambda: handle.append(self._prepare(client, case.sql, options))
            if handle:
                query = pb.CommandPreparedStatementQuery(prepared_statement_handle=handle[0])
                yield lambda: self._statement(client, query, options)
                yield _Cleanup(lambda: self._close(client, handle[0], options))

    def _parameter_steps(self, case: ParameterCase) -> Iterator[Callable[[], object]]:
        client, options = self.clients[case.user], self.options(case.user)
        handle: list[bytes] = []
        yield lambda: handle.append(self._prepare(client, case.sql, options))
        if not handle:
            return
        prepared = pb.CommandPreparedStatementQuery(prepared_statement_handle=handle[0])
        put_to = pb.CommandPreparedStatementQuery(prepared_statement_handle=case.handle or handle[0])
        yield lambda: self._bind(client, put_to, case.schema, case.batches, options)
        if case.then in ("execute", "bind-again", "close"):
            if case.then == "bind-again":
                yield lambda: self._bind(client, put_to, case.schema, case.batches, options)
            if case.then == "close":
                yield lambda: self._close(client, handle[0], options)
            yield lambda: self._statement(client, prepared, options)
        elif case.then == "schema":
            yield lambda: client.get_schema(descriptor(prepared), options)
        if case.then != "close":
            yield _Cleanup(lambda: self._close(client, handle[0], options))

    def _protocol_step(self, case: ProtocolCase) -> Callable[[], object]:
        client = self.clients["alice"]
        options = self.options("alice", case.auth)
        payload = case.payload
        if case.rpc == "get_flight_info":
            return lambda: self._drain_info(client, client.get_flight_info(descriptor(payload), options), options)
        if case.rpc == "get_schema":
            return lambda: client.get_schema(descriptor(payload), options)
        if case.rpc == "do_get":
            return lambda: drain(client.do_get(flight.Ticket(payload), options))
        if case.rpc == "do_action":
            return lambda: list(client.do_action(flight.Action(case.action, payload), options))
        if case.rpc == "do_put":
            batch = pa.record_batch([pa.array([1, None, 3], pa.int64())], names=["$1"])
            return lambda: self._put(client, descriptor(payload), batch.schema, (batch,), options)
        if case.rpc == "list_flights":
            return lambda: list(client.list_flights(payload, options))
        if case.rpc == "do_exchange":
            return lambda: self._exchange(client, descriptor(payload), options)
        if case.rpc == "path":
            return lambda: client.get_flight_info(flight.FlightDescriptor.for_path(*case.path), options)
        if case.rpc == "handshake":
            password = payload.decode()
            return lambda: client.authenticate_basic_token(case.user, password, self.options("alice", "none"))
        raise AssertionError(f"unknown rpc {case.rpc}")

    # -- Flight SQL calls -------------------------------------------------------------------
    @staticmethod
    def _statement(client: flight.FlightClient, command: Message, options: flight.FlightCallOptions) -> int:
        info = client.get_flight_info(descriptor(command), options)
        return sum(drain(client.do_get(endpoint.ticket, options)) for endpoint in info.endpoints)

    @staticmethod
    def _drain_info(client: flight.FlightClient, info: flight.FlightInfo, options: flight.FlightCallOptions) -> int:
        return sum(drain(client.do_get(endpoint.ticket, options)) for endpoint in info.endpoints)

    @staticmethod
    def _prepare(client: flight.FlightClient, sql: str, options: flight.FlightCallOptions) -> bytes:
        request = pb.ActionCreatePreparedStatementRequest(query=sql)
        results = list(client.do_action(flight.Action("CreatePreparedStatement", commands.pack(request)), options))
        answer = pb.ActionCreatePreparedStatementResult()
        any_pb2.Any.FromString(results[0].body.to_pybytes()).Unpack(answer)
        return bytes(answer.prepared_statement_handle)

    @staticmethod
    def _close(client: flight.FlightClient, handle: bytes, options: flight.FlightCallOptions) -> None:
        request = pb.ActionClosePreparedStatementRequest(prepared_statement_handle=handle)
        list(client.do_action(flight.Action("ClosePreparedStatement", commands.pack(request)), options))

    @staticmethod
    def _bind(
        client: flight.FlightClient,
        command: Message,
        schema: pa.Schema,
        batches: tuple[pa.RecordBatch, ...],
        options: flight.FlightCallOptions,
    ) -> None:
        Target._put(client, descriptor(command), schema, batches, options)

    @staticmethod
    def _put(
        client: flight.FlightClient,
        where: flight.FlightDescriptor,
        schema: pa.Schema,
        batches: tuple[pa.RecordBatch, ...],
        options: flight.FlightCallOptions,
    ) -> None:
        writer, reader = client.do_put(where, schema, options)
        with writer:
            for batch in batches:
                writer.write_batch(batch)
            writer.done_writing()
            reader.read()

    @staticmethod
    def _exchange(
        client: flight.FlightClient, where: flight.FlightDescriptor, options: flight.FlightCallOptions
    ) -> None:
        writer, reader = client.do_exchange(where, options)
        with writer:
            writer.begin(pa.schema([("x", pa.int64())]))
            writer.write_batch(pa.record_batch([pa.array([1])], names=["x"]))
            writer.done_writing()
            drain(reader)

    # -- liveness ---------------------------------------------------------------------------
    def probe(self) -> Outcome:
        """The process is alive and a fresh client gets ``SELECT 1``."""
        if not self.gateway.alive():
            return Outcome("crash", "", "", f"the gateway process died ({self.gateway.death()})")
        try:
            with flight.connect(self.gateway.uri) as client:
                options = flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=[self.headers["alice"]])
                info = client.get_flight_info(descriptor(pb.CommandStatementQuery(query="SELECT 1 AS one")), options)
                table = client.do_get(info.endpoints[0].ticket, options).read_all()
            if table.to_pylist() != [{"one": 1}]:
                return Outcome("unresponsive", "OK", str(table.to_pylist())[:200], "SELECT 1 answered wrongly")
        except Exception as error:
            alive = self.gateway.alive()
            return Outcome(
                "crash" if not alive else "unresponsive", _status(error), str(error)[:600], "SELECT 1 failed"
            )
        return Outcome("result")


class _Cleanup:
    """A step that runs even after an earlier step failed (closing a prepared statement)."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call

    def __call__(self) -> object:
        return self.call()


def save_failure(directory: Path, failure: Failure) -> Path:
    """Write a failure's case (pickle, for ``--replay``) and its description and log tail (text)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{failure.number:06d}-{failure.outcome.verdict}-{os.getpid()}"
    if failure.case is not None:
        stem.with_suffix(".pickle").write_bytes(pickle.dumps(failure.case))
    text = [
        f"input #{failure.number}: {failure.outcome.verdict} ({failure.outcome.status}) {failure.outcome.why}",
        f"message: {failure.outcome.message}",
        describe(failure.case) if failure.case is not None else "(no case: a liveness check)",
        "",
        "gateway log (tail):",
        failure.log,
    ]
    stem.with_suffix(".txt").write_text("\n".join(text))
    return stem


def load_case(path: Path) -> Case:
    case: Case = pickle.loads(path.read_bytes())
    return case


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
