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


def test_question_mark_parameters_as_jdbc_odbc_and_the_adbc_qmark_style_send_them(
    gateway: str, reference: duckdb.DuckDBPyConnection
) -> None:
    sql = (
        "SELECT c.name, count(*) AS shipments FROM sales.customers c"
        " JOIN sales.orders o ON o.customer_id = c.customer_id"
        " JOIN logistics.shipments s ON s.order_id = o.order_id"
        " WHERE c.country = ? AND s.carrier = ? GROUP BY c.name"
    )
    with flightsql.connect(gateway) as connection, connection.cursor() as cursor:
        assert flightsql.paramstyle == "qmark"
        schema = cursor.adbc_prepare(sql)
        assert schema is not None and [str(t) for t in schema.types] == ["string", "string"], schema
        for country, carrier in [("DE", "DHL"), ("FR", "La Poste")]:
            cursor.execute(sql, (country, carrier))
            got = cursor.fetch_arrow_table()
            spliced = sql.replace("?", f"'{country}'", 1).replace("?", f"'{carrier}'", 1)
            assert got.num_rows > 0 and same_rows(rows(got), rows(reference.sql(spliced).to_arrow_table()))
        # A ? inside a string or a quoted identifier is text, not a parameter.
        cursor.execute("SELECT '?' AS q, count(*) AS n FROM sales.customers WHERE country = ?", ("JP",))
        (row,) = cursor.fetch_arrow_table().to_pylist()
        (japan,) = reference.sql("SELECT count(*) FROM sales.customers WHERE country = 'JP'").fetchall()[0]
        assert row == {"q": "?", "n": japan}
        cursor.execute("SELECT customer_id FROM sales.customers WHERE customer_id BETWEEN ? AND ? ORDER BY 1", (3, 5))
        assert cursor.fetch_arrow_table().column(0).to_pylist() == [3, 4, 5]
        cursor.execute("SELECT customer_id FROM sales.customers ORDER BY customer_id LIMIT ?", (2,))
        assert cursor.fetch_arrow_table().column(0).to_pylist() == [1, 2]


@pytest.mark.parametrize(
    ("sql", "parameters", "match"),
    [
        ("SELECT * FROM sales.customers WHERE country = ? AND customer_id = $2", ("DE", 1), r"mixes \? and \$n"),
        ("SELECT * FROM sales.customers WHERE country = ? AND segment = ?", ("DE",), r"parameter"),
        ("SELECT * FROM sales.customers WHERE customer_id = ?", ("not a number",), r"."),
    ],
    ids=["mixed_styles", "too_few", "wrong_type"],
)
def test_bad_parameters_get_a_clean_error(gateway: str, sql: str, parameters: tuple[object, ...], match: str) -> None:
    with flightsql.connect(gateway) as connection, connection.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error, match=match) as raised:
            cursor.execute(sql, parameters)
            cursor.fetch_arrow_table()
        assert "Traceback" not in str(raised.value) and "ValueError" not in str(raised.value)


def test_question_mark_parameters_through_flightsql_dbapi(gateway: str) -> None:
    """flightsql-dbapi (qmark paramstyle) prepares the statement and binds its parameters with DoPut."""
    from urllib.parse import urlparse

    import pyarrow as pa
    from flightsql import FlightSQLClient

    address = urlparse(gateway)
    client = FlightSQLClient(host=address.hostname, port=address.port, insecure=True)
    try:
        statement = client.prepare("SELECT count(*) AS n FROM sales.customers WHERE country = ? AND customer_id > ?")
        try:
            info = statement.execute(pa.record_batch([pa.array(["DE"]), pa.array([0], pa.int64())], names=["1", "2"]))
            count = client.do_get(info.endpoints[0].ticket).read_all().column("n")[0].as_py()
        finally:
            statement.close()
    finally:
        client.close()
    plain = query(gateway, "SELECT count(*) AS n FROM sales.customers WHERE country = 'DE'")
    assert count == plain.column("n")[0].as_py() > 0
