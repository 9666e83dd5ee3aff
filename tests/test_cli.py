"""The `meshgate` command as a user runs it: serve the demo, query it, check configs.

The demo gateway requires a log-in (its password is printed at start-up); queries send it
through MESHGATE_USER/MESHGATE_PASSWORD. tests/auth/ covers authentication and TLS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gateway.demo import EXAMPLE_QUERIES
from tests.support.gateway import GatewayProcess, query


def meshgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def demo_query(demo: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``meshgate query --server <demo> ...`` logged in as the demo user."""
    return meshgate("query", "--server", demo.uri, *args, env=demo.client_env())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("demo")
    process = GatewayProcess.demo(directory)
    yield process
    process.stop()


@pytest.mark.parametrize("number", range(len(EXAMPLE_QUERIES)))
def test_demo_example_queries_run_through_the_cli(demo: GatewayProcess, number: int) -> None:
    result = demo_query(demo, EXAMPLE_QUERIES[number])
    assert result.returncode == 0, result.stderr
    footer = result.stdout.strip().splitlines()[-1]
    assert footer.startswith("(") and "row" in footer
    assert not footer.startswith("(0 rows"), result.stdout


def test_query_formats(demo: GatewayProcess, tmp_path: Path) -> None:
    sql = "SELECT customer_id, name, lifetime_value FROM sales.customers ORDER BY customer_id LIMIT 3"
    as_csv = demo_query(demo, "--format", "csv", sql)
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines()[0] == '"customer_id","name","lifetime_value"'
    assert len(as_csv.stdout.splitlines()) == 4
    as_json = demo_query(demo, "--format", "json", sql)
    assert [json.loads(line)["customer_id"] for line in as_json.stdout.splitlines()] == [1, 2, 3]
    target = tmp_path / "out.parquet"
    as_parquet = demo_query(demo, "--format", "parquet", "--output", str(target), sql)
    assert as_parquet.returncode == 0, as_parquet.stderr
    assert pq.read_table(target).equals(query(demo.uri, sql, demo.credentials))


def test_query_errors_are_clear_and_the_server_survives(demo: GatewayProcess) -> None:
    bad = demo_query(demo, "SELECT * FROM sales.nope")
    assert bad.returncode == 1
    # The server's whole message: the driver's "(Unknown; Prepare)" and ". Detail: ..." are gone, the "(...)" kept.
    assert (
        bad.stderr
        == "error: unknown data product 'sales.nope' (domain 'sales' has: customers, orders, vip_customers)\n"
    )
    syntax = demo_query(demo, "SELECT * FROM sales.customers WHERE")
    assert syntax.returncode == 1 and "SQL syntax error" in syntax.stderr
    unqualified = demo_query(demo, "SELECT * FROM customers")
    assert "unknown data product 'customers': name products as domain.product" in unqualified.stderr
    assert unqualified.stderr.startswith("error:"), unqualified.stderr
    missing_output = demo_query(demo, "--format", "parquet", "SELECT 1")
    assert missing_output.returncode == 2 and "--output" in missing_output.stderr
    assert query(demo.uri, "SELECT count(*) AS n FROM sales.customers", demo.credentials).column("n").to_pylist() == [
        300
    ]


def test_the_demo_requires_its_printed_login(demo: GatewayProcess) -> None:
    assert demo.credentials is not None and demo.credentials.user == "demo"
    anonymous = meshgate("query", "--server", demo.uri, "SELECT 1")
    assert anonymous.returncode == 1
    assert "authentication required: connect with a user name and password" in anonymous.stderr
    assert any(" WARNING " in line and "demo login: user 'demo', password" in line for line in demo.startup_log)


def test_check_lists_domains_and_products(demo: GatewayProcess) -> None:
    assert demo.config is not None
    result = meshgate("check", "--config", str(demo.config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   sales" in result.stdout and "sales.customers:" in result.stdout
    assert result.stdout.splitlines()[-1] == "4 domains: 4 online, 0 offline; 9 products: 9 ok"


def test_check_reports_a_broken_config_precisely(tmp_path: Path) -> None:
    (tmp_path / "sales.yaml").write_text("domains:\n  - name: sales\n    connector: {type: sqlite, path: nope.db}\n")
    result = meshgate("check", "--config", str(tmp_path))
    assert result.returncode == 1
    assert "sales.yaml:3: domain 'sales': connector.path: 'nope.db' does not exist" in result.stderr


def test_check_reports_an_unreachable_source(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: sales\n    connector: {type: postgres, uri: 'postgresql://127.0.0.1:1/x?connect_timeout=1'}\n"
    )
    result = meshgate("check", "--config", str(tmp_path / "mesh.yaml"))
    assert result.returncode == 1
    assert (
        "FAIL sales" in result.stdout
        and "127.0.0.1:1" in result.stdout
        and "1 domain: 0 online, 1 offline; 0 products: 0 ok" in result.stdout
    )
