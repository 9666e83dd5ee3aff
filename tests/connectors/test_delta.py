"""Delta Lake tables (connectors/delta.py): versions, pinning, pruning, errors and confinement.

Tables are written with the ``deltalake`` package itself; queries go through a gateway and
the ADBC Flight SQL driver where the behaviour is the gateway's (versions, joins, errors).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext
from deltalake import DeltaTable, write_deltalake

from connectors.base import SourceObject
from connectors.delta import DeltaConnector, S3DeltaConnector
from gateway.config import load_config
from gateway.errors import ConfigError, SourceError
from meshcore.config import ConnectorConfig
from tests.support.gateway import query, serve_in_process
from tests.support.s3 import S3Server, objects_read, s3_server

BUCKET = "lakehouse"


def orders(ids: list[int], region: str | list[str] = "eu") -> pa.Table:
    regions = region if isinstance(region, list) else [region] * len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "customer": pa.array([i % 3 + 1 for i in ids], pa.int64()),
            "region": regions,
            "amount": pa.array([i * 10 for i in ids], pa.int32()),
        }
    )


def mesh(folder: Path, products: str, connector: str = "{type: delta, path: lake}") -> Path:
    path = folder / "mesh.yaml"
    path.write_text(f"domains:\n  - name: lake\n    connector: {connector}\n    products:\n{products}")
    return path


def commit(table: Path, *actions: dict[str, Any]) -> None:
    """Write the table's next commit by hand (what another writer could have written)."""
    version = DeltaTable(table).version() + 1
    lines = [json.dumps({"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "WRITE"}})]
    lines += [json.dumps(action) for action in actions]
    (table / "_delta_log" / f"{version:020d}.json").write_text("\n".join(lines) + "\n")


def connector(folder: Path) -> DeltaConnector:
    return DeltaConnector("lake", ConnectorConfig(type="delta", path=folder))


def read(source: DeltaConnector, table: str, sql: str, as_of: int | str | None = None) -> list[dict[str, Any]]:
    ctx = SessionContext()
    product = SourceObject(table=table, as_of=as_of)
    version = source.open_version("t", product, source.schema(product), None)
    version.register(ctx, "product")
    return ctx.sql(sql).to_arrow_table().to_pylist()


def test_as_of_pins_a_version_while_the_table_moves_on(tmp_path: Path) -> None:
    table = tmp_path / "lake" / "orders"
    write_deltalake(table, orders([1, 2, 3]))  # version 0
    write_deltalake(table, orders([4, 5]), mode="append")  # version 1
    time.sleep(0.01)
    between = time.time()
    time.sleep(0.01)
    write_deltalake(table, orders([100]), mode="overwrite")  # version 2
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(between)) + f".{int(between * 1000) % 1000:03d}+00:00"
    config = mesh(
        tmp_path,
        "      - {name: now, source: orders}\n"
        "      - {name: v1, source: orders, as_of: 1}\n"
        f"      - {{name: then, source: orders, as_of: '{at}'}}\n",
    )
    ids = "SELECT id FROM lake.{} ORDER BY id"
    with serve_in_process(config) as uri:
        assert query(uri, ids.format("v1")).column("id").to_pylist() == [1, 2, 3, 4, 5]
        assert query(uri, ids.format("then")).column("id").to_pylist() == [1, 2, 3, 4, 5]
        assert query(uri, ids.format("now")).column("id").to_pylist() == [100]
        write_deltalake(table, orders([101, 102]), mode="append")  # version 3, while the gateway runs
        assert query(uri, ids.format("now")).column("id").to_pylist() == [100, 101, 102]
        assert query(uri, ids.format("v1")).column("id").to_pylist() == [1, 2, 3, 4, 5]
        estimates = query(uri, "SELECT count(*) AS n FROM lake.now")
        assert estimates.column("n").to_pylist() == [3]


def test_a_query_reads_the_version_it_started_on(tmp_path: Path) -> None:
    table = tmp_path / "orders"
    write_deltalake(table, orders(list(range(1, 1001))))
    source = connector(tmp_path)
    product = SourceObject(table="orders")
    version = source.open_version("orders", product, source.schema(product), None)
    write_deltalake(table, orders([7]), mode="overwrite")  # committed after the version was opened
    ctx = SessionContext()
    version.register(ctx, "product")
    assert ctx.sql("SELECT count(*) AS n FROM product").to_pylist() == [{"n": 1000}]
    assert source.stamp("orders", product) == ("version", 1)
    assert version.stamp == ("version", 0)


def test_a_join_with_postgres_through_adbc(tmp_path: Path, postgres_uri: str, pg_schema: str) -> None:
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{pg_schema}".customers (id int8 PRIMARY KEY, name text)')
        cursor.execute(f"INSERT INTO \"{pg_schema}\".customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Zoë')")
    write_deltalake(tmp_path / "lake" / "orders", orders([1, 2, 3, 4, 5, 6]), partition_by=["region"])
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: lake\n    connector: {type: delta, path: lake}\n"
        "    products:\n      - {name: orders, source: orders}\n"
        f"  - name: crm\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: customers, source: {pg_schema}.customers}}\n"
    )
    sql = (
        "SELECT c.name, sum(o.amount) AS total FROM lake.orders o JOIN crm.customers c ON o.customer = c.id"
        " WHERE o.region = 'eu' AND o.id > 1 GROUP BY c.name ORDER BY c.name"
    )
    with serve_in_process(tmp_path / "mesh.yaml") as uri:
        got = query(uri, sql)
    assert got.to_pylist() == [
        {"name": "Ada", "total": 30 + 60},
        {"name": "Grace", "total": 40},
        {"name": "Zoë", "total": 20 + 50},
    ]


def test_a_partition_filter_reads_only_that_partitions_files(tmp_path: Path) -> None:
    """The files of the other partition are gone from disk: a query filtering them out still answers."""
    table = tmp_path / "lake" / "orders"
    write_deltalake(table, orders([1, 2, 3, 4], ["eu", "us", "eu", "us"]), partition_by=["region"])
    config = mesh(tmp_path, "      - {name: orders, source: orders}\n")
    with serve_in_process(config) as uri:
        assert query(uri, "SELECT count(*) AS n FROM lake.orders").column("n").to_pylist() == [4]
        shutil.rmtree(table / "region=us")  # the log still names them: the same version is served
        eu = query(uri, "SELECT id FROM lake.orders WHERE region = 'eu' ORDER BY id")
        assert eu.column("id").to_pylist() == [1, 3]
        with pytest.raises(Exception, match=r"region=us"):
            query(uri, "SELECT id FROM lake.orders WHERE region = 'us'")
        plan = query(uri, "EXPLAIN SELECT id FROM lake.orders WHERE region = 'eu'")
    assert "full_filters=[" in str(plan.to_pylist()) and "region" in str(plan.to_pylist())


def test_types_come_from_the_log(tmp_path: Path) -> None:
    table = pa.table(
        {
            "b": pa.array([1], pa.int8()),
            "m": pa.array([{"k": 1}], pa.struct([("k", pa.int64())])),
            "tags": pa.array([["x", None]], pa.list_(pa.string())),
            "ntz": pa.array([0], pa.timestamp("us")),
            "tz": pa.array([0], pa.timestamp("us", tz="UTC")),
            "d": pa.array([None], pa.decimal128(20, 4)),
        }
    )
    write_deltalake(tmp_path / "typed", table)
    schema = connector(tmp_path).schema(SourceObject(table="typed"))
    assert schema == pa.schema(
        [
            ("b", pa.int8()),
            ("m", pa.struct([("k", pa.int64())])),
            ("tags", pa.list_(pa.string())),
            ("ntz", pa.timestamp("us")),
            ("tz", pa.timestamp("us", tz="UTC")),
            ("d", pa.decimal128(20, 4)),
        ]
    )
    assert read(connector(tmp_path), "typed", "SELECT tags, m FROM product") == [{"tags": ["x", None], "m": {"k": 1}}]


def test_row_estimates_come_from_the_log(tmp_path: Path) -> None:
    write_deltalake(tmp_path / "orders", orders(list(range(300))))
    write_deltalake(tmp_path / "orders", orders(list(range(50))), mode="append")
    source = connector(tmp_path)
    assert source.estimate_rows(SourceObject(table="orders")) == 350
    assert source.estimate_rows(SourceObject(table="orders", as_of=0)) == 300
    assert source.estimate_rows(SourceObject(table="missing")) is None


@pytest.mark.parametrize(
    ("products", "match"),
    [
        ("{name: gone, source: nowhere}", r"data product 'lake.gone': no Delta table at .*nowhere"),
        ("{name: future, source: orders, as_of: 9}", r"data product 'lake.future': .* has no version 9"),
        (
            "{name: early, source: orders, as_of: '2001-01-01T00:00:00Z'}",
            r"data product 'lake.early': .* has no version at 2001-01-01",
        ),
        ("{name: up, source: ../elsewhere}", r"data product 'lake.up': source '../elsewhere' must be a folder inside"),
    ],
    ids=["missing_table", "missing_version", "before_the_table", "outside"],
)
def test_errors_name_the_domain_product_and_problem(tmp_path: Path, products: str, match: str) -> None:
    write_deltalake(tmp_path / "lake" / "orders", orders([1]))
    config = mesh(tmp_path, f"      - {products}\n")
    with serve_in_process(config) as uri, pytest.raises(Exception, match=r"\[lake/delta:.*\] " + match):
        query(uri, "SELECT * FROM lake." + products.split(",")[0].split()[-1])


def test_a_corrupt_log_is_an_error_naming_it(tmp_path: Path) -> None:
    table = tmp_path / "orders"
    write_deltalake(table, orders([1]))
    (table / "_delta_log" / "00000000000000000001.json").write_text("{not json\n")
    with pytest.raises(SourceError, match=r"\[lake/delta:.*\] cannot read the Delta log of .*orders"):
        connector(tmp_path).schema(SourceObject(table="orders"))


def _metadata(table: Path) -> dict[str, Any]:
    for line in (table / "_delta_log" / f"{0:020d}.json").read_text().splitlines():
        action = json.loads(line)
        if "metaData" in action:
            return dict(action["metaData"])
    raise AssertionError("no metaData in version 0")


def test_deletion_vectors_and_column_mapping_are_refused(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors"
    write_deltalake(vectors, orders([1, 2]))
    features = {"readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}
    commit(vectors, {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, **features}})
    with pytest.raises(SourceError, match=r"is not supported: it uses deletion vectors"):
        connector(tmp_path).schema(SourceObject(table="vectors"))
    assert read(connector(tmp_path), "vectors", "SELECT count(*) AS n FROM product", as_of=0) == [{"n": 2}]

    mapped = tmp_path / "mapped"
    write_deltalake(mapped, orders([1, 2]))
    metadata = _metadata(mapped)
    schema = json.loads(metadata["schemaString"])
    for number, field in enumerate(schema["fields"], 1):  # physical names differ from the logical ones
        field["metadata"] = {"delta.columnMapping.id": number, "delta.columnMapping.physicalName": f"col-{number}"}
    metadata["schemaString"] = json.dumps(schema)
    metadata["configuration"] = {
        **metadata.get("configuration", {}),
        "delta.columnMapping.mode": "name",
        "delta.columnMapping.maxColumnId": str(len(schema["fields"])),
    }
    commit(mapped, {"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}}, {"metaData": metadata})
    with pytest.raises(SourceError, match=r"is not supported: it uses column mapping \(mode name"):
        connector(tmp_path).schema(SourceObject(table="mapped"))


def test_a_log_cannot_make_the_gateway_read_files_outside_the_table(tmp_path: Path) -> None:
    """A domain owner writes the log of their own table; it names another domain's file, or links to it.

    deltalake reads every path of the log inside the table's folder (an absolute path or ``..`` is
    looked for there and not found); a symbolic link is followed, and refused by the connector.
    """
    secret = tmp_path / "finance" / "salaries.parquet"
    secret.parent.mkdir()
    pq.write_table(orders([666]), secret)
    source = connector(tmp_path / "lake")
    for number, path in enumerate((secret.as_uri(), str(secret), "../../finance/salaries.parquet")):
        stolen = tmp_path / "lake" / f"stolen{number}"
        write_deltalake(stolen, orders([1]))
        add = {"path": path, "size": secret.stat().st_size, "partitionValues": {}}
        commit(stolen, {"add": {**add, "modificationTime": 0, "dataChange": True}})
        with pytest.raises(Exception, match=r"not found"):
            read(source, f"stolen{number}", "SELECT id FROM product")

    linked = tmp_path / "lake" / "linked"
    write_deltalake(linked, orders([1]))
    (data,) = linked.glob("*.parquet")
    data.unlink()
    data.symlink_to(secret)
    with pytest.raises(SourceError, match=r"names a data file outside its folder"):
        source.schema(SourceObject(table="linked"))
    (tmp_path / "lake" / "alias").symlink_to(tmp_path / "finance")
    with pytest.raises(SourceError, match=r"source 'alias' leads outside"):
        source.schema(SourceObject(table="alias"))


def test_config_checks_as_of_and_the_source(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    cases = {
        "{name: p, source: t, as_of: -1}": r"as_of: must be a version number .* got -1",
        "{name: p, source: t, as_of: yesterday}": r"as_of: must be a version number .* got 'yesterday'",
        "{name: p, sql: 'SELECT 1'}": r"a delta source has no SQL dialect",
    }
    for product, match in cases.items():
        with pytest.raises(ConfigError, match=match):
            load_config(mesh(tmp_path, f"      - {product}\n"))
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"a parquet source has no table versions to pin"):
        load_config(mesh(tmp_path, "      - {name: p, source: t.parquet, as_of: 1}\n", "{type: parquet, path: .}"))
    with pytest.raises(ConfigError, match=r"endpoint.*unknown key|unknown key.*endpoint|object storage only"):
        load_config(mesh(tmp_path, "      - {name: p, source: t}\n", "{type: delta, path: lake, endpoint: 'http://x'}"))


# ----------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client.create_bucket(Bucket=BUCKET)
        yield server


def upload(s3: S3Server, folder: Path, prefix: str) -> None:
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            s3.put(BUCKET, f"{prefix}/{file.relative_to(folder).as_posix()}", file.read_bytes())


def test_a_table_in_s3_is_pruned_by_partition(s3: S3Server, tmp_path: Path) -> None:
    write_deltalake(tmp_path / "orders", orders([1, 2, 3, 4], ["eu", "us", "eu", "us"]), partition_by=["region"])
    upload(s3, tmp_path / "orders", "shop/orders")
    config = ConnectorConfig(type="delta", uri=f"s3://{BUCKET}/shop", options=s3.options())
    source = S3DeltaConnector("lake", config)
    assert [p.name for p in source.discover()] == ["orders"]
    product = SourceObject(table="orders")
    version = source.open_version("orders", product, source.schema(product), None)
    ctx = SessionContext()
    version.register(ctx, "product")
    with s3.recording() as requests:
        rows = ctx.sql("SELECT id FROM product WHERE region = 'us' ORDER BY id").to_arrow_table().to_pylist()
    assert rows == [{"id": 2}, {"id": 4}]
    read_keys = objects_read(requests, BUCKET)
    assert read_keys and all(key.startswith("shop/orders/region=us/") for key in read_keys), read_keys
    assert source.estimate_rows(product) == 4
    assert s3.options()["secret_access_key"] not in str(source.storage_options().get("AWS_ENDPOINT_URL"))


def test_s3_errors_name_the_table_never_the_secret(s3: S3Server) -> None:
    config = ConnectorConfig(type="delta", uri=f"s3://{BUCKET}/nothing", options=s3.options())
    with pytest.raises(SourceError) as raised:
        S3DeltaConnector("lake", config).schema(SourceObject(table="orders"))
    assert "no Delta table at s3://lakehouse/nothing/orders" in str(raised.value)
    assert str(s3.options()["secret_access_key"]) not in str(raised.value)


# ----------------------------------------------------------------------- self-serve

PLATFORM = """policies:
  roles:
    admin: [root]
  grants:
    - {role: admin, on: "*"}
self_serve:
  domains:
    lake: {owner: lake-team, paths: [lake]}
"""
LAKE = """domains:
  - name: lake
    owner: lake-team
    connector: {type: delta, path: lake}
    products:
      - {name: orders, source: orders}
"""
FINANCE = "domains:\n  - name: finance\n    owner: finance-team\n    connector: {type: delta, path: finance}\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (LAKE + "      - {name: pay, source: ../finance/salaries}\n", r"may not publish '.*finance/salaries'"),
        (LAKE + "      - {name: pay, source: alias}\n", r"may not publish '.*finance/salaries'"),
        (
            LAKE.replace("{type: delta, path: lake}", "{type: iceberg, path: finance}"),
            r"may not point domain 'lake' at iceberg",
        ),
        (
            LAKE.replace("{type: delta, path: lake}", '{type: delta, uri: "s3://b/x", endpoint: "http://127.0.0.1:1"}'),
            r"may not set connector option endpoint of domain 'lake'",
        ),
        (
            LAKE.replace(
                "{type: delta, path: lake}", '{type: iceberg, uri: "s3://b/x", access_key_id: "${AWS_KEY:-k}"}'
            ),
            r"may not set connector option access_key_id of domain 'lake'",
        ),
    ],
    ids=["climbing_out", "symlink", "another_domains_folder", "endpoint", "iceberg_credentials"],
)
def test_an_owner_cannot_point_a_table_at_another_domains_files(tmp_path: Path, text: str, match: str) -> None:
    from gateway.api import CallerContext
    from gateway.engine import Engine
    from gateway.errors import PermissionDeniedError
    from gateway.reload import Reloader

    write_deltalake(tmp_path / "lake" / "orders", orders([1]))
    write_deltalake(tmp_path / "finance" / "salaries", orders([666]))
    (tmp_path / "lake" / "alias").symlink_to(tmp_path / "finance" / "salaries")
    for name, body in (("platform", PLATFORM), ("lake", LAKE), ("finance", FINANCE)):
        (tmp_path / f"{name}.yaml").write_text(body)
    engine = Engine.from_config(load_config(tmp_path))
    try:
        owner = CallerContext(user="olga", attributes={"groups": "lake-team"})
        with pytest.raises(PermissionDeniedError, match=match):
            Reloader(engine, tmp_path).apply_text(owner, text)
        assert (tmp_path / "lake.yaml").read_text() == LAKE
    finally:
        engine.close()


def test_float_filters_answer_as_datafusion_does(tmp_path: Path) -> None:
    """NaN above every number and -0.0 below 0.0: DataFusion's order, which pyarrow's filters do not follow."""
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "f": pa.array([float("nan"), 0.5, 2.0, -0.0, 0.0]),
            "g": pa.array([float("nan"), 1, 2, 3, 4], pa.float32()),
        }
    )
    write_deltalake(tmp_path / "floats", table)
    oracle = SessionContext()
    oracle.from_arrow(table, name="product")
    for predicate in ("f > 1", "f = 0.0", "f < 0.0", "g >= 2 AND id > 1", "f <> 0.5", "g IN (1, 2)"):
        sql = f"SELECT id FROM product WHERE {predicate} ORDER BY id"
        assert read(connector(tmp_path), "floats", sql) == oracle.sql(sql).to_pylist(), predicate


