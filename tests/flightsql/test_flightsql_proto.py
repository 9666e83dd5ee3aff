"""The checked-in protobuf modules (Flight SQL commands, Flight actions): reproducible and wire-compatible."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from flightsql import flightsql_pb2 as reference
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from gateway.flightsql import commands
from gateway.flightsql import flight_sql_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "gateway" / "flightsql"


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools is not installed")
def test_regenerating_gives_the_checked_in_module(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("compile_proto", ROOT / "proto" / "compile.py")
    assert spec is not None and spec.loader is not None
    compile_proto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compile_proto)

    written = compile_proto.compile_proto(tmp_path)

    assert sorted(path.name for path in written) == [
        "flight_pb2.py",
        "flight_pb2.pyi",
        "flight_sql_pb2.py",
        "flight_sql_pb2.pyi",
    ]
    for path in written:
        assert path.read_text() == (GENERATED / path.name).read_text(), f"{path.name} is stale: run proto/compile.py"


def _fields(message: Descriptor) -> dict[str, tuple[int, int, bool]]:
    return {f.name: (f.number, f.type, f.is_repeated) for f in message.fields}


def _values(enum: EnumDescriptor) -> dict[str, int]:
    return {value.name: value.number for value in enum.values}


def test_every_message_and_enum_matches_an_independent_copy_of_the_spec() -> None:
    """flightsql-dbapi ships its own build of FlightSql.proto (an older release)."""
    theirs = reference.DESCRIPTOR
    ours = pb.DESCRIPTOR
    assert ours.package == theirs.package == "arrow.flight.protocol.sql"
    for name, message in theirs.message_types_by_name.items():
        assert name in ours.message_types_by_name, name
        mine = ours.message_types_by_name[name]
        assert _fields(mine) == _fields(message), name
        for nested in message.enum_types:
            assert _values(mine.enum_types_by_name[nested.name]) == _values(nested), f"{name}.{nested.name}"
    for name, enum in theirs.enum_types_by_name.items():
        # Newer releases only add values (bulk ingestion), never change them.
        assert _values(enum).items() <= _values(ours.enum_types_by_name[name]).items(), name


def test_messages_newer_than_that_copy() -> None:
    assert pb.FLIGHT_SQL_SERVER_BULK_INGESTION == 10
    assert pb.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED == 11
    assert _fields(pb.DoPutPreparedStatementResult.DESCRIPTOR) == {"prepared_statement_handle": (1, 12, False)}
    ingest = _fields(pb.CommandStatementIngest.DESCRIPTOR)
    assert {name: number for name, (number, _type, _repeated) in ingest.items()} == {
        "table_definition_options": 1,
        "table": 2,
        "schema": 3,
        "catalog": 4,
        "temporary": 5,
        "transaction_id": 6,
        "options": 1000,
    }


def test_commands_from_another_implementation_unpack() -> None:
    wrapper = any_pb2.Any()
    wrapper.Pack(reference.CommandGetTables(catalog="mesh", table_types=["VIEW"], include_schema=True))

    command = commands.unpack(wrapper.SerializeToString())

    assert isinstance(command, pb.CommandGetTables)
    assert (command.catalog, list(command.table_types), command.include_schema) == ("mesh", ["VIEW"], True)
    assert command.HasField("catalog") and not command.HasField("db_schema_filter_pattern")


def test_unknown_and_garbage_payloads_are_rejected_by_name() -> None:
    from gateway.errors import InvalidRequestError, NotSupportedError

    other = any_pb2.Any()
    other.Pack(timestamp_pb2.Timestamp(seconds=1))
    with pytest.raises(NotSupportedError, match=r"unknown command: google\.protobuf\.Timestamp"):
        commands.unpack(other.SerializeToString())
    with pytest.raises(InvalidRequestError, match="not a Flight SQL command"):
        commands.unpack(b"\xff\xff\xff")


# -- flight.proto: the Flight RPC messages of CancelFlightInfo and the session actions ----------


def test_flight_info_has_the_bytes_of_pyarrows_flight_info() -> None:
    """pyarrow's FlightInfo.serialize() is the Flight.proto FlightInfo: both directions, every field."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.flight as flight

    from gateway.flightsql import flight_pb2 as fpb

    schema = pa.schema([("id", pa.int64())])
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    expiration = pa.scalar(expires, pa.timestamp("ns", tz="UTC"))
    endpoint = flight.FlightEndpoint(b"ticket-1", ["grpc://a:1", "grpc://b:2"], expiration, b"endpoint-meta")
    theirs = flight.FlightInfo(
        schema, flight.FlightDescriptor.for_command(b"cmd"), [endpoint], 7, 99, ordered=True, app_metadata=b"meta"
    )

    ours = fpb.FlightInfo.FromString(theirs.serialize())

    assert pa.ipc.read_schema(pa.py_buffer(ours.schema)).equals(schema)
    assert (ours.flight_descriptor.type, ours.flight_descriptor.cmd) == (fpb.FlightDescriptor.CMD, b"cmd")
    (mine,) = ours.endpoint
    assert mine.ticket.ticket == b"ticket-1"
    assert [location.uri for location in mine.location] == ["grpc://a:1", "grpc://b:2"]
    assert mine.expiration_time.seconds == int(expires.timestamp())
    assert mine.app_metadata == b"endpoint-meta"
    assert (ours.total_records, ours.total_bytes, ours.ordered, ours.app_metadata) == (7, 99, True, b"meta")
    assert flight.FlightInfo.deserialize(ours.SerializeToString()) == theirs


