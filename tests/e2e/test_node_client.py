"""The Node.js Flight SQL client `@lakehouse-rs/flight-sql-client` against `meshgate serve` with a log-in.

npm installs it (with its prebuilt native binary for this platform) into tests/e2e/node/,
whose node_modules stays out of git; tests/e2e/node/session.js logs in with a user and
password, runs queries, lists catalogs, schemas and tables, and runs a failing query.

The client (0.0.10) has no way to bind parameters: ``query(sql)`` prepares the statement and
executes it without parameters. What it does not do is documented in README.md ("Connecting
from tools"). The test skips, saying why, only when node or npm is missing, when npm cannot
reach its registry, or when the package has no binary for this platform.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pytest

from tests.e2e.federation_data import write_mesh
from tests.support.gateway import GatewayProcess, auth_yaml
from tests.support.postgres import worker_schema

SCHEMA = worker_schema("meshgate_node_client")
NODE_DIR = Path(__file__).parent / "node"
PACKAGE = "@lakehouse-rs/flight-sql-client"
# What npm prints when it cannot reach the registry.
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH")


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the client installed in tests/e2e/node/."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        pytest.skip(f"{missing} not found on PATH: the Node.js client test needs Node.js and npm")
    installed = subprocess.run(
        [npm, "install", "--no-package-lock", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = installed.stdout + installed.stderr
    loaded = subprocess.run(
        [node, "-e", f"require('{PACKAGE}')"], cwd=NODE_DIR, capture_output=True, text=True, timeout=60
    )
    if installed.returncode != 0:
        refused = [code for code in NETWORK_ERRORS if code in output]
        if not refused:
            pytest.fail(f"npm install in {NODE_DIR} failed:\n{output[-3000:]}")
        if loaded.returncode != 0:  # else: the copy an earlier run installed
            lines = [line.removeprefix("npm error").strip() for line in output.splitlines()]
            detail = next((line for line in lines if "request to" in line), f"error code {refused[0]}")
            pytest.skip(f"npm could not reach its registry to install {PACKAGE}: {detail}")
    if loaded.returncode != 0:
        if "Failed to load native binding" in loaded.stderr:
            pytest.skip(f"{PACKAGE} ships no native binary for {platform.system()} {platform.machine()}")
        pytest.fail(f"node could not load {PACKAGE}:\n{loaded.stderr[-3000:]}")
    return node


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, tables: dict[str, pa.Table]
) -> Iterator[GatewayProcess]:
    config = write_mesh(tmp_path_factory.mktemp("node"), postgres_uri, SCHEMA, tables)
    (config / "auth.yaml").write_text(auth_yaml())
    process = GatewayProcess(config)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def session(node: str, gateway: GatewayProcess) -> dict[str, Any]:
    """What tests/e2e/node/session.js saw, logged in as the test user."""
    address = urlparse(gateway.uri)
    ran = subprocess.run(
        [node, "session.js", str(address.hostname), str(address.port)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env=gateway.client_env(),  # MESHGATE_USER and MESHGATE_PASSWORD
    )
    assert ran.returncode == 0, f"session.js exited with {ran.returncode}:\n{ran.stdout}\n{ran.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(ran.stdout)
    return result


def test_a_query(session: dict[str, Any], reference: duckdb.DuckDBPyConnection) -> None:
    assert session["query"]["fields"] == [
        {"name": "status", "type": "Utf8", "nullable": True},
        {"name": "n", "type": "Int64", "nullable": False},
        {"name": "revenue", "type": "Float64", "nullable": True},
    ]
    expected = reference.execute(
        "SELECT status, count(*), CAST(sum(total) AS DOUBLE) FROM sales.orders GROUP BY status ORDER BY status"
    ).fetchall()
    got = [(row["status"], row["n"], row["revenue"]) for row in session["query"]["rows"]]
    assert [row[:2] for row in got] == [row[:2] for row in expected]
    assert [row[2] for row in got] == pytest.approx([row[2] for row in expected])


def test_a_cross_domain_query(session: dict[str, Any], reference: duckdb.DuckDBPyConnection) -> None:
    # fetchall: DuckDB 2 keeps a partly fetched result open on the shared reference connection.
    ((expected,),) = reference.execute(
        "SELECT count(*) FROM sales.orders o JOIN logistics.shipments s ON s.order_id = o.order_id"
        " WHERE s.carrier = 'DHL'"
    ).fetchall()
    assert session["join"]["rows"] == [{"n": expected}]


def test_catalogs_schemas_and_tables(session: dict[str, Any]) -> None:
    assert session["catalogs"] == ["mesh"]
    assert {"inventory", "logistics", "sales"} <= set(session["schemas"])
    assert [(t["schema"], t["table"], t["type"]) for t in session["tables"]] == [
        ("sales", "big_spenders", "TABLE"),
        ("sales", "customers", "TABLE"),
        ("sales", "orders", "TABLE"),
    ]
    orders = next(t for t in session["tables"] if t["table"] == "orders")
    assert orders["fields"] == [
        {"name": "order_id", "type": "Int64", "nullable": False},
        {"name": "customer_id", "type": "Int32", "nullable": True},
        {"name": "order_date", "type": "Date32<DAY>", "nullable": True},
        {"name": "status", "type": "Utf8", "nullable": True},
        {"name": "total", "type": "Decimal[12e+2]", "nullable": True},
    ]


def test_an_error_and_the_session_goes_on(session: dict[str, Any]) -> None:
    # The client reports only its own step: the gateway's message (no field named
    # no_such_column) is dropped by the client, not sent without one by the gateway.
    assert session["error"] == "failed to prepare statement"
    assert session["after_error"] == [{"one": 1}]