def test_an_unreachable_store_names_the_endpoint_and_is_not_asked_again_at_once() -> None:
    """Every query stamps every table: a failing store is answered from memory for 30 s."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    options = {
        "endpoint": endpoint,
        "allow_http": True,
        "access_key_id": "AKIAUNREACHABLE",
        "secret_access_key": "x" * 40,
    }
    source = S3DeltaConnector("lake", ConnectorConfig(type="delta", uri="s3://nowhere/tables", options=options))
    product = SourceObject(table="orders")
    with pytest.raises(SourceError, match=rf"the endpoint cannot be reached \({endpoint}\)") as first:
        source.stamp("orders", product)
    assert "data product 'lake.orders'" in str(first.value) and "x" * 40 not in str(first.value)
    with pytest.raises(SourceError, match=r"\(retried within 30 s\)"):
        source.stamp("orders", product)


def test_a_table_in_s3_through_the_gateway(s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_deltalake(tmp_path / "events", orders([1, 2, 3], ["eu", "us", "eu"]), partition_by=["region"])
    upload(s3, tmp_path / "events", "gateway/events")
    monkeypatch.setenv("TEST_S3_KEY", str(s3.options()["access_key_id"]))
    monkeypatch.setenv("TEST_S3_SECRET", str(s3.options()["secret_access_key"]))
    connector = (
        f"{{type: delta, uri: 's3://{BUCKET}/gateway', endpoint: '{s3.endpoint}', allow_http: true,"
        " access_key_id: '${TEST_S3_KEY}', secret_access_key: '${TEST_S3_SECRET}'}"
    )
    config = mesh(
        tmp_path, "      - {name: events, source: events}\n      - {name: first, source: events, as_of: 0}\n", connector
    )
    with serve_in_process(config) as uri:
        got = query(uri, "SELECT id FROM lake.events WHERE region = 'eu' ORDER BY id")
        assert got.column("id").to_pylist() == [1, 3]
        write_deltalake(tmp_path / "events", orders([4], "eu"), mode="append", partition_by=["region"])
        upload(s3, tmp_path / "events", "gateway/events")  # version 1 appears in the bucket
        got = query(uri, "SELECT id FROM lake.events WHERE region = 'eu' ORDER BY id")
        assert got.column("id").to_pylist() == [1, 3, 4]
        assert query(uri, "SELECT count(*) AS n FROM lake.first").column("n").to_pylist() == [3]


def test_grants_masks_and_row_filters_hold_on_lakehouse_tables(tmp_path: Path) -> None:
    """A Delta and an Iceberg product under one platform's policies, read by an analyst through ADBC."""
    from tests.support.gateway import TEST_CREDENTIALS, GatewayProcess, auth_yaml
    from tests.support.iceberg import warehouse_of

    write_deltalake(
        tmp_path / "lake" / "orders", orders([1, 2, 3, 4], ["eu", "us", "eu", "us"]), partition_by=["region"]
    )
    ice = warehouse_of(tmp_path / "ice").create_table("orders", orders([1]).schema)
    ice.append(orders([5, 6], ["eu", "us"]))
    user = TEST_CREDENTIALS.user
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: lake\n    connector: {type: delta, path: lake}\n    products:\n      - {name: orders, source: orders}\n"
        "      - {name: hidden, source: orders, as_of: 0}\n"
        "  - name: ice\n    connector: {type: iceberg, path: ice}\n    products:\n      - {name: orders, source: orders}\n"
        "policies:\n"
        f"  roles:\n    analyst: [{user}]\n"
        "  grants:\n    - {role: analyst, on: lake.orders}\n    - {role: analyst, on: ice.orders}\n"
        "  masks:\n    - {on: lake.orders.customer, mask: 'null'}\n    - {on: ice.orders.amount, mask: 'null'}\n"
        "  row_filters:\n    - {on: lake.orders, where: \"region = 'eu'\"}\n    - {on: ice.orders, where: \"region = 'us'\"}\n"
        + auth_yaml()
    )
    gateway = GatewayProcess(tmp_path / "mesh.yaml")  # `meshgate serve`: users log in
    try:
        uri = gateway.uri
        lake = query(uri, "SELECT id, customer FROM lake.orders ORDER BY id", TEST_CREDENTIALS)
        assert lake.to_pylist() == [{"id": 1, "customer": None}, {"id": 3, "customer": None}]
        joined = query(
            uri,
            "SELECT l.id, i.id AS other, i.amount FROM lake.orders l CROSS JOIN ice.orders i ORDER BY l.id",
            TEST_CREDENTIALS,
        )
        assert joined.to_pylist() == [{"id": 1, "other": 6, "amount": None}, {"id": 3, "other": 6, "amount": None}]
        with pytest.raises(Exception, match=r"access denied: user 'tester' has no grant on lake.hidden"):
            query(uri, "SELECT * FROM lake.hidden", TEST_CREDENTIALS)
    finally:
        gateway.stop()


