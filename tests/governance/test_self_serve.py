"""Self-serve changes over the network cannot escalate: every route of the governance review, refused.

Each refusal says why, leaves the config directory exactly as it was, keeps the served mesh
unchanged, and is recorded as a ``domain_apply`` event. The model is in gateway/selfserve.py.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, MeshgateError, PermissionDeniedError
from gateway.quality import run_checks
from gateway.reload import Reloader

PLATFORM = """policies:
  roles:
    admin: [root]
    analyst: [alice]
    platform_eng: [pat]
    sales_team: ["group:sales-team"]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "*"}
    - {role: sales_team, on: "sales.*"}
  rules:
    - {columns_tagged: pii, mask: redact, except: [admin]}
  classify:
    - {columns: "*.*.ssn", tags: [pii]}
self_serve:
  creators: [platform_eng]
  domains:
    sales: {owner: sales-team, paths: [sales]}
    events: {owner: events-team, paths: [events]}
    newbie: {owner: newbie-team, paths: [newbie]}
"""
SALES = """domains:
  - name: sales
    owner: sales-team
    connector: {type: sqlite, path: sales/sales.db}
    products:
      - name: customers
        source: customers
        columns:
          - {name: id, type: int64}
          - {name: email, type: string, tags: [pii]}
          - {name: ssn, type: string}
        checks:
          - {name: peek_at_finance, sql: "SELECT count(*) = 0 FROM finance.salaries"}
"""
FINANCE = """domains:
  - name: finance
    owner: finance-team
    connector: {type: sqlite, path: finance/finance.db}
"""
EVENTS = """domains:
  - name: events
    owner: events-team
    connector: {type: parquet, path: events}
    products:
      - {name: clicks, source: clicks.parquet}
