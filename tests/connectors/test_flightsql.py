"""A remote Flight SQL server as a domain: a Meshgate gateway inside another one, and roapi.

The inner gateway (``meshgate serve``) has its own users and policies: its service account sees
``shop.orders`` without APAC rows and with ``note`` masked. The outer gateway's ``remote`` domain logs
in to it as that service account (the password from the environment) and adds a row filter of its
own, so a user of the outer gateway gets rows that satisfy both. Everything is asked through the
ADBC Flight SQL client, and answers are compared with what the inner gateway itself says.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import adbc_driver_manager
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from connectors.base import ScanSpec, SourceObject
from connectors.flightsql import ACCEPT_WAIT, FlightSqlConnector, Server
from connectors.registry import open_connector
from gateway.config import ConnectorConfig, load_config
from gateway.errors import ConfigError, QueryTimeoutError, SourceError, SourceUnavailableError
from tests.support.gateway import Credentials, GatewayProcess, auth_yaml, connect, query
from tests.support.ports import free_port
from tests.support.roapi import roapi_server
from tests.support.tls import CertificateAuthority

SERVICE = Credentials("svc_outer", "inner-service-password-7f3a")
INNER_ADMIN = Credentials("inner_admin", "inner-admin-password")
ALICE = Credentials("alice", "alice-outer-password")

ORDERS = [  # id, region, amount, note
    (1, "EU", "10.50", "first"),
    (2, "US", "20.00", "second"),
    (3, "EU", "30.25", None),
    (4, "APAC", "50.00", "kept out by the inner gateway"),
    (5, "EU", "2.00", "kept out by the outer gateway"),
    (6, "APAC", "1.00", "kept out by both"),
]

INNER_POLICIES = f"""policies:
  roles:
    service: [{SERVICE.user}]
    admin: [{INNER_ADMIN.user}]
  grants:
    - {{role: service, on: "shop.*"}}
    - {{role: admin, on: "*"}}
  masks:
    - {{on: shop.orders.note, mask: "null", except: [admin]}}
  row_filters:
    - {{on: shop.orders, where: "region <> 'APAC'", except: [admin]}}
"""

OUTER_POLICIES = f"""policies:
  roles:
    analyst: [{ALICE.user}]
  grants:
    - {{role: analyst, on: "*"}}
  row_filters:
    - {{on: remote.orders, where: "amount > 5", except: []}}
