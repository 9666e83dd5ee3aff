"""What the fuzzer sends: hypothesis strategies for SQL text, parameter batches and raw protocol messages.

Each strategy draws a *case* (``tests/stress/cases.py``): plain data that the harness
turns into Flight calls, that pickles (a failing case is saved and replayed) and that
prints short. Sizes are drawn as numbers and built by repetition (``"x" * n``), so a
megabyte literal costs hypothesis a few choices, not a megabyte of them.
"""

from __future__ import annotations

import json
import re
import string
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from gateway.flightsql import commands
from gateway.flightsql import flight_pb2 as fpb
from gateway.flightsql import flight_sql_pb2 as pb
from tests.stress.cases import ParameterCase, ProtocolCase, SqlCase
from tests.stress.mesh import LOGIN_USERS

# -- SQL ------------------------------------------------------------------------------------

VALID_QUERIES = (
    "SELECT 1",
    "SELECT count(*) AS n FROM sales.customers",
    "SELECT customer_id, name, country FROM sales.customers WHERE country = 'DE' ORDER BY customer_id LIMIT 10",
    "SELECT c.country, count(*) AS orders, sum(o.total) AS revenue FROM sales.orders o"
    " JOIN sales.customers c USING (customer_id) GROUP BY c.country ORDER BY revenue DESC",
    "SELECT p.category, sum(i.quantity) AS units FROM inventory.order_items i"
    " JOIN inventory.products p USING (product_id) GROUP BY p.category",
    "SELECT s.carrier, avg(s.weight_kg) AS kg FROM logistics.shipments s JOIN sales.orders o"
    " ON s.order_id = o.order_id WHERE o.status = 'shipped' GROUP BY s.carrier",
    "SELECT * FROM sales.big_spenders ORDER BY lifetime_value DESC LIMIT 5",
    "SELECT order_id, total, rank() OVER (PARTITION BY customer_id ORDER BY total DESC) AS r"
    " FROM sales.orders WHERE order_date > DATE '2024-06-01'",
    "WITH t AS (SELECT customer_id, sum(total) AS s FROM sales.orders GROUP BY customer_id)"
    " SELECT * FROM t WHERE s > 1000 ORDER BY s",
    "SELECT name FROM inventory.products WHERE name LIKE '%red%'"
    " UNION ALL SELECT name FROM sales.customers WHERE name ILIKE 'z%'",
    "SELECT domain, product FROM system.products",
    "SELECT * FROM system.columns WHERE product = 'orders'",
    "SELECT * FROM system.policies",
    "SELECT count(*) FROM system.query_log",
    "SELECT * FROM system.domains",
    "EXPLAIN SELECT * FROM sales.orders WHERE total > 100",
    "EXPLAIN ANALYZE SELECT count(*) FROM inventory.products",
    "SELECT CAST(signup AS VARCHAR) AS s, extract(year FROM signup) AS y FROM sales.customers LIMIT 3",
    "SELECT o.order_id, (SELECT count(*) FROM inventory.order_items i WHERE i.order_id = o.order_id) AS items"
    " FROM sales.orders o LIMIT 20",
    "SELECT * FROM sales.orders WHERE customer_id IN (SELECT customer_id FROM sales.customers WHERE segment IS NULL)",
    "SELECT array_agg(status) AS a, string_agg(status, ',') AS s FROM sales.orders WHERE order_id < 10",
    "SELECT to_hex(order_id) AS h, md5(status) AS m, regexp_replace(status, 'a', 'b') AS r FROM sales.orders LIMIT 5",
    "SELECT customer_id, lifetime_value * 1.5 AS v, round(lifetime_value, 1) AS r FROM sales.customers LIMIT 5",
    "SELECT * FROM sales.orders o LEFT JOIN inventory.order_items i ON o.order_id = i.order_id"
    " WHERE i.quantity > 4 LIMIT 10",
    "SELECT count(DISTINCT carrier) AS n FROM logistics.shipments",
    "SELECT CASE WHEN total > 100 THEN 'big' ELSE 'small' END AS size, count(*) AS n FROM sales.orders GROUP BY 1",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(x, y)",
    "SHOW TABLES",
    "SELECT table_schema, table_name FROM information_schema.tables",
    "SELECT mesh.sales.orders.order_id FROM mesh.sales.orders LIMIT 1",
    'SELECT "order_id" FROM "sales"."orders" WHERE "status" <> \'open\' LIMIT 2',
    "SELECT name, price FROM inventory.products WHERE price BETWEEN 10 AND 50 ORDER BY price NULLS FIRST",
    "SELECT date_trunc('month', order_date) AS m, count(*) AS n FROM sales.orders GROUP BY 1 ORDER BY 1",
    "SELECT s.order_id, s.shipped_at - INTERVAL '1 day' AS before FROM logistics.shipments s LIMIT 3",
    "SELECT c.name, o.total FROM sales.customers c, sales.orders o WHERE c.customer_id = o.customer_id"
    " AND o.total > 1500 ORDER BY o.total DESC LIMIT 7",
)


