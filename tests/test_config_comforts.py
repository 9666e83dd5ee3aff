"""Config comforts: ${VAR} and secrets files in connector settings, partitioned folders as one
product, `meshgate check`'s verdict, quiet logs and CLI help.

Real files, real PostgreSQL and SQLite sources, and a real `meshgate serve` process queried
through the ADBC client wherever a query is involved.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from connectors.base import DiscoveredProduct, SourceObject
from connectors.files import CsvConnector, ParquetConnector
from gateway.api import CallerContext
from gateway.auth import hash_password
from gateway.cli import _parser
from gateway.config import ConnectorConfig, load_config, parse_config_text, redact_password
from gateway.engine import Engine
from gateway.errors import ConfigError, PermissionDeniedError, SourceError
from gateway.reload import Reloader
from tests.support.gateway import (
    TEST_CREDENTIALS,
    Credentials,
    GatewayProcess,
    auth_yaml,
    connect,
    query,
    serve_in_process,
)

# A password holding every character that has a meaning in a URI: inserted percent-encoded.
AWKWARD_PASSWORD = "p@ss/w:rd?#&=%zz 1"
VARIABLE_SECRET = "var-secret-4711"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def meshgate(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def with_password(uri: str, reference: str) -> str:
    """``postgresql://user@host/db`` with ``reference`` as its password (the test server trusts any)."""
    scheme, _, rest = uri.partition("://")
    user, at, host = rest.partition("@")
    if not at or ":" in user:
        pytest.skip(f"the test PostgreSQL URI has no plain user part to add a password to: {redact_password(uri)}")
    return f"{scheme}://{user}:{reference}@{host}"


class LoggedGateway(GatewayProcess):
    """``meshgate serve`` keeping every line it logs (``startup_log`` grows while it runs)."""

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.startup_log.append(line)

    @property
    def log(self) -> str:
        return "".join(self.startup_log)


# --------------------------------------------------------------------------- ${VAR} expansion