"""
OLGA = CallerContext(user="olga", attributes={"groups": "sales-team"})  # owns sales
EVA = CallerContext(user="eva", attributes={"groups": "events-team"})  # owns events
MALLORY = CallerContext(user="mallory", attributes={"groups": "nobody"})
PAT = CallerContext(user="pat")  # platform engineer: may create registered domains
ROOT = CallerContext(user="root")
ALICE = CallerContext(user="alice")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Engine, Reloader, Path]]:
    for name, ddl, rows in (
        ("sales", "CREATE TABLE customers (id INTEGER, email TEXT, ssn TEXT)", [(1, "a@x.org", "123-45-6789")]),
        ("finance", "CREATE TABLE salaries (who TEXT, amount INTEGER)", [("ceo", 999999)]),
        ("newbie", "CREATE TABLE t (x INTEGER)", [(1,)]),
    ):
        (tmp_path / name).mkdir()
        with sqlite3.connect(tmp_path / name / f"{name}.db") as connection:
            connection.execute(ddl)
            marks = ", ".join("?" * len(rows[0]))
            connection.executemany(f"INSERT INTO {ddl.split()[2]} VALUES ({marks})", rows)
    (tmp_path / "events").mkdir()
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "events" / "clicks.parquet")
    (tmp_path / "secret").mkdir()
    pq.write_table(pa.table({"secret": ["s3cr3t"]}), tmp_path / "secret" / "vault.parquet")
    (tmp_path / "events" / "link.parquet").symlink_to(tmp_path / "secret" / "vault.parquet")
    for name, text in (("platform", PLATFORM), ("sales", SALES), ("finance", FINANCE), ("events", EVENTS)):
        (tmp_path / f"{name}.yaml").write_text(text)
    engine = Engine.from_config(load_config(tmp_path))
    reloader = Reloader(engine, tmp_path)
    yield engine, reloader, tmp_path
    engine.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(mesh: tuple[Engine, Reloader, Path], caller: CallerContext, text: str, match: str) -> MeshgateError:
    """Apply ``text`` as ``caller``: it must be refused with ``match``, write nothing and change nothing."""
    engine, reloader, folder = mesh
    before, domains = snapshot(folder), {d.name: d.config for d in engine.catalog.domains()}
    with pytest.raises(MeshgateError, match=match) as raised:
        reloader.apply_text(caller, text)
    assert snapshot(folder) == before, "a refused file must leave nothing on disk"
    assert {d.name: d.config for d in engine.catalog.domains()} == domains, "a refused file must change nothing"
    (event,) = [e for e in engine.audit.events(everyone=True) if e.kind == "domain_apply"][-1:]
    assert (event.user, event.outcome) == (caller.user, "refused" if raised.type is PermissionDeniedError else "failed")
    assert re.search(match, event.detail), event.detail
    return raised.value


# ----------------------------------------------------------------- creating domains


def test_a_user_cannot_create_an_unregistered_domain_over_another_domains_file(mesh) -> None:
    stolen = "domains:\n  - name: mine\n    owner: mallory\n    connector: {type: sqlite, path: finance/finance.db}\n"
    refused(mesh, MALLORY, stolen, r"may not create domain 'mine': the platform has not registered it")


def test_even_a_creator_cannot_create_an_unregistered_domain(mesh) -> None:
    text = "domains:\n  - name: mine\n    owner: pat\n    connector: {type: sqlite, path: newbie/newbie.db}\n"
    refused(mesh, PAT, text, r"may not create domain 'mine': the platform has not registered it")


def test_a_registered_domain_is_created_only_by_a_creator_or_its_registered_owner(mesh) -> None:
    engine, reloader, folder = mesh
    text = "domains:\n  - name: newbie\n    owner: newbie-team\n    connector: {type: sqlite, path: newbie/newbie.db}\n"
    refused(mesh, MALLORY, text, r"may not create domain 'newbie': it is registered to 'newbie-team'")
    assert reloader.apply_text(PAT, text).changed == ("newbie",)
    assert (folder / "newbie.yaml").read_text() == text, "the gateway names the file after the domain"
    assert engine.run("SELECT x FROM newbie.t", ALICE).read_all().column("x").to_pylist() == [1]


def test_a_new_domain_takes_the_registered_owner_not_the_one_it_declares(mesh) -> None:
    text = "domains:\n  - name: newbie\n    owner: pat\n    connector: {type: sqlite, path: newbie/newbie.db}\n"
    refused(mesh, PAT, text, r"may not change the owner of domain 'newbie' to 'pat'")


def test_a_new_domain_may_not_point_outside_its_registered_paths(mesh) -> None:
    text = (
        "domains:\n  - name: newbie\n    owner: newbie-team\n    connector: {type: sqlite, path: finance/finance.db}\n"
    )
    refused(mesh, PAT, text, r"may not point domain 'newbie' at sqlite .*finance.db'")


# ----------------------------------------------------------------- re-pointing a domain


def test_an_owner_cannot_repoint_their_connector_at_another_domains_file(mesh) -> None:
    text = SALES.replace("sales/sales.db", "finance/finance.db")
    refused(mesh, OLGA, text, r"may not point domain 'sales' at sqlite .*finance/finance.db'")


def test_an_owner_cannot_point_an_unregistered_domain_anywhere_new(mesh) -> None:
    _engine, _reloader, _folder = mesh
    finance_owner = CallerContext(user="fin", attributes={"groups": "finance-team"})
    text = FINANCE.replace("finance/finance.db", "sales/sales.db")
    refused(mesh, finance_owner, text, r"it may only use the source it uses now")
    postgres = FINANCE.replace(
        "{type: sqlite, path: finance/finance.db}", '{type: postgres, uri: "postgresql://127.0.0.1:5432/test"}'
    )
    refused(mesh, finance_owner, postgres, r"may not point domain 'finance' at postgres")


def test_endpoints_certificates_and_credentials_are_an_admins_to_set(mesh) -> None:
    """An owner sending the gateway's AWS credentials to an endpoint of theirs, or pointing a CA file
    at any file the gateway can read, is refused; only an admin sets these options."""
    s3 = EVENTS.replace(
        "{type: parquet, path: events}",
        '{type: parquet, uri: "s3://events/clicks", endpoint: "http://127.0.0.1:1", allow_http: true}',
    )
    refused(mesh, EVA, s3, r"may not set connector option allow_http of domain 'events'")
    keys = EVENTS.replace(
        "{type: parquet, path: events}",
        '{type: parquet, uri: "s3://events/clicks", access_key_id: "${AWS_ACCESS_KEY_ID:-probe}"}',
    )
    refused(mesh, EVA, keys, r"may not set connector option access_key_id of domain 'events'")


def test_a_file_product_cannot_climb_out_of_the_domains_folder(mesh) -> None:
    escaping = EVENTS + "      - {name: vault, source: ../secret/vault.parquet}\n"
    refused(mesh, EVA, escaping, r"may not publish '.*secret/vault.parquet' in domain 'events'")


def test_a_symlink_inside_the_folder_does_not_lead_out_of_it(mesh) -> None:
    linked = EVENTS + "      - {name: vault, source: link.parquet}\n"
    refused(mesh, EVA, linked, r"may not publish '.*secret/vault.parquet' in domain 'events'")


def test_a_registered_root_may_not_reach_into_another_domains_files(mesh) -> None:
    _engine, reloader, folder = mesh
    platform = PLATFORM.replace(
        "events: {owner: events-team, paths: [events]}", "events: {owner: events-team, paths: [events, .]}"
    )
    (folder / "platform.yaml").write_text(platform)
    reloader.poll()
    text = EVENTS.replace("{type: parquet, path: events}", "{type: parquet, path: sales}").replace(
        "clicks.parquet", "sales.db"
    )
    refused(mesh, EVA, text, r"that source belongs to domain 'sales'")


# ----------------------------------------------------------------- files and platform sections


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "auth:\n  users:\n    - {name: mallory, password_hash: x}\ndomains: []\n",
            r"may not send 'auth' over the network",
        ),
        ("users:\n  - {name: mallory}\n", r"may not send 'users' over the network"),
        ("policies:\n  grants:\n    - {role: analyst, on: '*'}\n", r"may not send 'policies' over the network"),
        ("self_serve:\n  creators: [analyst]\n", r"may not send 'self_serve' over the network"),
        ("catalog: other\n" + SALES, r"may not send 'catalog' over the network"),
        (SALES + FINANCE.replace("domains:\n", ""), r"holds exactly one domain"),
        ("domains: [", r"invalid YAML"),
    ],
    ids=["auth", "users", "platform_policies", "self_serve", "catalog", "two_domains", "bad_yaml"],
)
def test_platform_sections_are_never_written_over_the_network(mesh, text: str, match: str) -> None:
    refused(mesh, OLGA, text, match)


def test_the_gateway_chooses_the_file_name(mesh) -> None:
    _engine, reloader, folder = mesh
    changed = SALES.replace("products:", "description: applied\n    products:")
    applied = reloader.apply_text(OLGA, changed)
    assert applied.file == folder / "sales.yaml" and "applied" in (folder / "sales.yaml").read_text()
    assert (folder / "finance.yaml").read_text() == FINANCE and (folder / "platform.yaml").read_text() == PLATFORM


def test_the_apply_action_ignores_a_file_name_from_the_client(mesh) -> None:
    import json

    from gateway.reload import apply_action

    _engine, reloader, folder = mesh
    request = json.dumps({"name": "platform.yaml", "yaml": SALES.replace("products:", "description: x\n    products:")})
    answer = json.loads(apply_action(reloader)(OLGA, request.encode()))
    assert answer["file"] == "sales.yaml" and (folder / "platform.yaml").read_text() == PLATFORM


def test_a_domain_sharing_a_file_with_platform_sections_cannot_be_changed_over_the_network(mesh) -> None:
    _engine, reloader, folder = mesh
    (folder / "finance.yaml").unlink()
    (folder / "shared.yaml").write_text("policies:\n  grants:\n    - {role: analyst, on: finance.salaries}\n" + FINANCE)
    reloader.poll()
    assert not reloader.errors
    finance_owner = CallerContext(user="fin", attributes={"groups": "finance-team"})
    changed = FINANCE.replace("connector:", "description: x\n    connector:")
    refused(mesh, finance_owner, changed, r"shared.yaml holds it together with other declarations")


# ----------------------------------------------------------------- ownership and tags


def test_the_owner_is_the_platforms_record_not_the_files(mesh) -> None:
    refused(
        mesh, OLGA, SALES.replace("owner: sales-team", "owner: olga"), r"may not change the owner of domain 'sales'"
    )
    refused(mesh, MALLORY, SALES.replace("owner: sales-team", "owner: nobody"), r"may not change domain 'sales'")


def test_a_governed_tag_cannot_be_dropped_by_the_domain(mesh) -> None:
    _engine, reloader, _folder = mesh
    untagged = SALES.replace("type: string, tags: [pii]}", "type: string}")
    refused(mesh, OLGA, untagged, r"may not drop tag 'pii' from column 'email' of sales.customers")
    renamed = SALES.replace("name: customers\n", "name: people\n").replace(
        "type: string, tags: [pii]}", "type: string}"
    )
    refused(mesh, OLGA, renamed, r"may not drop tag 'pii' from column 'email'")
    no_contract = SALES.split("        columns:")[0]
    refused(mesh, OLGA, no_contract, r"may not drop tag 'pii'")
    assert reloader.apply_text(ROOT, untagged).changed == ("sales",), "an admin may"


def test_pinned_classifications_mask_whatever_the_contract_says(mesh) -> None:
    engine, _, _ = mesh
    row = engine.run("SELECT email, ssn FROM sales.customers", ALICE).read_all().to_pylist()
    assert row == [{"email": "****", "ssn": "****"}], "ssn is pinned pii by the platform, email tagged by the contract"


def test_removing_a_domain_is_an_admins_change(mesh) -> None:
    engine, reloader, folder = mesh
    with pytest.raises(PermissionDeniedError, match=r"may not remove domain 'sales': removing a domain is an admin's"):
        reloader.remove_domain(OLGA, "sales")
    assert (folder / "sales.yaml").exists()
    with pytest.raises(MeshgateError, match=r"unknown domain 'nowhere'"):
        reloader.remove_domain(ROOT, "nowhere")
    assert reloader.remove_domain(ROOT, "events").removed == ("events",)
    assert not (folder / "events.yaml").exists()
    outcomes = [(e.kind, e.user, e.outcome) for e in engine.audit.events(everyone=True)]
    assert ("domain_remove", "olga", "refused") in outcomes and ("domain_remove", "root", "applied") in outcomes


# ----------------------------------------------------------------- quality checks


def test_a_sql_check_runs_with_its_domains_rights_only(mesh) -> None:
    engine, _, _ = mesh
    results = {r.check: r for r in run_checks(engine, "sales")}
    peek = results["peek_at_finance"]
    assert peek.outcome == "error" and "access denied" in peek.detail and "999999" not in peek.detail
    log = [r for r in engine.audit.records(everyone=True) if r.user == "meshgate:checks:sales"]
    assert log and log[-1].outcome == "denied"


def test_config_errors_in_self_serve_name_the_field(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text("self_serve:\n  domains:\n    sales: {owner: x, hosts: [a]}\n")
    with pytest.raises(ConfigError, match=r"platform.yaml:1: self_serve.domains.sales.hosts: unknown key"):
        load_config(tmp_path, require_domains=False)


def test_domain_apply_through_the_cli_is_refused_for_a_foreign_source(tmp_path: Path) -> None:
    from gateway.auth import hash_password
    from tests.support.gateway import Credentials, GatewayProcess

    owner = Credentials("olga", "olga-password-123")
    (tmp_path / "auth.yaml").write_text(
        f"auth:\n  users:\n    - {{name: olga, password_hash: '{hash_password(owner.password)}', groups: [ref-team]}}\n"
    )
    (tmp_path / "ref.csv").write_text("code\na\n")
    (tmp_path / "secret.csv").write_text("code\ns3cr3t\n")
    (tmp_path / "ref.yaml").write_text(
        "domains:\n  - name: ref\n    owner: ref-team\n    connector: {type: csv, path: ref.csv}\n"
    )
    (tmp_path / "vault.yaml").write_text(
        "domains:\n  - name: vault\n    owner: root\n    connector: {type: csv, path: secret.csv}\n"
    )
    changed = tmp_path / "outside" / "ref.yaml"
    changed.parent.mkdir()
    changed.write_text("domains:\n  - name: ref\n    owner: ref-team\n    connector: {type: csv, path: secret.csv}\n")
    process = GatewayProcess(tmp_path, extra=("--watch-interval", "0"), credentials=owner)
    try:
        before = (tmp_path / "ref.yaml").read_text()
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "domain", "apply", str(changed), "--server", process.uri],
            env=owner.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1 and "may not point domain 'ref' at csv" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and (tmp_path / "ref.yaml").read_text() == before
        removed = subprocess.run(
            [sys.executable, "-m", "gateway", "domain", "remove", "vault", "--server", process.uri],
            env=owner.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert removed.returncode == 1 and "removing a domain is an admin's change" in removed.stderr
        assert (tmp_path / "vault.yaml").exists()
    finally:
        process.stop()