"""


def write_shop(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT, amount DECIMAL(10, 2), note TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", ORDERS)
        db.execute("CREATE TABLE regions (region TEXT, name TEXT)")
        db.executemany("INSERT INTO regions VALUES (?, ?)", [("EU", "Europe"), ("US", "Americas"), ("APAC", "Asia")])
        db.execute("CREATE TABLE items (order_id INTEGER, sku_id INTEGER, qty INTEGER)")
        db.executemany("INSERT INTO items VALUES (?, ?, ?)", [(1, 10, 1), (1, 11, 3), (2, 10, 2), (3, 12, 5)])
        db.execute("CREATE TABLE skus (sku_id INTEGER, label TEXT)")
        db.executemany("INSERT INTO skus VALUES (?, ?)", [(10, "bolt"), (11, "nut"), (12, "gear")])


@pytest.fixture(scope="module")
def inner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("inner")
    write_shop(folder / "shop.db")
    config = folder / "inner.yaml"
    config.write_text(
        "domains:\n  - name: shop\n    connector: {type: sqlite, path: shop.db}\n"
        + auth_yaml(SERVICE, INNER_ADMIN)
        + INNER_POLICIES
    )
    process = GatewayProcess(config, credentials=INNER_ADMIN)
    yield process
    process.stop()


def outer_config(folder: Path, inner_uri: str, extra_domains: str = "") -> Path:
    with sqlite3.connect(folder / "local.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER, text TEXT)")
        db.execute("DELETE FROM notes")
        db.execute("INSERT INTO notes VALUES (1, 'local')")
    config = folder / "outer.yaml"
    config.write_text(
        f"""domains:
  - name: remote
    owner: {ALICE.user}
    connector:
      type: flightsql
      uri: {inner_uri}
      username: {SERVICE.user}
      password: ${{INNER_PASSWORD}}
  - name: local
    connector: {{type: sqlite, path: local.db}}
{extra_domains}"""
        + auth_yaml(ALICE)
        + OUTER_POLICIES
    )
    return config


@pytest.fixture(scope="module")
def outer(inner: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = outer_config(tmp_path_factory.mktemp("outer"), inner.uri)
    process = GatewayProcess(config, credentials=ALICE, env={"INNER_PASSWORD": SERVICE.password})
    yield process
    process.stop()


def rows(uri: str, sql: str, credentials: Credentials) -> list[dict[str, object]]:
    return query(uri, sql, credentials).to_pylist()


def plan_text(uri: str, sql: str, credentials: Credentials) -> str:
    table = query(uri, sql, credentials)
    return "\n".join(f"{t}: {p}" for t, p in zip(*(table.column(i).to_pylist() for i in range(2)), strict=True))


def test_policies_of_both_gateways_apply(inner: GatewayProcess, outer: GatewayProcess) -> None:
    got = rows(outer.uri, "SELECT id, region, amount, note FROM remote.orders ORDER BY id", ALICE)
    assert got == [
        {"id": 1, "region": "EU", "amount": Decimal("10.50"), "note": None},
        {"id": 2, "region": "US", "amount": Decimal("20.00"), "note": None},
        {"id": 3, "region": "EU", "amount": Decimal("30.25"), "note": None},
    ]
    # The inner gateway's own answer for its service account, with the outer filter on top.
    svc = rows(inner.uri, "SELECT id, region, amount, note FROM shop.orders WHERE amount > 5 ORDER BY id", SERVICE)
    assert got == svc
    # Unfiltered, the inner gateway holds every row: each filter took out what only it excludes.
    everything = rows(inner.uri, "SELECT id FROM shop.orders ORDER BY id", INNER_ADMIN)
    assert [r["id"] for r in everything] == [1, 2, 3, 4, 5, 6]


def test_inner_gateway_sees_only_the_service_account(inner: GatewayProcess, outer: GatewayProcess) -> None:
    rows(outer.uri, "SELECT count(*) AS n FROM remote.orders WHERE region = 'EU'", ALICE)
    users = {r["user"] for r in rows(inner.uri, 'SELECT DISTINCT "user" FROM system.query_log', INNER_ADMIN)}
    assert SERVICE.user in users
    assert ALICE.user not in users


def test_filters_limits_and_whole_queries_are_pushed(outer: GatewayProcess) -> None:
    plan = plan_text(outer.uri, "EXPLAIN ANALYZE SELECT id FROM remote.orders WHERE region = 'EU'", ALICE)
    assert "source_query[remote/flightsql:grpc://127.0.0.1:" in plan
    assert """"region" = 'EU'""" in plan and '"mesh"."shop"."orders"' in plan
    assert SERVICE.password not in plan
    joined = plan_text(
        outer.uri,
        "EXPLAIN ANALYZE SELECT o.id, r.name FROM remote.orders o JOIN remote.regions r ON o.region = r.region"
        " WHERE upper(r.name) = 'EUROPE'",
        ALICE,
    )
    assert "UPPER(" in joined and '"mesh"."shop"."regions"' in joined
    got = rows(
        outer.uri,
        "SELECT o.id, r.name FROM remote.orders o JOIN remote.regions r ON o.region = r.region"
        " WHERE upper(r.name) = 'EUROPE' ORDER BY o.id",
        ALICE,
    )
    assert got == [{"id": 1, "name": "Europe"}, {"id": 3, "name": "Europe"}]
    limited = rows(outer.uri, "SELECT id FROM remote.orders LIMIT 2", ALICE)
    assert len(limited) == 2


def test_a_filtered_join_of_remote_products_goes_to_the_remote_as_one_query(outer: GatewayProcess) -> None:
    sql = (
        "SELECT i.order_id, s.label, n.text FROM remote.items i JOIN remote.skus s ON i.sku_id = s.sku_id"
        " JOIN local.notes n ON n.id = i.order_id WHERE i.qty > 1"
    )
    assert rows(outer.uri, sql, ALICE) == [{"order_id": 1, "label": "nut", "text": "local"}]
    plan = plan_text(outer.uri, f"EXPLAIN ANALYZE {sql}", ALICE)
    remote = [line for line in plan.split("\n") if '"mesh"."shop"."items"' in line]
    assert len(remote) == 1, plan  # one query for the join, not one scan per product
    assert '"mesh"."shop"."skus"' in remote[0] and "JOIN" in remote[0] and "> 1" in remote[0]


def test_federated_join_with_a_local_domain(outer: GatewayProcess) -> None:
    got = rows(
        outer.uri,
        "SELECT o.id, n.text FROM remote.orders o JOIN local.notes n ON o.id = n.id ORDER BY o.id",
        ALICE,
    )
    assert got == [{"id": 1, "text": "local"}]


def test_password_is_never_shown(outer: GatewayProcess) -> None:
    domains = query(outer.uri, "SELECT * FROM system.domains", ALICE)
    assert SERVICE.password not in str(domains.to_pylist())
    assert SERVICE.password not in "".join(outer.startup_log)


def test_wrong_password_is_a_clean_error_naming_the_domain(inner: GatewayProcess) -> None:
    connector = open_connector(
        "remote",
        ConnectorConfig(type="flightsql", uri=inner.uri, options={"username": SERVICE.user, "password": "not-it-91"}),
    )
    with pytest.raises(SourceUnavailableError) as caught:
        connector.discover()
    message = str(caught.value)
    assert message.startswith("[remote/flightsql:grpc://127.0.0.1:")
    assert f"refused the log-in as '{SERVICE.user}'" in message
    assert "not-it-91" not in message and "Traceback" not in message
    connector.close()


def test_unreachable_server_takes_only_its_domain_offline(tmp_path: Path, inner: GatewayProcess) -> None:
    dead = f"grpc://127.0.0.1:{free_port()}"
    extra = (
        f"  - name: gone\n    connector: {{type: flightsql, uri: '{dead}'}}\n    products: [{{name: t, source: t}}]\n"
    )
    config = outer_config(tmp_path, inner.uri, extra)
    process = GatewayProcess(config, credentials=ALICE, env={"INNER_PASSWORD": SERVICE.password})
    try:
        assert rows(process.uri, "SELECT text FROM local.notes", ALICE) == [{"text": "local"}]
        assert rows(process.uri, "SELECT count(*) AS n FROM remote.orders", ALICE) == [{"n": 3}]
        with pytest.raises(adbc_driver_manager.Error) as caught:
            query(process.uri, "SELECT * FROM gone.t", ALICE)
        # Clients are told which domain and kind, not where the source is (that is for its owners).
        assert "[gone/flightsql] the source cannot be reached right now" in str(caught.value)
    finally:
        process.stop()


def test_remote_going_away_mid_query(tmp_path: Path) -> None:
    # Three million generated rows: enough that the outer gateway is still reading when the inner one dies.
    sqlite3.connect(tmp_path / "empty.db").close()
    big = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3000000)"
    big += " SELECT CAST(i AS INTEGER) AS id, CAST(i * 0.5 AS REAL) AS v FROM r"
    inner_config = tmp_path / "inner.yaml"
    inner_config.write_text(
        "domains:\n  - name: lake\n    connector: {type: sqlite, path: empty.db}\n"
        f"    products: [{{name: big, sql: '{big}'}}]\n" + auth_yaml(SERVICE)
    )
    inner = GatewayProcess(inner_config, credentials=SERVICE)
    outer_folder = tmp_path / "outer"
    outer_folder.mkdir()
    config = outer_config(outer_folder, inner.uri).read_text()
    config = config.replace("remote.orders", "remote.big").replace("amount > 5", "id > 0")
    (outer_folder / "outer.yaml").write_text(config)
    outer = GatewayProcess(outer_folder / "outer.yaml", credentials=ALICE, env={"INNER_PASSWORD": SERVICE.password})
    try:
        with connect(outer.uri, ALICE) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id, v FROM remote.big")
            reader = cursor.fetch_record_batch()
            first = reader.read_next_batch()
            assert first.num_rows > 0
            inner.process.kill()
            inner.process.wait()
            with pytest.raises((adbc_driver_manager.Error, OSError)) as caught:  # OSError: from the reader
                while True:
                    reader.read_next_batch()
        text = str(caught.value)
        assert "[remote/flightsql:grpc://127.0.0.1:" in text and "error reading from server" in text
        assert SERVICE.password not in text
        # The rest of the mesh keeps answering, and the remote domain fails cleanly.
        assert rows(outer.uri, "SELECT text FROM local.notes", ALICE) == [{"text": "local"}]
        with pytest.raises(adbc_driver_manager.Error, match=r"remote/flightsql"):
            query(outer.uri, "SELECT count(*) FROM remote.big", ALICE)
    finally:
        outer.stop()
        inner.stop()


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="grpc://"):
        FlightSqlConnector("d", ConnectorConfig(type="flightsql", uri="http://x:1"))
    with pytest.raises(ConfigError, match="username and password together"):
        FlightSqlConnector("d", ConnectorConfig(type="flightsql", uri="grpc://x:1", options={"username": "u"}))
    with pytest.raises(ConfigError, match="tls_root_certs"):
        FlightSqlConnector(
            "d", ConnectorConfig(type="flightsql", uri="grpc+tls://x:1", options={"tls_root_certs": "/nope"})
        )


# -- roapi: a foreign DataFusion-based Flight SQL server -----------------------------


@pytest.fixture(scope="module")
def roapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("roapi")
    pq.write_table(
        pa.table({"id": [1, 2, 3, 4], "city": ["Oslo", "Lima", "Pune", "Oslo"], "pop": [0.7, 9.7, 3.1, None]}),
        folder / "cities.parquet",
    )
    with roapi_server({"cities": folder / "cities.parquet"}) as uri:
        yield uri


def test_roapi_as_a_domain(roapi: str, tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(
        f"domains:\n  - name: geo\n    connector: {{type: flightsql, uri: '{roapi}'}}\n"
        "    products: [{name: cities, source: cities}]\n" + auth_yaml(ALICE)
    )
    process = GatewayProcess(config, credentials=ALICE)
    try:
        got = rows(process.uri, "SELECT id, city FROM geo.cities WHERE upper(city) = 'OSLO' ORDER BY id", ALICE)
        assert got == [{"id": 1, "city": "Oslo"}, {"id": 4, "city": "Oslo"}]
        plan = plan_text(process.uri, "EXPLAIN ANALYZE SELECT id FROM geo.cities WHERE pop > 1", ALICE)
        assert '"pop" > 1' in plan and "rows=2" in plan
        assert rows(process.uri, "SELECT sum(pop) AS s FROM geo.cities WHERE pop IS NOT NULL", ALICE) == [
            {"s": pytest.approx(13.5)}
        ]
    finally:
        process.stop()


def test_roapi_discovery_failure_says_what_to_do(roapi: str) -> None:
    connector = FlightSqlConnector("geo", ConnectorConfig(type="flightsql", uri=roapi))
    with pytest.raises(SourceError, match="declare the domain's products"):
        connector.discover()
    assert connector.server is not None and "RoAPI" in connector.server.name
    assert connector.capabilities.supports_full_query
    spec = ScanSpec(SourceObject(table="cities"), ("id",), None, 1)
    assert connector.scan_sql(spec) == 'SELECT "t"."id" FROM cities AS "t" LIMIT 1'
    connector.close()


def test_roapi_is_sent_only_what_it_can_plan(roapi: str) -> None:
    """roapi runs another DataFusion than the gateway's: what the planner would send it (a whole
    query, a sub-plan) is prepared there first, and a query it cannot plan is not sent."""
    connector = FlightSqlConnector("geo", ConnectorConfig(type="flightsql", uri=roapi))
    try:
        assert connector.accepts('SELECT "t"."id", upper("t"."city") FROM cities AS "t"')
        refused = "SELECT CAST('2024-01-01' AS DATE) + 1 AS d FROM cities"  # no date + integer in roapi 0.12
        assert not connector.accepts(refused)
        assert connector._accepted[refused] is False  # kept: asked once a minute at most
        assert not connector.accepts('SELECT "t"."id" FROM no_such_table AS "t"')
        subquery = 'SELECT "t"."id" FROM cities AS "t" WHERE "t"."id" IN (SELECT "c"."id" FROM cities AS "c")'
        assert connector.accepts(subquery)
        assert not connector.per_row(subquery)  # its own answer, not the acceptance kept for the same text
    finally:
        connector.close()
    gone = FlightSqlConnector("geo", ConnectorConfig(type="flightsql", uri=f"grpc://127.0.0.1:{free_port()}"))
    began = time.monotonic()
    assert not gone.accepts("SELECT 1")
    assert time.monotonic() - began < ACCEPT_WAIT + 1
    assert "SELECT 1" not in gone._accepted  # unreachable: asked again next time
    gone.close()


# -- TLS and deadlines ---------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_inner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """An inner gateway over TLS (a private CA) whose ``lake.slow`` product takes many seconds to count."""
    folder = tmp_path_factory.mktemp("tls-inner")
    ca = CertificateAuthority()
    cert, key = ca.server().write(folder, "server")
    (folder / "ca.pem").write_bytes(ca.cert_pem)
    sqlite3.connect(folder / "empty.db").close()
    slow = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 50000000)"
    slow += " SELECT CAST(i AS INTEGER) AS id FROM r"
    config = folder / "inner.yaml"
    config.write_text(
        "domains:\n  - name: lake\n    connector: {type: sqlite, path: empty.db}\n"
        f"    products: [{{name: slow, sql: '{slow}'}}, {{name: one, sql: 'SELECT CAST(1 AS INTEGER) AS x'}}]\n"
        + auth_yaml(SERVICE)
    )
    process = GatewayProcess(config, credentials=SERVICE, extra=("--tls-cert", str(cert), "--tls-key", str(key)))
    yield process
    process.stop()


def service_connector(uri: str, **options: object) -> FlightSqlConnector:
    credentials = {"username": SERVICE.user, "password": SERVICE.password}
    made = open_connector("remote", ConnectorConfig(type="flightsql", uri=uri, options={**credentials, **options}))
    assert isinstance(made, FlightSqlConnector)
    return made


def test_a_gateway_planning_with_this_engine_is_not_asked_to_prepare(inner: GatewayProcess) -> None:
    """Another Meshgate gateway whose version names this one's engine plans what this one writes: it
    is not asked first (preparing would plan the query there twice); one naming another engine is."""
    connector = service_connector(inner.uri)
    try:
        connector.ensure_known()
        assert connector.server is not None and connector.server.plans_as_this_gateway
        assert connector.accepts("SELECT no_such_function(1)")  # not asked: the remote would refuse it
        assert not connector._accepted
        connector._server = Server("Meshgate", "0.1.0 (DataFusion 40.0.0)")  # as an older gateway says
        assert not connector.accepts("SELECT no_such_function(1)")
        assert connector.accepts('SELECT "t"."id" FROM "mesh"."shop"."orders" AS "t"')
    finally:
        connector.close()


def test_tls_with_a_private_ca(slow_inner: GatewayProcess, tmp_path: Path) -> None:
    assert slow_inner.uri.startswith("grpc+tls://")
    ca_file = Path(str(slow_inner.config)).parent / "ca.pem"
    trusted = service_connector(slow_inner.uri, tls_root_certs=str(ca_file))
    try:
        source = SourceObject(table='"mesh"."lake"."one"')
        stream = trusted.execute(trusted.scan_sql(ScanSpec(source, ("x",))), trusted.schema(source))
        assert pa.Table.from_batches(list(stream)).to_pylist() == [{"x": 1}]
    finally:
        trusted.close()
    other = CertificateAuthority("Someone else's CA")
    (tmp_path / "other.pem").write_bytes(other.cert_pem)
    for options in ({}, {"tls_root_certs": str(tmp_path / "other.pem")}):
        untrusted = service_connector(slow_inner.uri, **options)
        with pytest.raises(
            SourceUnavailableError, match=r"^\[remote/flightsql:grpc\+tls://127.0.0.1:\d+\] cannot connect"
        ):
            untrusted.discover()
        untrusted.close()


def test_a_deadline_stops_a_slow_remote_query(slow_inner: GatewayProcess) -> None:
    ca_file = Path(str(slow_inner.config)).parent / "ca.pem"
    connector = service_connector(slow_inner.uri, tls_root_certs=str(ca_file))
    try:
        source = SourceObject(table='"mesh"."lake"."slow"')
        schema = connector.schema(source)
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError, match=r"remote/flightsql"):
            stream = connector.execute(
                connector.render(exp.select("count(*)").from_(connector.relation(source, "t"))),
                pa.schema([("n", pa.int64())]),
                deadline=time.monotonic() + 1.0,
            )
            list(stream)
        elapsed = time.monotonic() - started
        assert elapsed < 2.5, f"the deadline of 1 s ended the query after {elapsed:.2f} s"
        # The inner gateway's call ended with the deadline too, not when its count would have (many seconds).
        trust = {"adbc.flight.sql.client_option.tls_root_certs": ca_file.read_text()}
        with connect(slow_inner.uri, SERVICE, **trust) as inner, inner.cursor() as cursor:
            cursor.execute("SELECT duration_ms FROM system.query_log WHERE sql LIKE '%lake%slow%'")
            (logged,) = cursor.fetch_arrow_table().to_pylist()
        assert logged["duration_ms"] < 2500
        assert schema.names == ["id"]
    finally:
        connector.close()


def test_a_pooled_connection_whose_token_expired_is_replaced(tmp_path: Path) -> None:
    write_shop(tmp_path / "shop.db")
    config = tmp_path / "inner.yaml"
    # 3 s: long enough that the replacing connection's new token outlives its own read on a loaded machine
    auth = auth_yaml(SERVICE).replace("auth:\n", "auth:\n  token_ttl_seconds: 3\n")
    config.write_text("domains:\n  - name: shop\n    connector: {type: sqlite, path: shop.db}\n" + auth)
    inner = GatewayProcess(config, credentials=SERVICE)
    connector = service_connector(inner.uri)
    try:
        source = SourceObject(table='"mesh"."shop"."regions"')
        schema = connector.schema(source)

        def count() -> int:
            stream = connector.execute(
                connector.scan_sql(ScanSpec(source, ("region",))), schema.empty_table().select(["region"]).schema
            )
            return sum(batch.num_rows for batch in stream)

        assert count() == 3
        time.sleep(3.5)  # the pooled connection's bearer token has expired
        assert count() == 3
    finally:
        connector.close()
        inner.stop()


def test_a_relative_ca_file_is_relative_to_the_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(CertificateAuthority().cert_pem)
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: remote\n    connector:\n      type: flightsql\n      uri: grpc+tls://127.0.0.1:1\n"
        "      tls_root_certs: certs/ca.pem\n"
    )
    config = load_config(tmp_path / "mesh.yaml")
    (domain,) = config.domains
    assert domain.connector.options["tls_root_certs"] == str((tmp_path / "certs" / "ca.pem").resolve())
    FlightSqlConnector("remote", domain.connector).close()  # reads the file: no error