def test_variables_and_defaults_expand_in_every_connector_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MG_PG_HOST", "db.internal")
    monkeypatch.setenv("MG_PG_POOL", "7")
    monkeypatch.setenv("MG_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("MG_UNSET", raising=False)
    write(tmp_path / "data" / "orders.csv", "id\n1\n")
    write(tmp_path / "data" / "sales.db", "")
    config = load_config(
        write(
            tmp_path / "mesh.yaml",
            """domains:
  - name: sales
    connector:
      type: postgres
      uri: postgresql://app@${MG_PG_HOST}:${MG_UNSET:-6432}/sales?application_name=$${literal}
      pool_size: ${MG_PG_POOL}
      numeric_scale: ${MG_UNSET:-4}
  - name: files
    connector: {type: csv, path: "${MG_DATA}", has_header: "${MG_UNSET:-true}", delimiter: "${MG_UNSET:-;}"}
  - name: ledger
    connector: {type: sqlite, path: "${MG_UNSET:-data}/sales.db"}
""",
        )
    )
    sales, files, ledger = (domain.connector for domain in config.domains)
    assert sales.uri == "postgresql://app@db.internal:6432/sales?application_name=${literal}"
    assert sales.options == {"pool_size": 7, "numeric_scale": 4}  # one reference alone reads as a YAML scalar
    assert sales.location == "postgresql://app@${MG_PG_HOST}:${MG_UNSET:-6432}/sales?application_name=${literal}"
    assert files.path == tmp_path / "data"
    assert files.options == {"has_header": True, "delimiter": ";"}
    assert ledger.path == tmp_path / "data" / "sales.db"


def test_a_secret_in_the_password_is_percent_encoded_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MG_PG_PASSWORD", AWKWARD_PASSWORD)
    write(tmp_path / "secrets" / "pg_password", f"  {AWKWARD_PASSWORD}\n")
    config = load_config(
        write(
            tmp_path / "mesh.yaml",
            """domains:
  - name: a
    connector: {type: postgres, uri: "postgresql://app:${MG_PG_PASSWORD}@db:5432/sales"}
  - name: b
    connector: {type: postgres, uri: "postgresql://app:${file:secrets/pg_password}@db:5432/sales"}
  - name: c
    connector: {type: postgres, uri: "postgresql://app@db:5432/sales?sslmode=prefer&password=${MG_PG_PASSWORD}"}
  - name: d
    connector: {type: postgres, uri: "${MG_PG_URI:-postgresql://app:fallback-pw@db:5432/sales}"}
""",
        )
    )
    a, b, c, d = (domain.connector for domain in config.domains)
    encoded = "p%40ss%2Fw%3Ard%3F%23%26%3D%25zz%201"
    assert a.uri == b.uri == f"postgresql://app:{encoded}@db:5432/sales"
    assert c.uri == f"postgresql://app@db:5432/sales?sslmode=prefer&password={encoded}"
    assert d.uri == "postgresql://app:fallback-pw@db:5432/sales"
    assert a.location == "postgresql://app:***@db:5432/sales"
    assert b.location == "postgresql://app:***@db:5432/sales"
    assert c.location == "postgresql://app@db:5432/sales?sslmode=prefer&password=***"
    assert d.location == "${MG_PG_URI:-postgresql://app:***@db:5432/sales}"
    for connector in (a, b, c, d):
        assert AWKWARD_PASSWORD not in connector.location and encoded not in connector.location
        assert "fallback-pw" not in connector.location


def test_redact_password_masks_query_parameters_too() -> None:
    assert redact_password("postgresql://u:pw@h/db?password=x&sslpassword=y&user=z") == (
        "postgresql://u:***@h/db?password=***&sslpassword=***&user=z"
    )
    assert redact_password("postgresql://h/db") == "postgresql://h/db"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "postgresql://app:${MG_UNSET_PASSWORD}@db/sales",
            "connector.uri: variable MG_UNSET_PASSWORD is not set (in ${MG_UNSET_PASSWORD}); set it in the"
            " gateway's environment, or give a default: ${MG_UNSET_PASSWORD:-default}",
        ),
        ("postgresql://app:${1BAD}@db/sales", "connector.uri: ${1BAD} is not a reference: write ${NAME}"),
        ("postgresql://app:${MG_X@db/sales", "connector.uri: '${' without a closing '}'"),
        ("postgresql://app:${file:missing.txt}@db/sales", "connector.uri: ${file:missing.txt}: cannot read "),
        ("postgresql://app:${file:empty.txt}@db/sales", "connector.uri: ${file:empty.txt}: "),
    ],
)
def test_a_bad_reference_names_file_line_domain_field_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.delenv("MG_UNSET_PASSWORD", raising=False)
    write(tmp_path / "empty.txt", "  \n")
    path = write(
        tmp_path / "sales.yaml",
        f"""domains:
  - name: sales
    owner: sales-team
    connector:
      type: postgres
      pool_size: 2
      uri: "{value}"
""",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}:7: domain 'sales': "), raised.value
    assert message in str(raised.value)


