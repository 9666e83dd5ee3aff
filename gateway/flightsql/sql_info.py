"""The GetSqlInfo answer: what Meshgate is and which SQL it speaks.

Values are declared in :func:`server_info` (Python ``str``/``bool``/``int``/``list`` map to
the union's string/bool/bigint/string-list members; :class:`Int32` marks int32 values,
which the protocol uses for enum ordinals and bitmasks). The SQL dialect facts describe
the engine's DataFusion SQL: unquoted identifiers fold to lower case, ``"`` quotes,
NULLs sort high.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

import gateway
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.metadata import SEARCH_ESCAPE
from meshcore.sql import ENGINE

# Vendor-specific SqlInfo ids start at 10000 (lower ids are the specification's).
# How long a query may run before it is cancelled, in milliseconds, 0 for no limit
# (int32): the statement timeout in force for the caller (the session's, else the
# server's). The specification's FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT (100) is another
# thing: how long an unused prepared statement handle lives.
MESHGATE_STATEMENT_TIMEOUT = 10_000

VALUE_TYPE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8(), nullable=False),
        pa.field("bool_value", pa.bool_(), nullable=False),
        pa.field("bigint_value", pa.int64(), nullable=False),
        pa.field("int32_bitmask", pa.int32(), nullable=False),
        pa.field("string_list", pa.list_(pa.utf8()), nullable=False),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())), nullable=False),
    ],
    type_codes=[0, 1, 2, 3, 4, 5],
)

SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", VALUE_TYPE, nullable=False)]
)


@dataclass(frozen=True)
class Int32:
    """An int32 SqlInfo value (enum ordinal or bitmask), as opposed to an int64 one."""

    value: int


SqlInfoValue = str | bool | int | Int32 | list[str] | dict[int, list[int]]


def bits(*flags: int) -> Int32:
    """A bitmask with the given enum ordinals set.

    >>> bits(pb.SQL_UNION, pb.SQL_UNION_ALL)
    Int32(value=3)
    """
    return Int32(sum(1 << flag for flag in set(flags)))


def milliseconds(seconds: float | None) -> Int32:
    """A timeout as an int32 of milliseconds, 0 for none (clamped to the int32 range).

    >>> milliseconds(2.5), milliseconds(None)
    (Int32(value=2500), Int32(value=0))
    """
    return Int32(0 if seconds is None else min(round(seconds * 1000), 2**31 - 1))


def server_info(*, handle_ttl: float, statement_timeout: float | None) -> dict[int, SqlInfoValue]:
    """Everything Meshgate reports, keyed by SqlInfo id.

    Args:
        handle_ttl: seconds an unused prepared statement handle lives.
        statement_timeout: seconds a query may run (None: no limit).
    """
    return {
        pb.FLIGHT_SQL_SERVER_NAME: "Meshgate",
        pb.FLIGHT_SQL_SERVER_VERSION: f"{gateway.__version__} ({ENGINE})",
        pb.FLIGHT_SQL_SERVER_ARROW_VERSION: pa.__version__,
        pb.FLIGHT_SQL_SERVER_READ_ONLY: True,
        pb.FLIGHT_SQL_SERVER_SQL: True,
        pb.FLIGHT_SQL_SERVER_SUBSTRAIT: False,
        pb.FLIGHT_SQL_SERVER_TRANSACTION: Int32(pb.SQL_SUPPORTED_TRANSACTION_NONE),
        pb.FLIGHT_SQL_SERVER_CANCEL: True,
        pb.FLIGHT_SQL_SERVER_BULK_INGESTION: False,
        pb.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: False,
        pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: milliseconds(handle_ttl),
        pb.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT: Int32(0),
        pb.SQL_DDL_CATALOG: False,
        pb.SQL_DDL_SCHEMA: False,
        pb.SQL_DDL_TABLE: False,
        pb.SQL_IDENTIFIER_CASE: Int32(pb.SQL_CASE_SENSITIVITY_LOWERCASE),
        pb.SQL_IDENTIFIER_QUOTE_CHAR: '"',
        pb.SQL_ALL_TABLES_ARE_SELECTABLE: True,
        pb.SQL_NULL_ORDERING: Int32(pb.SQL_NULLS_SORTED_HIGH),
        pb.SQL_SEARCH_STRING_ESCAPE: SEARCH_ESCAPE,
        pb.SQL_SUPPORTS_COLUMN_ALIASING: True,
        pb.SQL_NULL_PLUS_NULL_IS_NULL: True,
        pb.SQL_SUPPORTS_TABLE_CORRELATION_NAMES: True,
        pb.SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY: True,
        pb.SQL_OUTER_JOINS_SUPPORT_LEVEL: Int32(pb.SQL_FULL_OUTER_JOINS),
        pb.SQL_SCHEMA_TERM: "domain",
        pb.SQL_CATALOG_TERM: "catalog",
        pb.SQL_CATALOG_AT_START: True,
        pb.SQL_SELECT_FOR_UPDATE_SUPPORTED: False,
        pb.SQL_STORED_PROCEDURES_SUPPORTED: False,
        pb.SQL_SUPPORTED_SUBQUERIES: bits(
            pb.SQL_SUBQUERIES_IN_COMPARISONS, pb.SQL_SUBQUERIES_IN_EXISTS, pb.SQL_SUBQUERIES_IN_INS
        ),
        pb.SQL_CORRELATED_SUBQUERIES_SUPPORTED: True,
        pb.SQL_SUPPORTED_UNIONS: bits(pb.SQL_UNION, pb.SQL_UNION_ALL),
        pb.SQL_TRANSACTIONS_SUPPORTED: False,
        pb.SQL_DEFAULT_TRANSACTION_ISOLATION: Int32(pb.SQL_TRANSACTION_NONE),
        pb.SQL_SUPPORTED_RESULT_SET_TYPES: bits(pb.SQL_RESULT_SET_TYPE_FORWARD_ONLY),
        pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_FORWARD_ONLY: bits(pb.SQL_RESULT_SET_CONCURRENCY_READ_ONLY),
        pb.SQL_BATCH_UPDATES_SUPPORTED: False,
        pb.SQL_SAVEPOINTS_SUPPORTED: False,
        pb.SQL_NAMED_PARAMETERS_SUPPORTED: False,
        MESHGATE_STATEMENT_TIMEOUT: milliseconds(statement_timeout),
    }


def sql_info_table(values: Mapping[int, SqlInfoValue], requested: Iterable[int] = ()) -> pa.Table:
    """The GetSqlInfo result for the ``requested`` ids (all when empty), in request order.

    Ids the server does not know are left out, as the protocol allows.
    """
    wanted = list(dict.fromkeys(requested)) or sorted(values)
    names = [info for info in wanted if info in values]
    return pa.Table.from_arrays(
        [pa.array(names, pa.uint32()), _union([values[info] for info in names])], schema=SQL_INFO_SCHEMA
    )


def _union(values: list[SqlInfoValue]) -> pa.Array:
    members: list[list[object]] = [[] for _ in VALUE_TYPE.type_codes]
    type_ids: list[int] = []
    offsets: list[int] = []
    for value in values:
        code, plain = _member(value)
        type_ids.append(code)
        offsets.append(len(members[code]))
        members[code].append(plain)
    children = [pa.array(member, type=VALUE_TYPE.field(code).type) for code, member in enumerate(members)]
    buffers = [
        None,
        pa.array(type_ids, pa.int8()).buffers()[1],
        pa.array(offsets, pa.int32()).buffers()[1],
    ]
    return pa.Array.from_buffers(VALUE_TYPE, len(values), buffers, children=children)


def _member(value: SqlInfoValue) -> tuple[int, object]:
    """(type code, Python value) of one SqlInfo value; bool before int (bool is an int)."""
    if isinstance(value, str):
        return 0, value
    if isinstance(value, bool):
        return 1, value
    if isinstance(value, int):
        return 2, value
    if isinstance(value, Int32):
        return 3, value.value
    if isinstance(value, list):
        return 4, value
    return 5, list(value.items())
