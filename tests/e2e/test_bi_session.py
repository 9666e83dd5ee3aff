"""A scripted BI-tool session against `meshgate serve`, as DBeaver or Tableau would run it.

Log in with a password; list catalogs, schemas, tables, columns, primary keys and type info;
prepare a parameterised query and run it with three parameter sets; cancel a slow query;
close. The ADBC Flight SQL driver does what its DB-API offers; `flightsql-dbapi` (a second,
independent client) asks for primary keys and XDBC type info, which ADBC does not expose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import adbc_driver_manager
import pyarrow as pa
import pytest
from flightsql import FlightSQLClient, TableRef

from tests.e2e.federation_data import build_tables, write_mesh
from tests.support.gateway import TEST_CREDENTIALS, GatewayProcess, auth_yaml, connect
from tests.support.postgres import wait_until_no_backend_runs, worker_schema

SCHEMA = worker_schema("meshgate_bi_session")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Iterator[GatewayProcess]:
    config = write_mesh(tmp_path_factory.mktemp("bi"), postgres_uri, SCHEMA, build_tables())
    sales = Path(config) / "sales.yaml"
    sales.write_text(
        sales.read_text() + '      - {name: slow, sql: "SELECT g AS n FROM generate_series(1, 3) g, pg_sleep(30)"}\n'
    )
    (Path(config) / "auth.yaml").write_text(auth_yaml())
    process = GatewayProcess(Path(config))
    yield process
    process.stop()


def test_a_bi_tool_session(gateway: GatewayProcess, postgres_uri: str) -> None:
    with connect(gateway.uri, TEST_CREDENTIALS) as connection:
        # What a tool shows in its connection dialog and navigator.
        info = dict(connection.adbc_get_info())
        assert info["vendor_name"] == "Meshgate"
        catalogs = connection.adbc_get_objects(depth="catalogs").read_all().column("catalog_name").to_pylist()
        assert "mesh" in catalogs
        objects = connection.adbc_get_objects(depth="all", catalog_filter="mesh").read_all().to_pylist()
        schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
        assert {"sales", "inventory", "logistics"} <= set(schemas)
        orders = next(t for t in schemas["sales"]["db_schema_tables"] if t["table_name"] == "orders")
        assert [c["column_name"] for c in orders["table_columns"]] == [
            "order_id",
            "customer_id",
            "order_date",
            "status",
            "total",
        ]
        assert connection.adbc_get_table_schema("orders", db_schema_filter="sales").field(
            "total"
        ).type == pa.decimal128(12, 2)
        assert "TABLE" in connection.adbc_get_table_types()

        # A parameterised query, prepared once, run with three parameter sets.
        with connection.cursor() as cursor:
            sql = "SELECT count(*) AS n FROM sales.orders o JOIN logistics.shipments s ON s.order_id = o.order_id WHERE o.status = $1 AND s.carrier = $2"
            counts = []
            for status, carrier in [("paid", "DHL"), ("shipped", "UPS"), ("open", "La Poste")]:
                cursor.execute(sql, (status, carrier))
                counts.append(cursor.fetch_arrow_table().column("n").to_pylist()[0])
            assert all(n > 0 for n in counts) and len(set(counts)) > 1

        # Cancel a slow query: the tool's "stop" button.
        with connection.cursor() as cursor:
            outcome: list[BaseException] = []

            def slow() -> None:
                try:
                    cursor.execute("SELECT n FROM sales.slow")
                    cursor.fetch_arrow_table()
                except BaseException as error:
                    outcome.append(error)

            worker = threading.Thread(target=slow)
            worker.start()
            time.sleep(1.5)
            started = time.monotonic()
            cursor.adbc_cancel()
            worker.join(timeout=15)
            assert not worker.is_alive() and time.monotonic() - started < 15
            assert outcome and isinstance(outcome[0], adbc_driver_manager.Error)
    # The PostgreSQL backend stopped too.
    assert wait_until_no_backend_runs(postgres_uri, "pg_sleep(30)"), "the source still runs the cancelled query"


def test_primary_keys_and_type_info_through_a_second_client(gateway: GatewayProcess) -> None:
    address = urlparse(gateway.uri)
    client = FlightSQLClient(
        host=address.hostname,
        port=address.port,
        user=TEST_CREDENTIALS.user,
        password=TEST_CREDENTIALS.password,
        insecure=True,
    )
    try:
        keys = client.get_primary_keys(TableRef(catalog="mesh", db_schema="sales", table="orders"))
        table = client.do_get(keys.endpoints[0].ticket).read_all()
        assert table.column("column_name").to_pylist() == ["order_id"]
        types = client.get_xdbc_type_info(None)  # every type
        names = client.do_get(types.endpoints[0].ticket).read_all().column("type_name").to_pylist()
        assert {"BIGINT", "VARCHAR", "DECIMAL", "TIMESTAMP"} <= set(names)
    finally:
        client.close()
