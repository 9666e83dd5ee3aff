"""The Flight SQL server: translates Flight SQL RPCs into calls on a :class:`QueryEngine`.

It serves from construction on; ``serve()`` blocks until ``shutdown()``::

    server = FlightSqlServer(engine, "grpc://0.0.0.0:32010")
    server.serve()

Query results stream batch by batch from the engine to the client. Every handler is
wrapped by :func:`~gateway.flightsql.rpc.rpc` (result streams by ``guarded``), so any
failure reaches the client through ``gateway.errors.to_flight_error`` exactly once and
the server keeps serving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf.message import DecodeError, Message

from gateway.api import CallerContext, QueryEngine
from gateway.auth import Authenticator
from gateway.errors import InvalidRequestError, NotSupportedError
from gateway.flightsql import commands, metadata, xdbc
from gateway.flightsql import flight_pb2 as fpb
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.middleware import CALLER_MIDDLEWARE, CallerMiddlewareFactory, HeaderHandshake, caller_context
from gateway.flightsql.rpc import guarded, rpc
from gateway.flightsql.session import SESSION_MIDDLEWARE, SessionMiddlewareFactory, Sessions
from gateway.flightsql.sql_info import (
    MESHGATE_STATEMENT_TIMEOUT,
    SQL_INFO_SCHEMA,
    milliseconds,
    server_info,
    sql_info_table,
)
from gateway.flightsql.statements import Statements

READ_ONLY = "[Meshgate] the gateway is read-only"
CANCEL_WAIT = 2.0  # seconds the calls get to end once their statements are cancelled at shutdown

ACTIONS = {
    "CreatePreparedStatement": "Plan a SQL query; answers a handle and the result and parameter schemas.",
    "ClosePreparedStatement": "Release a prepared statement.",
    "CancelQuery": "Cancel a running query given its FlightInfo (Flight SQL, deprecated).",
    "CancelFlightInfo": "Cancel the query behind a FlightInfo, including its source queries.",
    "SetSessionOptions": "Set session options (catalog, schema, statement_timeout); starts a session.",
    "GetSessionOptions": "The session options in force.",
    "CloseSession": "End the session, cancelling the queries it still runs.",
}
_UNSUPPORTED_ACTIONS = {
    "CreatePreparedSubstraitPlan": "[Meshgate] Substrait plans are not supported; send SQL",
    "BeginTransaction": f"{READ_ONLY}: transactions are not supported",
    "EndTransaction": f"{READ_ONLY}: transactions are not supported",
    "BeginSavepoint": f"{READ_ONLY}: savepoints are not supported",
    "EndSavepoint": f"{READ_ONLY}: savepoints are not supported",
}
_SESSION_ACTIONS = ("SetSessionOptions", "GetSessionOptions", "CloseSession")
_WRITE_COMMANDS = (
    pb.CommandStatementUpdate,
    pb.CommandPreparedStatementUpdate,
    pb.CommandStatementIngest,
    pb.CommandStatementSubstraitPlan,
)


class FlightSqlServer(flight.FlightServerBase):  # type: ignore[misc]
    """A read-only Arrow Flight SQL endpoint in front of a :class:`QueryEngine`.

    Args:
        engine: plans and runs the queries, and lists domains and data products.
        location: where to listen, e.g. ``"grpc://0.0.0.0:32010"`` (port 0 picks a free
            port; read it back from :attr:`port`).
        statement_ttl: seconds an unused statement or prepared statement handle lives.
        max_statements: most statements (and, separately, prepared statements) held.
        statement_timeout: seconds a query may run before it is cancelled (its source
            queries too); None for no limit. A session's ``statement_timeout`` overrides it.
        client_timeout: seconds a query's stream may wait for its client to read before the
            query is cancelled (``gateway/flightsql/statements.py``); None for no limit.
        session_ttl: seconds an unused session lives.
        max_sessions: most sessions held.
        middleware: extra ``flight.ServerMiddlewareFactory`` objects by name.
        authenticator: when given, every call needs a bearer token got from a handshake
            with basic credentials (``gateway/flightsql/middleware.py``); ``None`` serves
            anonymously (the CLI only allows that for ``--demo --no-auth``).
        flight_options: passed on to ``flight.FlightServerBase``: TLS (``tls_certificates``,
            ``verify_client``, ``root_certificates``, with a ``grpc+tls://`` location), or
            another auth handler.
    """

    def __init__(
        self,
        engine: QueryEngine,
        location: str | flight.Location = "grpc://127.0.0.1:0",
        *,
        statement_ttl: float = 300.0,
        max_statements: int = 10_000,
        statement_timeout: float | None = None,
        client_timeout: float | None = None,
        session_ttl: float = 3600.0,
        max_sessions: int = 10_000,
        middleware: Mapping[str, flight.ServerMiddlewareFactory] | None = None,
        authenticator: Authenticator | None = None,
        actions: Mapping[str, Callable[[CallerContext, bytes], bytes]] | None = None,
        **flight_options: Any,
    ) -> None:
        # State first: the base class starts serving as soon as it is initialised.
        self._engine = engine
        self._actions = dict(actions or {})  # gateway actions beyond Flight SQL (e.g. applying a domain)
        self._statements = Statements(engine, ttl=statement_ttl, maxsize=max_statements, client_timeout=client_timeout)
        self._sessions = Sessions(engine, statement_timeout=statement_timeout, ttl=session_ttl, maxsize=max_sessions)
        self._sql_info = server_info(handle_ttl=statement_ttl, statement_timeout=statement_timeout)
        factories = {
            CALLER_MIDDLEWARE: CallerMiddlewareFactory(authenticator),
            SESSION_MIDDLEWARE: SessionMiddlewareFactory(),
            **(middleware or {}),
        }
        if authenticator is not None:
            flight_options.setdefault("auth_handler", HeaderHandshake())
        super().__init__(location, middleware=factories, **flight_options)

    @rpc
    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        command = _command(descriptor)
        caller = self._caller(context)
        if isinstance(command, pb.CommandStatementQuery):
            _no_transaction(command)
            query = self._engine.prepare(command.query, caller)
            handle, schema = self._start(context, caller, query, None)
        elif isinstance(command, pb.CommandPreparedStatementQuery):
            prepared = self._statements.prepared(command.prepared_statement_handle, caller)
            handle, schema = self._start(context, caller, prepared.query, prepared.parameters)
        else:
            return _flight_info(descriptor, _metadata_schema(command), descriptor.command)
        return _flight_info(descriptor, schema, commands.pack(pb.TicketStatementQuery(statement_handle=handle)))

    @rpc
    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        command = _command(descriptor)
        caller = self._caller(context)
        if isinstance(command, pb.CommandStatementQuery):
            _no_transaction(command)
            schema = self._engine.prepare(command.query, caller).schema
        elif isinstance(command, pb.CommandPreparedStatementQuery):
            schema = self._statements.prepared(command.prepared_statement_handle, caller).query.schema
        else:
            schema = _metadata_schema(command)
        return flight.SchemaResult(schema)

    @rpc
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        command = commands.unpack(ticket.ticket)
        caller = self._caller(context)
        if isinstance(command, pb.TicketStatementQuery):
            schema, batches = self._statements.stream(command.statement_handle, caller, context.is_cancelled)
            return flight.GeneratorStream(schema, guarded(batches))
        return flight.RecordBatchStream(self._metadata_table(context, command, caller))

    @rpc
    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        command = _command(descriptor)
        caller = self._caller(context)
        if isinstance(command, pb.CommandPreparedStatementQuery):
            handle = command.prepared_statement_handle
            self._statements.bind(handle, caller, _parameter_batches(reader))
            answer = pb.DoPutPreparedStatementResult(prepared_statement_handle=handle)
            writer.write(pa.py_buffer(answer.SerializeToString()))
        elif isinstance(command, _WRITE_COMMANDS):
            raise NotSupportedError(f"{READ_ONLY}: {_name(command)} is not accepted")
        else:
            raise NotSupportedError(f"[Flight SQL] {_name(command)} cannot be sent with DoPut")

    @rpc
    def do_action(self, context: Any, action: flight.Action) -> list[flight.Result]:
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
        if kind in _SESSION_ACTIONS:
            return [flight.Result(self._session_action(context, kind, body).SerializeToString())]
        caller = self._caller(context)
        if kind == "CreatePreparedStatement":
            request = _expect(commands.unpack(body), pb.ActionCreatePreparedStatementRequest)
            _no_transaction(request)
            handle, query = self._statements.prepare(request.query, caller)
            parameters = query.parameter_schema
            result = pb.ActionCreatePreparedStatementResult(
                prepared_statement_handle=handle,
                dataset_schema=query.schema.serialize().to_pybytes(),
                parameter_schema=parameters.serialize().to_pybytes() if len(parameters) else b"",
            )
            return [flight.Result(commands.pack(result))]
        if kind == "ClosePreparedStatement":
            close = _expect(commands.unpack(body), pb.ActionClosePreparedStatementRequest)
            self._statements.close(close.prepared_statement_handle, caller)
            return []
        if kind == "CancelQuery":
            cancel = _expect(commands.unpack(body), pb.ActionCancelQueryRequest)
            cancelled = self._cancel(_flight_message(cancel.info, fpb.FlightInfo), caller)
            answer = pb.ActionCancelQueryResult(
                result=pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
                if cancelled
                else pb.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE
            )
            return [flight.Result(commands.pack(answer))]
        if kind == "CancelFlightInfo":
            cancel_info = _flight_message(body, fpb.CancelFlightInfoRequest).info
            cancelled = self._cancel(cancel_info, caller)
            status = fpb.CANCEL_STATUS_CANCELLED if cancelled else fpb.CANCEL_STATUS_NOT_CANCELLABLE
            return [flight.Result(fpb.CancelFlightInfoResult(status=status).SerializeToString())]
        if kind in self._actions:
            return [flight.Result(self._actions[kind](caller, body))]
        if kind in _UNSUPPORTED_ACTIONS:
            raise NotSupportedError(_UNSUPPORTED_ACTIONS[kind])
        raise NotSupportedError(f"[Flight SQL] unknown action '{commands.shown(kind)}'")

    def list_actions(self, context: Any) -> list[flight.ActionType]:
        return [flight.ActionType(kind, description) for kind, description in ACTIONS.items()]

    @rpc
    def list_flights(self, context: Any, criteria: bytes) -> list[flight.FlightInfo]:
        raise NotSupportedError("[Flight SQL] ListFlights is not supported: list tables with CommandGetTables")

    @rpc
    def do_exchange(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        raise NotSupportedError("[Flight SQL] DoExchange is not supported")

    def shutdown(self, grace: float | None = None) -> bool:
        """Stop serving, then release every statement; whether every call in progress ended.

        New calls are refused at once. Without ``grace``, the calls in progress are waited
        for however long they take. With ``grace`` (seconds), they may run that long; then
        the statements still streaming are cancelled (their clients read that the server is
        shutting down) and the calls get :data:`CANCEL_WAIT` seconds more. A call left after
        that writes to a client that reads no more, and gRPC cannot be told from Python to
        drop it: the answer is False, and the caller ends the process (``meshgate serve`` does).
        """
        stopping = threading.Thread(target=super().shutdown, name="meshgate-shutdown", daemon=True)
        stopping.start()
        stopping.join(grace)
        self._statements.shutdown()  # the statements still streaming end with "the server is shutting down"
        stopping.join(CANCEL_WAIT)
        return not stopping.is_alive()

    def _caller(self, context: Any) -> CallerContext:
        """The caller of this call, with its session's default catalog and schema."""
        return self._sessions.caller(context, caller_context(context))

    def _start(
        self, context: Any, caller: CallerContext, query: Any, parameters: list[pa.RecordBatch] | None
    ) -> tuple[bytes, pa.Schema]:
        """Start a statement under the statement timeout in force, owned by the call's session."""
        session = self._sessions.current(context, caller)
        return self._statements.start(
            query,
            caller,
            parameters,
            timeout=self._sessions.statement_timeout(context, caller),
            session=session[0] if session is not None else None,
        )

    def _session_action(self, context: Any, kind: str, body: bytes) -> Message:
        caller = caller_context(context)
        if kind == "SetSessionOptions":
            return self._sessions.set_options(context, caller, _flight_message(body, fpb.SetSessionOptionsRequest))
        if kind == "GetSessionOptions":
            _flight_message(body, fpb.GetSessionOptionsRequest)
            return self._sessions.get_options(context, caller)
        _flight_message(body, fpb.CloseSessionRequest)
        session_id, result = self._sessions.close(context, caller)
        self._statements.cancel_session(session_id)
        return result

    def _cancel(self, info: fpb.FlightInfo, caller: CallerContext) -> bool:
        """Cancel the caller's statements behind ``info``; False when none is running
        (unknown, finished, someone else's, or a metadata ticket: nothing to cancel)."""
        handles = []
        for endpoint in info.endpoint:
            try:
                ticket = commands.unpack(endpoint.ticket.ticket)
            except (NotSupportedError, InvalidRequestError):
                continue  # not one of ours
            if isinstance(ticket, pb.TicketStatementQuery):
                handles.append(ticket.statement_handle)
        return self._statements.cancel(handles, caller)

    def _metadata_table(self, context: Any, command: Message, caller: CallerContext) -> pa.Table:
        engine = self._engine
        match command:
            case pb.CommandGetSqlInfo():
                timeout = milliseconds(self._sessions.statement_timeout(context, caller))
                return sql_info_table({**self._sql_info, MESHGATE_STATEMENT_TIMEOUT: timeout}, command.info)
            case pb.CommandGetXdbcTypeInfo():
                wanted = command.data_type if command.HasField("data_type") else None
                return metadata.xdbc_type_info(xdbc.TYPES, wanted)
            case pb.CommandGetCatalogs():
                return metadata.catalogs(engine.catalog_name, engine.domains(caller))
            case pb.CommandGetDbSchemas():
                return metadata.db_schemas(command, engine.domains(caller))
            case pb.CommandGetTables():
                return metadata.tables(command, engine.products(caller))
            case pb.CommandGetTableTypes():
                return metadata.table_types(engine.products(caller))
            case pb.CommandGetPrimaryKeys():
                return metadata.primary_keys(command, engine.products(caller))
            case _:  # foreign keys: data products declare none
                return metadata.empty(_metadata_schema(command))


def _metadata_schema(command: Message) -> pa.Schema:
    """The fixed result schema of a metadata command (NotSupportedError for anything else)."""
    match command:
        case pb.CommandGetSqlInfo():
            return SQL_INFO_SCHEMA
        case pb.CommandGetXdbcTypeInfo():
            return metadata.XDBC_TYPE_INFO_SCHEMA
        case pb.CommandGetCatalogs():
            return metadata.CATALOGS_SCHEMA
        case pb.CommandGetDbSchemas():
            return metadata.DB_SCHEMAS_SCHEMA
        case pb.CommandGetTables():
            return metadata.TABLES_WITH_SCHEMA_SCHEMA if command.include_schema else metadata.TABLES_SCHEMA
        case pb.CommandGetTableTypes():
            return metadata.TABLE_TYPES_SCHEMA
        case pb.CommandGetPrimaryKeys():
            return metadata.PRIMARY_KEYS_SCHEMA
        case pb.CommandGetExportedKeys() | pb.CommandGetImportedKeys() | pb.CommandGetCrossReference():
            return metadata.FOREIGN_KEYS_SCHEMA
        case _ if isinstance(command, _WRITE_COMMANDS):
            raise NotSupportedError(f"{READ_ONLY}: {_name(command)} is not accepted")
        case _:
            raise NotSupportedError(f"[Flight SQL] {_name(command)} cannot be used to query data")


def _command(descriptor: flight.FlightDescriptor) -> Message:
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise NotSupportedError("[Flight SQL] only command descriptors are supported, not paths")
    return commands.unpack(descriptor.command)


def _flight_info(descriptor: flight.FlightDescriptor, schema: pa.Schema, ticket: bytes) -> flight.FlightInfo:
    return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(ticket, [])], -1, -1)


