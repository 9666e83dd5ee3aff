"""Catalog metadata: exact protocol schemas (raw Flight client) and what drivers make of them."""

from __future__ import annotations

import datafusion
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import EMPLOYEES, ORDERS, fetch, flight_info
from google.protobuf.message import Message

import gateway
from gateway.flightsql import commands
from gateway.flightsql import flight_sql_pb2 as pb

STRING_LIST = pa.list_(pa.utf8())

EXPECTED_SCHEMAS: list[tuple[Message, pa.Schema]] = [
    (pb.CommandGetCatalogs(), pa.schema([pa.field("catalog_name", pa.utf8(), False)])),
    (
        pb.CommandGetDbSchemas(),
        pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), False)]),
    ),
    (
        pb.CommandGetTables(),
        pa.schema(
            [
                pa.field("catalog_name", pa.utf8()),
                pa.field("db_schema_name", pa.utf8()),
                pa.field("table_name", pa.utf8(), False),
                pa.field("table_type", pa.utf8(), False),
            ]
        ),
    ),
    (
        pb.CommandGetTables(include_schema=True),
        pa.schema(
            [
                pa.field("catalog_name", pa.utf8()),
                pa.field("db_schema_name", pa.utf8()),
                pa.field("table_name", pa.utf8(), False),
                pa.field("table_type", pa.utf8(), False),
                pa.field("table_schema", pa.binary(), False),
            ]
        ),
    ),
    (pb.CommandGetTableTypes(), pa.schema([pa.field("table_type", pa.utf8(), False)])),
    (
        pb.CommandGetSqlInfo(),
        pa.schema(
            [
                pa.field("info_name", pa.uint32(), False),
                pa.field(
                    "value",
                    pa.dense_union(
                        [
                            pa.field("string_value", pa.utf8(), False),
                            pa.field("bool_value", pa.bool_(), False),
                            pa.field("bigint_value", pa.int64(), False),
                            pa.field("int32_bitmask", pa.int32(), False),
                            pa.field("string_list", STRING_LIST, False),
                            pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())), False),
                        ],
                        [0, 1, 2, 3, 4, 5],
                    ),
                    False,
                ),
            ]
        ),
    ),
    (
        pb.CommandGetPrimaryKeys(table="orders"),
        pa.schema(
            [
                pa.field("catalog_name", pa.utf8()),
                pa.field("db_schema_name", pa.utf8()),
                pa.field("table_name", pa.utf8(), False),
                pa.field("column_name", pa.utf8(), False),
                pa.field("key_sequence", pa.int32(), False),
                pa.field("key_name", pa.utf8()),
            ]
        ),
    ),
    (
        pb.CommandGetXdbcTypeInfo(),
        pa.schema(
            [
                pa.field("type_name", pa.utf8(), False),
                pa.field("data_type", pa.int32(), False),
                pa.field("column_size", pa.int32()),
                pa.field("literal_prefix", pa.utf8()),
                pa.field("literal_suffix", pa.utf8()),
                pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), False))),
                pa.field("nullable", pa.int32(), False),
                pa.field("case_sensitive", pa.bool_(), False),
                pa.field("searchable", pa.int32(), False),
                pa.field("unsigned_attribute", pa.bool_()),
                pa.field("fixed_prec_scale", pa.bool_(), False),
                pa.field("auto_increment", pa.bool_()),
                pa.field("local_type_name", pa.utf8()),
                pa.field("minimum_scale", pa.int32()),
                pa.field("maximum_scale", pa.int32()),
                pa.field("sql_data_type", pa.int32(), False),
                pa.field("datetime_subcode", pa.int32()),
                pa.field("num_prec_radix", pa.int32()),
                pa.field("interval_precision", pa.int32()),
            ]
        ),
    ),
]
FOREIGN_KEYS = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), False),
        pa.field("pk_column_name", pa.utf8(), False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), False),
        pa.field("fk_column_name", pa.utf8(), False),
        pa.field("key_sequence", pa.int32(), False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), False),
        pa.field("delete_rule", pa.uint8(), False),
    ]
)
EXPECTED_SCHEMAS += [
    (pb.CommandGetExportedKeys(table="orders"), FOREIGN_KEYS),
    (pb.CommandGetImportedKeys(table="orders"), FOREIGN_KEYS),
    (pb.CommandGetCrossReference(pk_table="customers", fk_table="orders"), FOREIGN_KEYS),
]


@pytest.mark.parametrize(("command", "expected"), EXPECTED_SCHEMAS, ids=[type(c).__name__ for c, _ in EXPECTED_SCHEMAS])
def test_metadata_schemas_are_exact_in_flight_info_get_schema_and_do_get(
    client: flight.FlightClient, command: Message, expected: pa.Schema
) -> None:
    info, table = fetch(client, command)
    schema = client.get_schema(flight.FlightDescriptor.for_command(commands.pack(command))).schema

    for actual in (info.schema, schema, table.schema):
        assert actual.equals(expected), f"{actual}\n!=\n{expected}"
        assert [f.nullable for f in actual] == [f.nullable for f in expected]