def _words(text: str) -> list[str]:
    return text.split()


KEYWORDS = _words(
    "SELECT FROM WHERE GROUP BY HAVING ORDER LIMIT OFFSET JOIN LEFT RIGHT FULL OUTER INNER CROSS NATURAL ON"
    " USING UNION INTERSECT EXCEPT ALL DISTINCT AS WITH RECURSIVE CASE WHEN THEN ELSE END AND OR NOT IN"
    " EXISTS BETWEEN LIKE ILIKE SIMILAR IS NULL TRUE FALSE CAST TRY_CAST INTERVAL DATE TIMESTAMP TIME"
    " ARRAY STRUCT MAP VALUES EXPLAIN ANALYZE VERBOSE INSERT INTO UPDATE SET DELETE CREATE TABLE VIEW DROP"
    " ALTER COPY TO PREPARE EXECUTE DEALLOCATE BEGIN COMMIT ROLLBACK SHOW DESCRIBE OVER PARTITION ROWS RANGE"
    " PRECEDING FOLLOWING UNBOUNDED CURRENT ROW FILTER WITHIN LATERAL UNNEST QUALIFY WINDOW ASC DESC NULLS"
    " FIRST LAST COLLATE ESCAPE EXTRACT SUBSTRING POSITION OVERLAY TRIM ANY SOME ATTACH LOAD INSTALL PRAGMA"
    " GRANT REVOKE RETURNING CONFLICT MERGE MATCHED TABLESAMPLE PIVOT UNPIVOT"
)

PUNCTUATION = [
    *_words(
        "( ) , ; . * + - / % = < > <= >= <> != || :: [ ] { } ? $1 $2 $0 $99999999999 $ @ # ' \" ` \\ -- /* */"
        " ^ & | ~ ! => -> ->> :"
    ),
    "\n",
    "\t",
    " ",
]

FUNCTIONS = _words(
    "abs upper lower length repeat lpad rpad concat substr regexp_match regexp_replace to_timestamp"
    " date_trunc date_part make_array array_length unnest coalesce nullif greatest least sqrt ln power"
    " current_user current_user_attribute digest md5 sha256 to_hex chr ascii split_part arrow_cast"
    " arrow_typeof now random uuid"
)

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\w+|\s+|.", re.DOTALL)

# Characters that break naive text handling: NUL and controls, quotes, bidirectional
# overrides, zero-width joiners, combining marks, astral emoji, non-characters.
ODD_CHARACTERS = (
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\u0085",
    "\u00a0",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "\U0001f600",
    "\U0010ffff",
    "\u0301",
    "\u0130",
    "\u00df",
    "\uff07",
    "\u02bc",
    '"',
    "'",
    "\\",
    "%",
    "_",
    "$",
    "`",
)

odd_text = st.text(
    alphabet=st.one_of(st.sampled_from(ODD_CHARACTERS), st.characters(exclude_categories=("Cs",))),
    max_size=40,
)
"""Short text of any Unicode (no lone surrogates: they cannot be encoded to send), odd characters favoured."""

SIZES = st.one_of(
    st.sampled_from([0, 1, 63, 64, 65, 255, 256, 1023, 1024, 4096, 65535, 65536, 100_000, 1 << 20, (1 << 20) + 1]),
    st.integers(0, 300_000),
    st.integers(300_000, 3 << 20),
)
"""Lengths of huge literals and identifiers: boundaries (the 1 MiB query limit), then anything up to 3 MiB."""

DEPTHS = st.one_of(
    st.sampled_from([2, 10, 48, 49, 50, 51, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256, 257, 500, 1000, 1500]),
    st.integers(1, 4000),
)


def _quote_identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def _token(draw: st.DrawFn) -> str:
    """One token to insert: a keyword, punctuation, a function, a literal, a name or odd text."""
    kind = draw(st.sampled_from(["keyword", "keyword", "punct", "punct", "function", "literal", "name", "odd"]))
    if kind == "keyword":
        return f" {draw(st.sampled_from(KEYWORDS))} "
    if kind == "punct":
        return draw(st.sampled_from(PUNCTUATION))
    if kind == "function":
        return f" {draw(st.sampled_from(FUNCTIONS))}("
    if kind == "literal":
        return draw(_small_literal())
    if kind == "name":
        return draw(st.sampled_from(["sales", "orders", "inventory.products", "logistics", "system", "ops.slow", "x"]))
    return draw(odd_text)


@st.composite
def _small_literal(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            st.integers().map(str),
            st.floats().map(repr),
            st.text(max_size=20).map(_quote_literal),
            st.sampled_from(
                [
                    "NULL",
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775808",
                    "18446744073709551616",
                    "1e308",
                    "1e309",
                    "-1e-400",
                    "0x7fffffff",
                    "X'ff'",
                    "DATE '0000-00-00'",
                    "DATE '-262144-01-01'",
                    "TIMESTAMP '9999-12-31 23:59:60'",
                    "INTERVAL '999999999999 years'",
                    "'NaN'::double",
                    "E'\\x00'",
                    "''",
                ]
            ),
        )
    )