def test_errors_never_show_an_expanded_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MG_SECRET", VARIABLE_SECRET)
    path = write(
        tmp_path / "files.yaml",
        "domains:\n  - name: files\n    connector: {type: parquet, path: 'data/${MG_SECRET}'}\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path}:3: domain 'files': connector.path: 'data/${{MG_SECRET}}' does not exist"
    literal = write(tmp_path / "plain.yaml", "domains:\n  - name: files\n    connector: {type: parquet, path: data}\n")
    with pytest.raises(ConfigError, match=r"'data' does not exist \(resolved to "):  # no reference: shown resolved
        load_config(literal)


def test_secrets_files_are_refused_in_files_sent_over_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pw.txt", "hunter2\n")
    text = "domains:\n  - name: sales\n    connector:\n      type: postgres\n      uri: postgresql://a:${file:pw.txt}@db/s\n"
    assert load_config(write(tmp_path / "disk.yaml", text)).domains[0].connector.uri == "postgresql://a:hunter2@db/s"
    with pytest.raises(ConfigError) as raised:
        parse_config_text(text, tmp_path / "sales.yaml")
    assert str(raised.value) == (
        f"{tmp_path / 'sales.yaml'}:5: domain 'sales': connector.uri: ${{file:pw.txt}}: a file sent over the"
        " network may not read files on the gateway; use a variable of the gateway's environment (${NAME}), or"
        " ask the platform team to put the domain's file on disk"
    )
    monkeypatch.setenv("MG_PW", "from-the-gateway")
    sent = text.replace("${file:pw.txt}", "${MG_PW}")
    assert parse_config_text(sent, tmp_path / "sales.yaml").domains[0].connector.uri == (
        "postgresql://a:from-the-gateway@db/s"
    )


# ------------------------------------------------- self-serve: the allow-list sees the expanded URI

PLATFORM = """policies:
  roles:
    admin: [root]
    sales_team: ["group:sales-team"]
  grants:
    - {role: admin, on: "*"}
    - {role: sales_team, on: "sales.*"}
self_serve:
  domains:
    sales: {owner: sales-team, sources: ["SOURCE"]}
"""


@pytest.fixture
def sales_table(postgres_uri: str, pg_schema: str) -> str:
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE IF NOT EXISTS "{pg_schema}".orders (order_id int PRIMARY KEY, total int)')
        cursor.execute(f'TRUNCATE "{pg_schema}".orders')
        cursor.execute(f'INSERT INTO "{pg_schema}".orders VALUES (1, 10), (2, 20), (3, 30)')
    return f"{pg_schema}.orders"


def sales_yaml(uri: str, table: str) -> str:
    return (
        f"domains:\n  - name: sales\n    owner: sales-team\n    connector: {{type: postgres, uri: '{uri}'}}\n"
        f"    products:\n      - {{name: orders, source: {table}}}\n"
    )


def test_self_serve_compares_the_expanded_uri_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_uri: str, sales_table: str
) -> None:
    monkeypatch.setenv("MG_PG_PASSWORD", AWKWARD_PASSWORD)
    monkeypatch.setenv("MG_ELSEWHERE", VARIABLE_SECRET)
    write(tmp_path / "platform.yaml", PLATFORM.replace("SOURCE", postgres_uri))
    write(tmp_path / "sales.yaml", sales_yaml(postgres_uri, sales_table))
    engine = Engine.from_config(load_config(tmp_path))
    reloader = Reloader(engine, tmp_path)
    olga = CallerContext(user="olga", attributes={"groups": "sales-team"})
    try:
        elsewhere = postgres_uri.replace("/test", "/${MG_ELSEWHERE}") if postgres_uri.endswith("/test") else None
        if elsewhere is not None:
            with pytest.raises(PermissionDeniedError) as refused:
                reloader.apply_text(olga, sales_yaml(elsewhere, sales_table))
            assert VARIABLE_SECRET not in str(refused.value) and "${MG_ELSEWHERE}" in str(refused.value)
        changed = sales_yaml(with_password(postgres_uri, "${MG_PG_PASSWORD}"), sales_table) + "    description: x\n"
        applied = reloader.apply_text(olga, changed)
        assert applied.changed == ("sales",)
        (domain,) = [d for d in engine.catalog.domains() if d.name == "sales"]
        assert domain.error is None and AWKWARD_PASSWORD not in domain.config.connector.location
        assert "${MG_PG_PASSWORD}" in (tmp_path / "sales.yaml").read_text()  # the file keeps the reference
    finally:
        engine.close()


