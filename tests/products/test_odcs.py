"""Open Data Contract Standard (ODCS v3) contracts: published into a domain's products, exported per caller.

In process (SQLite, the real Reloader and the Flight actions' functions): what maps, what is refused
(each refusal names the field, changes nothing on disk or in the served mesh, and is audited), who may
import, and what an export shows to whom. Through a real ``meshgate serve`` and the CLI (PostgreSQL):
the round trip import, serve, export, import again, with the exported document validated by the
``open-data-contract-standard`` package, and the imported checks run by ``meshgate checks run``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import jsonschema
import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from gateway.api import CallerContext
from gateway.config import ProductConfig, load_config
from gateway.contract_actions import export_action, import_action
from gateway.engine import Engine
from gateway.errors import ConfigError, MeshgateError, NotFoundError, PermissionDeniedError
from gateway.odcs import parse_document, read_contract
from gateway.quality import run_checks
from gateway.reload import Reloader
from tests.support.gateway import Credentials, GatewayProcess, query

PLATFORM = """policies:
  roles:
    admin: [root]
    analyst: [alice]
    sales_team: ["group:sales-team"]
    other_team: ["group:other-team"]
  grants:
    - {role: sales_team, on: "sales.*"}
    - {role: other_team, on: "other.*"}
    - {role: analyst, on: sales.orders, columns: [order_id, customer, total]}
    - {role: admin, on: "*"}
  rules:
    - {columns_tagged: pii, mask: redact, except: [admin, sales_team]}
"""
SALES = """domains:
  - name: sales
    owner: sales-team
    connector: {type: sqlite, path: sales.db}
    products:
      - {name: orders, source: orders, description: Orders as placed}
"""
OTHER = """domains:
  - name: other
    owner: other-team
    connector: {type: sqlite, path: other.db}
    products:
      - {name: things, source: things}
"""
CONTRACT = """apiVersion: v3.1.0
kind: DataContract
id: sales-orders
version: "1.2.0"
status: active
domain: sales
servers:
  - {server: prod, type: postgres, host: db.example, port: 5432, database: shop, schema: public}
schema:
  - name: orders
    tags: [finance]
    properties:
      - name: order_id
        logicalType: integer
        physicalType: int64
        description: The order's number
        primaryKey: true
        primaryKeyPosition: 1
        required: true
        unique: true
      - {name: customer, logicalType: string, tags: [pii]}
      - name: total
        logicalType: number
        quality:
          - {type: library, metric: nullValues, unit: percent, mustBeLessOrEqualTo: 10, name: few_missing_totals}
      - {name: placed_on, logicalType: date, physicalType: DATE}
    quality:
      - {type: library, metric: rowCount, mustBeBetween: [1, 1000]}
      - {type: sql, name: no_negative_totals, query: "SELECT count(*) FROM ${table} WHERE total < 0", mustBe: 0}
