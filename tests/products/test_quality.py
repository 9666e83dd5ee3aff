"""Quality checks: each kind passing and failing on real sources, recorded, shown, scheduled, run by the CLI."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.cli import main
from gateway.config import load_config
from gateway.engine import Engine
from gateway.quality import HIDDEN_DETAIL, CheckResult, CheckScheduler, QualityLog, format_duration, run_checks
from tests.support.gateway import TEST_CREDENTIALS, GatewayProcess, auth_yaml, query

SHOP = """domains:
  - name: shop
    owner: shop-team
    connector: {type: sqlite, path: shop.db}
    products:
      - name: plain
        source: orders
      - name: orders
        source: orders
        checks:
          - {name: unique_ok, unique: [order_id]}
          - {name: unique_bad, unique: [customer_id]}
          - {name: unique_pair_ok, unique: [customer_id, order_id]}
          - {name: not_null_ok, not_null: order_id}
          - {name: not_null_bad, not_null: customer_id}
          - {name: not_null_tolerated, not_null: customer_id, max_null_ratio: 0.25}
          - {name: fresh_ok, freshness: {max_age: 1h, column: updated_at}}
          - {name: fresh_bad, freshness: {max_age: 30d, column: created_at}}
          - {name: fresh_not_a_time, freshness: {max_age: 1h, column: status}}
          - {name: rows_ok, row_count: {min: 10, max: 10}}
          - {name: rows_too_few, row_count: {min: 11}}
          - {name: rows_too_many, row_count: {max: 9}}
          - {name: sql_true, sql: "SELECT count(*) = 10 FROM shop.orders"}
          - {name: sql_false, sql: "SELECT min(total) > 100 FROM shop.orders"}
          - {name: sql_no_rows, sql: "SELECT order_id FROM shop.orders WHERE total < 0"}
          - {name: sql_rows, sql: "SELECT order_id FROM shop.orders WHERE total > 50"}
          - {name: sql_broken, sql: "SELECT nope FROM shop.orders"}
  - name: ship
    connector: {type: parquet, path: ship}
    products:
      - name: parcels
        source: parcels.parquet
        freshness: {max_age: 3d, column: shipped_on}
        checks:
          - {not_null: weight, max_null_ratio: 0.1}
          - {row_count: {min: 100}}
  - name: ref
    connector: {type: csv, path: ref.csv}
    products:
      - name: codes
        source: ref.csv
        checks:
          - unique: [code]
          - row_count: {min: 2, max: 2}
"""
BANK = """  - name: bank
    connector: {{type: postgres, uri: "{uri}"}}
    products:
      - name: ledger
        source: {schema}.ledger
        checks:
          - freshness: {{max_age: 10m, column: booked_at}}
          - freshness: {{max_age: 10m, column: settled_at}}
            name: settlement_freshness
          - not_null: settled_at
"""
PLATFORM = """policies:
  roles:
    analyst: [alice]
    admin: [root]
    shop_team: ["group:shop-team"]   # the shop domain's owner: its sql checks run with these rights
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "shop.*"}
    - {role: shop_team, on: "shop.*"}
  row_filters:                       # analysts see no order at all; the checks still see every row
    - {on: "shop.*", where: "1 = 0", except: [admin, shop_team]}
