"""A third-party package adds a connector kind without touching Meshgate.

examples/meshgate-connector-example is pip-installed into a folder of the test's own (never
into the project's venv) and put on a ``meshgate serve`` subprocess's ``PYTHONPATH``, beside a
plugin that is broken on purpose. The gateway serves the example's kind to the ADBC driver
under the platform's policies, joins it with a built-in kind, keeps the broken kind's domain
offline saying why, and the shared conformance suite runs against the example's kind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.base import SourceObject
from gateway.config import ConnectorConfig
from gateway.errors import SourceError
from tests.conformance import data
from tests.support.gateway import GatewayProcess, auth_yaml, query
from tests.support.plugins import EXAMPLE_KIND, ROOT, install_example, write_distribution

ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "region": ["eu", "us", "eu", "eu", "us"],
        "email": ["a@x.eu", "b@x.us", "c@x.eu", "d@x.eu", "e@x.us"],
        "amount": pa.array([10, 20, 30, 40, 50], pa.decimal128(10, 2)),
        "customer": pa.array([100, 200, 100, 300, 200], pa.int32()),
    }
)
SUITE = ("tests/connectors/test_conformance.py",)
CUSTOMERS = pa.table({"customer": pa.array([100, 200, 300], pa.int32()), "name": ["Ann", "Bo", "Cy"]})


FAULTY = """
from meshgate_connector_example.connector import ArrowIpcConnector

class Faulty(ArrowIpcConnector):
    kind = "faulty"

    def prepare(self, ctx):
        raise RuntimeError("a bug in the plugin's prepare")

    def stamp(self, product, source):
        raise RuntimeError("a bug in the plugin")
"""


def write_arrow(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, pip-installed, and a plugin whose module cannot be imported."""
    folder = tmp_path_factory.mktemp("site")
    install_example(folder, tmp_path_factory.mktemp("build"))
    write_distribution(
        folder,
        "broken-plugin",
        {"meshgate.connectors": {"broken": "broken_plugin:Broken"}},
        {"broken_plugin": "import no_such_driver\n"},
    )
    write_distribution(
        folder,
        "faulty-plugin",
        {"meshgate.connectors": {"faulty": "faulty_plugin:Faulty"}},
        {"faulty_plugin": FAULTY},
    )
    return folder


def plugin_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mesh")
    (folder / "exports").mkdir()
    write_arrow(folder / "exports" / "orders.arrow", ORDERS)
    (folder / "crm").mkdir()
    pq.write_table(CUSTOMERS, folder / "crm" / "customers.parquet")
    (folder / "lost").mkdir()
    (folder / "typed").mkdir()
    (folder / "faulty").mkdir()
    write_arrow(folder / "faulty" / "orders.arrow", ORDERS)
    write_arrow(folder / "typed" / f"{data.TABLE}.arrow", data.conformance_table())
    (folder / "mesh.yaml").write_text(
        auth_yaml()
        + """
domains:
  - name: exports
    connector: {type: arrow_ipc, path: exports}
  - name: crm
    connector: {type: parquet, path: crm}
  - name: lost
    connector: {type: broken, path: lost}
  - name: typed
    connector: {type: arrow_ipc, path: typed}
  - name: faulty
    connector: {type: faulty, path: faulty}
policies:
  roles:
    analyst: [tester]
  grants:
    - {role: analyst, on: "exports.*"}
    - {role: analyst, on: "crm.*"}
    - {role: analyst, on: "lost.*"}
    - {role: analyst, on: "typed.*"}
    - {role: analyst, on: "faulty.*"}
  masks:
    - {on: exports.orders.email, mask: redact}
  row_filters:
    - {on: exports.orders, where: "region = 'eu'"}
"""
    )
    return folder