M = TypeVar("M", bound=Message)


def _expect(message: Message, cls: type[M]) -> M:
    if not isinstance(message, cls):
        raise InvalidRequestError(f"[Flight SQL] expected {cls.DESCRIPTOR.name}, got {_name(message)}")
    return message


def _flight_message(body: bytes, cls: type[M]) -> M:
    """A Flight (not Flight SQL) action message: plain serialized protobuf, no ``Any``."""
    try:
        return cls.FromString(body)
    except DecodeError:
        raise InvalidRequestError(
            f"[Flight] malformed {cls.DESCRIPTOR.name}: the action body does not decode as one"
        ) from None


def _parameter_batches(reader: flight.MetadataRecordBatchReader) -> list[pa.RecordBatch]:
    """The parameter rows a DoPut sends (checked by ``Statements.bind``)."""
    try:
        return list(reader.read_all().to_batches())
    except flight.FlightError:
        raise
    except pa.ArrowException as error:
        raise InvalidRequestError(f"[Flight SQL] the parameters sent with DoPut cannot be read: {error}") from None


def _no_transaction(request: pb.CommandStatementQuery | pb.ActionCreatePreparedStatementRequest) -> None:
    if request.HasField("transaction_id"):
        raise NotSupportedError(f"{READ_ONLY}: transactions are not supported")


def _name(message: Message) -> str:
    return str(message.DESCRIPTOR.name)
