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

from collections.abc import Mapping
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf.message import Message

from gateway.api import CallerContext, QueryEngine
from gateway.errors import NotFoundError, NotSupportedError
from gateway.flightsql import commands, metadata, xdbc
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.middleware import CALLER_MIDDLEWARE, CallerMiddlewareFactory, caller_context
from gateway.flightsql.rpc import guarded, rpc
from gateway.flightsql.sql_info import SQL_INFO_SCHEMA, server_info, sql_info_table
from gateway.flightsql.statements import Statements

READ_ONLY = "[Meshgate] the gateway is read-only"

ACTIONS = {
    "CreatePreparedStatement": "Plan a SQL query; answers a handle and the result and parameter schemas.",
    "ClosePreparedStatement": "Release a prepared statement.",
    "CancelQuery": "Cancel a running query given its FlightInfo.",
}
_UNSUPPORTED_ACTIONS = {
    "CreatePreparedSubstraitPlan": "[Meshgate] Substrait plans are not supported; send SQL",
    "SetSessionOptions": "[Meshgate] session options are not supported",
    "GetSessionOptions": "[Meshgate] session options are not supported",
    "CloseSession": "[Meshgate] sessions are not supported",
    "BeginTransaction": f"{READ_ONLY}: transactions are not supported",
    "EndTransaction": f"{READ_ONLY}: transactions are not supported",
    "BeginSavepoint": f"{READ_ONLY}: savepoints are not supported",
    "EndSavepoint": f"{READ_ONLY}: savepoints are not supported",
}
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
        middleware: extra ``flight.ServerMiddlewareFactory`` objects by name.
        flight_options: passed on to ``flight.FlightServerBase`` (TLS, auth handler).
    """

    def __init__(
        self,
        engine: QueryEngine,
        location: str | flight.Location = "grpc://127.0.0.1:0",
        *,
        statement_ttl: float = 300.0,
        max_statements: int = 10_000,
        middleware: Mapping[str, flight.ServerMiddlewareFactory] | None = None,
        **flight_options: Any,
    ) -> None:
        # State first: the base class starts serving as soon as it is initialised.
        self._engine = engine
        self._statements = Statements(engine, ttl=statement_ttl, maxsize=max_statements)
        self._sql_info = server_info(statement_timeout_ms=int(statement_ttl * 1000))
        factories = {CALLER_MIDDLEWARE: CallerMiddlewareFactory(), **(middleware or {})}
        super().__init__(location, middleware=factories, **flight_options)

    @rpc
    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        command = _command(descriptor)
        caller = caller_context(context)
        if isinstance(command, pb.CommandStatementQuery):
            _no_transaction(command)
            query = self._engine.prepare(command.query, caller)
            handle, schema = self._statements.start(query, caller, None)
        elif isinstance(command, pb.CommandPreparedStatementQuery):
            prepared = self._statements.prepared(command.prepared_statement_handle, caller)
            handle, schema = self._statements.start(prepared.query, caller, prepared.parameters)
        else:
            return _flight_info(descriptor, _metadata_schema(command), descriptor.command)
        return _flight_info(descriptor, schema, commands.pack(pb.TicketStatementQuery(statement_handle=handle)))

    @rpc
    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        command = _command(descriptor)
        caller = caller_context(context)
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
        caller = caller_context(context)
        if isinstance(command, pb.TicketStatementQuery):
            schema, batches = self._statements.stream(command.statement_handle, caller)
            return flight.GeneratorStream(schema, guarded(batches))
        return flight.RecordBatchStream(self._metadata_table(command, caller))

    @rpc
    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        command = _command(descriptor)
        caller = caller_context(context)
        if isinstance(command, pb.CommandPreparedStatementQuery):
            handle = command.prepared_statement_handle
            self._statements.bind(handle, caller, reader.read_all().to_batches())
            answer = pb.DoPutPreparedStatementResult(prepared_statement_handle=handle)
            writer.write(pa.py_buffer(answer.SerializeToString()))
        elif isinstance(command, _WRITE_COMMANDS):
            raise NotSupportedError(f"{READ_ONLY}: {_name(command)} is not accepted")
        else:
            raise NotSupportedError(f"[Flight SQL] {_name(command)} cannot be sent with DoPut")

    @rpc
    def do_action(self, context: Any, action: flight.Action) -> list[flight.Result]:
        caller = caller_context(context)
        kind = action.type
        body = action.body.to_pybytes() if action.body is not None else b""
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
            return [flight.Result(commands.pack(self._cancel(cancel.info)))]
        if kind in _UNSUPPORTED_ACTIONS:
            raise NotSupportedError(_UNSUPPORTED_ACTIONS[kind])
        raise NotSupportedError(f"[Flight SQL] unknown action {kind!r}")

    def list_actions(self, context: Any) -> list[flight.ActionType]:
        return [flight.ActionType(kind, description) for kind, description in ACTIONS.items()]

    @rpc
    def list_flights(self, context: Any, criteria: bytes) -> list[flight.FlightInfo]:
        raise NotSupportedError("[Flight SQL] ListFlights is not supported: list tables with CommandGetTables")

    @rpc
    def do_exchange(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        raise NotSupportedError("[Flight SQL] DoExchange is not supported")

    def _cancel(self, info: bytes) -> pb.ActionCancelQueryResult:
        handles = []
        for endpoint in flight.FlightInfo.deserialize(info).endpoints:
            ticket = commands.unpack(endpoint.ticket.ticket)
            if isinstance(ticket, pb.TicketStatementQuery):
                handles.append(ticket.statement_handle)
        if not self._statements.cancel(handles):
            raise NotFoundError("[Flight SQL] the query to cancel is unknown or has already finished")
        return pb.ActionCancelQueryResult(result=pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED)

    def _metadata_table(self, command: Message, caller: CallerContext) -> pa.Table:
        engine = self._engine
        match command:
            case pb.CommandGetSqlInfo():
                return sql_info_table(self._sql_info, command.info)
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
            case _:  # keys: data products declare none
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
        raise NotSupportedError(f"[Flight SQL] expected {cls.DESCRIPTOR.name}, got {_name(message)}")
    return message


def _no_transaction(request: pb.CommandStatementQuery | pb.ActionCreatePreparedStatementRequest) -> None:
    if request.HasField("transaction_id"):
        raise NotSupportedError(f"{READ_ONLY}: transactions are not supported")


def _name(message: Message) -> str:
    return str(message.DESCRIPTOR.name)