@pytest.fixture(scope="module")
def gateway(site: Path, mesh: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(mesh / "mesh.yaml", env=plugin_env(site))
    yield process
    process.stop()


def test_the_plugin_kind_is_served_under_the_platform_policies(gateway: GatewayProcess) -> None:
    got = query(gateway.uri, "SELECT id, region, email, amount FROM exports.orders ORDER BY id", gateway.credentials)
    assert got.column("id").to_pylist() == [1, 3, 4]  # the row filter: eu only
    assert set(got.column("region").to_pylist()) == {"eu"}
    assert "@" not in "".join(got.column("email").to_pylist())  # the mask
    assert got.schema.field("amount").type == pa.decimal128(10, 2)


def test_every_type_of_the_conformance_dataset_reaches_the_client_exactly(gateway: GatewayProcess) -> None:
    got = query(gateway.uri, f"SELECT * FROM typed.{data.TABLE} ORDER BY id", gateway.credentials)
    expected = data.conformance_table()
    assert got.schema.equals(expected.schema), f"{got.schema}\n!=\n{expected.schema}"
    assert got.combine_chunks().equals(expected.combine_chunks())


def test_the_plugin_kind_joins_with_a_built_in_kind(gateway: GatewayProcess) -> None:
    sql = (
        "SELECT c.name, sum(o.amount) AS total FROM exports.orders o JOIN crm.customers c"
        " ON o.customer = c.customer WHERE o.amount > 10 GROUP BY c.name ORDER BY c.name"
    )
    got = query(gateway.uri, sql, gateway.credentials).to_pylist()
    assert [(row["name"], int(row["total"])) for row in got] == [("Ann", 30), ("Cy", 40)]


def test_filters_and_projections_reach_the_plugin_scan(gateway: GatewayProcess) -> None:
    plan = query(gateway.uri, "EXPLAIN SELECT id FROM exports.orders WHERE amount > 25", gateway.credentials)
    text = "\n".join(plan.column("plan").to_pylist())
    scans = [line for line in text.splitlines() if "TableScan" in line and "orders" in line]
    assert scans, text
    assert any("full_filters=" in line and "amount" in line for line in scans), text


def test_a_changed_file_is_read_again(gateway: GatewayProcess, mesh: Path) -> None:
    more = pa.concat_tables([ORDERS, ORDERS.slice(0, 1).set_column(0, "id", pa.array([6], pa.int64()))])
    write_arrow(mesh / "exports" / "orders.new", more)
    os.replace(mesh / "exports" / "orders.new", mesh / "exports" / "orders.arrow")
    got = query(gateway.uri, "SELECT id FROM exports.orders ORDER BY id", gateway.credentials)
    assert got.column("id").to_pylist() == [1, 3, 4, 6]


def test_a_broken_plugin_leaves_its_domain_offline_saying_why(gateway: GatewayProcess) -> None:
    log = "".join(gateway.startup_log)
    assert "entry point 'broken = broken_plugin:Broken' of distribution 'broken-plugin' cannot be imported" in log
    assert "No module named 'no_such_driver'" in log
    with pytest.raises(Exception, match=r"connector type 'broken' is unavailable: .*'broken-plugin'"):
        query(gateway.uri, "SELECT * FROM lost.anything", gateway.credentials)


def test_a_plugins_bug_fails_its_own_products_only(gateway: GatewayProcess) -> None:
    with pytest.raises(Exception, match=r"data product 'faulty\.orders' cannot be read: internal error \(reference \w+\)"):
        query(gateway.uri, "SELECT * FROM faulty.orders", gateway.credentials)
    assert query(gateway.uri, "SELECT count(*) AS n FROM crm.customers", gateway.credentials).to_pylist() == [{"n": 3}]
    deadline = time.monotonic() + 30  # the log is read by a thread of the test's: wait for the line
    while "RuntimeError: a bug in the plugin" not in "".join(gateway.output) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "RuntimeError: a bug in the plugin" in "".join(gateway.output)  # the whole traceback, in the log only
    assert "RuntimeError: a bug in the plugin's prepare" in "".join(gateway.output)


def test_config_checks_a_plugin_kind_from_its_class(site: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: exports\n    connector: {type: arrow_ipc, path: data, delimiter: ';'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(tmp_path / "mesh.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, **plugin_env(site)},
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode != 0
    assert "domain 'exports': connector.delimiter: unknown key; expected one of path, type" in result.stderr + result.stdout


def test_the_conformance_suite_runs_against_the_plugin_kind(site: Path, tmp_path: Path) -> None:
    # --basetemp: a pytest session of its own would otherwise prune older sessions' temporary folders.
    options = ["-n", "0", "-v", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "inner")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *options, *SUITE, "--connector", EXAMPLE_KIND],
        capture_output=True,
        text=True,
        env={**os.environ, **plugin_env(site)},
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = re.findall(r"^tests/connectors/test_conformance.py::(.+?) PASSED", result.stdout, re.MULTILINE)
    assert len(ran) >= 10, result.stdout[-3000:]
    assert all(f"[{EXAMPLE_KIND}" in test for test in ran), ran
    assert not re.search(r"\d+ (skipped|failed)", result.stdout.splitlines()[-1]), result.stdout[-500:]


@pytest.mark.parametrize("source", ["../outside.arrow", "/etc/passwd", "sub/orders.arrow", "orders.parquet", ".."])
def test_a_product_is_a_file_of_the_folder_only(site: Path, mesh: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from meshgate_connector_example.connector import ArrowIpcConnector

    connector = ArrowIpcConnector("exports", ConnectorConfig(type=EXAMPLE_KIND, path=mesh / "exports"))
    with pytest.raises(SourceError, match=r"\[exports/arrow_ipc:.*\] source '.*' is not a \*\.arrow file of the folder"):
        connector.schema(SourceObject(table=source))
