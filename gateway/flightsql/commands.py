"""Flight SQL commands on the wire: protobuf messages wrapped in ``google.protobuf.Any``."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from gateway.errors import NotSupportedError
from gateway.flightsql import flight_sql_pb2 as pb

_MESSAGES: tuple[type[Message], ...] = (
    pb.CommandGetSqlInfo,
    pb.CommandGetXdbcTypeInfo,
    pb.CommandGetCatalogs,
    pb.CommandGetDbSchemas,
    pb.CommandGetTables,
    pb.CommandGetTableTypes,
    pb.CommandGetPrimaryKeys,
    pb.CommandGetExportedKeys,
    pb.CommandGetImportedKeys,
    pb.CommandGetCrossReference,
    pb.CommandStatementQuery,
    pb.CommandStatementSubstraitPlan,
    pb.CommandPreparedStatementQuery,
    pb.CommandStatementUpdate,
    pb.CommandPreparedStatementUpdate,
    pb.CommandStatementIngest,
    pb.TicketStatementQuery,
    pb.ActionCreatePreparedStatementRequest,
    pb.ActionCreatePreparedSubstraitPlanRequest,
    pb.ActionClosePreparedStatementRequest,
    pb.ActionBeginTransactionRequest,
    pb.ActionBeginSavepointRequest,
    pb.ActionEndTransactionRequest,
    pb.ActionEndSavepointRequest,
    pb.ActionCancelQueryRequest,
)
KNOWN: dict[str, type[Message]] = {cls.DESCRIPTOR.full_name: cls for cls in _MESSAGES}


def pack(message: Message) -> bytes:
    """Serialize ``message`` inside a ``google.protobuf.Any``.

    >>> unpack(pack(pb.CommandStatementQuery(query="SELECT 1"))).query
    'SELECT 1'
    """
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def unpack(data: bytes) -> Message:
    """Decode an ``Any``-wrapped Flight SQL message; NotSupportedError for anything else."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError:
        raise NotSupportedError(
            "[Flight SQL] the request is not a Flight SQL command (expected a google.protobuf.Any)"
        ) from None
    name = wrapper.TypeName()
    cls = KNOWN.get(name)
    if cls is None:
        shown = name or "an empty or non-Any payload"
        raise NotSupportedError(f"[Flight SQL] unknown command: {shown}")
    message = cls()
    try:
        wrapper.Unpack(message)
    except DecodeError:
        raise NotSupportedError(f"[Flight SQL] malformed {name}") from None
    return message