def test_hot_reload_expands_changed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("one", "two"):
        with sqlite3.connect(tmp_path / f"{name}.db") as connection:
            connection.execute(f"CREATE TABLE {name} (x INTEGER)")
    monkeypatch.setenv("MG_DB", "one")
    write(tmp_path / "ref.yaml", "domains:\n  - name: ref\n    connector: {type: sqlite, path: '${MG_DB}.db'}\n")
    engine = Engine.from_config(load_config(tmp_path))
    reloader = Reloader(engine, tmp_path)
    try:
        assert set(engine.catalog.domain("ref").products) == {"one"}
        monkeypatch.setenv("MG_DB", "two")
        write(tmp_path / "ref.yaml", "domains:\n  - name: ref\n    connector: {type: sqlite, path: '${MG_DB}.db'}\n#\n")
        (applied,) = reloader.poll()
        assert applied.changed == ("ref",)
        assert set(engine.catalog.domain("ref").products) == {"two"}
        write(tmp_path / "ref.yaml", "domains:\n  - name: ref\n    connector: {type: sqlite, path: '${MG_NONE}.db'}\n")
        assert reloader.poll() == []
        assert "variable MG_NONE is not set" in reloader.errors[tmp_path / "ref.yaml"]
        assert set(engine.catalog.domain("ref").products) == {"two"}  # the last good version keeps serving
    finally:
        engine.close()


def test_secrets_reach_the_source_and_nothing_else_through_a_real_gateway(
    tmp_path: Path, postgres_uri: str, sales_table: str
) -> None:
    """A served mesh whose password comes from a secrets file; a domain applied over the network
    whose password comes from the gateway's own environment. Neither password appears in the
    log, EXPLAIN, system.domains, `meshgate check` or any error."""
    admin = Credentials("root", "root-password-1")
    olga = Credentials("olga", "olga-password-1")
    secret_file = write(tmp_path / "secrets" / "pg_password", AWKWARD_PASSWORD + "\n")
    secret_file.chmod(0o600)
    write(tmp_path / "platform.yaml", PLATFORM.replace("SOURCE", postgres_uri))
    olga_entry = f"    - {{name: olga, password_hash: '{hash_password(olga.password)}', groups: [sales-team]}}\n"
    write(tmp_path / "auth.yaml", auth_yaml(admin) + olga_entry)
    write(tmp_path / "sales.yaml", sales_yaml(with_password(postgres_uri, "${file:secrets/pg_password}"), sales_table))
    # A domain offline because of a wrong port: its error must not show the password either.
    write(
        tmp_path / "broken.yaml",
        "domains:\n  - name: broken\n    owner: root\n    connector:\n      type: postgres\n"
        "      uri: 'postgresql://app:${file:secrets/pg_password}@127.0.0.1:1/x?connect_timeout=1'\n",
    )
    gateway_env = {"MG_GATEWAY_ONLY_PASSWORD": VARIABLE_SECRET}
    process = LoggedGateway(tmp_path, extra=("--watch-interval", "0"), credentials=admin, env=gateway_env)
    try:
        assert query(process.uri, "SELECT sum(total) AS s FROM sales.orders", admin).column("s").to_pylist() == [60]
        explained = query(process.uri, "EXPLAIN SELECT * FROM sales.orders", admin)
        plans = " ".join(explained.column(0).to_pylist() + explained.column(1).to_pylist())
        assert "postgresql://" in plans and ":***@" in plans
        domains = query(process.uri, "SELECT * FROM system.domains", admin).to_pylist()
        assert {row["domain"] for row in domains} >= {"sales", "broken"}
        with pytest.raises(Exception) as offline:
            query(process.uri, "SELECT * FROM broken.anything", admin)
        # `meshgate domain apply` sends the file as written: the gateway expands it from its environment.
        changed = write(
            tmp_path / "outside" / "sales.yaml",
            sales_yaml(with_password(postgres_uri, "${MG_GATEWAY_ONLY_PASSWORD}"), sales_table).replace(
                "source:", "description: applied remotely, source:"
            ),
        )
        client_env = {k: v for k, v in olga.env().items() if k != "MG_GATEWAY_ONLY_PASSWORD"}
        applied = meshgate("domain", "apply", str(changed), "--server", process.uri, env=client_env)
        assert applied.returncode == 0, applied.stderr
        assert "${MG_GATEWAY_ONLY_PASSWORD}" in (tmp_path / "sales.yaml").read_text()
        described = query(process.uri, "SELECT description FROM system.products WHERE domain = 'sales'", olga)
        assert described.column(0).to_pylist() == ["applied remotely"]
        reading = changed.read_text().replace("${MG_GATEWAY_ONLY_PASSWORD}", "${file:secrets/pg_password}")
        write(changed, reading)
        refused = meshgate("domain", "apply", str(changed), "--server", process.uri, env=client_env)
        assert refused.returncode == 1
        assert "${file:secrets/pg_password}: a file sent over the network may not read files on the gateway" in (
            refused.stderr
        )
        check = meshgate("check", "--config", str(tmp_path), env={**os.environ, **gateway_env})
        assert check.returncode == 1, check.stderr  # the broken domain is offline
        assert "FAIL broken (postgres postgresql://app:***@127.0.0.1:1/x?connect_timeout=1" in check.stdout
        time.sleep(0.5)  # the last log lines
        seen = [
            ("the gateway's log", process.log),
            ("EXPLAIN", plans),
            ("system.domains", repr(domains)),
            ("the offline domain's error", str(offline.value)),
            ("the refused apply", refused.stdout + refused.stderr),
            ("meshgate check", check.stdout + check.stderr),
        ]
        encoded = "p%40ss%2Fw%3Ard"
        for where, text in seen:
            for secret in (AWKWARD_PASSWORD, "p@ss/w", encoded, VARIABLE_SECRET):
                assert secret not in text, f"{secret!r} appears in {where}"
    finally:
        process.stop()