def rows(client: flight.FlightClient, command: Message) -> list[tuple[object, ...]]:
    _, table = fetch(client, command)
    return [tuple(row.values()) for row in table.to_pylist()]


def test_catalogs(client: flight.FlightClient) -> None:
    assert rows(client, pb.CommandGetCatalogs()) == [("mesh",)]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (pb.CommandGetDbSchemas(), ["bench", "hr", "sales", "sales_eu"]),
        (pb.CommandGetDbSchemas(catalog="mesh"), ["bench", "hr", "sales", "sales_eu"]),
        (pb.CommandGetDbSchemas(catalog="other"), []),
        (pb.CommandGetDbSchemas(catalog=""), []),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="sales%"), ["sales", "sales_eu"]),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="sale_"), ["sales"]),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="%_eu"), ["sales_eu"]),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="sales\\_eu"), ["sales_eu"]),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="sales\\%"), []),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="SALES"), []),
        (pb.CommandGetDbSchemas(db_schema_filter_pattern="%"), ["bench", "hr", "sales", "sales_eu"]),
    ],
)
def test_db_schemas_with_filters(client: flight.FlightClient, command: Message, expected: list[str]) -> None:
    assert rows(client, command) == [("mesh", name) for name in expected]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            pb.CommandGetTables(),
            [
                ("bench", "numbers", "VIEW"),
                ("hr", "employees", "TABLE"),
                ("sales", "big_orders", "VIEW"),
                ("sales", "notes", "TABLE"),
                ("sales", "orders", "TABLE"),
                ("sales_eu", "orders_eu", "TABLE"),
            ],
        ),
        (
            pb.CommandGetTables(table_name_filter_pattern="%orders%"),
            [("sales", "big_orders", "VIEW"), ("sales", "orders", "TABLE"), ("sales_eu", "orders_eu", "TABLE")],
        ),
        (
            pb.CommandGetTables(db_schema_filter_pattern="sales", table_name_filter_pattern="_o%"),
            [("sales", "notes", "TABLE")],
        ),
        (
            pb.CommandGetTables(table_types=["VIEW"]),
            [("bench", "numbers", "VIEW"), ("sales", "big_orders", "VIEW")],
        ),
        (
            pb.CommandGetTables(catalog="mesh", table_types=["TABLE", "SYSTEM TABLE"], db_schema_filter_pattern="hr"),
            [("hr", "employees", "TABLE")],
        ),
        (pb.CommandGetTables(catalog="elsewhere"), []),
    ],
)
def test_tables_with_filters(
    client: flight.FlightClient, command: Message, expected: list[tuple[str, str, str]]
) -> None:
    assert rows(client, command) == [("mesh", *row) for row in expected]


def test_tables_include_each_table_schema_as_ipc(client: flight.FlightClient) -> None:
    _, table = fetch(client, pb.CommandGetTables(db_schema_filter_pattern="sales%", include_schema=True))
    schemas = {
        (row["db_schema_name"], row["table_name"]): pa.ipc.read_schema(pa.py_buffer(row["table_schema"]))
        for row in table.to_pylist()
    }

    orders = schemas[("sales", "orders")]
    assert orders.equals(ORDERS.schema)
    assert orders.field("customer").metadata == {
        b"ARROW:FLIGHT:SQL:CATALOG_NAME": b"mesh",
        b"ARROW:FLIGHT:SQL:DB_SCHEMA_NAME": b"sales",
        b"ARROW:FLIGHT:SQL:TABLE_NAME": b"orders",
        b"ARROW:FLIGHT:SQL:SCHEMA_NAME": b"sales",
        b"ARROW:FLIGHT:SQL:IS_READ_ONLY": b"1",
        b"ARROW:FLIGHT:SQL:TYPE_NAME": b"VARCHAR",
        b"XDBC_TYPE_NAME": b"VARCHAR",
        b"XDBC_NULLABLE": b"1",
        b"XDBC_IS_NULLABLE": b"YES",
        b"ORDINAL_POSITION": b"2",
    }
    amount = orders.field("amount").metadata
    assert (amount[b"ARROW:FLIGHT:SQL:PRECISION"], amount[b"ARROW:FLIGHT:SQL:SCALE"]) == (b"12", b"2")
    assert schemas[("sales", "notes")].field("text").type == pa.string()  # stored as string_view
    assert schemas[("sales", "big_orders")].names == ["id", "amount"]


def test_table_types(client: flight.FlightClient) -> None:
    assert rows(client, pb.CommandGetTableTypes()) == [("TABLE",), ("VIEW",)]


def test_keys_are_empty_because_data_products_declare_none(client: flight.FlightClient) -> None:
    for command in (
        pb.CommandGetPrimaryKeys(table="orders"),
        pb.CommandGetExportedKeys(table="orders"),
        pb.CommandGetImportedKeys(db_schema="sales", table="orders"),
        pb.CommandGetCrossReference(pk_table="customers", fk_table="orders"),
    ):
        assert rows(client, command) == []


