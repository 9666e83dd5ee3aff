"""Contract drift under a running gateway: a PostgreSQL table altered, the products flagged or blocked.

A gateway serves two products over one PostgreSQL table: ``accounts`` flags drift,
``accounts_strict`` blocks on it. The table is altered under it; once the domain is
read again (``Engine.refresh``, which ``meshgate checks`` and the scheduled checks do),
an ADBC client sees the flagged product served with its new type and the blocked one
refused with the drift named, and both show their status in discovery.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pytest
from adbc_driver_manager import Error as AdbcError

from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql.server import FlightSqlServer
from gateway.quality import run_checks
from tests.support.gateway import query, serving

MESH = """domains:
  - name: bank
    owner: bank-team
    connector: {{type: postgres, uri: "{uri}"}}
    products:
      - name: accounts
        source: {schema}.{table}
        on_drift: flag
        columns: &contract
          - {{name: account_id, type: int64}}
          - {{name: email, type: string, tags: [pii]}}
          - {{name: balance, type: "decimal(12,2)"}}
          - {{name: updated_at, type: "timestamp[us, tz=UTC]"}}
        checks:
          - unique: [account_id]
      - name: accounts_strict
        source: {schema}.{table}
        on_drift: block
        columns: *contract
        checks:
          - unique: [account_id]
"""


@dataclass
class Gateway:
    engine: Engine
    uri: str
    table: str

    def alter(self, postgres_uri: str, schema: str, statement: str) -> None:
        with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{schema}"."{self.table}" {statement}')

    def products(self) -> dict[str, tuple[str, list[str]]]:
        found = query(self.uri, "SELECT product, status, drift FROM system.products ORDER BY product").to_pylist()
        return {r["product"]: (r["status"], r["drift"]) for r in found}


@pytest.fixture
def gateway(tmp_path: Path, postgres_uri: str, pg_schema: str) -> Iterator[Gateway]:
    table = f"accounts_{uuid.uuid4().hex[:8]}"
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{pg_schema}"."{table}" (account_id int8 PRIMARY KEY, email text,'
            " balance numeric(12,2), updated_at timestamptz DEFAULT now())"
        )
        cursor.execute(
            f'INSERT INTO "{pg_schema}"."{table}" (account_id, email, balance)'
            " VALUES (1, 'a@example.com', 10.50), (2, 'b@example.com', 99.99)"
        )
    (tmp_path / "mesh.yaml").write_text(MESH.format(uri=postgres_uri, schema=pg_schema, table=table))
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    try:
        with serving(server):
            yield Gateway(engine, f"grpc://127.0.0.1:{server.port}", table)
    finally:
        engine.close()


def refused(uri: str, sql: str) -> str:
    with pytest.raises(AdbcError) as error:
        query(uri, sql)
    return str(error.value)


def test_a_changed_column_type_is_flagged_or_blocked_as_declared(
    gateway: Gateway, postgres_uri: str, pg_schema: str
) -> None:
    assert gateway.products() == {"accounts": ("ok", []), "accounts_strict": ("ok", [])}
    assert query(gateway.uri, "SELECT sum(balance) AS s FROM bank.accounts_strict").column("s").to_pylist() == [
        Decimal("110.49")
    ]

    gateway.alter(postgres_uri, pg_schema, "ALTER COLUMN balance TYPE text USING balance::text")
    gateway.engine.refresh("bank")

    drift = "column 'balance' changed type: declared decimal128(12, 2), found string"
    assert gateway.products() == {"accounts": ("flagged", [drift]), "accounts_strict": ("blocked", [drift])}
    flagged = query(gateway.uri, "SELECT account_id, balance FROM bank.accounts ORDER BY account_id")
    assert flagged.schema.field("balance").type == pa.string()
    assert flagged.column("balance").to_pylist() == ["10.50", "99.99"]
    message = refused(gateway.uri, "SELECT account_id FROM bank.accounts_strict")
    assert "data product 'bank.accounts_strict' is blocked" in message and drift in message
    with flightsql.connect(gateway.uri) as connection:
        metadata = connection.adbc_get_table_schema(
            "accounts_strict", catalog_filter="mesh", db_schema_filter="bank"
        ).metadata
    assert metadata[b"meshgate.status"] == b"blocked" and metadata[b"meshgate.drift"] == drift.encode()

    # the source comes back to its contract: served again once read again
    gateway.alter(postgres_uri, pg_schema, "ALTER COLUMN balance TYPE numeric(12,2) USING balance::numeric")
    gateway.engine.refresh("bank")
    assert gateway.products() == {"accounts": ("ok", []), "accounts_strict": ("ok", [])}
    assert query(gateway.uri, "SELECT count(*) AS n FROM bank.accounts_strict").column("n").to_pylist() == [2]


def test_a_dropped_column_is_found_by_the_checks_and_recorded(
    gateway: Gateway, postgres_uri: str, pg_schema: str
) -> None:
    gateway.alter(postgres_uri, pg_schema, "DROP COLUMN email")
    results = run_checks(gateway.engine)  # reads each domain again first, as the scheduled checks do

    drift = "column 'email' is missing (declared string)"
    assert gateway.products() == {"accounts": ("flagged", [drift]), "accounts_strict": ("blocked", [drift])}
    outcomes = {(r.product, r.check): (r.outcome, r.detail) for r in results}
    assert outcomes == {
        ("accounts", "contract"): ("fail", f"flagged: {drift}"),
        ("accounts", "unique(account_id)"): ("pass", "every (account_id) is unique"),
        ("accounts_strict", "contract"): ("fail", f"blocked: {drift}"),  # a blocked product's checks do not run
    }
    recorded = query(
        gateway.uri, "SELECT product, check, passed, observed FROM system.quality ORDER BY product, check"
    ).to_pylist()
    assert recorded == [
        {"product": "accounts", "check": "contract", "passed": False, "observed": 1.0},
        {"product": "accounts", "check": "unique(account_id)", "passed": True, "observed": 0.0},
        {"product": "accounts_strict", "check": "contract", "passed": False, "observed": 1.0},
    ]
    quality = query(gateway.uri, "SELECT product, quality FROM system.products ORDER BY product").to_pylist()
    assert quality == [
        {"product": "accounts", "quality": "failed"},
        {"product": "accounts_strict", "quality": "failed"},
    ]
    message = refused(gateway.uri, "SELECT * FROM bank.accounts_strict")
    assert drift in message
    assert query(gateway.uri, "SELECT * FROM bank.accounts").schema.names == ["account_id", "balance", "updated_at"]
