"""Prepared statements with parameters, and the read-only guarantee, through a real client."""

from __future__ import annotations

from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import duckdb
import pytest

from tests.e2e.test_federation import rows, same_rows
from tests.support.gateway import query


def test_parameters_are_bound_not_spliced(gateway: str, reference: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT c.name, count(*) AS shipments FROM sales.customers c"
        " JOIN sales.orders o ON o.customer_id = c.customer_id"
        " JOIN logistics.shipments s ON s.order_id = o.order_id"
        " WHERE c.country = $1 AND s.carrier = $2 GROUP BY c.name"
    )
    with flightsql.connect(gateway) as connection, connection.cursor() as cursor:
        for country, carrier in [("DE", "DHL"), ("JP", "UPS"), ("FR", "La Poste")]:
            cursor.execute(sql, (country, carrier))
            got = cursor.fetch_arrow_table()
            expected = reference.sql(sql.replace("$1", f"'{country}'").replace("$2", f"'{carrier}'")).to_arrow_table()
            assert got.num_rows > 0
            assert same_rows(rows(got), rows(expected))
        # A value that would break out of a spliced string is just a value.
        cursor.execute("SELECT count(*) AS n FROM sales.customers WHERE name = $1", ("x' OR '1'='1",))
        assert cursor.fetch_arrow_table().column("n").to_pylist() == [0]
        cursor.execute("SELECT count(*) AS n FROM sales.customers WHERE segment IS NOT DISTINCT FROM $1", (None,))
        (nulls,) = reference.sql("SELECT count(*) FROM sales.customers WHERE segment IS NULL").fetchall()[0]
        assert cursor.fetch_arrow_table().column("n").to_pylist() == [nulls]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE sales.evil AS SELECT 1 AS x",
        "INSERT INTO sales.customers (customer_id) VALUES (999)",
        "DELETE FROM sales.orders",
        "COPY (SELECT 1) TO '/tmp/meshgate-should-not-exist.csv'",
        "SET datafusion.execution.batch_size = 1",
    ],
)
def test_the_mesh_is_read_only(gateway: str, sql: str) -> None:
    with pytest.raises(adbc_driver_manager.Error, match=r"read-only|not supported"):
        query(gateway, sql)
    assert not Path("/tmp/meshgate-should-not-exist.csv").exists()
    assert query(gateway, "SELECT count(*) AS n FROM sales.orders").column("n").to_pylist() == [2000]