@st.composite
def mutated_query(draw: st.DrawFn) -> str:
    """A valid query with tokens inserted, deleted, replaced, duplicated or swapped."""
    tokens = _TOKEN.findall(draw(st.sampled_from(VALID_QUERIES)))
    for _ in range(draw(st.integers(0, 6))):
        operation = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "swap", "truncate"]))
        at = draw(st.integers(0, max(len(tokens) - 1, 0)))
        if operation == "insert":
            tokens.insert(at, draw(_token()))
        elif operation == "delete" and tokens:
            del tokens[at : at + draw(st.integers(1, 3))]
        elif operation == "replace" and tokens:
            tokens[at] = draw(_token())
        elif operation == "duplicate" and tokens:
            span = tokens[at : at + draw(st.integers(1, 8))]
            tokens[at:at] = span * draw(st.integers(1, 3))
        elif operation == "swap" and len(tokens) > 1:
            other = draw(st.integers(0, len(tokens) - 1))
            tokens[at], tokens[other] = tokens[other], tokens[at]
        elif operation == "truncate":
            tokens = tokens[:at]
    return "".join(tokens)


NESTINGS: dict[str, Callable[[int], str]] = {
    "parentheses": lambda d: "SELECT " + "(" * d + "1" + ")" * d,
    "unbalanced": lambda d: "SELECT " + "(" * d + "1",
    "closing": lambda d: "SELECT 1" + ")" * d,
    "subqueries": lambda d: "SELECT * FROM " + "(SELECT * FROM " * d + "sales.orders" + ") t" * d,
    "not": lambda d: "SELECT " + "NOT " * d + "true",
    "minus": lambda d: "SELECT " + "- " * d + "1",
    "case": lambda d: "SELECT " + "CASE WHEN true THEN " * d + "1" + " END" * d,
    "functions": lambda d: "SELECT " + "abs(" * d + "-1" + ")" * d,
    "arrays": lambda d: "SELECT " + "[" * d + "1" + "]" * d,
    "casts": lambda d: "SELECT " + "CAST(" * d + "1" + " AS BIGINT)" * d,
    "double-colon": lambda d: "SELECT 1" + "::text" * d,
    "plus-chain": lambda d: "SELECT " + " + ".join(["1"] * d),
    "and-chain": lambda d: "SELECT count(*) FROM sales.orders WHERE " + " AND ".join(["total > 1"] * d),
    "or-chain": lambda d: (
        "SELECT count(*) FROM sales.customers WHERE " + " OR ".join(f"customer_id = {i}" for i in range(d))
    ),
    "in-list": lambda d: "SELECT count(*) FROM sales.orders WHERE order_id IN (" + ", ".join(map(str, range(d))) + ")",
    "columns": lambda d: "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(d)),
    "union": lambda d: " UNION ALL ".join(["SELECT 1 AS x"] * min(d, 1200)),
    "ctes": lambda d: (
        "WITH t0 AS (SELECT 1 AS x)"
        + "".join(f", t{i} AS (SELECT x FROM t{i - 1})" for i in range(1, min(d, 600)))
        + f" SELECT * FROM t{min(d, 600) - 1}"
    ),
    "joins": lambda d: (
        "SELECT count(*) FROM sales.customers c0"
        + "".join(
            f" JOIN sales.customers c{i} ON c{i}.customer_id = c{i - 1}.customer_id" for i in range(1, min(d, 40))
        )
    ),
    "comments": lambda d: "SELECT 1 " + "/* " * d + "x" + " */" * d,
    "string-concat": lambda d: "SELECT " + " || ".join(["'a'"] * d),
}


@st.composite
def nested_query(draw: st.DrawFn) -> str:
    """Deep nesting of one kind (parentheses, subqueries, NOT, CASE ...) or a long flat chain."""
    return NESTINGS[draw(st.sampled_from(sorted(NESTINGS)))](draw(DEPTHS))


@st.composite
def huge_literal_query(draw: st.DrawFn) -> str:
    """A literal of up to a few MiB: a string, a number with many digits, a hex blob, an interval."""
    size = draw(SIZES)
    fill = draw(st.sampled_from(["x", "é", "\U0001f600", "'", "9", "\x00", "\\", "%"]))
    kind = draw(st.sampled_from(["string", "number", "decimal", "exponent", "hex", "like", "interval", "date"]))
    if kind == "string":
        return f"SELECT {_quote_literal(fill * size)} AS big"
    if kind == "number":
        return "SELECT " + "9" * max(size, 1) + " AS n"
    if kind == "decimal":
        return "SELECT 0." + "1" * max(size, 1) + " AS d"
    if kind == "exponent":
        return f"SELECT 1e{'9' * max(min(size, 100_000), 1)} AS e"
    if kind == "hex":
        return f"SELECT X'{'ff' * size}' AS b"
    if kind == "like":
        return f"SELECT count(*) FROM sales.customers WHERE name LIKE {_quote_literal('%' + fill * min(size, 200_000))}"
    if kind == "interval":
        return f"SELECT INTERVAL '{'9' * max(min(size, 1000), 1)} days' AS i"
    return f"SELECT DATE '{'9' * max(min(size, 1000), 1)}-01-01' AS d"