# --------------------------------------------------------------------------- meshgate check

CHECK_MESH = """domains:
  - name: ledger
    owner: finance
    connector: {type: sqlite, path: ledger.db}
    products:
      - name: entries
        source: entries
        on_drift: block
        columns:
          - {name: id, type: int64}
          - {name: amount, type: "decimal(12,2)"}
      - name: accounts
        source: accounts
        on_drift: flag
        columns:
          - {name: id, type: int64}
          - {name: gone, type: string}
      - {name: notes, source: notes}
"""
OFFLINE_DOMAIN = """domains:
  - name: crm
    connector: {type: postgres, uri: 'postgresql://127.0.0.1:1/x?connect_timeout=1'}
"""


def _ledger(folder: Path) -> None:
    with sqlite3.connect(folder / "ledger.db") as connection:
        connection.execute("CREATE TABLE entries (id INTEGER, amount TEXT)")
        connection.execute("CREATE TABLE accounts (id INTEGER)")
        connection.execute("CREATE TABLE notes (id INTEGER, note TEXT)")


def test_check_fails_on_blocked_products_and_offline_domains_with_a_summary(tmp_path: Path) -> None:
    _ledger(tmp_path)
    write(tmp_path / "ledger.yaml", CHECK_MESH)
    write(tmp_path / "crm.yaml", OFFLINE_DOMAIN)
    result = meshgate("check", "--config", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 domains: 1 online, 1 offline; 3 products: 1 ok, 1 flagged, 1 blocked"
    assert any(line.startswith("  FAIL crm (postgres postgresql://127.0.0.1:1/x") for line in lines)
    assert "           BLOCKED: column 'amount' changed type" in result.stdout
    assert "           FLAGGED: column 'gone'" in result.stdout
    assert "all sources reachable" not in result.stdout


def test_check_fails_on_a_blocked_product_alone(tmp_path: Path) -> None:
    _ledger(tmp_path)
    write(tmp_path / "ledger.yaml", CHECK_MESH)
    result = meshgate("check", "--config", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "1 domain: 1 online, 0 offline; 3 products: 1 ok, 1 flagged, 1 blocked"


def test_check_passes_with_flagged_products_and_says_so_in_the_singular(tmp_path: Path) -> None:
    _ledger(tmp_path)
    write(
        tmp_path / "ledger.yaml",
        "domains:\n  - name: ledger\n    connector: {type: sqlite, path: ledger.db}\n"
        "    products:\n      - {name: notes, source: notes}\n",
    )
    result = meshgate("check", "--config", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  ok   ledger (sqlite " in result.stdout and "): 1 product\n" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 domain: 1 online, 0 offline; 1 product: 1 ok"


# --------------------------------------------------------------------------- quieter logs


def test_disconnects_log_no_session_noise_and_counts_are_plural_aware(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "one.db") as connection:
        connection.execute("CREATE TABLE only_table (x INTEGER)")
    write(tmp_path / "one.yaml", "domains:\n  - name: one\n    connector: {type: sqlite, path: one.db}\n")
    write(tmp_path / "auth.yaml", auth_yaml())
    process = LoggedGateway(tmp_path, extra=("--watch-interval", "0"))
    try:
        for _ in range(3):
            assert query(process.uri, "SELECT count(*) AS n FROM one.only_table", TEST_CREDENTIALS).num_rows == 1
        time.sleep(0.5)
    finally:
        process.stop()
    log = process.log
    assert "domain one: 1 product (only_table)" in log
    assert "1 products" not in log and "1 users" not in log
    assert "authentication required: 1 user;" in log
    assert "no session to close" not in log and "request failed" not in log, log


@pytest.mark.parametrize("password", ["-EnyGmO4kQx1", "plain-Password_9"])
def test_the_demo_try_command_reads_any_random_password(password: str) -> None:
    """A random password may start with "-" (one in 64): the copied command must still read it as
    the password, not as an option (a CI run failed that way: `--password: expected one argument`)."""
    from gateway import cli

    words = shlex.split(cli._try_command("grpc://127.0.0.1:31337", password))
    assert words[1] == "query"
    args = cli._parser().parse_args(words[1:])
    assert (args.user, args.password, args.server) == ("demo", password, "grpc://127.0.0.1:31337")


def test_the_demo_prints_a_try_command_that_works_when_copied(tmp_path: Path) -> None:
    """Started through a relative path to the venv's script, the printed command is absolute."""
    script = Path(sys.executable).parent / "meshgate"
    if not script.is_file():
        pytest.skip("the meshgate script is not installed next to this Python")
    root = script.parent.parent.parent
    relative = script.relative_to(root)
    process = subprocess.Popen(
        [str(relative), "serve", "--demo", "--demo-dir", str(tmp_path / "demo"), "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MESHGATE_LOG_LEVEL": "INFO"},
    )
    try:
        command = None
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        while command is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r" try: (.*)$", line.rstrip("\n"))
            command = found.group(1) if found else None
        assert command is not None, "the demo printed no try: line"
        words = shlex.split(command)
        assert words[0] == str(script.resolve()) and words[1] == "query"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
        ran = subprocess.run(
            command, shell=True, cwd=elsewhere, capture_output=True, text=True, timeout=60, env=clean_env
        )
        assert ran.returncode == 0, ran.stderr
        assert "(5 rows)" in ran.stdout
    finally:
        process.terminate()
        process.wait(timeout=15)


# --------------------------------------------------------------------------- CLI help


def _flags(
    parser: argparse.ArgumentParser, path: str = "meshgate"
) -> Iterator[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, f"{path} {name}")
        elif action.option_strings and action.dest not in {"help", "version"}:
            yield path, parser, action


def test_every_flag_has_help_and_shows_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_PASSWORD", "never-printed-pw")
    monkeypatch.setenv("MESHGATE_PORT", "4242")
    flags = list(_flags(_parser()))
    assert len(flags) > 30
    for command, parser, action in flags:
        flag = action.option_strings[-1]
        assert action.help and len(action.help) > 10, f"{command} {flag} has no help"
        entry = " ".join(parser._get_formatter()._format_action(action).split())
        if action.default not in (None, False):
            assert "default" in entry, f"{command} {flag} does not show its default: {entry}"
        assert "never-printed-pw" not in parser.format_help(), f"{command} --help prints the password"
    serve_help = _parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    assert "default: 4242" in serve_help  # the value in force: the environment's
    assert "default: 1GiB" in " ".join(serve_help.split())


# --------------------------------------------------------------------------- partitioned folders


def _shipments(folder: Path, layout: dict[str, list[int]], *, fmt: str = "parquet") -> None:
    """``folder/year=Y/month=M/part-0.<fmt>``: two rows per partition, ids from the partition."""
    for year, months in layout.items():
        for month in months:
            partition = folder / f"year={year}" / f"month={month}"
            partition.mkdir(parents=True, exist_ok=True)
            base = int(year) * 100 + int(str(month))
            table = pa.table({"id": pa.array([base * 10, base * 10 + 1], pa.int64()), "carrier": ["DHL", "UPS"]})
            if fmt == "parquet":
                pq.write_table(table, partition / "part-0.parquet")
            else:
                pacsv.write_csv(table, partition / "part-0.csv")


def _version_plan(connector: ParquetConnector | CsvConnector, source: SourceObject, sql: str) -> tuple[pa.Table, str]:
    """``sql`` over the product as the engine reads it (a version of its files): result and physical plan."""
    version = connector.open_version("p", source, connector.schema(source), None)
    try:
        ctx = SessionContext()
        version.register(ctx, "p")
        plan = ctx.sql(f"EXPLAIN {sql}").to_arrow_table()
        types, plans = plan.column(0).to_pylist(), plan.column(1).to_pylist()
        physical = next(p for t, p in zip(types, plans, strict=True) if "physical" in t)
        return ctx.sql(sql).to_arrow_table(), physical
    finally:
        version.release()


def _opened(physical: str) -> list[str]:
    """The files a physical plan's scan reads (DataFusion lists only the partitions a filter keeps)."""
    return sorted(re.findall(r"(year=[^/\]]+/month=[^/\]]+/part-0\.\w+)", physical))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_hive_folder_is_one_product_with_typed_partition_columns_and_pruning(tmp_path: Path, fmt: str) -> None:
    _shipments(tmp_path / "shipments", {"2023": [11, 12], "2024": [1, 2, 3]}, fmt=fmt)
    kind = ParquetConnector if fmt == "parquet" else CsvConnector
    connector = kind("logistics", ConnectorConfig(type=fmt, path=tmp_path / "shipments"))
    (product,) = connector.discover()
    assert (product.name, product.source) == ("shipments", SourceObject(table="."))
    schema = connector.schema(product.source)
    assert [(f.name, f.type) for f in schema][-2:] == [("year", pa.int64()), ("month", pa.int64())]
    rows, physical = _version_plan(
        connector, product.source, "SELECT id, year, month FROM p WHERE year = 2024 AND month >= 2 ORDER BY id"
    )
    assert rows.to_pylist() == [
        {"id": 2024020, "year": 2024, "month": 2},
        {"id": 2024021, "year": 2024, "month": 2},
        {"id": 2024030, "year": 2024, "month": 3},
        {"id": 2024031, "year": 2024, "month": 3},
    ]
    assert _opened(physical) == [f"year=2024/month=2/part-0.{fmt}", f"year=2024/month=3/part-0.{fmt}"], physical
    everything, physical = _version_plan(connector, product.source, "SELECT count(*) AS n FROM p WHERE id > 0")
    assert everything.column(0).to_pylist() == [10] and len(_opened(physical)) == 5


def test_partition_values_that_are_not_plain_integers_are_text(tmp_path: Path) -> None:
    for partition in ("region=eu/month=01", "region=us/month=02", "region=__HIVE_DEFAULT_PARTITION__/month=03"):
        (tmp_path / "sales" / partition).mkdir(parents=True)
        pq.write_table(pa.table({"x": [1]}), tmp_path / "sales" / partition / "part-0.parquet")
    connector = ParquetConnector("d", ConnectorConfig(type="parquet", path=tmp_path))
    (product,) = connector.discover()  # a subfolder with partitions is one product
    assert product == DiscoveredProduct("sales", SourceObject(table="sales"))
    schema = connector.schema(product.source)
    assert [(f.name, f.type) for f in schema] == [("x", pa.int64()), ("region", pa.string()), ("month", pa.string())]
    rows, physical = _version_plan(connector, product.source, "SELECT region, month FROM p WHERE month = '01'")
    assert rows.to_pylist() == [{"region": "eu", "month": "01"}]
    assert "region=eu/month=01/part-0.parquet" in physical and "month=02" not in physical


def test_a_folder_of_part_files_is_one_product_named_after_the_folder(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"id": [i]}), events / f"part-{i:05d}-3f2a.snappy.parquet")
    (events / "_SUCCESS").write_text("")
    (product,) = ParquetConnector("d", ConnectorConfig(type="parquet", path=events)).discover()
    assert product == DiscoveredProduct("events", SourceObject(table="."))
    # Files that are tables of their own stay products of their own.
    pq.write_table(pa.table({"id": [9]}), events / "customers.parquet")
    found = ParquetConnector("d", ConnectorConfig(type="parquet", path=events)).discover()
    assert {p.name for p in found} == {
        "customers",
        "part_00000_3f2a_snappy",
        "part_00001_3f2a_snappy",
        "part_00002_3f2a_snappy",
    }