"""
NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None)
ALICE = CallerContext(user="alice")


def write_sources(folder: Path) -> None:
    with sqlite3.connect(folder / "shop.db") as connection:
        connection.execute(
            "CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, total DECIMAL(10,2), status TEXT,"
            " created_at TIMESTAMP, updated_at TIMESTAMP)"
        )
        customers = [1, 1, 2, 2, 3, None, None, 4, 5, 6]
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    customers[i - 1],
                    i * 10.5,
                    "open",
                    f"2020-01-0{1 + i % 9} 10:00:00",
                    str(NOW - dt.timedelta(minutes=5)),
                )
                for i in range(1, 11)
            ],
        )
    (folder / "ship").mkdir()
    today = dt.date.today()
    pq.write_table(
        pa.table(
            {
                "parcel_id": pa.array(range(20), pa.int64()),
                "weight": [None if i == 0 else i * 0.5 for i in range(20)],
                "shipped_on": pa.array([today - dt.timedelta(days=i % 2) for i in range(20)], pa.date32()),
            }
        ),
        folder / "ship" / "parcels.parquet",
    )
    (folder / "ref.csv").write_text("code,label\na,alpha\nb,beta\n")


def write_mesh(folder: Path, postgres_uri: str | None = None, schema: str | None = None) -> Path:
    write_sources(folder)
    config = folder / "config"
    config.mkdir()
    mesh = SHOP.replace("path: ship", "path: ../ship").replace("path: ref.csv", "path: ../ref.csv")
    mesh = mesh.replace("path: shop.db", "path: ../shop.db")
    if postgres_uri is not None:
        mesh += BANK.format(uri=postgres_uri, schema=schema)
    (config / "mesh.yaml").write_text(mesh)
    (config / "platform.yaml").write_text(PLATFORM)
    return config


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Iterator[Engine]:
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{pg_schema}".ledger (entry_id int8, booked_at timestamptz DEFAULT now(), settled_at timestamptz)'
        )
        cursor.execute(
            f"""INSERT INTO "{pg_schema}".ledger (entry_id, settled_at) VALUES (1, now() - interval '2 hours'), (2, NULL)"""
        )
    folder = tmp_path_factory.mktemp("quality")
    config = write_mesh(folder, postgres_uri, pg_schema)
    engine = Engine.from_config(load_config(config), quality=QualityLog(folder / "quality" / "results.jsonl"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def results(mesh: Engine) -> dict[tuple[str, str], CheckResult]:
    before = mesh.run("SELECT product, quality FROM system.products ORDER BY domain, product", CallerContext("root"))
    assert before.read_all().to_pylist() == [
        {"product": "ledger", "quality": "unchecked"},
        {"product": "codes", "quality": "unchecked"},
        {"product": "parcels", "quality": "unchecked"},
        {"product": "orders", "quality": "unchecked"},
        {"product": "plain", "quality": None},  # nothing declared, nothing to check
    ]
    return {(r.product, r.check): r for r in run_checks(mesh)}


# (product, check) -> outcome, observed (None: not compared), detail
EXPECTED: dict[tuple[str, str], tuple[str, float | None, str]] = {
    ("orders", "unique_ok"): ("pass", 0, "every (order_id) is unique"),
    ("orders", "unique_bad"): ("fail", 2, "2 values of (customer_id) occur more than once, in 4 rows"),
    ("orders", "unique_pair_ok"): ("pass", 0, "every (customer_id, order_id) is unique"),
    ("orders", "not_null_ok"): ("pass", 0, "0 of 10 rows have no order_id (ratio 0, at most 0)"),
    ("orders", "not_null_bad"): ("fail", 0.2, "2 of 10 rows have no customer_id (ratio 0.2, at most 0)"),
    ("orders", "not_null_tolerated"): ("pass", 0.2, "2 of 10 rows have no customer_id (ratio 0.2, at most 0.25)"),
    ("orders", "fresh_ok"): ("pass", None, "the newest updated_at is "),  # its age: test_freshness_observes_the_age_in_seconds
    ("orders", "fresh_bad"): ("fail", None, "the newest created_at is "),
    ("orders", "fresh_not_a_time"): ("error", None, "freshness needs a timestamp or date column; 'status' holds str"),
    ("orders", "rows_ok"): ("pass", 10, "10 rows (expected 10 to 10)"),
    ("orders", "rows_too_few"): ("fail", 10, "10 rows (expected 11 to any)"),
    ("orders", "rows_too_many"): ("fail", 10, "10 rows (expected 0 to 9)"),
    ("orders", "sql_true"): ("pass", 1, "the assertion returned True"),
    ("orders", "sql_false"): ("fail", 0, "the assertion returned False"),
    ("orders", "sql_no_rows"): ("pass", 0, "0 failing rows"),
    ("orders", "sql_rows"): ("fail", 6, "6 failing rows"),
    ("orders", "sql_broken"): ("error", None, "Schema error: No field named nope. Valid fields are"),
    ("parcels", "not_null(weight)"): ("pass", 0.05, "1 of 20 rows have no weight (ratio 0.05, at most 0.1)"),
    ("parcels", "row_count"): ("fail", 20, "20 rows (expected 100 to any)"),
    ("parcels", "freshness"): ("pass", None, "the newest shipped_on is "),  # the product's own, on a date column
    ("codes", "unique(code)"): ("pass", 0, "every (code) is unique"),
    ("codes", "row_count"): ("pass", 2, "2 rows (expected 2 to 2)"),
    ("ledger", "freshness(booked_at)"): ("pass", None, "the newest booked_at is "),
    ("ledger", "settlement_freshness"): ("fail", None, "the newest settled_at is 2h"),
    ("ledger", "not_null(settled_at)"): ("fail", 0.5, "1 of 2 rows have no settled_at"),
}


def test_every_declared_check_ran(results: dict[tuple[str, str], CheckResult]) -> None:
    assert set(results) == set(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda key: f"{key[0]}-{key[1]}")
def test_check_outcome(results: dict[tuple[str, str], CheckResult], key: tuple[str, str]) -> None:
    outcome, observed, detail = EXPECTED[key]
    result = results[key]
    assert (result.outcome, result.passed) == (outcome, outcome == "pass"), result.detail
    if observed is not None:
        assert result.observed == pytest.approx(observed)
    assert detail in result.detail
    assert result.checked_at.tzinfo is not None
    assert dt.datetime.now(dt.UTC) - result.checked_at < dt.timedelta(minutes=5)


def test_freshness_observes_the_age_in_seconds(results: dict[tuple[str, str], CheckResult]) -> None:
    assert 280 < (results[("orders", "fresh_ok")].observed or 0) < 3600
    assert (results[("orders", "fresh_bad")].observed or 0) > 365 * 86400
    assert 1.9 * 3600 < (results[("ledger", "settlement_freshness")].observed or 0) < 2.5 * 3600


def test_checks_see_every_row_whatever_the_policies(mesh: Engine, results: dict[tuple[str, str], CheckResult]) -> None:
    assert mesh.run("SELECT count(*) AS n FROM shop.orders", ALICE).read_all().to_pylist() == [{"n": 0}]
    assert results[("orders", "rows_ok")].observed == 10


def test_system_quality_shows_the_results_of_readable_products(
    mesh: Engine, results: dict[tuple[str, str], CheckResult]
) -> None:
    alice = mesh.run("SELECT * FROM system.quality ORDER BY check", ALICE).read_all()
    assert alice.schema.names == [
        "domain",
        "product",
        "check",
        "kind",
        "passed",
        "outcome",
        "detail",
        "observed",
        "checked_at",
        "duration_ms",
    ]
    assert {(r["domain"], r["product"]) for r in alice.to_pylist()} == {("shop", "orders")}
    (row,) = [r for r in alice.to_pylist() if r["check"] == "unique_bad"]
    # alice's row filter hides every order: the counts a check saw are not hers to see.
    assert row["kind"] == "unique" and row["passed"] is False
    assert row["observed"] is None and row["detail"] == HIDDEN_DETAIL
    root = mesh.run("SELECT count(*) AS n FROM system.quality", CallerContext("root")).read_all()
    assert root.column("n").to_pylist() == [len(EXPECTED)]
    (row,) = mesh.run("SELECT observed FROM system.quality WHERE check = 'unique_bad'", CallerContext("root")).read_all().to_pylist()
    assert row["observed"] == 2.0
    assert mesh.run("SELECT * FROM system.quality", CallerContext("eve")).read_all().num_rows == 0


def test_system_products_shows_the_latest_quality(mesh: Engine, results: dict[tuple[str, str], CheckResult]) -> None:
    listed = mesh.run(
        "SELECT product, quality, quality_checked_at FROM system.products ORDER BY domain, product",
        CallerContext("root"),
    ).read_all()
    quality = {r["product"]: r["quality"] for r in listed.to_pylist()}
    assert quality == {"ledger": "failed", "codes": "passed", "parcels": "failed", "orders": "failed", "plain": None}
    checked = {r["product"]: r["quality_checked_at"] for r in listed.to_pylist()}
    assert checked["codes"] == max(r.checked_at for (p, _), r in results.items() if p == "codes")
    codes = {(p.domain, p.name): p.schema for p in mesh.products(CallerContext("root"))}[("ref", "codes")]
    assert (codes.metadata or {})[b"meshgate.quality"] == b"passed"


def test_results_are_appended_as_json_lines(mesh: Engine, results: dict[tuple[str, str], CheckResult]) -> None:
    assert mesh.quality.path is not None
    lines = [json.loads(line) for line in mesh.quality.path.read_text().splitlines()]
    assert len(lines) == len(EXPECTED)
    (entry,) = [e for e in lines if e["check"] == "rows_too_few"]
    assert entry["domain"] == "shop" and entry["passed"] is False and entry["outcome"] == "fail"
    assert entry["observed"] == 10 and dt.datetime.fromisoformat(entry["checked_at"]).tzinfo is not None


def test_durations_read_well() -> None:
    assert [format_duration(dt.timedelta(seconds=s)) for s in (0, 45, 300, 11_520, 93_600, 86_400 * 400)] == [
        "0s",
        "45s",
        "5m",
        "3h 12m",
        "1d 2h",
        "400d",
    ]


# --------------------------------------------------------------------------- schedule and CLI


def test_the_schedule_runs_the_checks_again_and_sees_changes(tmp_path: Path) -> None:
    config = write_mesh(tmp_path)
    (config / "platform.yaml").unlink()
    engine = Engine.from_config(load_config(config))
    scheduler = CheckScheduler(engine, every=0.2)
    try:
        scheduler.start()
        wait_for(lambda: scheduler.runs >= 1)
        first = engine.quality.latest("shop", "orders")
        assert first is not None and "rows_ok" not in first.failed
        with sqlite3.connect(tmp_path / "shop.db") as connection:
            connection.execute("INSERT INTO orders (order_id) VALUES (11)")
        wait_for(lambda: scheduler.runs >= 3)
    finally:
        scheduler.stop()
        engine.close()
    latest = engine.quality.latest("shop", "orders")
    assert latest is not None and "rows_ok" in latest.failed and latest.checked_at > first.checked_at
    history = [r for r in engine.quality.results() if r.check == "rows_ok"]
    assert len(history) >= 3 and history[0].observed == 10 and history[-1].observed == 11


def wait_for(condition: object, timeout: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_cli_checks_run_prints_results_and_fails_on_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_mesh(tmp_path)
    assert main(["checks", "run", "--config", str(config)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "22 checks: 12 passed, 8 failed, 2 could not run"
    assert len(lines) == 23  # one line per check
    by_check = {line.split()[2]: line for line in lines[:-1]}
    assert by_check["unique_bad"].startswith("FAIL  shop.orders")
    assert by_check["unique_bad"].endswith("2 values of (customer_id) occur more than once, in 4 rows (observed 2)")
    assert by_check["sql_broken"].startswith("ERROR shop.orders")
    assert by_check["rows_ok"].startswith("PASS  shop.orders")


def test_cli_checks_run_for_one_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_mesh(tmp_path)
    log = tmp_path / "results.jsonl"
    assert main(["checks", "run", "--config", str(config), "--domain", "ref", "--quality-log", str(log)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "PASS  ref.codes  unique(code)  every (code) is unique (observed 0)",
        "PASS  ref.codes  row_count     2 rows (expected 2 to 2) (observed 2)",
        "2 checks: 2 passed, 0 failed, 0 could not run",
    ]
    assert [json.loads(line)["check"] for line in log.read_text().splitlines()] == ["unique(code)", "row_count"]
    assert main(["checks", "run", "--config", str(config), "--domain", "nope"]) == 1
    assert "error: unknown domain 'nope' (domains: ref, ship, shop)" in capsys.readouterr().err


def test_meshgate_checks_run_command(tmp_path: Path) -> None:
    config = write_mesh(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "checks", "run", "--config", str(config), "--domain", "ship"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "FAIL  ship.parcels  row_count" in result.stdout
    assert result.stdout.splitlines()[-1] == "3 checks: 2 passed, 1 failed, 0 could not run"


def test_serve_runs_the_checks_on_a_schedule(tmp_path: Path) -> None:
    config = write_mesh(tmp_path)
    (config / "platform.yaml").unlink()
    (config / "auth.yaml").write_text(auth_yaml())
    log = tmp_path / "served" / "quality.jsonl"
    process = GatewayProcess(config, extra=("--checks-every", "1h", "--quality-log", str(log), "--watch-interval", "0"))
    try:
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 21)
        found = query(
            process.uri, "SELECT product, check, outcome FROM system.quality WHERE domain = 'ref'", TEST_CREDENTIALS
        )
        listed = query(process.uri, "SELECT product, quality FROM system.products", TEST_CREDENTIALS)
    finally:
        process.stop()
    assert sorted(found.to_pylist(), key=str) == [
        {"product": "codes", "check": "row_count", "outcome": "pass"},
        {"product": "codes", "check": "unique(code)", "outcome": "pass"},
    ]
    assert {r["product"]: r["quality"] for r in listed.to_pylist()} == {
        "plain": None,
        "orders": "failed",
        "parcels": "failed",
        "codes": "passed",
    }


def test_serve_refuses_a_schedule_that_is_not_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_code:
        main(["serve", "--config", "mesh.yaml", "--checks-every", "often"])
    assert exit_code.value.code == 2
    assert "'often' is not a duration" in capsys.readouterr().err