def test_sql_info_all_and_filtered(client: flight.FlightClient) -> None:
    everything = dict(rows(client, pb.CommandGetSqlInfo()))
    assert everything[pb.FLIGHT_SQL_SERVER_NAME] == "Meshgate"
    assert everything[pb.FLIGHT_SQL_SERVER_VERSION] == f"{gateway.__version__} (DataFusion {datafusion.__version__})"
    assert everything[pb.FLIGHT_SQL_SERVER_ARROW_VERSION] == pa.__version__
    assert everything[pb.FLIGHT_SQL_SERVER_READ_ONLY] is True
    assert everything[pb.FLIGHT_SQL_SERVER_TRANSACTION] == pb.SQL_SUPPORTED_TRANSACTION_NONE
    assert everything[pb.FLIGHT_SQL_SERVER_CANCEL] is True
    assert everything[pb.SQL_IDENTIFIER_QUOTE_CHAR] == '"'
    assert everything[pb.SQL_TRANSACTIONS_SUPPORTED] is False
    assert everything[pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT] == 300_000

    wanted = [pb.SQL_IDENTIFIER_QUOTE_CHAR, 9_999, pb.FLIGHT_SQL_SERVER_NAME, pb.SQL_SUPPORTED_UNIONS]
    assert rows(client, pb.CommandGetSqlInfo(info=wanted)) == [
        (pb.SQL_IDENTIFIER_QUOTE_CHAR, '"'),
        (pb.FLIGHT_SQL_SERVER_NAME, "Meshgate"),
        (pb.SQL_SUPPORTED_UNIONS, 0b11),
    ]
    _, table = fetch(client, pb.CommandGetSqlInfo(info=[pb.SQL_SUPPORTED_UNIONS, pb.FLIGHT_SQL_SERVER_READ_ONLY]))
    union = table.column("value").chunk(0)
    assert union.type_codes.to_pylist() == [3, 1]  # int32_bitmask, bool_value


def test_xdbc_type_info_filters_by_data_type(client: flight.FlightClient) -> None:
    everything = rows(client, pb.CommandGetXdbcTypeInfo())
    assert [row[1] for row in everything] == sorted(row[1] for row in everything)
    timestamps = rows(client, pb.CommandGetXdbcTypeInfo(data_type=pb.XDBC_TIMESTAMP))
    assert [(row[0], row[15], row[16]) for row in timestamps] == [
        ("TIMESTAMP", pb.XDBC_DATETIME, pb.XDBC_SUBCODE_TIMESTAMP),
        ("TIMESTAMP WITH TIME ZONE", pb.XDBC_DATETIME, pb.XDBC_SUBCODE_TIMESTAMP_WITH_TIMEZONE),
    ]


def test_metadata_asks_the_engine_as_the_caller(client: flight.FlightClient, engine) -> None:
    flight_info(client, pb.CommandGetTables())  # schema only: GetFlightInfo does not list tables
    assert engine.callers == []
    rows(client, pb.CommandGetTables())
    assert len(engine.callers) == 1
    assert engine.callers[0].user is None
    assert engine.callers[0].attributes["peer"].startswith("ipv4:127.0.0.1:")


# -- through the ADBC driver ----------------------------------------------------------


def test_adbc_get_info(conn) -> None:
    info = conn.adbc_get_info()
    assert (info["vendor_name"], info["vendor_version"], info["vendor_arrow_version"]) == (
        "Meshgate",
        f"{gateway.__version__} (DataFusion {datafusion.__version__})",
        pa.__version__,
    )


def test_adbc_get_objects_walks_catalogs_schemas_tables_and_columns(conn) -> None:
    objects = conn.adbc_get_objects().read_all().to_pylist()

    assert [catalog["catalog_name"] for catalog in objects] == ["mesh"]
    found = {
        (domain["db_schema_name"], table["table_name"], table["table_type"]): [
            column["column_name"] for column in table["table_columns"]
        ]
        for domain in objects[0]["catalog_db_schemas"]
        for table in domain["db_schema_tables"]
    }
    assert found[("hr", "employees", "TABLE")] == EMPLOYEES.column_names
    assert found[("sales", "orders", "TABLE")] == ORDERS.column_names
    assert found[("bench", "numbers", "VIEW")] == ["n"]
    assert len(found) == 6

    narrowed = conn.adbc_get_objects(depth="tables", db_schema_filter="sales%", table_name_filter="%orders")
    names = [
        (domain["db_schema_name"], table["table_name"])
        for domain in narrowed.read_all().to_pylist()[0]["catalog_db_schemas"]
        for table in domain["db_schema_tables"]
    ]
    assert sorted(names) == [("sales", "big_orders"), ("sales", "orders")]


def test_adbc_get_table_schema_and_table_types(conn) -> None:
    schema = conn.adbc_get_table_schema("orders", db_schema_filter="sales")
    assert schema.equals(ORDERS.schema)
    assert conn.adbc_get_table_schema("notes", db_schema_filter="sales").field("blob").type == pa.binary()
    assert conn.adbc_get_table_types() == ["TABLE", "VIEW"]