def test_partitions_that_disagree_are_an_error_naming_the_folder(tmp_path: Path) -> None:
    for partition in ("year=2024/month=1", "year=2024/day=3"):
        (tmp_path / "t" / partition).mkdir(parents=True)
        pq.write_table(pa.table({"x": [1]}), tmp_path / "t" / partition / "part-0.parquet")
    connector = ParquetConnector("d", ConnectorConfig(type="parquet", path=tmp_path))
    (product,) = connector.discover()
    with pytest.raises(SourceError, match=r"t: its key=value folders name different keys \(year/day and year/month\)"):
        connector.schema(product.source)


def test_a_partitioned_product_through_the_gateway(tmp_path: Path) -> None:
    """Declared with its folder as source, queried through the ADBC client; a new partition is
    served at the next query, and the filters on partition columns reach the scan."""
    _shipments(tmp_path / "data" / "shipments", {"2023": [12], "2024": [1, 2]})
    write(
        tmp_path / "mesh.yaml",
        """domains:
  - name: logistics
    connector: {type: parquet, path: data}
    products:
      - name: shipments
        source: shipments
        columns:
          - {name: id, type: int64}
          - {name: carrier, type: string}
          - {name: year, type: int64}
          - {name: month, type: int64}
""",
    )
    sql = "SELECT year, month, count(*) AS n FROM logistics.shipments WHERE year = 2024 GROUP BY 1, 2 ORDER BY 1, 2"
    with serve_in_process(tmp_path / "mesh.yaml") as uri:
        assert query(uri, sql).to_pylist() == [{"year": 2024, "month": 1, "n": 2}, {"year": 2024, "month": 2, "n": 2}]
        plan = query(uri, f"EXPLAIN {sql}").column("plan").to_pylist()
        assert any("full_filters=[logistics.shipments.year = Int64(2024)]" in line for line in plan), plan
        _shipments(tmp_path / "data" / "shipments", {"2024": [3]})
        assert query(uri, sql).column("month").to_pylist() == [1, 2, 3]
        with connect(uri) as connection:
            columns = connection.adbc_get_table_schema("shipments", db_schema_filter="logistics")
        assert (columns.field("year").type, columns.field("month").type) == (pa.int64(), pa.int64())
