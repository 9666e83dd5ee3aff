"""Flight SQL commands on the wire: protobuf messages wrapped in ``google.protobuf.Any``."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from gateway.errors import InvalidRequestError, NotSupportedError
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
    """Decode an ``Any``-wrapped Flight SQL message.

    InvalidRequestError when ``data`` is not one (empty, not an ``Any``, no type URL, a
    body that does not decode as its type); NotSupportedError for a type that is not a
    Flight SQL command the gateway knows. Each message says which.

    >>> unpack(b"\\x0a\\x03abc")
    Traceback (most recent call last):
    ...
    meshcore.errors.NotSupportedError: [Flight SQL] unknown command: abc
    """
    if not data:
        raise InvalidRequestError("[Flight SQL] empty request: expected a Flight SQL command (a google.protobuf.Any)")
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError:
        raise InvalidRequestError(
            "[Flight SQL] the request is not a Flight SQL command: its bytes do not decode as a google.protobuf.Any"
        ) from None
    if not wrapper.type_url:
        raise InvalidRequestError(
            "[Flight SQL] the request is not a Flight SQL command: its google.protobuf.Any has no type URL"
        )
    name = wrapper.TypeName()
    cls = KNOWN.get(name)
    if cls is None:
        raise NotSupportedError(f"[Flight SQL] unknown command: {shown(name or wrapper.type_url)}")
    message = cls()
    try:
        wrapper.Unpack(message)
    except DecodeError:
        raise InvalidRequestError(
            f"[Flight SQL] malformed {cls.DESCRIPTOR.name}: its bytes do not decode"
            " (a string field must be valid UTF-8)"
        ) from None
    return message


def shown(text: str, limit: int = 100) -> str:
    """A client-supplied name as an error message may quote it: printable and short.

    >>> shown("CommandGetTables")
    'CommandGetTables'
    >>> print(shown("line\\nbreak"))
    'line\\nbreak'
    >>> shown("x" * 200, limit=5)
    'xxxxx... (200 characters)'
    """
    cut = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
    return cut if text[:limit].isprintable() else repr(cut)