@st.composite
def unicode_query(draw: st.DrawFn) -> str:
    """Odd Unicode and NUL bytes as names, literals, comments, or spliced anywhere into a valid query."""
    text = draw(odd_text)
    base = draw(st.sampled_from(VALID_QUERIES))
    where = draw(st.sampled_from(["literal", "quoted-name", "alias", "table", "comment", "splice", "prefix", "raw"]))
    if where == "literal":
        return f"SELECT {_quote_literal(text)} AS t"
    if where == "quoted-name":
        return f"SELECT {_quote_identifier(text)} FROM sales.orders"
    if where == "alias":
        return f"SELECT 1 AS {_quote_identifier(text)}"
    if where == "table":
        return f"SELECT * FROM sales.{_quote_identifier(text)}"
    if where == "comment":
        return f"SELECT 1 -- {text}\n, 2 /* {text} */"
    if where == "splice":
        at = draw(st.integers(0, len(base)))
        return base[:at] + text + base[at:]
    if where == "prefix":
        return text + base
    return text


@st.composite
def long_identifier_query(draw: st.DrawFn) -> str:
    """Identifiers of up to a few MiB, quoted or not, as columns, tables, schemas and aliases."""
    name = draw(st.sampled_from(["a", "é", "_", "Z9", "\U0001f600"])) * max(draw(SIZES), 1)
    shown = draw(st.sampled_from([name, _quote_identifier(name)]))
    place = draw(st.sampled_from(["column", "table", "schema", "alias", "function", "cte", "catalog"]))
    return {
        "column": f"SELECT {shown} FROM sales.orders",
        "table": f"SELECT * FROM sales.{shown}",
        "schema": f"SELECT * FROM {shown}.orders",
        "alias": f"SELECT 1 AS {shown}",
        "function": f"SELECT {shown}(1)",
        "cte": f"WITH {shown} AS (SELECT 1 AS x) SELECT * FROM {shown}",
        "catalog": f"SELECT * FROM {shown}.sales.orders",
    }[place]


@st.composite
def keyword_soup(draw: st.DrawFn) -> str:
    """Keywords, punctuation and names in random order."""
    return "".join(draw(st.lists(_token(), max_size=40)))


sql_texts = st.one_of(
    mutated_query(),
    mutated_query(),
    mutated_query(),
    nested_query(),
    huge_literal_query(),
    unicode_query(),
    long_identifier_query(),
    keyword_soup(),
    st.text(max_size=200),
    st.sampled_from(VALID_QUERIES),
)
"""SQL text; mutations of valid queries are drawn three times as often as each other kind."""

sql_cases = st.builds(
    SqlCase,
    sql=sql_texts,
    user=st.sampled_from(["alice", "root"]),
    path=st.sampled_from(["statement", "statement", "schema", "prepared"]),
)

# -- parameters -----------------------------------------------------------------------------

PARAMETER_QUERIES = (
    "SELECT customer_id, name FROM sales.customers WHERE name = $1",
    "SELECT order_id FROM sales.orders WHERE customer_id = $1 AND status = $2",
    "SELECT $1 AS x",
    "SELECT $1 AS a, $2 AS b, $3 AS c",
    "SELECT count(*) AS n FROM sales.orders WHERE total > $1",
    "SELECT name FROM inventory.products WHERE price < $1 AND category = $2",
    "SELECT customer_id FROM sales.customers WHERE signup > $1",
    "SELECT order_id FROM sales.orders WHERE order_date = $1",
    "SELECT order_id FROM sales.orders WHERE order_id = ?",
    "SELECT name FROM inventory.products WHERE product_id IN ($1, $2)",
    "SELECT $1 || 'x' AS s",
    "SELECT order_id FROM sales.orders LIMIT $1",
    "SELECT 1 AS one",
    "SELECT o.order_id FROM sales.orders o JOIN inventory.order_items i ON o.order_id = i.order_id"
    " WHERE o.order_id = $1 AND i.quantity > $2",
    "SELECT upper($1) AS u, length($1) AS l",
    "SELECT $1 + 1 AS n",
    "SELECT order_id FROM sales.orders WHERE status LIKE $1",
)

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
STRING_TYPES = [pa.string(), pa.large_string(), pa.string_view()]
# Fixed-width types built from raw integers of their width (``Array.view``): any bit
# pattern, including days, times and instants outside every calendar.
VIEWED_TYPES = {
    32: [pa.date32(), pa.time32("s"), pa.time32("ms")],
    64: [
        pa.date64(),
        pa.time64("us"),
        pa.time64("ns"),
        pa.timestamp("s"),
        pa.timestamp("ms", tz="UTC"),
        pa.timestamp("us", tz="Europe/Paris"),
        pa.timestamp("ns", tz="+05:30"),
        pa.timestamp("us", tz="Mars/Olympus_Mons"),
        pa.duration("s"),
        pa.duration("ns"),
    ],
}
OTHER_TYPES = [
    pa.null(),
    pa.bool_(),
    pa.float16(),
    pa.float32(),
    pa.float64(),
    pa.decimal128(38, 0),
    pa.decimal128(38, 38),
    pa.decimal128(5, 2),
    pa.decimal256(76, 0),
    pa.decimal256(76, 40),
    pa.binary(),
    pa.large_binary(),
    pa.binary_view(),
    pa.binary(3),
    pa.month_day_nano_interval(),
    pa.list_(pa.int64()),
    pa.large_list(pa.string()),
    pa.list_(pa.int32(), 2),
    pa.struct([("a", pa.int64()), ("b", pa.string())]),
    pa.map_(pa.string(), pa.int64()),
    pa.dictionary(pa.int8(), pa.string()),
    pa.run_end_encoded(pa.int32(), pa.string()),
]
EVERY_TYPE = INT_TYPES + STRING_TYPES + VIEWED_TYPES[32] + VIEWED_TYPES[64] + OTHER_TYPES