"""
STRING_DATES = CONTRACT.replace("logicalType: date, physicalType: DATE", "logicalType: string")  # as SQLite has them
OLGA = CallerContext(user="olga", attributes={"groups": "sales-team"})  # owns sales
OTTO = CallerContext(user="otto", attributes={"groups": "other-team"})  # owns other
ALICE = CallerContext(user="alice")  # reads three columns of sales.orders, pii redacted
NOBODY = CallerContext(user="nobody")  # no grant
ROOT = CallerContext(user="root")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Engine, Reloader, Path]]:
    with sqlite3.connect(tmp_path / "sales.db") as connection:
        connection.execute("CREATE TABLE orders (order_id INTEGER, customer TEXT, total REAL, placed_on TEXT)")
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)", [(1, "ann", 10.5, "2026-01-02"), (2, "bob", None, "2026-01-03")]
        )
    with sqlite3.connect(tmp_path / "other.db") as connection:
        connection.execute("CREATE TABLE things (x INTEGER)")
    for name, text in (("platform", PLATFORM), ("sales", SALES), ("other", OTHER)):
        (tmp_path / f"{name}.yaml").write_text(text)
    engine = Engine.from_config(load_config(tmp_path))
    yield engine, Reloader(engine, tmp_path), tmp_path
    engine.close()


def publish(reloader: Reloader, caller: CallerContext, text: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(import_action(reloader)(caller, json.dumps({"odcs": text}).encode()))
    return answer


def export(engine: Engine, caller: CallerContext, product: str = "sales.orders") -> str:
    return export_action(engine)(caller, json.dumps({"product": product}).encode()).decode()


def orders(engine: Engine) -> ProductConfig:
    declared = engine.catalog.domain("sales").products["orders"].declared
    assert declared is not None
    return declared


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ----------------------------------------------------------------- import


def test_an_owner_publishes_an_odcs_contract_into_the_product(mesh) -> None:
    engine, reloader, _folder = mesh
    answer = publish(reloader, OLGA, CONTRACT)
    assert (answer["file"], answer["domain"], answer["products"]) == ("sales.yaml", "sales", ["orders"])
    assert any(note.startswith("servers: not kept") for note in answer["notes"]), answer["notes"]
    assert answer["drift"] == ["sales.orders: column 'placed_on' changed type: declared date32[day], found string"]
    product = orders(engine)
    assert [(c.name, str(c.type), c.tags) for c in product.columns or ()] == [
        ("order_id", "int64", ()),
        ("customer", "string", ("pii",)),
        ("total", "double", ()),
        ("placed_on", "date32[day]", ()),
    ]
    assert product.columns is not None and product.columns[0].description == "The order's number"
    assert (product.primary_key, product.version, product.tags) == (("order_id",), "1.2.0", ("finance",))
    assert product.description == "Orders as placed", "a description the document does not give stays"
    checks = {c.name: c for c in product.checks}
    assert list(checks) == [
        "not_null(order_id)",
        "unique(order_id)",
        "few_missing_totals",
        "row_count",
        "no_negative_totals",
    ]
    assert checks["few_missing_totals"].max_null_ratio == pytest.approx(0.1)
    assert (checks["row_count"].min_rows, checks["row_count"].max_rows) == (1, 1000)
    assert checks["no_negative_totals"].sql == "SELECT (SELECT count(*) FROM sales.orders WHERE total < 0) = 0"
    (event,) = [e for e in engine.audit.events(everyone=True) if e.kind == "contract_import"]
    assert (event.user, event.outcome) == ("olga", "applied")


def test_the_imported_checks_run_and_a_broken_rule_fails(mesh) -> None:
    engine, reloader, _folder = mesh
    publish(reloader, OLGA, STRING_DATES)
    outcomes = {r.check: r.outcome for r in run_checks(engine, "sales")}
    assert outcomes == {
        "contract": "pass",
        "not_null(order_id)": "pass",
        "unique(order_id)": "pass",
        "few_missing_totals": "fail",  # one total of two is NULL: 50 %
        "row_count": "pass",
        "no_negative_totals": "pass",
    }


def test_sql_rules_compare_their_query_with_the_rules_bounds(mesh) -> None:
    engine, reloader, _folder = mesh
    rules = (
        "        quality:\n"
        '          - {type: sql, name: in_range, query: "SELECT max(${column}) FROM ${table} -- largest",'
        " mustBeBetween: [0, 100]}\n"
        '          - {type: sql, name: too_few, query: "SELECT count(*) FROM ${object}", mustBeGreaterThan: 5}\n'
    )
    text = STRING_DATES.replace(
        "      - name: total\n        logicalType: number\n        quality:\n"
        "          - {type: library, metric: nullValues, unit: percent, mustBeLessOrEqualTo: 10,"
        " name: few_missing_totals}\n",
        "      - name: total\n        logicalType: number\n" + rules,
    )
    assert "in_range" in text
    publish(reloader, OLGA, text)
    checks = {c.name: c.sql for c in orders(engine).checks if c.kind == "sql"}
    assert checks["in_range"] == 'SELECT (SELECT max("total") FROM sales.orders -- largest\n) BETWEEN 0 AND 100'
    assert checks["too_few"] == "SELECT (SELECT count(*) FROM sales.orders) > 5"
    outcomes = {r.check: r.outcome for r in run_checks(engine, "sales")}
    assert (outcomes["in_range"], outcomes["too_few"]) == ("pass", "fail")


TYPES = [
    ("logicalType: integer", "int64"),
    ("logicalType: number", "double"),
    ("logicalType: boolean", "bool"),
    ("logicalType: date", "date32[day]"),
    ("logicalType: timestamp", "timestamp[us]"),
    ("logicalType: timestamp, logicalTypeOptions: {timezone: true}", "timestamp[us, tz=UTC]"),
    ("physicalType: BIGINT", "int64"),
    ('physicalType: "VARCHAR(20)"', "string"),
    ('physicalType: "NUMERIC(10,2)"', "decimal128(10, 2)"),
    ("physicalType: TIMESTAMPTZ", "timestamp[us, tz=UTC]"),
    ("physicalType: int8", "int8"),
    ('logicalType: array, physicalType: "list<string>"', "list<item: string>"),
]


@pytest.mark.parametrize(("declared", "arrow"), TYPES, ids=[t for _, t in TYPES])
def test_odcs_types_map_to_arrow_types(declared: str, arrow: str) -> None:
    text = "apiVersion: v3.0.2\nkind: DataContract\nid: t\nversion: 1.0.0\nstatus: draft\ndomain: d\nschema:\n"
    text += f"  - name: p\n    properties:\n      - {{name: c, {declared}}}\n"
    assert read_contract(text).products["p"]["columns"] == [{"name": "c", "type": arrow}]


BAD = [
    ("apiVersion: [", r"^ODCS: invalid YAML at line 1"),
    (SALES, r"^ODCS: not an ODCS contract"),
    (CONTRACT.replace("v3.1.0", "v2.2.2"), r"^ODCS apiVersion: Meshgate reads ODCS v3 .*got 'v2.2.2'"),
    (CONTRACT.replace("kind: DataContract", "kind: Contract"), r"^ODCS kind: must be DataContract"),
    (
        CONTRACT.replace("{name: customer, logicalType: string", "{name: customer, logicalType: text"),
        r"^ODCS schema\[0\]\.properties\[1\]\.logicalType: 'text' is not one of",
    ),
    (
        CONTRACT.replace("physicalType: DATE", "physicalType: frobnicate"),
        r"^ODCS schema\[0\]\.properties\[3\]\.physicalType: unknown type 'frobnicate'",
    ),
    (
        CONTRACT.replace("physicalType: int64", "physicalType: string"),
        r"^ODCS schema\[0\]\.properties\[0\]\.logicalType: 'integer' does not match physicalType 'string'",
    ),
    (
        CONTRACT.replace("required: true", "requird: true"),
        r"^ODCS schema\[0\]\.properties\[0\]: Unevaluated properties are not allowed \('requird' was unexpected\)",
    ),
    (
        CONTRACT.replace(
            "{name: customer, logicalType: string",
            "{name: customer, logicalType: string, logicalTypeOptions: {maxLength: 8}",
        ),
        r"^ODCS schema\[0\]\.properties\[1\]\.logicalTypeOptions\.maxLength: Meshgate does not check value constraints",
    ),
    (
        CONTRACT.replace("metric: rowCount, mustBeBetween: [1, 1000]", "metric: rowCount, mustNotBe: 3"),
        r"^ODCS schema\[0\]\.quality\[0\]\.mustNotBe: Meshgate's row_count check takes bounds",
    ),
    (
        CONTRACT.replace("metric: nullValues, unit: percent", "metric: missingValues, unit: percent"),
        r"^ODCS schema\[0\]\.properties\[2\]\.quality\[0\]\.metric: Meshgate cannot run 'missingValues'",
    ),
    (
        CONTRACT.replace(
            '{type: sql, name: no_negative_totals, query: "SELECT count(*) FROM ${table} WHERE total < 0", mustBe: 0}',
            '{type: custom, engine: soda, implementation: "missing_count(total) = 0"}',
        ),
        r"^ODCS schema\[0\]\.quality\[1\]\.engine: Meshgate runs its own checks only .*not 'soda'",
    ),
    (
        CONTRACT.replace("WHERE total < 0", "WHERE ${owner} < 0"),
        r"^ODCS schema\[0\]\.quality\[1\]\.query: unknown placeholder \$\{owner\}",
    ),
    (
        CONTRACT.replace(
            "- {name: placed_on, logicalType: date, physicalType: DATE}",
            "- {name: placed_on, logicalType: date, enum: [{value: '2026-01-01'}]}",
        ),
        r"^ODCS schema\[0\]\.properties\[3\]\.enum: Meshgate cannot hold or check this",
    ),
    (
        CONTRACT.replace("  - name: orders\n", "  - name: refunds\n"),
        r"^ODCS schema\[0\]\.name: domain 'sales' declares no product 'refunds' \(it has: orders\)",
    ),
    (CONTRACT.replace("domain: sales\n", ""), r"^ODCS domain: missing"),
    (
        CONTRACT.replace(
            '{type: sql, name: no_negative_totals, query: "SELECT count(*) FROM ${table} WHERE total < 0", mustBe: 0}',
            "{type: custom, engine: meshgate, implementation: {name: sneaky, source: /etc/passwd}}",
        ),
        r"^ODCS schema\[0\]\.quality\[1\]\.implementation\.source: not a key of a Meshgate check",
    ),
    (
        CONTRACT.replace("{name: customer, logicalType: string", "{name: order_id, logicalType: string"),
        r"^ODCS schema\[0\]\.properties\[1\]\.name: column 'order_id' is described twice",
    ),
    (
        CONTRACT.replace(
            "unit: percent, mustBeLessOrEqualTo: 10",
            "unit: percent, mustBeLessOrEqualTo: 10, arguments: {missingValues: [n/a]}",
        ),
        r"^ODCS schema\[0\]\.properties\[2\]\.quality\[0\]\.arguments: Meshgate's checks take none here",
    ),
    (
        CONTRACT.replace("id: sales-orders", "id: &id sales-orders\nname: *id"),
        r"^ODCS: invalid YAML at line 4, .*aliases",
    ),
    ("schema: " + "[" * 5000 + "]" * 5000, r"^ODCS: invalid YAML: nested too deeply"),
    (
        CONTRACT.replace("{name: customer,", "{name: customer, primaryKey: true,"),
        r"^ODCS schema\[0\]\.properties: give every primary key column a primaryKeyPosition, or none",
    ),
    (CONTRACT.replace("domain: sales", "domain: nowhere"), r"^unknown domain 'nowhere'"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_document_meshgate_cannot_keep_is_refused_naming_the_field(mesh, text: str, message: str) -> None:
    engine, reloader, folder = mesh
    before, served = snapshot(folder), orders(engine)
    with pytest.raises(MeshgateError) as raised:
        publish(reloader, OLGA, text)
    assert re.search(message, str(raised.value)), str(raised.value)
    assert "Traceback" not in str(raised.value)
    assert snapshot(folder) == before, "a refused contract leaves the domain's file as it was"
    assert orders(engine) == served
    event = [e for e in engine.audit.events(everyone=True) if e.kind == "contract_import"][-1]
    assert (event.user, event.outcome) == ("olga", "failed")


def test_one_document_describes_several_products_of_the_domain(mesh) -> None:
    engine, reloader, folder = mesh
    (folder / "sales.yaml").write_text(SALES + "      - {name: archive, source: orders}\n")
    reloader.poll()
    second = "  - name: archive\n    properties:\n      - {name: order_id, logicalType: integer, required: true}\n"
    text = STRING_DATES.replace("schema:\n", "schema:\n" + second, 1)
    text += "slaProperties:\n  - {property: latency, value: 12, unit: hours, element: archive.order_id}\n"
    with pytest.raises(ConfigError, match=r"freshness.column: column 'order_id' is int64: freshness needs a timestamp"):
        publish(reloader, OLGA, text)
    text = text.replace("value: 12, unit: hours, element: archive.order_id", "value: 12, unit: hours, element: x.y")
    with pytest.raises(ConfigError, match=r"^ODCS slaProperties\[0\]\.element: name the product and its timestamp"):
        publish(reloader, OLGA, text)
    answer = publish(reloader, OLGA, text.rsplit("slaProperties:", 1)[0])
    assert answer["products"] == ["archive", "orders"]
    archive = engine.catalog.domain("sales").products["archive"].declared
    assert archive is not None and [c.name for c in archive.columns or ()] == ["order_id"]
    assert [c.name for c in archive.checks] == ["not_null(order_id)"]
    assert len(orders(engine).checks) == 5


def test_a_malformed_request_is_refused_and_audited(mesh) -> None:
    engine, reloader, _folder = mesh
    for body in (b"not json", b'{"yaml": "x"}', b'{"odcs": 3}', b"[" * 100_000):
        with pytest.raises(ConfigError, match=r'^this request is JSON: \{"odcs": "apiVersion: v3.1.0 ..."\}$'):
            import_action(reloader)(OLGA, body)
    events = [e for e in engine.audit.events(everyone=True) if e.kind == "contract_import"]
    assert [e.outcome for e in events] == ["failed"] * 4
    with pytest.raises(ConfigError, match=r'^this request is JSON: \{"product": "sales.orders"\}$'):
        export_action(engine)(OLGA, b'{"product": null}')


def test_only_the_domains_owner_or_an_admin_may_publish_its_contract(mesh) -> None:
    engine, reloader, folder = mesh
    before = snapshot(folder)
    for stranger in (OTTO, ALICE, NOBODY):
        with pytest.raises(PermissionDeniedError, match=r"may not change domain 'sales': it is owned by 'sales-team'"):
            publish(reloader, stranger, CONTRACT)
    # The ownership check comes first: a stranger learns nothing of the domain's products.
    with pytest.raises(PermissionDeniedError, match=r"may not change domain 'sales'"):
        publish(reloader, OTTO, CONTRACT.replace("  - name: orders\n", "  - name: secret_refunds\n"))
    assert snapshot(folder) == before
    events = [e for e in engine.audit.events(everyone=True) if e.kind == "contract_import"]
    assert {(e.user, e.outcome) for e in events} == {("otto", "refused"), ("alice", "refused"), ("nobody", "refused")}
    assert publish(reloader, ROOT, CONTRACT)["products"] == ["orders"]


def test_a_contract_changes_only_contract_keys_never_the_connector(mesh) -> None:
    _engine, reloader, folder = mesh
    publish(reloader, OLGA, CONTRACT)
    sales = yaml.safe_load((folder / "sales.yaml").read_text())["domains"][0]
    assert sales["connector"] == {"type": "sqlite", "path": "sales.db"}
    assert (sales["name"], sales["owner"]) == ("sales", "sales-team")
    assert set(sales["products"][0]) == {
        *("name", "source", "description", "tags", "version", "columns", "primary_key", "checks"),
    }


def test_a_contract_may_not_drop_a_tag_a_platform_rule_governs(mesh) -> None:
    _engine, reloader, folder = mesh
    publish(reloader, OLGA, CONTRACT)
    before = snapshot(folder)
    with pytest.raises(PermissionDeniedError, match=r"may not drop tag 'pii' from column 'customer' of sales.orders"):
        publish(
            reloader,
            OLGA,
            CONTRACT.replace(
                "{name: customer, logicalType: string, tags: [pii]}", "{name: customer, logicalType: string}"
            ),
        )
    assert snapshot(folder) == before


def test_unknown_custom_properties_and_descriptive_parts_are_reported(mesh) -> None:
    _engine, reloader, _folder = mesh
    text = CONTRACT.replace(
        "    tags: [finance]\n",
        "    tags: [finance]\n    customProperties:\n"
        "      - {property: meshgateOnDrift, value: block}\n      - {property: steward, value: kim}\n",
    )
    text += "slaProperties:\n  - {property: retention, value: 3, unit: y}\n"
    notes = publish(reloader, OLGA, text)["notes"]
    assert "schema[0].customProperties[1] (steward): not kept" in notes
    assert any(n.startswith("slaProperties[0] (retention): not kept") for n in notes), notes
    assert orders(_engine).on_drift == "block"


# ----------------------------------------------------------------- export


def test_export_shows_a_reader_only_what_they_may_see(mesh) -> None:
    engine, reloader, _folder = mesh
    publish(reloader, OLGA, STRING_DATES)
    seen = parse_document(export(engine, ALICE))
    (schema,) = seen.schema_ or []
    props = {p.name: p for p in schema.properties or []}
    assert list(props) == ["order_id", "customer", "total"], "placed_on is not granted to alice"
    masked = props["customer"].customProperties or []
    assert [(c.property, c.value) for c in masked] == [("meshgateMask", "redact")]
    assert props["order_id"].customProperties is None
    rules = {r.name: r for r in schema.quality or []}
    assert rules["no_negative_totals"].type == "text", "a sql check's SQL shows to owners and admins only"
    assert "SELECT" not in export(engine, ALICE)
    owner_view = parse_document(export(engine, OLGA))
    (owner_schema,) = owner_view.schema_ or []
    owner_rules = {r.name: r for r in owner_schema.quality or []}
    assert owner_rules["no_negative_totals"].engine == "meshgate"
    assert [p.customProperties for p in owner_schema.properties or []] == [None] * 4


RICH = """domains:
  - name: sales
    owner: sales-team
    connector: {type: sqlite, path: sales.db}
    products:
      - name: orders
        source: orders
        description: Orders as placed
        tags: [finance, gold]
        version: "3.1.4"
        on_drift: block
        freshness: {max_age: 90m, column: placed_on}
        primary_key: [customer, order_id]
        columns:
          - {name: order_id, type: int64, description: The order's number}
          - {name: customer, type: string, tags: [pii]}
          - {name: total, type: "decimal(12,2)"}
          - {name: placed_on, type: "timestamp[us, tz=UTC]"}
        checks:
          - unique: [order_id]
          - {name: one_line_per_order, unique: [customer, order_id]}
          - {name: customer_given, not_null: customer}
          - {not_null: total, max_null_ratio: 0.25}
          - row_count: {min: 1}
          - {name: bounded, row_count: {min: 2, max: 2}}
          - {name: recent_enough, freshness: {max_age: 1w2d, column: placed_on}}
          - {name: no_negative_totals, sql: "SELECT count(*) = 0 FROM sales.orders WHERE total < 0"}
"""


def test_importing_an_export_gives_back_the_same_contract(mesh) -> None:
    engine, reloader, folder = mesh
    (folder / "sales.yaml").write_text(RICH)
    reloader.poll()
    before = orders(engine)
    assert before.version == "3.1.4" and len(before.checks) == 9, "the rich contract is served"
    exported = export(engine, OLGA)
    publish(reloader, OLGA, exported)
    after = orders(engine)
    by_name = sorted(before.checks, key=lambda check: check.name)
    assert sorted(after.checks, key=lambda check: check.name) == by_name, "the same checks (ODCS groups them by column)"
    assert dataclasses.replace(after, checks=()) == dataclasses.replace(before, checks=())
    assert export(engine, OLGA) == exported


def test_a_caller_without_a_grant_cannot_tell_a_product_from_a_missing_one(mesh) -> None:
    engine, _reloader, _folder = mesh
    for caller, name in ((NOBODY, "sales.orders"), (OTTO, "sales.orders"), (OLGA, "sales.nope"), (OLGA, "x.y")):
        with pytest.raises(NotFoundError) as raised:
            export(engine, caller, name)
        assert str(raised.value) == f"no data product '{name}' that you may read"
    with pytest.raises(ConfigError, match=r"'orders' is not a product name: give DOMAIN.PRODUCT"):
        export(engine, OLGA, "orders")


# ----------------------------------------------------------------- the real server and CLI

PG_MESH = """domains:
  - name: shop
    owner: shop-team
    connector: {{type: postgres, uri: "{uri}"}}
    products:
      - {{name: orders, source: {schema}.{table}}}
"""
PG_CONTRACT = """apiVersion: v3.1.0
kind: DataContract
id: shop-orders
version: "2.0.0"
status: active
domain: shop
schema:
  - name: orders
    description: Orders of the shop
    tags: [finance]
    properties:
      - {{name: order_id, logicalType: integer, physicalType: BIGINT, primaryKey: true, primaryKeyPosition: 1,
          required: true, unique: true}}
      - {{name: line, logicalType: integer, physicalType: int32, primaryKey: true, primaryKeyPosition: 2}}
      - {{name: email, logicalType: string, physicalType: "VARCHAR(200)", tags: [pii], description: Who ordered}}
      - {{name: total, logicalType: number, physicalType: "decimal(12,2)"}}
      - {{name: updated_at, logicalType: timestamp, physicalType: "timestamp[us, tz=UTC]"}}
    quality:
      - {{type: library, metric: rowCount, mustBeGreaterOrEqualTo: 1}}
      - {{type: library, metric: duplicateValues, arguments: {{properties: [order_id, line]}}, mustBe: 0}}
      - {{type: sql, name: positive_totals, query: "SELECT count(*) FROM ${{table}} WHERE total <= 0", mustBe: 0}}
slaProperties:
  - {{property: latency, value: 2, unit: d, element: orders.updated_at}}
"""
SHOP_OWNER = Credentials("sol", "sol-password-123")
STRANGER = Credentials("sam", "sam-password-456")
READER = Credentials("ria", "ria-password-789")


def cli(*args: str, who: Credentials, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=who.env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def shop(tmp_path: Path, postgres_uri: str, pg_schema: str) -> Iterator[tuple[GatewayProcess, Path]]:
    from gateway.auth import hash_password

    table = f"orders_{uuid.uuid4().hex[:8]}"
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{pg_schema}"."{table}" (order_id int8, line int4, email varchar(200),'
            " total numeric(12,2), updated_at timestamptz DEFAULT now())"
        )
        cursor.execute(
            f'INSERT INTO "{pg_schema}"."{table}" (order_id, line, email, total)'
            " VALUES (1, 1, 'a@example.com', 10.50), (2, 2, 'a@example.com', 3.20), (3, 1, 'b@example.com', 99.99)"
        )
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    users = ((SHOP_OWNER, "shop-team"), (STRANGER, "others"), (READER, "readers"))
    (mesh / "auth.yaml").write_text(
        "auth:\n  users:\n"
        + "".join(
            f"    - {{name: {c.user}, password_hash: '{hash_password(c.password)}', groups: [{g}]}}\n" for c, g in users
        )
        + "policies:\n  roles:\n    shop: ['group:shop-team']\n    readers: ['group:readers']\n"
        "  grants:\n    - {role: shop, on: 'shop.*'}\n    - {role: readers, on: 'shop.*'}\n"
        "  rules:\n    - {columns_tagged: pii, mask: hash, except: [shop]}\n"
    )
    (mesh / "shop.yaml").write_text(PG_MESH.format(uri=postgres_uri, schema=pg_schema, table=table))
    process = GatewayProcess(mesh, extra=("--watch-interval", "0"), credentials=SHOP_OWNER)
    try:
        yield process, mesh
    finally:
        process.stop()


def test_round_trip_through_the_server_and_the_cli(shop, tmp_path: Path) -> None:
    process, mesh = shop
    published = tmp_path / "orders.odcs.yaml"
    published.write_text(PG_CONTRACT.format())
    server = ("--server", process.uri)

    denied = cli("contract", "import", str(published), *server, who=STRANGER, cwd=tmp_path)
    assert denied.returncode == 1 and "may not change domain 'shop'" in denied.stderr, denied.stderr
    assert "columns" not in (mesh / "shop.yaml").read_text()

    done = cli("contract", "import", str(published), *server, who=SHOP_OWNER, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "shop.yaml: contract applied to shop.orders"
    assert "drift" not in done.stdout, "the contract's types are the ones PostgreSQL's columns arrive as"

    # The contract is served: discovery shows it, through the ADBC driver.
    columns = query(
        process.uri,
        'SELECT "column", declared_type, tags, description FROM system.columns'
        " WHERE domain = 'shop' ORDER BY ordinal",
        SHOP_OWNER,
    ).to_pylist()
    assert [(c["column"], c["declared_type"], c["tags"]) for c in columns] == [
        ("order_id", "int64", []),
        ("line", "int32", []),
        ("email", "string", ["pii"]),
        ("total", "decimal128(12, 2)", []),
        ("updated_at", "timestamp[us, tz=UTC]", []),
    ]
    assert columns[2]["description"] == "Who ordered"

    exported = cli("contract", "export", "shop.orders", *server, who=SHOP_OWNER, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    document = yaml.safe_load(exported.stdout)
    schema_text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text()
    jsonschema.validate(document, json.loads(schema_text))
    contract = OpenDataContractStandard.from_string(exported.stdout)
    assert (contract.apiVersion, contract.kind, contract.domain, contract.version) == (
        "v3.1.0",
        "DataContract",
        "shop",
        "2.0.0",
    )
    (schema,) = contract.schema_ or []
    assert (schema.name, schema.description, schema.tags) == ("orders", "Orders of the shop", ["finance"])
    props = [
        (p.name, p.logicalType, p.physicalType, p.primaryKeyPosition, p.required, p.unique)
        for p in schema.properties or []
    ]
    assert props == [
        ("order_id", "integer", "int64", 1, True, True),
        ("line", "integer", "int32", 2, None, None),
        ("email", "string", "string", None, None, None),
        ("total", "number", "decimal128(12, 2)", None, None, None),
        ("updated_at", "timestamp", "timestamp[us, tz=UTC]", None, None, None),
    ]
    rules = [(r.type, r.metric, r.engine) for r in schema.quality or []]
    assert rules == [("library", "rowCount", None), ("library", "duplicateValues", None), ("custom", None, "meshgate")]
    assert [(s.property, s.value, s.unit, s.element) for s in contract.slaProperties or []] == [
        ("latency", 2, "d", "orders.updated_at")
    ]

    # Export, then import the export: the served contract is the same.
    before = yaml.safe_load((mesh / "shop.yaml").read_text())["domains"][0]["products"][0]
    again = tmp_path / "exported.yaml"
    again.write_text(exported.stdout)
    reimported = cli("domain", "apply", str(again), *server, who=SHOP_OWNER, cwd=tmp_path)  # apply takes ODCS too
    assert reimported.returncode == 0, reimported.stderr
    after = yaml.safe_load((mesh / "shop.yaml").read_text())["domains"][0]["products"][0]
    assert after == before

    # The imported checks run against PostgreSQL and pass.
    checked = cli("checks", "run", "--config", str(mesh), who=SHOP_OWNER, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "7 checks: 7 passed" in checked.stdout, checked.stdout

    # A reader sees the pii column marked masked; a caller without a grant gets nothing.
    read = cli("contract", "export", "shop.orders", *server, "-o", "reader.yaml", who=READER, cwd=tmp_path)
    assert (read.returncode, read.stdout) == (0, ""), read.stderr
    text = (tmp_path / "reader.yaml").read_text()
    email = next(p for p in OpenDataContractStandard.from_string(text).schema_[0].properties or [] if p.name == "email")
    assert [(c.property, c.value) for c in email.customProperties or []] == [("meshgateMask", "hash")]
    assert "positive_totals" in text and "SELECT" not in text
    refused = cli("contract", "export", "shop.orders", *server, who=STRANGER, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: no data product 'shop.orders' that you may read", refused.stderr