def test_flight_messages_have_the_specifications_names_and_numbers() -> None:
    from gateway.flightsql import flight_pb2 as fpb

    assert fpb.DESCRIPTOR.package == "arrow.flight.protocol"
    string, boolean, double, message, enum, sfixed64, bytes_ = 9, 8, 1, 11, 14, 16, 12
    assert _fields(fpb.CancelFlightInfoRequest.DESCRIPTOR) == {"info": (1, message, False)}
    assert _fields(fpb.CancelFlightInfoResult.DESCRIPTOR) == {"status": (1, enum, False)}
    assert _values(fpb.CancelStatus.DESCRIPTOR) == {
        "CANCEL_STATUS_UNSPECIFIED": 0,
        "CANCEL_STATUS_CANCELLED": 1,
        "CANCEL_STATUS_CANCELLING": 2,
        "CANCEL_STATUS_NOT_CANCELLABLE": 3,
    }
    assert _fields(fpb.SessionOptionValue.DESCRIPTOR) == {
        "string_value": (1, string, False),
        "bool_value": (2, boolean, False),
        "int64_value": (3, sfixed64, False),
        "double_value": (4, double, False),
        "string_list_value": (5, message, False),
    }
    assert _fields(fpb.SetSessionOptionsRequest.DESCRIPTOR) == {"session_options": (1, message, True)}
    assert _fields(fpb.SetSessionOptionsResult.DESCRIPTOR) == {"errors": (1, message, True)}
    assert _values(fpb.SetSessionOptionsResult.ErrorValue.DESCRIPTOR) == {
        "UNSPECIFIED": 0,
        "INVALID_NAME": 1,
        "INVALID_VALUE": 2,
        "ERROR": 3,
    }
    assert _fields(fpb.GetSessionOptionsRequest.DESCRIPTOR) == {}
    assert _fields(fpb.GetSessionOptionsResult.DESCRIPTOR) == {"session_options": (1, message, True)}
    assert _fields(fpb.CloseSessionRequest.DESCRIPTOR) == {}
    assert _values(fpb.CloseSessionResult.Status.DESCRIPTOR) == {
        "UNSPECIFIED": 0,
        "CLOSED": 1,
        "CLOSING": 2,
        "NOT_CLOSEABLE": 3,
    }
    assert _fields(fpb.FlightEndpoint.DESCRIPTOR)["app_metadata"] == (4, bytes_, False)


def test_flight_messages_stay_out_of_the_global_descriptor_pool() -> None:
    from google.protobuf import descriptor_pool

    from gateway.flightsql import flight_pb2 as fpb

    assert fpb.FlightInfo.DESCRIPTOR.full_name == "arrow.flight.protocol.FlightInfo"
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("arrow.flight.protocol.CancelFlightInfoRequest")