EXTREME_INTS = [0, 1, -1, 2**7 - 1, -(2**7), 2**15 - 1, -(2**15), 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
EXTREME_FLOATS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1.7976931348623157e308, 5e-324, -1e-300]

INVALID_UTF8 = [b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"ok\xff", b"\x80", b"\xfe"]


def string_array(kind: pa.DataType, values: list[bytes | None]) -> pa.Array:
    """A string array of ``kind`` holding ``values`` byte for byte, valid UTF-8 or not."""
    valid = [v is not None for v in values]
    data = [v or b"" for v in values]
    bitmap = None if all(valid) else pa.array(valid, pa.bool_()).buffers()[1]
    nulls = valid.count(False)
    if kind == pa.string_view():
        views, heap = [], b""
        for value in data:
            if len(value) <= 12:
                views.append(struct.pack("<i12s", len(value), value))
            else:
                views.append(struct.pack("<i4sii", len(value), value[:4], 0, len(heap)))
                heap += value
        buffers = [bitmap, pa.py_buffer(b"".join(views))] + ([pa.py_buffer(heap)] if heap else [])
        return pa.Array.from_buffers(kind, len(values), buffers, null_count=nulls)
    offsets, position = [0], 0
    for value in data:
        position += len(value)
        offsets.append(position)
    width = pa.int64() if kind == pa.large_string() else pa.int32()
    offset_buffer = pa.array(offsets, width).buffers()[1]
    return pa.Array.from_buffers(
        kind, len(values), [bitmap, offset_buffer, pa.py_buffer(b"".join(data))], null_count=nulls
    )


@st.composite
def string_bytes(draw: st.DrawFn) -> bytes | None:
    """Bytes for a string value: invalid UTF-8, odd text, a huge string, random bytes or NULL."""
    kind = draw(st.sampled_from(["invalid", "invalid", "text", "huge", "random", "null"]))
    if kind == "invalid":
        return draw(st.sampled_from(INVALID_UTF8)) + draw(st.binary(max_size=20))
    if kind == "text":
        return draw(odd_text).encode()
    if kind == "huge":
        return draw(st.sampled_from([b"x", b"\xc3\xa9", b"\x00"])) * draw(st.integers(1 << 16, 6 << 20))
    if kind == "random":
        return draw(st.binary(max_size=40))
    return None