def test_statistics_a_writer_left_out_or_cut_to_milliseconds_skip_nothing_they_should_not(tmp_path: Path) -> None:
    """Another writer's commit: no min/max for ``id`` (only NULL counts), timestamps cut to milliseconds."""
    table = tmp_path / "events"
    write_deltalake(table, pa.table({"id": pa.array([1], pa.int64()), "ts": pa.array([0], pa.timestamp("us", "UTC"))}))
    rows = pa.table(
        {"id": pa.array([10, 20], pa.int64()), "ts": pa.array([1_000_999, 2_000_999], pa.timestamp("us", "UTC"))}
    )
    pq.write_table(rows, table / "other-writer.parquet")
    stats = {
        "numRecords": 2,
        "minValues": {"ts": "1970-01-01T00:00:01.000Z"},
        "maxValues": {"ts": "1970-01-01T00:00:02.000Z"},
        "nullCount": {"id": 0, "ts": 0},
    }
    add = {"path": "other-writer.parquet", "size": (table / "other-writer.parquet").stat().st_size}
    commit(
        table,
        {"add": {**add, "partitionValues": {}, "modificationTime": 0, "dataChange": True, "stats": json.dumps(stats)}},
    )
    source = connector(tmp_path)
    assert read(source, "events", "SELECT id FROM product WHERE id > 5 ORDER BY id") == [{"id": 10}, {"id": 20}]
    assert read(source, "events", "SELECT id FROM product WHERE ts > TIMESTAMP '1970-01-01T00:00:02.000500Z'") == [
        {"id": 20}
    ]
    assert read(source, "events", "SELECT id FROM product WHERE id IS NULL") == []
