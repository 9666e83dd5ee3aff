"""The audit log and the system tables, as different users see them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from gateway.audit import KEPT_SQL_CHARACTERS, AuditLog
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import PermissionDeniedError, PlanningError
from tests.e2e.federation_data import build_tables
from tests.governance.mesh import USERS, write_governed_mesh
from tests.support.postgres import worker_schema

SCHEMA = worker_schema("meshgate_audit")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("audit")
    config = write_governed_mesh(folder, postgres_uri, SCHEMA, build_tables())
    engine = Engine.from_config(load_config(config), audit=AuditLog(folder / "audit" / "queries.jsonl"))
    yield engine
    engine.close()


def test_every_query_is_logged_with_what_it_touched(engine: Engine) -> None:
    rows = engine.run("SELECT name, country FROM sales.customers", USERS["alice"]).read_all().num_rows
    record = engine.audit.records("alice")[-1]
    assert record.outcome == "ok" and record.rows == rows and record.duration_ms > 0
    assert record.products == ["sales.customers"]
    assert "sales.customers.name" in record.columns and "sales.customers.country" in record.columns
    assert any(p.startswith("mask hash on sales.customers.name") for p in record.policies)
    assert any("row filter on sales.customers" in p for p in record.policies)


def test_denied_and_failed_queries_are_logged_with_the_reason(engine: Engine) -> None:
    with pytest.raises(PermissionDeniedError):
        engine.run("SELECT * FROM sales.customers", USERS["eve"])
    denied = engine.audit.records("eve")[-1]
    assert denied.outcome == "denied" and "no grant on sales.customers" in (denied.error or "")
    with pytest.raises(PlanningError):
        engine.run("SELECT nope FROM sales.customers", USERS["alice"])
    failed = engine.audit.records("alice")[-1]
    assert failed.outcome == "error" and "nope" in (failed.error or "")


def test_the_log_file_is_json_lines_appended(engine: Engine) -> None:
    assert engine.audit.path is not None
    before = engine.audit.path.read_text().splitlines()
    engine.run("SELECT count(*) FROM inventory.products", USERS["dave"]).read_all()
    after = engine.audit.path.read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 1
    entry = json.loads(after[-1])
    assert entry["user"] == "dave" and entry["products"] == ["inventory.products"] and entry["outcome"] == "ok"


def test_a_long_query_is_kept_whole_in_the_file_and_cut_in_memory(engine: Engine) -> None:
    """Found by the soak (RESULTS.md, F6): 300 queries of 0.9 MB each grew the gateway by 1.4 GiB."""
    assert engine.audit.path is not None
    padding = "x" * 200_000
    sql = f"SELECT count(*) AS n FROM inventory.products WHERE '{padding}' <> ''"
    engine.run(sql, USERS["dave"]).read_all()
    entry = json.loads(engine.audit.path.read_text().splitlines()[-1])
    assert entry["sql"] == sql
    kept = engine.audit.records("dave")[-1].sql
    assert kept.startswith(sql[:KEPT_SQL_CHARACTERS]) and len(kept) < KEPT_SQL_CHARACTERS + 100
    assert f"[{len(sql) - KEPT_SQL_CHARACTERS:,} more characters" in kept
    shown = engine.run("SELECT sql FROM system.query_log", USERS["dave"]).read_all().column("sql").to_pylist()
    assert kept in shown and sql not in shown


def test_an_unfinished_query_is_logged_as_cancelled(engine: Engine) -> None:
    execution = engine.run("SELECT * FROM inventory.order_items", USERS["alice"])
    execution.close()
    assert engine.audit.records("alice")[-1].outcome == "cancelled"


def run(engine: Engine, user: str, sql: str) -> pa.Table:
    return engine.run(sql, USERS[user]).read_all()


def test_system_products_and_columns_show_only_what_a_caller_may_read(engine: Engine) -> None:
    carol = run(engine, "carol", "SELECT domain, product, columns FROM system.products")
    assert carol.to_pylist() == [{"domain": "logistics", "product": "shipments", "columns": 3}]
    columns = run(engine, "carol", "SELECT column FROM system.columns ORDER BY ordinal")
    assert columns.column(0).to_pylist() == ["shipment_id", "order_id", "carrier"]
    assert run(engine, "eve", "SELECT * FROM system.products").num_rows == 0
    root = run(engine, "root", "SELECT count(*) AS n FROM system.products").column("n").to_pylist()
    assert root == [6]
    typed = run(engine, "alice", "SELECT type FROM system.columns WHERE product = 'customers' AND column = 'name'")
    assert typed.column(0).to_pylist() == ["string"]


def test_system_policies_says_what_applies_to_me(engine: Engine) -> None:
    alice = run(engine, "alice", "SELECT product, policy FROM system.policies WHERE product = 'customers'")
    policies = alice.column("policy").to_pylist()
    assert any(p.startswith("mask hash") for p in policies) and any(p.startswith("row filter") for p in policies)
    bob = run(engine, "bob", "SELECT policy FROM system.policies WHERE product = 'customers'").column(0).to_pylist()
    assert not any(p.startswith("mask hash") for p in bob)


def test_system_query_log_shows_my_queries_and_all_to_the_admin(engine: Engine) -> None:
    run(engine, "dave", "SELECT count(*) FROM sales.customers")
    mine = run(engine, "dave", 'SELECT DISTINCT "user" FROM system.query_log').column(0).to_pylist()
    assert mine == ["dave"]
    everyone = set(run(engine, "root", 'SELECT DISTINCT "user" FROM system.query_log').column(0).to_pylist())
    assert {"alice", "dave"} <= everyone


def test_system_domains_lists_domains_and_their_state(engine: Engine) -> None:
    domains = run(engine, "alice", "SELECT domain, owner, status FROM system.domains ORDER BY domain").to_pylist()
    assert [d["domain"] for d in domains] == ["inventory", "logistics", "sales"]
    assert {d["status"] for d in domains} == {"online"}


def test_a_domain_cannot_be_called_system(tmp_path: Path) -> None:
    (tmp_path / "data.db").write_bytes(b"")
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: system\n    connector: {type: sqlite, path: data.db}\n")
    with pytest.raises(Exception, match=r"'system' is reserved"):
        load_config(tmp_path / "mesh.yaml")


def test_serve_writes_the_audit_log_file(tmp_path: Path) -> None:
    from tests.support.gateway import GatewayProcess, auth_yaml, query

    (tmp_path / "ref.csv").write_text("code,label\na,alpha\nb,beta\n")
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: ref\n    connector: {type: csv, path: ref.csv}\n    products:\n"
        "      - {name: codes, source: ref.csv}\n" + auth_yaml()
    )
    target = tmp_path / "audit" / "queries.jsonl"
    process = GatewayProcess(tmp_path / "mesh.yaml", extra=("--audit-log", str(target)))
    try:
        assert query(process.uri, "SELECT count(*) AS n FROM ref.codes", process.credentials).column(
            "n"
        ).to_pylist() == [2]
    finally:
        process.stop()
    entries = [json.loads(line) for line in target.read_text().splitlines()]
    queries = [e for e in entries if e["record"] == "query"]
    ok = [e for e in queries if e["sql"] == "SELECT count(*) AS n FROM ref.codes" and e["outcome"] == "ok"]
    assert ok and ok[-1]["user"] == "tester" and ok[-1]["products"] == ["ref.codes"] and ok[-1]["rows"] == 1