@st.composite
def parameter_column(draw: st.DrawFn, rows: int, kind: pa.DataType) -> pa.Array:
    """A column of ``rows`` values of ``kind``: extreme, malformed, huge, NULL."""
    how = draw(st.sampled_from(["values", "values", "values", "nulls"]))
    if how == "nulls" or kind == pa.null():
        return pa.nulls(rows, kind)
    if kind in STRING_TYPES:
        return string_array(kind, [draw(string_bytes()) for _ in range(rows)])
    if kind in INT_TYPES:
        lo, hi = (
            (0, 2**kind.bit_width - 1)
            if pa.types.is_unsigned_integer(kind)
            else (
                -(2 ** (kind.bit_width - 1)),
                2 ** (kind.bit_width - 1) - 1,
            )
        )
        values = st.one_of(st.sampled_from([lo, hi, 0, 1]), st.integers(lo, hi))
        return pa.array([draw(values) for _ in range(rows)], kind)
    for width, kinds in VIEWED_TYPES.items():
        if kind in kinds:
            lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
            raw = [draw(st.one_of(st.sampled_from([lo, hi, 0, -1, 86_400, 86_401_000]), st.integers(lo, hi)))]
            raw += [draw(st.integers(lo, hi)) for _ in range(rows - 1)]
            return pa.array(raw[:rows], pa.int32() if width == 32 else pa.int64()).view(kind)
    if pa.types.is_floating(kind):
        floats = [draw(st.one_of(st.sampled_from(EXTREME_FLOATS), st.floats(width=32))) for _ in range(rows)]
        return pa.array(floats, pa.float64()).cast(kind, safe=False)
    if pa.types.is_decimal(kind):
        largest = ("9" * (kind.precision - kind.scale) or "0") + "." + "9" * kind.scale
        extreme = [Decimal(largest), Decimal("-" + largest), Decimal(0)]  # (unary minus would round to 28 digits)
        return pa.array([draw(st.sampled_from(extreme)) for _ in range(rows)], kind)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.array([draw(st.one_of(st.binary(max_size=30), st.none())) for _ in range(rows)], kind)
    if pa.types.is_fixed_size_binary(kind):
        return pa.array([draw(st.binary(min_size=3, max_size=3)) for _ in range(rows)], kind)
    if kind == pa.month_day_nano_interval():
        ints = st.integers(-(2**31), 2**31 - 1)
        nanos = st.integers(-(2**63), 2**63 - 1)
        return pa.array([(draw(ints), draw(ints), draw(nanos)) for _ in range(rows)], kind)
    if kind == pa.bool_():
        return pa.array([draw(st.booleans()) for _ in range(rows)], kind)
    if pa.types.is_dictionary(kind):
        dictionary = string_array(pa.string(), [draw(string_bytes()) for _ in range(2)])
        return pa.DictionaryArray.from_arrays(
            pa.array([draw(st.integers(0, 1)) for _ in range(rows)], pa.int8()), dictionary
        )
    if pa.types.is_run_end_encoded(kind):
        values = string_array(pa.string(), [draw(string_bytes())] if rows else [])
        run_ends = pa.array([rows] if rows else [], pa.int32())
        return pa.Array.from_buffers(kind, rows, [None], children=[run_ends, values])  # unchecked, unlike from_arrays
    if pa.types.is_struct(kind):
        inner = string_array(pa.string(), [draw(string_bytes()) for _ in range(rows)])
        numbers = pa.array([draw(st.sampled_from(EXTREME_INTS)) for _ in range(rows)], pa.int64())
        return pa.StructArray.from_arrays([numbers, inner], names=["a", "b"])
    if pa.types.is_map(kind):
        return pa.array([[("k", draw(st.sampled_from(EXTREME_INTS)))] for _ in range(rows)], kind)
    if pa.types.is_fixed_size_list(kind):
        return pa.array([[1, -(2**31)] for _ in range(rows)], kind)
    if pa.types.is_large_list(kind):
        inner = string_array(kind.value_type, [draw(string_bytes()) for _ in range(rows)])
        return pa.LargeListArray.from_arrays(pa.array(range(rows + 1), pa.int64()), inner, type=kind)
    return pa.array([[draw(st.sampled_from(EXTREME_INTS))] for _ in range(rows)], kind)


@st.composite
def parameter_batches(draw: st.DrawFn) -> tuple[pa.Schema, tuple[pa.RecordBatch, ...]]:
    """0-3 batches of one schema: 0-6 columns of any type (a first column sometimes as a dense union,
    as flightsql-dbapi sends), 0-3 rows (sometimes 40)."""
    kinds = [draw(st.sampled_from(EVERY_TYPE)) for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 3, 4, 6])))]
    union = bool(kinds) and draw(st.integers(0, 9)) == 0
    names = [draw(st.one_of(st.just(f"${i + 1}"), odd_text)) for i in range(len(kinds))]
    batches = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3]))):
        rows = draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3, 40]))
        arrays = [draw(parameter_column(rows, kind)) for kind in kinds]
        if union:
            arrays[0] = pa.UnionArray.from_dense(
                pa.array([0] * rows, pa.int8()), pa.array(range(rows), pa.int32()), [arrays[0]]
            )
        batches.append(arrays)
    if union and batches:
        kinds[0] = batches[0][0].type
    elif union:
        kinds[0] = pa.dense_union([pa.field("0", kinds[0])])
    schema = pa.schema([pa.field(name, kind) for name, kind in zip(names, kinds, strict=True)])
    return schema, tuple(_record_batch(schema, arrays) for arrays in batches)


def _record_batch(schema: pa.Schema, arrays: list[pa.Array]) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_arrays(arrays, schema=schema)
    except pa.ArrowInvalid:  # pyarrow checks the structure (not the values) and will not assemble some unions
        return pa.RecordBatch.from_arrays(
            [pa.nulls(len(a), a.type) if pa.types.is_union(a.type) else a for a in arrays], schema=schema
        )


