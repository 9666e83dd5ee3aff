"""The SQL data types Meshgate returns, described for JDBC/ODBC (CommandGetXdbcTypeInfo).

Declarations only: one row per SQL type the engine produces (names as the engine's SQL
dialect spells them), with the JDBC/ODBC codes of ``XdbcDataType``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import pyarrow as pa

from gateway.flightsql import flight_sql_pb2 as pb

NULLABLE = pb.NULLABILITY_NULLABLE
SEARCHABLE = pb.SEARCHABLE_FULL
SEARCHABLE_NO_LIKE = pb.SEARCHABLE_BASIC


@dataclass(frozen=True)
class XdbcType:
    """One row of the GetXdbcTypeInfo result (field names are the protocol's columns)."""

    type_name: str
    data_type: int
    column_size: int | None = None
    literal_prefix: str | None = None
    literal_suffix: str | None = None
    create_params: list[str] | None = None
    nullable: int = NULLABLE
    case_sensitive: bool = False
    searchable: int = SEARCHABLE_NO_LIKE
    unsigned_attribute: bool | None = None
    fixed_prec_scale: bool = False
    auto_increment: bool | None = None
    local_type_name: str | None = None
    minimum_scale: int | None = None
    maximum_scale: int | None = None
    sql_data_type: int | None = None
    datetime_subcode: int | None = None
    num_prec_radix: int | None = None
    interval_precision: int | None = None

    def row(self) -> dict[str, object]:
        values = asdict(self)
        if self.sql_data_type is None:
            values["sql_data_type"] = self.data_type
        return values


def _integer(name: str, code: int, digits: int) -> XdbcType:
    return XdbcType(name, code, column_size=digits, unsigned_attribute=False, num_prec_radix=10)


def _datetime(name: str, code: int, size: int, subcode: int) -> XdbcType:
    return XdbcType(
        name,
        code,
        column_size=size,
        literal_prefix=f"{name.split(' ')[0]} '",
        literal_suffix="'",
        sql_data_type=pb.XDBC_DATETIME,
        datetime_subcode=subcode,
    )


TYPES: tuple[XdbcType, ...] = (
    XdbcType("BOOLEAN", pb.XDBC_BIT, column_size=1),
    _integer("TINYINT", pb.XDBC_TINYINT, 3),
    _integer("SMALLINT", pb.XDBC_SMALLINT, 5),
    _integer("INTEGER", pb.XDBC_INTEGER, 10),
    _integer("BIGINT", pb.XDBC_BIGINT, 19),
    XdbcType("REAL", pb.XDBC_REAL, column_size=24, unsigned_attribute=False, num_prec_radix=2),
    XdbcType("DOUBLE", pb.XDBC_DOUBLE, column_size=53, unsigned_attribute=False, num_prec_radix=2),
    XdbcType(
        "DECIMAL",
        pb.XDBC_DECIMAL,
        column_size=38,
        create_params=["precision", "scale"],
        unsigned_attribute=False,
        minimum_scale=0,
        maximum_scale=38,
        num_prec_radix=10,
    ),
    XdbcType(
        "VARCHAR",
        pb.XDBC_VARCHAR,
        literal_prefix="'",
        literal_suffix="'",
        case_sensitive=True,
        searchable=SEARCHABLE,
    ),
    XdbcType("VARBINARY", pb.XDBC_VARBINARY, literal_prefix="X'", literal_suffix="'"),
    _datetime("DATE", pb.XDBC_DATE, 10, pb.XDBC_SUBCODE_DATE),
    _datetime("TIME", pb.XDBC_TIME, 18, pb.XDBC_SUBCODE_TIME),
    _datetime("TIMESTAMP", pb.XDBC_TIMESTAMP, 29, pb.XDBC_SUBCODE_TIMESTAMP),
    _datetime("TIMESTAMP WITH TIME ZONE", pb.XDBC_TIMESTAMP, 35, pb.XDBC_SUBCODE_TIMESTAMP_WITH_TIMEZONE),
)


_SQL_NAMES: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_int8, "TINYINT"),
    (pa.types.is_int16, "SMALLINT"),
    (pa.types.is_int32, "INTEGER"),
    (pa.types.is_int64, "BIGINT"),
    (pa.types.is_float32, "REAL"),
    (pa.types.is_float64, "DOUBLE"),
    (pa.types.is_decimal, "DECIMAL"),
    (pa.types.is_string, "VARCHAR"),
    (pa.types.is_large_string, "VARCHAR"),
    (pa.types.is_binary, "VARBINARY"),
    (pa.types.is_large_binary, "VARBINARY"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_time, "TIME"),
)


def sql_type_name(data_type: pa.DataType) -> str:
    """The SQL name of an Arrow type as :data:`TYPES` spells it (upper-cased Arrow name otherwise).

    >>> sql_type_name(pa.timestamp("us", tz="UTC")), sql_type_name(pa.decimal128(12, 2))
    ('TIMESTAMP WITH TIME ZONE', 'DECIMAL')
    """
    if pa.types.is_timestamp(data_type):
        return "TIMESTAMP WITH TIME ZONE" if data_type.tz else "TIMESTAMP"
    for matches, name in _SQL_NAMES:
        if matches(data_type):
            return name
    return str(data_type).upper()
