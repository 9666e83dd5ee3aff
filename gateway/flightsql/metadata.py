"""Catalog metadata results with the exact Arrow schemas of the Flight SQL protocol.

Each builder is a pure function from what the engine knows (domains, products) and the
client's command to the result table. Nullability follows the reference
implementations (Arrow C++, Go and Java), which the drivers compare against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import pyarrow as pa

from gateway.api import DomainInfo, ProductInfo
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.xdbc import XdbcType, sql_type_name

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])

DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)

TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)

TABLES_WITH_SCHEMA_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))

TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])

# The reference implementations put key_sequence before key_name (the .proto comment
# lists them the other way round); clients follow the implementations.
PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("key_name", pa.utf8()),
    ]
)

FOREIGN_KEYS_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)

XDBC_TYPE_INFO_SCHEMA = pa.schema(
    [
        pa.field("type_name", pa.utf8(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32()),
        pa.field("literal_prefix", pa.utf8()),
        pa.field("literal_suffix", pa.utf8()),
        pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_()),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_()),
        pa.field("local_type_name", pa.utf8()),
        pa.field("minimum_scale", pa.int32()),
        pa.field("maximum_scale", pa.int32()),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32()),
        pa.field("num_prec_radix", pa.int32()),
        pa.field("interval_precision", pa.int32()),
    ]
)

# Escape character for '%' and '_' in search patterns (reported as SQL_SEARCH_STRING_ESCAPE).
SEARCH_ESCAPE = "\\"

# Field metadata keys the protocol defines for table and result schemas.
CATALOG_NAME_KEY = b"ARROW:FLIGHT:SQL:CATALOG_NAME"
DB_SCHEMA_NAME_KEY = b"ARROW:FLIGHT:SQL:DB_SCHEMA_NAME"
SCHEMA_NAME_KEY = b"ARROW:FLIGHT:SQL:SCHEMA_NAME"
TABLE_NAME_KEY = b"ARROW:FLIGHT:SQL:TABLE_NAME"
TYPE_NAME_KEY = b"ARROW:FLIGHT:SQL:TYPE_NAME"
PRECISION_KEY = b"ARROW:FLIGHT:SQL:PRECISION"
SCALE_KEY = b"ARROW:FLIGHT:SQL:SCALE"
IS_READ_ONLY_KEY = b"ARROW:FLIGHT:SQL:IS_READ_ONLY"
REMARKS_KEY = b"ARROW:FLIGHT:SQL:REMARKS"


def like_matcher(pattern: str | None) -> Callable[[str], bool]:
    """Compile a Flight SQL search pattern ('%' any run, '_' one char, '\\' escapes).

    >>> like_matcher("sal_s%")("sales_eu"), like_matcher("sal\\\\_s")("sales")
    (True, False)
    """
    if pattern is None:
        return lambda _name: True
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == SEARCH_ESCAPE:
            parts.append(re.escape(next(chars, SEARCH_ESCAPE)))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    regex = re.compile("".join(parts), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None


def _catalog_matches(wanted: str | None, catalog: str) -> bool:
    # Unset: any catalog. "" would select objects without a catalog; every mesh object has one.
    return wanted is None or wanted == catalog


def catalogs(catalog_name: str, domains: Iterable[DomainInfo]) -> pa.Table:
    """CommandGetCatalogs: the mesh catalog (and any other catalog a domain lives in)."""
    names = sorted({catalog_name, *(domain.catalog for domain in domains)})
    return pa.Table.from_pydict({"catalog_name": names}, schema=CATALOGS_SCHEMA)


def db_schemas(command: pb.CommandGetDbSchemas, domains: Iterable[DomainInfo]) -> pa.Table:
    """CommandGetDbSchemas: one row per domain, filtered by catalog and name pattern."""
    catalog = command.catalog if command.HasField("catalog") else None
    pattern = command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern") else None
    matches = like_matcher(pattern)
    rows = sorted(
        {
            (domain.catalog, domain.name)
            for domain in domains
            if _catalog_matches(catalog, domain.catalog) and matches(domain.name)
        }
    )
    return pa.Table.from_pydict(
        {"catalog_name": [row[0] for row in rows], "db_schema_name": [row[1] for row in rows]},
        schema=DB_SCHEMAS_SCHEMA,
    )


def tables(command: pb.CommandGetTables, products: Iterable[ProductInfo]) -> pa.Table:
    """CommandGetTables: one row per data product, with its IPC schema when asked."""
    catalog = command.catalog if command.HasField("catalog") else None
    schema_matches = like_matcher(
        command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern") else None
    )
    name_matches = like_matcher(
        command.table_name_filter_pattern if command.HasField("table_name_filter_pattern") else None
    )
    types = {table_type.upper() for table_type in command.table_types}
    selected = sorted(
        (
            product
            for product in products
            if _catalog_matches(catalog, product.catalog)
            and schema_matches(product.domain)
            and name_matches(product.name)
            and (not types or product.table_type.upper() in types)
        ),
        key=lambda product: (product.catalog, product.domain, product.name, product.table_type),
    )
    columns: dict[str, list[object]] = {
        "catalog_name": [product.catalog for product in selected],
        "db_schema_name": [product.domain for product in selected],
        "table_name": [product.name for product in selected],
        "table_type": [product.table_type for product in selected],
    }
    if not command.include_schema:
        return pa.Table.from_pydict(columns, schema=TABLES_SCHEMA)
    columns["table_schema"] = [table_schema(product).serialize().to_pybytes() for product in selected]
    return pa.Table.from_pydict(columns, schema=TABLES_WITH_SCHEMA_SCHEMA)


def table_schema(product: ProductInfo) -> pa.Schema:
    """The product's schema with the protocol's per-field catalog metadata added."""
    table = {
        CATALOG_NAME_KEY: product.catalog.encode(),
        DB_SCHEMA_NAME_KEY: product.domain.encode(),
        SCHEMA_NAME_KEY: product.domain.encode(),  # the name Go's flightsql.ColumnMetadata reads
        TABLE_NAME_KEY: product.name.encode(),
        IS_READ_ONLY_KEY: b"1",
    }
    fields = [
        field.with_metadata({**(field.metadata or {}), **table, **_column_metadata(field, position)})
        for position, field in enumerate(product.schema, start=1)
    ]
    return pa.schema(fields, metadata=product.schema.metadata)


def _column_metadata(field: pa.Field, position: int) -> dict[bytes, bytes]:
    """The protocol's column keys, and ADBC's ``XDBC_*`` / ``REMARKS`` / ``ORDINAL_POSITION`` keys
    (``go/adbc/driver/internal/shared_utils.go``), from which ADBC drivers fill ``adbc_get_objects``."""
    data_type = field.type
    type_name = sql_type_name(data_type).encode()
    column = {
        TYPE_NAME_KEY: type_name,
        b"XDBC_TYPE_NAME": type_name,
        b"XDBC_NULLABLE": b"1" if field.nullable else b"0",
        b"XDBC_IS_NULLABLE": b"YES" if field.nullable else b"NO",
        b"ORDINAL_POSITION": str(position).encode(),
    }
    description = (field.metadata or {}).get(b"meshgate.description")
    if description:
        column[REMARKS_KEY] = column[b"REMARKS"] = description
    if pa.types.is_decimal(data_type):
        column[PRECISION_KEY] = column[b"XDBC_PRECISION"] = str(data_type.precision).encode()
        column[SCALE_KEY] = column[b"XDBC_SCALE"] = str(data_type.scale).encode()
    return column


def table_types(products: Iterable[ProductInfo]) -> pa.Table:
    """CommandGetTableTypes: TABLE plus every other type a product has."""
    names = sorted({"TABLE", *(product.table_type for product in products)})
    return pa.Table.from_pydict({"table_type": names}, schema=TABLE_TYPES_SCHEMA)


def primary_keys(command: pb.CommandGetPrimaryKeys, products: Iterable[ProductInfo]) -> pa.Table:
    """CommandGetPrimaryKeys: the key columns of one product, as its source declares them.

    ``catalog`` and ``db_schema`` are exact names (unset: any); ``table`` is exact.
    Key names are not reported (null), as in the reference SQLite example server.
    """
    catalog = command.catalog if command.HasField("catalog") else None
    schema = command.db_schema if command.HasField("db_schema") else None
    rows = sorted(
        (product.catalog, product.domain, product.name, position, column)
        for product in products
        if _catalog_matches(catalog, product.catalog)
        and (schema is None or schema == product.domain)
        and product.name == command.table
        for position, column in enumerate(product.primary_key, start=1)
    )
    return pa.Table.from_pydict(
        {
            "catalog_name": [row[0] for row in rows],
            "db_schema_name": [row[1] for row in rows],
            "table_name": [row[2] for row in rows],
            "column_name": [row[4] for row in rows],
            "key_sequence": [row[3] for row in rows],
            "key_name": [None] * len(rows),
        },
        schema=PRIMARY_KEYS_SCHEMA,
    )


def empty(schema: pa.Schema) -> pa.Table:
    """An empty result (foreign keys: data products declare none)."""
    return schema.empty_table()


def xdbc_type_info(types: Iterable[XdbcType], data_type: int | None) -> pa.Table:
    """CommandGetXdbcTypeInfo: the declared types (or one XdbcDataType), in protocol order."""
    selected = sorted(
        (xdbc for xdbc in types if data_type is None or xdbc.data_type == data_type),
        key=lambda xdbc: (xdbc.data_type, xdbc.type_name),
    )
    return pa.Table.from_pylist([xdbc.row() for xdbc in selected], schema=XDBC_TYPE_INFO_SCHEMA)