@st.composite
def parameter_cases(draw: st.DrawFn) -> ParameterCase:
    schema, batches = draw(parameter_batches())
    return ParameterCase(
        sql=draw(st.sampled_from(PARAMETER_QUERIES)),
        user=draw(st.sampled_from(["alice", "alice", "root"])),
        schema=schema,
        batches=batches,
        handle=draw(st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=40))),
        then=draw(st.sampled_from(["execute", "execute", "execute", "schema", "bind-again", "nothing", "close"])),
    )


# -- raw protocol ------------------------------------------------------------------------------

FLIGHT_SQL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."
SQL_MESSAGES: list[type[Message]] = sorted(commands.KNOWN.values(), key=lambda cls: cls.DESCRIPTOR.full_name)
ALL_SQL_MESSAGES: list[type[Message]] = [
    getattr(pb, name) for name in sorted(pb.DESCRIPTOR.message_types_by_name) if hasattr(pb, name)
]
FLIGHT_MESSAGES: list[type[Message]] = [
    fpb.CancelFlightInfoRequest,
    fpb.SetSessionOptionsRequest,
    fpb.GetSessionOptionsRequest,
    fpb.CloseSessionRequest,
    fpb.FlightInfo,
    fpb.Ticket,
    fpb.FlightDescriptor,
    fpb.FlightEndpoint,
]
ACTIONS = (
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CancelQuery",
    "CancelFlightInfo",
    "SetSessionOptions",
    "GetSessionOptions",
    "CloseSession",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "RenewFlightEndpoint",
    "meshgate.domain.apply",
    "meshgate.domain.remove",
)

_INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
}


@st.composite
def _scalar(draw: st.DrawFn, field: FieldDescriptor, depth: int) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return draw(st.one_of(odd_text, st.sampled_from(["%", "_", "sales", "", "mesh", "orders", "\\%", "[", "(?"])))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return draw(
            st.one_of(st.binary(max_size=60), st.builds(commands.pack, st.deferred(lambda: valid_message(depth + 1))))
        )
    if field.type == FieldDescriptor.TYPE_BOOL:
        return draw(st.booleans())
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return draw(st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64))
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return draw(st.one_of(st.sampled_from(known), st.integers(-5, 10), st.integers(-(2**31), 2**31 - 1)))
    if field.type in _INTEGER_RANGES:
        lo, hi = _INTEGER_RANGES[field.type]
        return draw(st.one_of(st.sampled_from([lo, hi, 0, -1 if lo else 1]), st.integers(lo, hi)))
    raise AssertionError(f"unexpected field type {field.type}")


@st.composite
def random_message(draw: st.DrawFn, cls: type[Message], depth: int = 0) -> Message:
    """``cls`` with random values in random fields (nested messages to depth 2, maps, repeated fields)."""
    message = cls()
    for field in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2:
                continue
            entry = field.message_type
            if entry.GetOptions().map_entry:
                key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
                target = getattr(message, field.name)
                for _ in range(draw(st.integers(0, 3))):
                    key = draw(_scalar(key_field, depth))
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        target[key].CopyFrom(draw(random_message(GetMessageClass(value_field.message_type), depth + 1)))
                    else:
                        target[key] = draw(_scalar(value_field, depth))
                continue
            sub = GetMessageClass(entry)
            if field.is_repeated:
                for _ in range(draw(st.integers(0, 3))):
                    getattr(message, field.name).add().CopyFrom(draw(random_message(sub, depth + 1)))
            else:
                getattr(message, field.name).CopyFrom(draw(random_message(sub, depth + 1)))
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(_scalar(field, depth), max_size=4)))
        else:
            setattr(message, field.name, draw(_scalar(field, depth)))
    return message


@st.composite
def valid_message(draw: st.DrawFn, depth: int = 0) -> Message:
    """A Flight SQL command message the gateway knows, with random fields."""
    return draw(random_message(draw(st.sampled_from(SQL_MESSAGES)), depth))


type_urls = st.one_of(
    st.sampled_from(ALL_SQL_MESSAGES).map(lambda cls: FLIGHT_SQL_PREFIX + cls.DESCRIPTOR.name),
    st.sampled_from(FLIGHT_MESSAGES).map(lambda cls: "type.googleapis.com/" + cls.DESCRIPTOR.full_name),
    odd_text.map(lambda text: FLIGHT_SQL_PREFIX + text),
    odd_text,
    st.sampled_from(
        [
            "/",
            "type.googleapis.com/",
            "arrow.flight.protocol.sql.CommandGetTables",
            "/arrow.flight.protocol.sql.CommandGetTables",
            "example.com/x/arrow.flight.protocol.sql.CommandStatementQuery",
            "type.googleapis.com/arrow.flight.protocol.sql.CommandGetTables/",
            "type.googleapis.com/google.protobuf.Any",
            "type.googleapis.com/arrow.flight.protocol.sql.commandstatementquery",
        ]
    ),
    st.integers(0, 200_000).map(lambda n: FLIGHT_SQL_PREFIX + "x" * n),
)


