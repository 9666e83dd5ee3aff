"""Platform tag rules: columns tagged in any product contract are masked, and no domain can undo it."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import ConfigError

PLATFORM = """policies:
  roles:
    analyst: [alice, bob]
    pii_reader: [bob]
    admin: [root]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "*"}
  rules:
    - {columns_tagged: pii, mask: redact, except: [pii_reader]}
    - {columns_tagged: secret, mask: "null", except: [admin]}
"""
# The crm team tags its columns, and tries to weaken the platform rule with a mask of its own.
CRM = """domains:
  - name: crm
    connector: {type: sqlite, path: crm.db}
    products:
      - name: customers
        source: customers
        columns:
          - {name: customer_id, type: int64}
          - {name: email, type: string, tags: [pii, contact]}
          - {name: birth_year, type: int64, tags: [pii]}
          - {name: city, type: string}
          - {name: api_key, type: string, tags: [secret]}
    policies:
      masks:
        - {on: crm.customers.email, mask: last4, except: [analyst]}
"""
# Another domain, another source: the same tag, the same rule.
HR = """domains:
  - name: hr
    connector: {type: parquet, path: hr}
    products:
      - name: staff
        source: staff.parquet
        columns:
          - {name: staff_id, type: int64}
          - {name: phone, type: string, tags: [pii]}
"""
USERS = {name: CallerContext(user=name) for name in ("alice", "bob", "root")}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("tag_rules")
    with sqlite3.connect(folder / "crm.db") as connection:
        connection.execute(
            "CREATE TABLE customers (customer_id INTEGER, email TEXT, birth_year INTEGER, city TEXT, api_key TEXT)"
        )
        connection.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            [(1, "ann@example.com", 1980, "Oslo", "k-1"), (2, "ben@example.com", 1990, "Lima", "k-2")],
        )
    (folder / "hr").mkdir()
    pq.write_table(pa.table({"staff_id": [7], "phone": ["+47 555 0101"]}), folder / "hr" / "staff.parquet")
    (folder / "platform.yaml").write_text(PLATFORM)
    (folder / "crm.yaml").write_text(CRM)
    (folder / "hr.yaml").write_text(HR)
    engine = Engine.from_config(load_config(folder))
    yield engine
    engine.close()


def rows(engine: Engine, user: str, sql: str) -> list[dict[str, object]]:
    return engine.run(sql, USERS[user]).read_all().to_pylist()


def test_tagged_columns_are_masked_for_everyone_without_the_role(engine: Engine) -> None:
    got = rows(engine, "alice", "SELECT customer_id, email, birth_year, city, api_key FROM crm.customers ORDER BY 1")
    assert got == [
        {"customer_id": 1, "email": "****", "birth_year": None, "city": "Oslo", "api_key": None},
        {"customer_id": 2, "email": "****", "birth_year": None, "city": "Lima", "api_key": None},
    ]
    assert rows(engine, "alice", "SELECT phone FROM hr.staff") == [{"phone": "****"}]


def test_exempt_roles_see_what_their_roles_allow(engine: Engine) -> None:
    bob = rows(engine, "bob", "SELECT email, birth_year, api_key FROM crm.customers ORDER BY customer_id")
    assert bob == [
        {"email": "ann@example.com", "birth_year": 1980, "api_key": None},
        {"email": "ben@example.com", "birth_year": 1990, "api_key": None},
    ]
    assert rows(engine, "bob", "SELECT phone FROM hr.staff") == [{"phone": "+47 555 0101"}]
    # root holds admin, not pii_reader: the secret is clear, personal data is not
    root = rows(engine, "root", "SELECT email, api_key FROM crm.customers WHERE customer_id = 1")
    assert root == [{"email": "****", "api_key": "k-1"}]


def test_a_domain_mask_cannot_weaken_the_rule(engine: Engine) -> None:
    # the crm mask exempts analysts, and would only show the last four characters anyway
    assert rows(engine, "alice", "SELECT DISTINCT email FROM crm.customers") == [{"email": "****"}]
    # for bob, the domain's own mask is the only one left, and it exempts him
    assert rows(engine, "bob", "SELECT email FROM crm.customers WHERE customer_id = 2") == [
        {"email": "ben@example.com"}
    ]


def test_predicates_on_tagged_columns_compare_masked_values(engine: Engine) -> None:
    assert rows(engine, "alice", "SELECT count(*) AS n FROM crm.customers WHERE email LIKE 'ann%'") == [{"n": 0}]
    assert rows(engine, "alice", "SELECT count(*) AS n FROM crm.customers WHERE birth_year > 1900") == [{"n": 0}]


def test_discovery_and_audit_name_the_rule(engine: Engine) -> None:
    policies = rows(engine, "alice", "SELECT policy FROM system.policies WHERE product = 'customers'")
    names = [p["policy"] for p in policies]
    assert "mask redact on columns tagged pii (crm.customers.email)" in names
    assert "mask null on columns tagged secret (crm.customers.api_key)" in names
    columns = rows(
        engine, "alice", "SELECT column, type, tags FROM system.columns WHERE product = 'customers' ORDER BY ordinal"
    )
    assert columns[1] == {"column": "email", "type": "string", "tags": ["pii", "contact"]}
    assert columns[2] == {"column": "birth_year", "type": "int64", "tags": ["pii"]}
    rows(engine, "alice", "SELECT email FROM crm.customers")
    record = engine.audit.records("alice")[-1]
    assert any(re.match(r"mask redact on columns tagged pii \(crm\.customers\.email\)", p) for p in record.policies)


def write_platform(tmp_path: Path, rules: str, domain_policies: str = "") -> Path:
    with sqlite3.connect(tmp_path / "crm.db") as connection:
        connection.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT)")
    (tmp_path / "platform.yaml").write_text(
        "policies:\n  roles: {analyst: [alice]}\n  grants: [{role: analyst, on: '*'}]\n" + rules
    )
    (tmp_path / "crm.yaml").write_text(
        "domains:\n  - name: crm\n    connector: {type: sqlite, path: crm.db}\n" + domain_policies
    )
    return tmp_path


@pytest.mark.parametrize(
    ("rules", "domain_policies", "message"),
    [
        (
            "  rules:\n    - {columns_tagged: pii, mask: blur}\n",
            "",
            r"platform.yaml:1: policies.rules\[0\].mask: unknown mask 'blur'; expected one of last4, hash, redact, null",
        ),
        ("  rules:\n    - {mask: redact}\n", "", r"policies.rules\[0\].columns_tagged: missing"),
        (
            "  rules:\n    - {columns_tagged: pii, mask: redact, except: [nobody]}\n",
            "",
            r"policies.rules\[0\]: except names unknown role 'nobody'",
        ),
        (
            "",
            "    policies:\n      rules:\n        - {columns_tagged: pii, mask: last4}\n",
            r"crm.yaml:2: domain 'crm': policies.rules: tag rules are the platform's, not in a domain file",
        ),
    ],
)
def test_invalid_rules_are_refused(tmp_path: Path, rules: str, domain_policies: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Engine.from_config(load_config(write_platform(tmp_path, rules, domain_policies))).close()
