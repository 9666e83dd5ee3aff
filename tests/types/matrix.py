"""The type-fidelity matrix: every type family in every kind of source, and what the gateway serves.

Each :class:`Cell` of :data:`CELLS` (a source kind and a type family) is one of:

- columns the source holds, each with the values written (with NULLs and edge values:
  extremes, infinities, negative intervals, NULL list elements, unicode) and the exact
  Arrow type and values a client must receive;
- values the gateway must refuse (the query fails, naming why) rather than send changed;
- a gap: the source has no such type; the reason says what to use instead.

Temporal values are written as integers (days or units since 1970) wherever Python's
``datetime`` cannot hold them (years beyond 1..9999, infinities). The README's type
table is this file, in prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

ROWS = 6
KINDS = ("postgres", "sqlite", "duckdb", "parquet", "csv", "mysql")
SERVER_KINDS = ("mysql",)
"""Kinds whose server may be absent (tests/support/mysql.py): their cells skip, saying why."""
FAMILIES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "int128",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "uint128",
    "decimal",
    "decimal_wide",
    "decimal_unconstrained",
    "float32",
    "float64",
    "boolean",
    "text",
    "binary",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "array",
    "nested_array",
)

I64, I32 = 2**63 - 1, 2**31 - 1


def days(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (year 0 is 1 BC)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def micros(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0) -> int:
    """Microseconds since 1970-01-01 00:00:00."""
    return ((days(year, month, day) * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + us


def time_us(hour: int, minute: int, second: int = 0, us: int = 0) -> int:
    return ((hour * 60 + minute) * 60 + second) * 1_000_000 + us


@dataclass(frozen=True)
class Column:
    """A column a source holds and what the gateway serves for it.

    ``declared``: the source's type (DDL for SQL sources, the stored Arrow type for
    Parquet, unused for CSV). ``stored``: one value a row, as written: SQL literals
    (PostgreSQL, DuckDB), Python values (SQLite, Parquet) or CSV fields; None is NULL.
    """

    name: str
    declared: Any
    stored: tuple[Any, ...]
    type: pa.DataType
    values: tuple[Any, ...]

    def expected(self) -> pa.Array:
        return pa.array(self.values, self.type)


@dataclass(frozen=True)
class Fails:
    """A value the gateway must refuse: reading it fails with ``message`` in the error."""

    name: str
    declared: Any
    stored: Any
    message: str


@dataclass(frozen=True)
class Cell:
    columns: tuple[Column, ...] = ()
    fails: tuple[Fails, ...] = ()
    gap: str | None = None


def _c(name: str, declared: Any, stored: list[Any], type_: pa.DataType, values: list[Any] | None = None) -> Column:
    values = stored if values is None else values
    assert len(stored) == ROWS and len(values) == ROWS, name
    return Column(name, declared, tuple(stored), type_, tuple(values))


def cell(*columns: Column, fails: tuple[Fails, ...] = ()) -> Cell:
    return Cell(columns=columns, fails=fails)


def gap(reason: str) -> Cell:
    return Cell(gap=reason)


def sql(values: list[Any]) -> list[Any]:
    """Python values as SQL literals (None stays NULL)."""
    return [None if v is None else str(v) for v in values]


def quoted(values: list[str | None]) -> list[str | None]:
    """Text as SQL string literals."""
    return [None if v is None else "'" + v.replace("'", "''") + "'" for v in values]


def _d(values: list[str | None]) -> list[Decimal | None]:
    return [None if v is None else Decimal(v) for v in values]


NAN, INF = float("nan"), float("inf")
F32_MAX = 3.4028234663852886e38
F64_MAX, F64_TINY = 1.7976931348623157e308, 5e-324

INT8 = [-128, 127, 0, -1, 1, None]
INT16 = [-32768, 32767, 0, -1, 1, None]
INT32 = [-(2**31), I32, 0, -1, 1, None]
INT64 = [-(2**63), I64, 0, -1, 1, None]
UINT8 = [0, 255, 1, None, 128, 254]
UINT16 = [0, 65535, 1, None, 32768, 65534]
UINT32 = [0, 2**32 - 1, 1, None, 2**31, 42]
UINT64 = [0, 2**64 - 1, 1, None, 2**63, 42]
NINES38 = "9" * 38
DECIMAL_12_2 = ["9999999999.99", "-9999999999.99", "0.00", "0.01", "-0.01", None]
DECIMAL_38_10 = ["9" * 28 + ".9999999999", "-" + "9" * 28 + ".9999999999", "0", "0.0000000001", "1", None]
DECIMAL_50_10 = ["9" * 40 + ".9999999999", "-1234567890123456789012345678901234567890.0123456789", "0", None, "1e-10", "1"]
TEXT = ["", "Zoë Ångström", "日本語 🚀", "it's", "trailing ", None]
BYTES = [b"\x00\xff", b"", None, b"A", b"\x80", b"\x00"]
DATES_ISO = ["2024-02-29", "0001-01-01", "9999-12-31", None, "1970-01-01", "2000-02-29"]
DATES = [days(2024, 2, 29), days(1, 1, 1), days(9999, 12, 31), None, 0, days(2000, 2, 29)]
TIMES_ISO = ["00:00:00", "23:59:59.999999", "12:34:56.5", None, "00:00:00.000001", "13:00:00"]
TIMES = [0, time_us(23, 59, 59, 999999), time_us(12, 34, 56, 500000), None, 1, time_us(13, 0)]
STAMPS_ISO = [
    "2024-02-29 12:34:56.123456",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59.999999",
    None,
    "1970-01-01 00:00:00",
    "2024-02-29T12:34:56",
]
STAMPS = [
    micros(2024, 2, 29, 12, 34, 56, 123456),
    micros(1, 1, 1),
    micros(9999, 12, 31, 23, 59, 59, 999999),
    None,
    0,
    micros(2024, 2, 29, 12, 34, 56),
]
# Written with offsets; served in UTC.
STAMPS_TZ_ISO = [
    "2024-02-29 12:34:56.123456+05:30",
    "1970-01-01 00:00:00+00",
    "infinity",
    None,
    "0001-01-01 00:00:00+00",
    "2038-01-19 03:14:08-08",
]
STAMPS_TZ = [micros(2024, 2, 29, 7, 4, 56, 123456), 0, I64, None, micros(1, 1, 1), micros(2038, 1, 19, 11, 14, 8)]
INTERVALS_SQL = ["'1 year 2 mons -3 days 04:05:06.789'", "'-1 microsecond'", "'-178000000 years'", "'0'", None]
INTERVALS = [(14, -3, 14_706_789_000_000), (0, 0, -1000), (-2_136_000_000, 0, 0), (0, 0, 0), None]
UUIDS = [
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "00000000-0000-0000-0000-000000000000",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    None,
    "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
    "123e4567-e89b-12d3-a456-426614174000",
]
UUIDS_CANONICAL = [
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    None,
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "123e4567-e89b-12d3-a456-426614174000",
]
JSONS = ['{"a": "ü", "b": [1, 2.5, null]}', '"日本 🚀"', "null", None, '["\\u00fc"]', '{"k":1,  "k":2}']
JSONB = ['{"a": "ü", "b": [1, 2.5, null]}', '"日本 🚀"', "null", None, '["ü"]', '{"k": 2}']
INT_LISTS = [[1, None, 3], [], None, [-(2**31), I32], [None], [7]]
TEXT_LISTS = [["Zoë", None, ""], [], None, ["日本 🚀"], [None], ["x"]]
NESTED = [[[1, None], None, []], [], None, [[None]], [[1], [2, 3]], [None]]


POSTGRES: dict[str, Cell] = {
    "int8": gap("PostgreSQL has no 1-byte integer: use int2 (int16)"),
    "int16": cell(_c("i16", "int2", sql(INT16), pa.int16(), INT16)),
    "int32": cell(_c("i32", "int4", sql(INT32), pa.int32(), INT32)),
    "int64": cell(_c("i64", "int8", sql(INT64), pa.int64(), INT64)),
    "int128": gap("PostgreSQL has no 128-bit integer: numeric(39, 0) is served as decimal256(39, 0)"),
    "uint8": gap("PostgreSQL has no unsigned integers"),
    "uint16": gap("PostgreSQL has no unsigned integers"),
    "uint32": gap("PostgreSQL has no unsigned integers"),
    "uint64": gap("PostgreSQL has no unsigned integers"),
    "uint128": gap("PostgreSQL has no unsigned integers"),
    "decimal": cell(
        _c("dec12", "numeric(12, 2)", sql(DECIMAL_12_2), pa.decimal128(12, 2), _d(DECIMAL_12_2)),
        _c("dec38", "numeric(38, 10)", sql(DECIMAL_38_10), pa.decimal128(38, 10), _d(DECIMAL_38_10)),
    ),
    "decimal_wide": cell(_c("dec50", "numeric(50, 10)", sql(DECIMAL_50_10), pa.decimal256(50, 10), _d(DECIMAL_50_10))),
    "decimal_unconstrained": cell(
        _c(
            "num",
            "numeric",
            ["1.5", "-1234567890123456789012345678.0123456789", "0", None, "0.0000000001", "1e27"],
            pa.decimal128(38, 10),
            _d(["1.5", "-1234567890123456789012345678.0123456789", "0", None, "0.0000000001", "1e27"]),
        ),
        fails=(
            Fails("num_digits", "numeric", "1.12345678901", "cannot convert"),
            Fails("num_nan", "numeric", "'NaN'", "cannot convert"),
        ),
    ),
    "float32": cell(
        _c("f32", "float4", ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", str(F32_MAX), None], pa.float32(),
           [NAN, INF, -INF, -0.0, F32_MAX, None]),
    ),
    "float64": cell(
        _c("f64", "float8", [str(F64_MAX), str(F64_TINY), "'NaN'", "'-Infinity'", "'-0'", None], pa.float64(),
           [F64_MAX, F64_TINY, NAN, -INF, -0.0, None]),
    ),
    "boolean": cell(_c("flag", "bool", ["true", "false", None, "true", "false", "true"], pa.bool_(),
                       [True, False, None, True, False, True])),
    "text": cell(
        _c("txt", "text", quoted(TEXT), pa.string(), TEXT),
        _c("vchar", "varchar(20)", quoted(TEXT), pa.string(), TEXT),
        _c("chr", "char(20)", quoted(TEXT), pa.string(), [None if t is None else t.rstrip() for t in TEXT]),
    ),
    "binary": cell(
        _c("bin", "bytea", ["'\\x00ff'", "''", None, "'\\x41'", "'\\x80'", "'\\x00'"], pa.binary(), BYTES),
    ),
    "date": cell(
        _c("day", "date", ["'2024-02-29'", "'4714-11-24 BC'", "'5874897-12-31'", "'infinity'", "'-infinity'", None],
           pa.date32(), [days(2024, 2, 29), days(-4713, 11, 24), days(5874897, 12, 31), I32, -I32, None]),
    ),
    "time": cell(
        _c("tod", "time", quoted(TIMES_ISO), pa.time64("us"), TIMES),
        _c("todtz", "timetz", ["'12:34:56.5+02:30'", "'00:00:00-12'", None, "'23:59:59.999999+00'", "'00:00+14'",
                               "'13:00-03:30'"], pa.string(),
           ["12:34:56.5+02:30", "00:00:00-12", None, "23:59:59.999999+00", "00:00:00+14", "13:00:00-03:30"]),
        fails=(Fails("tod_24", "time", "'24:00:00'", "24:00:00 or later"),),
    ),
    "timestamp": cell(
        _c("ts", "timestamp",
           ["'2024-02-29 12:34:56.123456'", "'4714-11-24 00:00:00 BC'", "'294246-12-31 23:59:59.999999'",
            "'infinity'", "'-infinity'", None],
           pa.timestamp("us"),
           [micros(2024, 2, 29, 12, 34, 56, 123456), micros(-4713, 11, 24), micros(294246, 12, 31, 23, 59, 59, 999999),
            I64, -I64, None]),
        fails=(Fails("ts_far", "timestamp", "'294247-01-11 00:00:00'", "outside the range"),),
    ),
    "timestamptz": cell(_c("tstz", "timestamptz", quoted(STAMPS_TZ_ISO), pa.timestamp("us", tz="UTC"), STAMPS_TZ)),
    "interval": cell(
        _c("iv", "interval", [*INTERVALS_SQL, "'2562047 hours'"], pa.month_day_nano_interval(),
           [*INTERVALS, (0, 0, 2_562_047 * 3_600_000_000_000)]),
        fails=(Fails("iv_long", "interval", "'2562048 hours'", "would overflow"),),
    ),
    "uuid": cell(_c("uid", "uuid", quoted(UUIDS), pa.string(), UUIDS_CANONICAL)),
    "json": cell(
        _c("js", "json", quoted(JSONS), pa.string(), JSONS),
        _c("jsb", "jsonb", quoted(JSONS), pa.string(), JSONB),
    ),
    "array": cell(
        _c("ints", "int4[]", ["'{1,NULL,3}'", "'{}'", None, "'{-2147483648,2147483647}'", "'{NULL}'", "'{7}'"],
           pa.list_(pa.int32()), INT_LISTS),
        _c("texts", "text[]", ["'{\"Zoë\",NULL,\"\"}'", "'{}'", None, "'{\"日本 🚀\"}'", "'{NULL}'", "'{x}'"],
           pa.list_(pa.string()), TEXT_LISTS),
        _c("uuids", "uuid[]", ["'{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,NULL}'", "'{}'", None, None, None, None],
           pa.list_(pa.string()), [["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None], [], None, None, None, None]),
        _c("nums", "numeric(5, 2)[]", ["'{1.5,NULL,-999.99}'", "'{}'", None, None, None, None],
           pa.list_(pa.decimal128(38, 10)), [_d(["1.5", None, "-999.99"]), [], None, None, None, None]),
        _c("stamps", "timestamp[]", ["'{infinity,\"2024-02-29 12:34:56.123456\",NULL}'", "'{}'", None, None, None, None],
           pa.list_(pa.timestamp("us")), [[I64, micros(2024, 2, 29, 12, 34, 56, 123456), None], [], None, None, None,
                                           None]),
        fails=(Fails("ints_from_0", "int4[]", "'[0:1]={1,2}'", "holds an array Arrow cannot hold"),),
    ),
    "nested_array": Cell(
        fails=(Fails("ints_2d", "int4[]", "'{{1,2},{3,NULL}}'", "holds an array Arrow cannot hold"),),
    ),
}

SQLITE: dict[str, Cell] = {
    "int8": cell(_c("i8", "TINYINT", INT8, pa.int64())),
    "int16": cell(_c("i16", "SMALLINT", INT16, pa.int64())),
    "int32": cell(_c("i32", "INT", INT32, pa.int64())),
    "int64": cell(_c("i64", "INTEGER", INT64, pa.int64())),
    "int128": gap("SQLite integers have 64 bits"),
    "uint8": gap("SQLite has no unsigned integers: INTEGER is int64"),
    "uint16": gap("SQLite has no unsigned integers: INTEGER is int64"),
    "uint32": gap("SQLite has no unsigned integers: INTEGER is int64"),
    "uint64": Cell(fails=(Fails("u64", "UNSIGNED BIG INT", "18446744073709551615", "cannot convert"),)),
    "uint128": gap("SQLite integers have 64 bits"),
    "decimal": cell(_c("dec12", "DECIMAL(12, 2)", DECIMAL_12_2, pa.decimal128(12, 2), _d(DECIMAL_12_2))),
    "decimal_wide": gap("SQLite stores decimals as 8-byte floats: DECIMAL(p > 38, s) is served as float64"),
    "decimal_unconstrained": cell(
        _c("num", "DECIMAL", ["1.5", "0.1", "-2", None, "1e300", "123456789012345678"], pa.float64(),
           [1.5, 0.1, -2.0, None, 1e300, 123456789012345678.0]),
    ),
    "float32": cell(_c("f32", "FLOAT", [INF, -INF, -0.0, 1.5, None, F32_MAX], pa.float64(),
                       [INF, -INF, 0.0, 1.5, None, F32_MAX])),
    "float64": cell(_c("f64", "REAL", [F64_MAX, F64_TINY, INF, -0.0, None, NAN], pa.float64(),
                       [F64_MAX, F64_TINY, INF, 0.0, None, None])),
    "boolean": cell(_c("flag", "BOOLEAN", [1, 0, None, 1, 0, 1], pa.bool_(), [True, False, None, True, False, True])),
    "text": cell(_c("txt", "TEXT", TEXT, pa.string())),
    "binary": cell(_c("bin", "BLOB", BYTES, pa.binary())),
    "date": cell(_c("day", "DATE", DATES_ISO, pa.date32(), DATES)),
    "time": cell(
        _c("tod", "TIME", TIMES_ISO, pa.time64("us"), TIMES),
        fails=(Fails("tod_24", "TIME", "'24:00:00'", "cannot convert"),),
    ),
    "timestamp": cell(_c("ts", "TIMESTAMP", STAMPS_ISO, pa.timestamp("us"), STAMPS)),
    "timestamptz": Cell(fails=(Fails("tstz", "TIMESTAMP", "'2024-02-29 12:34:56+05:30'", "cannot convert"),)),
    "interval": gap("SQLite has no interval type: ISO 8601 text is served as string"),
    "uuid": cell(_c("uid", "UUID", UUIDS_CANONICAL, pa.string())),
    "json": cell(_c("js", "JSON", JSONS, pa.string())),
    "array": gap("SQLite has no arrays: JSON text is served as string"),
    "nested_array": gap("SQLite has no arrays: JSON text is served as string"),
}

DUCKDB: dict[str, Cell] = {
    "int8": cell(_c("i8", "TINYINT", sql(INT8), pa.int8(), INT8)),
    "int16": cell(_c("i16", "SMALLINT", sql(INT16), pa.int16(), INT16)),
    "int32": cell(_c("i32", "INTEGER", sql(INT32), pa.int32(), INT32)),
    "int64": cell(_c("i64", "BIGINT", sql(INT64), pa.int64(), INT64)),
    "int128": cell(
        _c("i128", "HUGEINT", quoted([NINES38, "-" + NINES38, "0", None, "1", "-1"]), pa.decimal128(38, 0),
           _d([NINES38, "-" + NINES38, "0", None, "1", "-1"])),
        fails=(Fails("i128_max", "HUGEINT", f"'{2**127 - 1}'", "Could not cast value"),),
    ),
    "uint8": cell(_c("u8", "UTINYINT", sql(UINT8), pa.uint8(), UINT8)),
    "uint16": cell(_c("u16", "USMALLINT", sql(UINT16), pa.uint16(), UINT16)),
    "uint32": cell(_c("u32", "UINTEGER", sql(UINT32), pa.uint32(), UINT32)),
    "uint64": cell(_c("u64", "UBIGINT", sql(UINT64), pa.uint64(), UINT64)),
    "uint128": cell(
        _c("u128", "UHUGEINT", quoted([NINES38, "0", "1", None, "2", "3"]), pa.decimal128(38, 0),
           _d([NINES38, "0", "1", None, "2", "3"])),
        fails=(Fails("u128_max", "UHUGEINT", f"'{2**128 - 1}'", "Could not cast value"),),
    ),
    "decimal": cell(
        _c("dec12", "DECIMAL(12, 2)", sql(DECIMAL_12_2), pa.decimal128(12, 2), _d(DECIMAL_12_2)),
        _c("dec38", "DECIMAL(38, 10)", sql(DECIMAL_38_10), pa.decimal128(38, 10), _d(DECIMAL_38_10)),
    ),
    "decimal_wide": gap("DuckDB decimals hold at most 38 digits"),
    "decimal_unconstrained": cell(
        _c("num", "DECIMAL", ["1.5", "-999999999999999.999", "0", None, "0.001", "1"], pa.decimal128(18, 3),
           _d(["1.5", "-999999999999999.999", "0", None, "0.001", "1"])),
    ),
    "float32": cell(
        _c("f32", "FLOAT", ["'NaN'", "'inf'", "'-inf'", "'-0.0'", str(F32_MAX), None], pa.float32(),
           [NAN, INF, -INF, -0.0, F32_MAX, None]),
    ),
    "float64": cell(
        _c("f64", "DOUBLE", [str(F64_MAX), str(F64_TINY), "'NaN'", "'-inf'", "'-0.0'", None], pa.float64(),
           [F64_MAX, F64_TINY, NAN, -INF, -0.0, None]),
    ),
    "boolean": cell(_c("flag", "BOOLEAN", ["true", "false", None, "true", "false", "true"], pa.bool_(),
                       [True, False, None, True, False, True])),
    "text": cell(_c("txt", "VARCHAR", quoted(TEXT), pa.string(), TEXT)),
    "binary": cell(_c("bin", "BLOB", ["'\\x00\\xFF'", "''", None, "'A'", "'\\x80'", "'\\x00'"], pa.binary(), BYTES)),
    "date": cell(
        _c("day", "DATE", ["'2024-02-29'", "'0001-01-01'", "'9999-12-31'", "'infinity'", "'-infinity'", None],
           pa.date32(), [days(2024, 2, 29), days(1, 1, 1), days(9999, 12, 31), I32, -I32, None]),
    ),
    "time": cell(
        _c("tod", "TIME", quoted(TIMES_ISO), pa.time64("us"), TIMES),
        _c("todtz", "TIMETZ", ["'12:34:56.5+02:30'", "'00:00:00-12'", None, "'23:59:59.999999+00'", "'00:00:00+14'",
                               "'13:00:00-03:30'"], pa.string(),
           ["12:34:56.5+02:30", "00:00:00-12", None, "23:59:59.999999+00", "00:00:00+14", "13:00:00-03:30"]),
        fails=(Fails("tod_24", "TIME", "'24:00:00'", "24:00:00 or later"),),
    ),
    "timestamp": cell(
        _c("ts", "TIMESTAMP",
           ["'2024-02-29 12:34:56.123456'", "'0001-01-01 00:00:00'", "'294247-01-10 04:00:54.775806'", "'infinity'",
            "'-infinity'", None],
           pa.timestamp("us"), [micros(2024, 2, 29, 12, 34, 56, 123456), micros(1, 1, 1), I64 - 1, I64, -I64, None]),
        _c("ts_ns", "TIMESTAMP_NS",
           quoted(["2024-02-29 12:34:56.123456", "1677-09-22 00:00:00", "2262-04-11 00:00:00", None, "1970-01-01", None]),
           pa.timestamp("ns"), [micros(2024, 2, 29, 12, 34, 56, 123456) * 1000, micros(1677, 9, 22) * 1000,
                                micros(2262, 4, 11) * 1000, None, 0, None]),
        _c("ts_ms", "TIMESTAMP_MS", quoted(["2024-02-29 12:34:56.123", "0001-01-01 00:00:00", None, None, None, None]),
           pa.timestamp("ms"), [micros(2024, 2, 29, 12, 34, 56, 123000) // 1000, micros(1, 1, 1) // 1000, *[None] * 4]),
        _c("ts_s", "TIMESTAMP_S", quoted(["2024-02-29 12:34:56", "9999-12-31 23:59:59", None, None, None, None]),
           pa.timestamp("s"), [micros(2024, 2, 29, 12, 34, 56) // 10**6, micros(9999, 12, 31, 23, 59, 59) // 10**6,
                               *[None] * 4]),
    ),
    "timestamptz": cell(_c("tstz", "TIMESTAMPTZ", quoted(STAMPS_TZ_ISO), pa.timestamp("us", tz="UTC"), STAMPS_TZ)),
    "interval": cell(
        _c("iv", "INTERVAL", ["'1 year 2 months -3 days 04:05:06.789'", *INTERVALS_SQL[1:], "'2562047 hours'"],
           pa.month_day_nano_interval(), [*INTERVALS, (0, 0, 2_562_047 * 3_600_000_000_000)]),
        fails=(Fails("iv_long", "INTERVAL", "'2562048 hours'", "exceeds Arrow's nanoseconds"),),
    ),
    "uuid": cell(_c("uid", "UUID", quoted(UUIDS), pa.string(), UUIDS_CANONICAL)),
    "json": cell(_c("js", "JSON", quoted(JSONS), pa.string(), JSONS)),
    "array": cell(
        _c("ints", "INTEGER[]", ["[1, NULL, 3]", "[]", None, "[-2147483648, 2147483647]", "[NULL]", "[7]"],
           pa.list_(pa.int32()), INT_LISTS),
        _c("texts", "VARCHAR[]", ["['Zoë', NULL, '']", "[]", None, "['日本 🚀']", "[NULL]", "['x']"],
           pa.list_(pa.string()), TEXT_LISTS),
        _c("pair", "INTEGER[2]", ["[1, NULL]", "[-2147483648, 2147483647]", None, "[NULL, NULL]", "[0, 0]", "[7, 8]"],
           pa.list_(pa.int32(), 2), [[1, None], [-(2**31), I32], None, [None, None], [0, 0], [7, 8]]),
    ),
    "nested_array": cell(
        _c("nested", "INTEGER[][]", ["[[1, NULL], NULL, []]", "[]", None, "[[NULL]]", "[[1], [2, 3]]", "[NULL]"],
           pa.list_(pa.list_(pa.int32())), NESTED),
    ),
}


def _uuid_bytes(text: str | None) -> bytes | None:
    import uuid

    return None if text is None else uuid.UUID(text).bytes


PARQUET: dict[str, Cell] = {
    "int8": cell(_c("i8", pa.int8(), INT8, pa.int8())),
    "int16": cell(_c("i16", pa.int16(), INT16, pa.int16())),
    "int32": cell(_c("i32", pa.int32(), INT32, pa.int32())),
    "int64": cell(_c("i64", pa.int64(), INT64, pa.int64())),
    "int128": gap("Parquet has no 128-bit integers: decimal(38, 0) is served as decimal128(38, 0)"),
    "uint8": cell(_c("u8", pa.uint8(), UINT8, pa.uint8())),
    "uint16": cell(_c("u16", pa.uint16(), UINT16, pa.uint16())),
    "uint32": cell(_c("u32", pa.uint32(), UINT32, pa.uint32())),
    "uint64": cell(_c("u64", pa.uint64(), UINT64, pa.uint64())),
    "uint128": gap("Parquet has no 128-bit integers"),
    "decimal": cell(
        _c("dec12", pa.decimal128(12, 2), _d(DECIMAL_12_2), pa.decimal128(12, 2)),
        _c("dec38", pa.decimal128(38, 10), _d(DECIMAL_38_10), pa.decimal128(38, 10)),
    ),
    "decimal_wide": cell(_c("dec50", pa.decimal256(50, 10), _d(DECIMAL_50_10), pa.decimal256(50, 10))),
    "decimal_unconstrained": gap("Parquet decimals always declare precision and scale"),
    "float32": cell(_c("f32", pa.float32(), [NAN, INF, -INF, -0.0, F32_MAX, None], pa.float32())),
    "float64": cell(_c("f64", pa.float64(), [F64_MAX, F64_TINY, NAN, -INF, -0.0, None], pa.float64())),
    "boolean": cell(_c("flag", pa.bool_(), [True, False, None, True, False, True], pa.bool_())),
    "text": cell(
        _c("txt", pa.string(), TEXT, pa.string()),
        _c("large_txt", pa.large_string(), TEXT, pa.large_string()),
    ),
    "binary": cell(
        _c("bin", pa.binary(), BYTES, pa.binary()),
        _c("fixed", pa.binary(2), [b"\x00\xff", b"ab", None, b"\x00\x00", b"\xff\xff", b"zz"], pa.binary(2)),
    ),
    "date": cell(_c("day", pa.date32(), [*DATES[:5], -I32], pa.date32())),
    "time": cell(
        _c("tod", pa.time64("us"), TIMES, pa.time64("us")),
        _c("tod_ms", pa.time32("ms"), [0, 86_399_999, 45_296_500, None, 1, 46_800_000], pa.time32("ms")),
        _c("tod_ns", pa.time64("ns"), [0, 86_399_999_999_999, 1, None, 45_296_500_000_001, 7], pa.time64("ns")),
    ),
    "timestamp": cell(
        _c("ts", pa.timestamp("us"), [*STAMPS[:4], I64, -I64], pa.timestamp("us")),
        _c("ts_ns", pa.timestamp("ns"), [1, -1, None, I64, -I64, 0], pa.timestamp("ns")),
        _c("ts_ms", pa.timestamp("ms"), [1, -1, None, I64, -I64, 0], pa.timestamp("ms")),
        # Parquet has no second unit: pyarrow stores seconds as milliseconds.
        _c("ts_s", pa.timestamp("s"), [1, -1, None, 253402300799, -62135596800, 0], pa.timestamp("ms"),
           [1000, -1000, None, 253402300799000, -62135596800000, 0]),
    ),
    "timestamptz": cell(
        _c("tstz", pa.timestamp("us", tz="UTC"), STAMPS_TZ, pa.timestamp("us", tz="UTC")),
        _c("tstz_paris", pa.timestamp("us", tz="Europe/Paris"), STAMPS_TZ, pa.timestamp("us", tz="Europe/Paris")),
    ),
    "interval": gap(
        "pyarrow cannot write Arrow intervals to Parquet, and DataFusion reads Parquet INTERVAL without its months: "
        "such columns are not served (see test_parquet_interval_columns_are_not_served)"
    ),
    "uuid": cell(_c("uid", pa.uuid(), [_uuid_bytes(u) for u in UUIDS], pa.string(), UUIDS_CANONICAL)),
    "json": cell(_c("js", pa.json_(), JSONS, pa.string())),
    "array": cell(
        _c("ints", pa.list_(pa.int32()), INT_LISTS, pa.list_(pa.int32())),
        _c("texts", pa.list_(pa.string()), TEXT_LISTS, pa.list_(pa.string())),
    ),
    "nested_array": cell(_c("nested", pa.list_(pa.list_(pa.int64())), NESTED, pa.list_(pa.list_(pa.int64())))),
}

CSV: dict[str, Cell] = {
    "int8": gap("CSV has no integer widths: integers are read as int64"),
    "int16": gap("CSV has no integer widths: integers are read as int64"),
    "int32": gap("CSV has no integer widths: integers are read as int64"),
    "int64": cell(_c("i64", None, sql(INT64), pa.int64(), INT64)),
    "int128": gap("CSV integers beyond int64 are read as text"),
    "uint8": gap("CSV has no unsigned integers: integers are read as int64"),
    "uint16": gap("CSV has no unsigned integers: integers are read as int64"),
    "uint32": gap("CSV has no unsigned integers: integers are read as int64"),
    "uint64": gap("CSV has no unsigned integers: integers beyond int64 are read as text"),
    "uint128": gap("CSV integers beyond int64 are read as text"),
    "decimal": cell(_c("dec", None, DECIMAL_12_2, pa.float64(), [None if v is None else float(v) for v in DECIMAL_12_2])),
    "decimal_wide": gap("CSV decimals are read as float64"),
    "decimal_unconstrained": gap("CSV decimals are read as float64"),
    "float32": gap("CSV floats are read as float64"),
    "float64": cell(_c("f64", None, ["inf", "-inf", "NaN", "-0.0", repr(F64_MAX), None], pa.float64(),
                       [INF, -INF, NAN, -0.0, F64_MAX, None])),
    "boolean": cell(_c("flag", None, ["true", "false", None, "true", "false", "true"], pa.bool_(),
                       [True, False, None, True, False, True])),
    "text": cell(_c("txt", None, TEXT, pa.string(), [None, *TEXT[1:]])),
    "binary": gap("CSV has no binary values"),
    "date": cell(_c("day", None, DATES_ISO, pa.date32(), DATES)),
    "time": cell(_c("tod", None, TIMES_ISO, pa.string(), TIMES_ISO)),
    "timestamp": cell(_c("ts", None, STAMPS_ISO, pa.timestamp("us"), STAMPS)),
    "timestamptz": cell(
        _c("tstz", None,
           ["2024-02-29T12:34:56.123456+05:30", "1970-01-01T00:00:00Z", None, None, "0001-01-01T00:00:00+00:00",
            "2038-01-19T03:14:08-08:00"],
           pa.timestamp("us"), [STAMPS_TZ[0], 0, None, None, micros(1, 1, 1), STAMPS_TZ[5]]),
    ),
    "interval": gap("CSV has no interval type: the text is served as string"),
    "uuid": cell(_c("uid", None, UUIDS_CANONICAL, pa.string())),
    "json": cell(_c("js", None, JSONS, pa.string())),
    "array": gap("CSV has no arrays: the text is served as string"),
    "nested_array": gap("CSV has no arrays: the text is served as string"),
}

# MariaDB (MySQL's types; UUID is MariaDB's own, 10.7 and later). Stored values are SQL
# literals, inserted as they are with the session time zone '+00:00'.
MYSQL_STAMPS_TZ_ISO = [
    "2024-02-29 07:04:56.123456",
    "1970-01-01 00:00:01",
    "2038-01-19 03:14:07.999999",
    None,
    "2000-01-01 00:00:00",
    "2024-02-29 12:34:56",
]
MYSQL_STAMPS_TZ = [
    micros(2024, 2, 29, 7, 4, 56, 123456),
    1_000_000,
    micros(2038, 1, 19, 3, 14, 7, 999999),
    None,
    micros(2000, 1, 1),
    micros(2024, 2, 29, 12, 34, 56),
]
MYSQL: dict[str, Cell] = {
    "int8": cell(_c("i8", "TINYINT", sql(INT8), pa.int8(), INT8)),
    "int16": cell(
        _c("i16", "SMALLINT", sql(INT16), pa.int16(), INT16),
        _c("yr", "YEAR", ["1901", "2155", "0", None, "2024", "1970"], pa.int16(), [1901, 2155, 0, None, 2024, 1970]),
    ),
    "int32": cell(
        _c("i32", "INT", sql(INT32), pa.int32(), INT32),
        _c(
            "i24",
            "MEDIUMINT",
            sql([-(2**23), 2**23 - 1, 0, -1, 1, None]),
            pa.int32(),
            [-(2**23), 2**23 - 1, 0, -1, 1, None],
        ),
    ),
    "int64": cell(_c("i64", "BIGINT", sql(INT64), pa.int64(), INT64)),
    "int128": gap("MySQL has no 128-bit integer: DECIMAL(39, 0) is served as decimal256(39, 0)"),
    "uint8": cell(_c("u8", "TINYINT UNSIGNED", sql(UINT8), pa.uint8(), UINT8)),
    "uint16": cell(_c("u16", "SMALLINT UNSIGNED", sql(UINT16), pa.uint16(), UINT16)),
    "uint32": cell(
        _c("u32", "INT UNSIGNED", sql(UINT32), pa.uint32(), UINT32),
        _c(
            "u24",
            "MEDIUMINT UNSIGNED",
            sql([0, 2**24 - 1, 1, None, 2**23, 42]),
            pa.uint32(),
            [0, 2**24 - 1, 1, None, 2**23, 42],
        ),
    ),
    "uint64": cell(
        _c("u64", "BIGINT UNSIGNED", sql(UINT64), pa.uint64(), UINT64),
        _c("bits", "BIT(64)", sql(UINT64), pa.uint64(), UINT64),
    ),
    "uint128": gap("MySQL has no 128-bit integer"),
    "decimal": cell(
        _c("dec12", "DECIMAL(12, 2)", sql(DECIMAL_12_2), pa.decimal128(12, 2), _d(DECIMAL_12_2)),
        _c("dec38", "DECIMAL(38, 10)", sql(DECIMAL_38_10), pa.decimal128(38, 10), _d(DECIMAL_38_10)),
        _c(
            "udec",
            "DECIMAL(5, 2) UNSIGNED",
            sql(["999.99", "0.00", "0.01", None, "1", "12.5"]),
            pa.decimal128(5, 2),
            _d(["999.99", "0.00", "0.01", None, "1", "12.5"]),
        ),
    ),
    "decimal_wide": cell(
        _c("dec50", "DECIMAL(50, 10)", sql(DECIMAL_50_10), pa.decimal256(50, 10), _d(DECIMAL_50_10)),
        _c(
            "dec65",
            "DECIMAL(65, 30)",
            sql(["9" * 35 + "." + "9" * 30, "0", None, "-1", "1e-30", "1"]),
            pa.decimal256(65, 30),
            _d(["9" * 35 + "." + "9" * 30, "0", None, "-1", "1e-30", "1"]),
        ),
    ),
    "decimal_unconstrained": cell(
        _c(
            "dec",
            "DECIMAL",
            sql(["9999999999", "-9999999999", "0", None, "1", "42"]),
            pa.decimal128(10, 0),
            _d(["9999999999", "-9999999999", "0", None, "1", "42"]),
        ),
    ),
    "float32": cell(
        _c(
            "f32",
            "FLOAT",
            ["1.5", "-2.25", "0", None, "3.0e38", "1e-30"],
            pa.float32(),
            [1.5, -2.25, 0.0, None, 3.0e38, 1e-30],
        )
    ),
    "float64": cell(
        _c(
            "f64",
            "DOUBLE",
            [repr(F64_MAX), "-1.5", repr(0.1 + 0.2), None, "1e-300", "0"],
            pa.float64(),
            [F64_MAX, -1.5, 0.1 + 0.2, None, 1e-300, 0.0],
        )
    ),
    "boolean": cell(
        _c(
            "flag",
            "BOOLEAN",
            ["TRUE", "FALSE", None, "1", "0", "TRUE"],
            pa.bool_(),
            [True, False, None, True, False, True],
        ),
        fails=(Fails("flag_two", "BOOLEAN", "2", "holds a value other than 0 and 1"),),
    ),
    "text": cell(
        _c("txt", "TEXT", quoted(TEXT), pa.string(), TEXT),
        _c("vc", "VARCHAR(20)", quoted(TEXT), pa.string(), TEXT),
        _c("ch", "CHAR(20)", quoted(TEXT), pa.string(), [*TEXT[:4], "trailing", None]),
        _c(
            "en",
            "ENUM('b', 'a', 'Zoë')",
            quoted(["b", "a", "Zoë", None, "a", "b"]),
            pa.string(),
            ["b", "a", "Zoë", None, "a", "b"],
        ),
        _c(
            "st",
            "SET('x', 'y')",
            quoted(["x,y", "", "y", None, "x", "y,x"]),
            pa.string(),
            ["x,y", "", "y", None, "x", "x,y"],
        ),
    ),
    "binary": cell(
        _c("blob", "BLOB", [None if b is None else "X'" + b.hex() + "'" for b in BYTES], pa.binary(), BYTES),
        _c("vbin", "VARBINARY(8)", [None if b is None else "X'" + b.hex() + "'" for b in BYTES], pa.binary(), BYTES),
        _c(
            "bin2",
            "BINARY(2)",
            [None if b is None else "X'" + b.hex() + "'" for b in BYTES],
            pa.binary(),
            [b"\x00\xff", b"\x00\x00", None, b"A\x00", b"\x80\x00", b"\x00\x00"],
        ),
    ),
    "date": cell(
        _c("day", "DATE", quoted(DATES_ISO), pa.date32(), DATES),
        fails=(
            Fails("day_zero", "DATE", "'0000-00-00'", "zero or partial date '0000-00-00'"),
            Fails("day_partial", "DATE", "'2024-00-10'", "zero or partial date '2024-00-10'"),
        ),
    ),
    "time": cell(
        _c("tod", "TIME(6)", quoted(TIMES_ISO), pa.time64("us"), TIMES),
        fails=(
            Fails("tod_negative", "TIME", "'-01:00:00'", "cannot convert string to time64[us]"),
            Fails("tod_24h", "TIME", "'24:00:00'", "cannot convert string to time64[us]"),
        ),
    ),
    "timestamp": cell(
        _c("ts", "DATETIME(6)", quoted(STAMPS_ISO), pa.timestamp("us"), STAMPS),
        fails=(Fails("ts_zero", "DATETIME", "'0000-00-00 00:00:00'", "zero or partial date '0000-00-00'"),),
    ),
    "timestamptz": cell(
        _c("tstz", "TIMESTAMP(6) NULL", quoted(MYSQL_STAMPS_TZ_ISO), pa.timestamp("us", tz="UTC"), MYSQL_STAMPS_TZ)
    ),
    "interval": gap("MySQL has no interval type"),
    "uuid": cell(_c("uid", "UUID", quoted(UUIDS_CANONICAL), pa.string(), UUIDS_CANONICAL)),
    "json": cell(_c("js", "JSON", [None if v is None else v.replace("\\", "\\\\") for v in quoted(JSONS)], pa.string(),
                    JSONS)),  # MySQL string literals take backslash escapes
    "array": gap("MySQL has no arrays: JSON arrays are served as string"),
    "nested_array": gap("MySQL has no arrays: JSON arrays are served as string"),
}

CELLS: dict[str, dict[str, Cell]] = {
    "postgres": POSTGRES,
    "sqlite": SQLITE,
    "duckdb": DUCKDB,
    "parquet": PARQUET,
    "csv": CSV,
    "mysql": MYSQL,
}
assert all(set(cells) == set(FAMILIES) for cells in CELLS.values())


def columns(kind: str) -> list[Column]:
    return [column for family in FAMILIES for column in CELLS[kind][family].columns]


def failures(kind: str) -> list[Fails]:
    return [failure for family in FAMILIES for failure in CELLS[kind][family].fails]