@st.composite
def command_bytes(draw: st.DrawFn) -> bytes:
    """Bytes where a command, ticket or action body goes: garbage, or an Any with a garbage or mismatched body."""
    kind = draw(
        st.sampled_from(
            ["random", "any-garbage", "any-garbage", "any-valid", "any-valid", "mismatched", "nested", "raw"]
        )
    )
    if kind == "random":
        return draw(st.one_of(st.binary(max_size=200), st.binary(max_size=4)))
    if kind == "any-garbage":
        return any_pb2.Any(type_url=draw(type_urls), value=draw(st.binary(max_size=200))).SerializeToString()
    if kind == "any-valid":
        return commands.pack(draw(valid_message()))
    if kind == "mismatched":  # a real message under another message's type URL
        body = draw(random_message(draw(st.sampled_from(SQL_MESSAGES + FLIGHT_MESSAGES)))).SerializeToString()
        return any_pb2.Any(type_url=draw(type_urls), value=body).SerializeToString()
    if kind == "nested":
        inner = any_pb2.Any(type_url=draw(type_urls), value=draw(st.binary(max_size=50)))
        outer = any_pb2.Any()
        outer.Pack(inner)
        return outer.SerializeToString()
    return draw(random_message(draw(st.sampled_from(FLIGHT_MESSAGES)))).SerializeToString()


@st.composite
def json_body(draw: st.DrawFn) -> bytes:
    """Bodies for the gateway's JSON actions: domain files (mutated YAML), names, deep JSON, garbage."""
    kind = draw(st.sampled_from(["yaml", "yaml", "domain", "deep-json", "garbage", "aliases"]))
    if kind == "yaml":
        text = draw(
            st.sampled_from(
                [
                    "domains:\n  - name: sales\n    connector: {type: sqlite, path: /etc/passwd}\n",
                    "domains:\n  - name: evil\n    connector: {type: parquet, path: ../../../../}\n",
                    "auth:\n  users: []\n",
                    "domains: []\n",
                    "domains:\n  - name: ops\n    connector: {type: postgres, uri: 'postgresql://x'}\n",
                    "domains:\n  - {name: " + "[" * 200 + "}\n",
                ]
            )
        )
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(odd_text) + text[at:]
        return json.dumps({"yaml": text}).encode()
    if kind == "domain":
        return json.dumps(
            {"domain": draw(st.one_of(odd_text, st.sampled_from(["sales", "ops", "", "../sales"])))}
        ).encode()
    if kind == "deep-json":
        depth = draw(DEPTHS)
        return (
            ("[" * depth + "]" * depth).encode()
            if draw(st.booleans())
            else ('{"yaml": ' + "[" * depth + "]" * depth + "}").encode()
        )
    if kind == "aliases":  # a bounded "billion laughs": 4 levels of 6 references
        lines = ['a: &a ["x"]'] + [
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 6)}]" for i in range(4)
        ]
        return json.dumps({"yaml": "\n".join(lines) + "\ndomains: [*e]\n"}).encode()
    return draw(st.binary(max_size=100))


header_text = st.text(alphabet=string.ascii_letters + string.digits + "+/=.-_ ", max_size=60)


RPCS = (
    *["get_flight_info"] * 4,
    *["do_get"] * 4,
    *["do_action"] * 6,
    *["get_schema", "do_put", "list_flights", "do_exchange", "path"] * 2,
    "handshake",  # a password check costs about 0.1 s (argon2id): one in 29
)
"""The calls a protocol case makes, weighted."""


@st.composite
def protocol_cases(draw: st.DrawFn) -> ProtocolCase:
    rpc = draw(st.sampled_from(RPCS))
    action = draw(st.one_of(st.sampled_from(ACTIONS), st.sampled_from(ACTIONS), odd_text)) if rpc == "do_action" else ""
    if action.startswith("meshgate."):
        payload = draw(json_body())
    elif rpc == "do_get" and draw(st.booleans()):
        payload = commands.pack(pb.TicketStatementQuery(statement_handle=draw(st.binary(max_size=40))))
    else:
        payload = draw(command_bytes())
    auth = draw(st.sampled_from(["token"] * 12 + ["none", "bearer", "basic"]))
    if auth in ("bearer", "basic"):
        auth = f"{auth}:{draw(header_text)}"
    path = tuple(draw(st.lists(odd_text, max_size=3))) if rpc == "path" else ()
    if rpc == "handshake":  # unknown users only: a real user's wrong passwords would lock them out
        user = draw(odd_text.filter(lambda name: name not in LOGIN_USERS))
        return ProtocolCase(rpc=rpc, payload=draw(odd_text).encode(), user=user, auth="none")
    return ProtocolCase(rpc=rpc, payload=payload, action=action, auth=auth, path=path)


STRATEGIES = {"sql": sql_cases, "parameters": parameter_cases(), "protocol": protocol_cases()}
"""The three kinds of input, by name."""
