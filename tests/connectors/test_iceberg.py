"""Apache Iceberg tables (connectors/iceberg.py): snapshots, pinning, pruning, errors and confinement.

Tables are written with pyiceberg through the folder catalog of tests/support/iceberg.py;
queries go through a gateway and the ADBC Flight SQL driver where the behaviour is the
gateway's (snapshots, joins, errors).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.typedef import Record
from pyiceberg.types import DoubleType, LongType, NestedField, StructType, UUIDType

from connectors.base import SourceObject
from connectors.iceberg import IcebergConnector, S3IcebergConnector
from gateway.errors import SourceError
from meshcore.config import ConnectorConfig
from tests.support.gateway import query, serve_in_process
from tests.support.iceberg import FolderCatalog, warehouse_of
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server, objects_read, s3_server

BUCKET = "icehouse"


def orders(ids: list[int], region: str | list[str] = "eu") -> pa.Table:
    regions = region if isinstance(region, list) else [region] * len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "customer": pa.array([i % 3 + 1 for i in ids], pa.int64()),
            "region": pa.array(regions, pa.string()),
            "amount": pa.array([i * 10 for i in ids], pa.int32()),
        }
    )


def create(folder: Path, name: str, rows: pa.Table, partition: str | None = None) -> Table:
    """A table ``folder/name`` holding ``rows`` (one snapshot), identity-partitioned by ``partition``."""
    table = warehouse_of(folder).create_table(name, rows.schema)
    if partition is not None:
        with table.update_spec() as spec:
            spec.add_identity(partition)
        table = warehouse_of(folder).load_table(name)
    table.append(rows)
    return warehouse_of(folder).load_table(name)


def mesh(folder: Path, products: str) -> Path:
    path = folder / "mesh.yaml"
    path.write_text(
        f"domains:\n  - name: lake\n    connector: {{type: iceberg, path: lake}}\n    products:\n{products}"
    )
    return path


def connector(folder: Path) -> IcebergConnector:
    return IcebergConnector("lake", ConnectorConfig(type="iceberg", path=folder))


def read(source: IcebergConnector, table: str, sql: str, as_of: int | str | None = None) -> list[dict[str, Any]]:
    ctx = SessionContext()
    product = SourceObject(table=table, as_of=as_of)
    version = source.open_version("t", product, source.schema(product), None)
    version.register(ctx, "product")
    return ctx.sql(sql).to_arrow_table().to_pylist()


def test_as_of_pins_a_snapshot_while_the_table_moves_on(tmp_path: Path) -> None:
    table = create(tmp_path / "lake", "orders", orders([1, 2, 3]))
    table.append(orders([4, 5]))
    table = warehouse_of(tmp_path / "lake").load_table("orders")
    pinned = table.current_snapshot()
    assert pinned is not None
    at = dt.datetime.fromtimestamp(pinned.timestamp_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    time.sleep(0.01)  # the next snapshot's timestamp (milliseconds) is later than the pinned one's
    table.overwrite(orders([100]))
    config = mesh(
        tmp_path,
        "      - {name: now, source: orders}\n"
        f"      - {{name: pinned, source: orders, as_of: {pinned.snapshot_id}}}\n"
        f"      - {{name: then, source: orders, as_of: '{at}'}}\n",
    )
    ids = "SELECT id FROM lake.{} ORDER BY id"
    with serve_in_process(config) as uri:
        assert query(uri, ids.format("pinned")).column("id").to_pylist() == [1, 2, 3, 4, 5]
        assert query(uri, ids.format("then")).column("id").to_pylist() == [1, 2, 3, 4, 5]
        assert query(uri, ids.format("now")).column("id").to_pylist() == [100]
        warehouse_of(tmp_path / "lake").load_table("orders").append(orders([101]))  # while the gateway runs
        assert query(uri, ids.format("now")).column("id").to_pylist() == [100, 101]
        assert query(uri, ids.format("pinned")).column("id").to_pylist() == [1, 2, 3, 4, 5]


def test_a_query_reads_the_snapshot_it_started_on(tmp_path: Path) -> None:
    table = create(tmp_path, "orders", orders(list(range(1, 501))))
    source = connector(tmp_path)
    product = SourceObject(table="orders")
    version = source.open_version("orders", product, source.schema(product), None)
    table.overwrite(orders([7]))
    ctx = SessionContext()
    version.register(ctx, "product")
    assert ctx.sql("SELECT count(*) AS n FROM product").to_pylist() == [{"n": 500}]
    assert source.stamp("orders", product) != version.stamp


def test_a_join_with_postgres_through_adbc(tmp_path: Path, postgres_uri: str, pg_schema: str) -> None:
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{pg_schema}".customers (id int8 PRIMARY KEY, name text)')
        cursor.execute(f"INSERT INTO \"{pg_schema}\".customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Zoë')")
    create(tmp_path / "lake", "orders", orders([1, 2, 3, 4, 5, 6], ["eu", "us"] * 3), partition="region")
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: lake\n    connector: {type: iceberg, path: lake}\n"
        "    products:\n      - {name: orders, source: orders}\n"
        f"  - name: crm\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: customers, source: {pg_schema}.customers}}\n"
    )
    sql = (
        "SELECT c.name, sum(o.amount) AS total FROM lake.orders o JOIN crm.customers c ON o.customer = c.id"
        " WHERE o.region = 'eu' GROUP BY c.name ORDER BY c.name"
    )
    with serve_in_process(tmp_path / "mesh.yaml") as uri:
        got = query(uri, sql)
    assert got.to_pylist() == [
        {"name": "Ada", "total": 30},
        {"name": "Grace", "total": 10},
        {"name": "Zoë", "total": 50},
    ]


def test_a_partition_filter_reads_only_that_partitions_files(tmp_path: Path) -> None:
    """The files of the other partition are gone from disk: a query filtering them out still answers."""
    create(tmp_path / "lake", "orders", orders([1, 2, 3, 4], ["eu", "us", "eu", "us"]), partition="region")
    config = mesh(tmp_path, "      - {name: orders, source: orders}\n")
    with serve_in_process(config) as uri:
        assert query(uri, "SELECT count(*) AS n FROM lake.orders").column("n").to_pylist() == [4]
        shutil.rmtree(tmp_path / "lake" / "orders" / "data" / "region=us")  # the manifests still name them
        eu = query(uri, "SELECT id FROM lake.orders WHERE region = 'eu' ORDER BY id")
        assert eu.column("id").to_pylist() == [1, 3]
        with pytest.raises(Exception, match=r"region=us"):
            query(uri, "SELECT id FROM lake.orders WHERE region = 'us'")


def test_column_bounds_skip_files_whatever_the_partitioning(tmp_path: Path) -> None:
    """Three files of disjoint ids, strings longer than the 16 characters bounds keep, NULLs in one."""
    table = create(tmp_path, "events", orders([1, 2, 3]))
    table.append(orders([101, 102]).set_column(2, "region", pa.array(["m" * 20 + "b", None])))
    warehouse_of(tmp_path).load_table("events").append(orders([201, 202], "x" * 20 + "z"))
    source = connector(tmp_path)
    product = SourceObject(table="events")
    version = source.open_version("events", product, source.schema(product), None)
    (middle,) = [
        f for f in (tmp_path / "events" / "data").glob("*.parquet") if pq.read_table(f)["id"][0].as_py() == 101
    ]
    middle.unlink()  # the manifests still name it: only queries that cannot skip it fail
    ctx = SessionContext()
    version.register(ctx, "product")

    def ids(where: str) -> list[int]:
        return ctx.sql(f"SELECT id FROM product WHERE {where} ORDER BY id").to_arrow_table().column("id").to_pylist()

    assert ids("id < 50") == [1, 2, 3]
    assert ids("id >= 150 AND id < 500") == [201, 202]
    assert ids("region = '" + "x" * 20 + "z'") == [201, 202]
    assert ids("region = 'eu' AND id > 0") == [1, 2, 3]
    for where in ("id = 101", "region IS NULL", "region = '" + "m" * 20 + "b'"):
        with pytest.raises(Exception, match=r"not found|No such file"):
            ids(where)


def test_row_estimates_come_from_the_manifests(tmp_path: Path) -> None:
    table = create(tmp_path, "orders", orders(list(range(300))))
    first = table.current_snapshot()
    assert first is not None
    table.append(orders(list(range(50))))
    source = connector(tmp_path)
    assert source.estimate_rows(SourceObject(table="orders")) == 350
    assert source.estimate_rows(SourceObject(table="orders", as_of=first.snapshot_id)) == 300
    assert source.estimate_rows(SourceObject(table="missing")) is None


@pytest.mark.parametrize(
    ("products", "match"),
    [
        ("{name: gone, source: nowhere}", r"data product 'lake.gone': no Iceberg table at .*nowhere"),
        ("{name: future, source: orders, as_of: 42}", r"data product 'lake.future': .* has no snapshot 42"),
        ("{name: early, source: orders, as_of: '2001-01-01T00:00:00Z'}", r"data product 'lake.early': .* at 2001"),
        ("{name: up, source: ../elsewhere}", r"data product 'lake.up': source '../elsewhere' must be a folder inside"),
    ],
    ids=["missing_table", "missing_snapshot", "before_the_table", "outside"],
)
def test_errors_name_the_domain_product_and_problem(tmp_path: Path, products: str, match: str) -> None:
    create(tmp_path / "lake", "orders", orders([1]))
    config = mesh(tmp_path, f"      - {products}\n")
    with serve_in_process(config) as uri, pytest.raises(Exception, match=r"\[lake/iceberg:.*\] " + match):
        query(uri, "SELECT * FROM lake." + products.split(",")[0].split()[-1])


def test_corrupt_metadata_is_an_error_naming_it(tmp_path: Path) -> None:
    table = create(tmp_path, "orders", orders([1]))
    Path(table.metadata_location.removeprefix("file://")).write_text('{"format-version": 2, "table-uuid": ')
    with pytest.raises(SourceError, match=r"\[lake/iceberg:.*\] cannot read the Iceberg metadata .*metadata.json"):
        connector(tmp_path).schema(SourceObject(table="orders"))
    (tmp_path / "orders" / "metadata" / "version-hint.text").write_text("../../finance/v1.metadata.json")
    with pytest.raises(SourceError, match=r"version-hint.text names no metadata file"):
        connector(tmp_path).schema(SourceObject(table="orders"))


def test_row_level_deletes_are_refused(tmp_path: Path) -> None:
    """A position delete file (merge-on-read) would hide rows the data files still hold."""
    table = create(tmp_path, "orders", orders([1, 2, 3]))
    (data,) = [task.file.file_path for task in table.scan().plan_files()]
    deletes = tmp_path / "orders" / "data" / "deletes.parquet"
    pq.write_table(pa.table({"file_path": [data], "pos": pa.array([0], pa.int64())}), deletes)
    delete_file = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=deletes.as_uri(),
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=1,
        file_size_in_bytes=deletes.stat().st_size,
    )
    delete_file.spec_id = 0
    with table.transaction() as transaction, transaction.update_snapshot().fast_append() as append:
        append.append_data_file(delete_file)
    assert warehouse_of(tmp_path).load_table("orders").scan().to_arrow().num_rows == 2  # pyiceberg applies it
    with pytest.raises(SourceError, match=r"not supported: its snapshot has 1 delete file\(s\) \(row-level deletes\)"):
        connector(tmp_path).schema(SourceObject(table="orders"))


def test_a_renamed_column_is_refused(tmp_path: Path) -> None:
    table = create(tmp_path, "orders", orders([1, 2]))
    with table.update_schema() as update:
        update.rename_column("amount", "total")
    with pytest.raises(SourceError, match=r"column total was renamed, or dropped and added again"):
        connector(tmp_path).schema(SourceObject(table="orders"))


def test_uuids_are_served_as_their_text_and_nested_ones_refused(tmp_path: Path) -> None:
    keys = [uuid.UUID(int=7), None, uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]
    rows = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "key": pa.array([None if k is None else k.bytes for k in keys], pa.uuid()),
        }
    )
    create(tmp_path, "keys", rows)
    source = connector(tmp_path)
    assert source.schema(SourceObject(table="keys")) == pa.schema([("id", pa.int64()), ("key", pa.string())])
    got = read(source, "keys", "SELECT id, key FROM product ORDER BY id")
    assert got == [{"id": i + 1, "key": None if k is None else str(k)} for i, k in enumerate(keys)]
    text = str(keys[2])
    assert read(source, "keys", f"SELECT id FROM product WHERE key = '{text}'") == [{"id": 3}]
    nested = Schema(NestedField(1, "id", LongType()), NestedField(2, "s", StructType(NestedField(3, "k", UUIDType()))))
    warehouse_of(tmp_path).create_table("nested", nested)
    with pytest.raises(SourceError, match=r"column s.k has type uuid"):
        connector(tmp_path).schema(SourceObject(table="nested"))


def test_an_added_column_reads_as_null_in_older_files(tmp_path: Path) -> None:
    table = create(tmp_path, "orders", orders([1]))
    with table.update_schema() as update:
        update.add_column("note", LongType())
    table = warehouse_of(tmp_path).load_table("orders")
    table.append(orders([2]).append_column("note", pa.array([7], pa.int64())))
    rows = read(connector(tmp_path), "orders", "SELECT id, note FROM product ORDER BY id")
    assert rows == [{"id": 1, "note": None}, {"id": 2, "note": 7}]


def test_promoted_columns_read_as_the_tables_type(tmp_path: Path) -> None:
    table = create(
        tmp_path, "t", pa.table({"x": pa.array([1, 2], pa.int32()), "f": pa.array([1.5, 1.5], pa.float32())})
    )
    with table.update_schema() as update:
        update.update_column("x", LongType())
        update.update_column("f", DoubleType())
    warehouse_of(tmp_path).load_table("t").append(
        pa.table({"x": pa.array([2**40], pa.int64()), "f": pa.array([3.25], pa.float64())})
    )
    source = connector(tmp_path)
    assert source.schema(SourceObject(table="t")) == pa.schema([("x", pa.int64()), ("f", pa.float64())])
    rows = read(source, "t", "SELECT x, f FROM product WHERE x > 1 ORDER BY x")
    assert rows == [{"x": 2, "f": 1.5}, {"x": 2**40, "f": 3.25}]


def test_metadata_cannot_make_the_gateway_read_files_outside_the_table(tmp_path: Path) -> None:
    """A domain owner copies another domain's table metadata into their folder, or links a data file."""
    create(tmp_path / "finance", "salaries", orders([666]))
    (tmp_path / "lake").mkdir()
    shutil.copytree(tmp_path / "finance" / "salaries" / "metadata", tmp_path / "lake" / "copied" / "metadata")
    source = connector(tmp_path / "lake")
    with pytest.raises(SourceError, match=r"names a manifest list outside its folder .*copied \(file://.*finance"):
        source.schema(SourceObject(table="copied"))
    create(tmp_path / "lake", "linked", orders([1]))
    (data,) = (tmp_path / "lake" / "linked" / "data").glob("*.parquet")
    data.unlink()
    data.symlink_to(next((tmp_path / "finance" / "salaries" / "data").glob("*.parquet")))
    with pytest.raises(SourceError, match=r"names a data file outside its folder"):
        source.schema(SourceObject(table="linked"))


# ----------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client.create_bucket(Bucket=BUCKET)
        yield server


def s3_catalog(s3: S3Server) -> FolderCatalog:
    return FolderCatalog(
        f"s3://{BUCKET}/warehouse",
        **{
            "s3.endpoint": s3.endpoint,
            "s3.access-key-id": ACCESS_KEY_ID,
            "s3.secret-access-key": SECRET_ACCESS_KEY,
            "s3.region": REGION,
            "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        },
    )


def test_a_table_in_s3_is_pruned_by_partition(s3: S3Server) -> None:
    catalog = s3_catalog(s3)
    rows = orders([1, 2, 3, 4], ["eu", "us", "eu", "us"])
    table = catalog.create_table("orders", rows.schema)
    with table.update_spec() as spec:
        spec.add_identity("region")
    catalog.load_table("orders").append(rows)
    config = ConnectorConfig(type="iceberg", uri=f"s3://{BUCKET}/warehouse", options=s3.options())
    source = S3IcebergConnector("lake", config)
    assert [p.name for p in source.discover()] == ["orders"]
    product = SourceObject(table="orders")
    version = source.open_version("orders", product, source.schema(product), None)
    ctx = SessionContext()
    version.register(ctx, "product")
    with s3.recording() as requests:
        got = ctx.sql("SELECT id FROM product WHERE region = 'us' ORDER BY id").to_arrow_table().to_pylist()
    assert got == [{"id": 2}, {"id": 4}]
    read_keys = objects_read(requests, BUCKET)
    assert read_keys and all(key.startswith("warehouse/orders/data/region=us/") for key in read_keys), read_keys
    assert source.estimate_rows(product) == 4
    catalog.load_table("orders").append(orders([5], "us"))
    assert source.stamp("orders", product) != version.stamp


def test_s3_errors_name_the_table_never_the_secret(s3: S3Server) -> None:
    config = ConnectorConfig(type="iceberg", uri=f"s3://{BUCKET}/nothing", options=s3.options())
    with pytest.raises(SourceError) as raised:
        S3IcebergConnector("lake", config).schema(SourceObject(table="orders"))
    assert "no Iceberg table at s3://icehouse/nothing/orders" in str(raised.value)
    assert SECRET_ACCESS_KEY not in str(raised.value)


def test_float_filters_answer_as_datafusion_does(tmp_path: Path) -> None:
    """NaN above every number and -0.0 below 0.0: DataFusion's order, which pyarrow's filters do not follow."""
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "f": pa.array([float("nan"), 0.5, 2.0, -0.0, 0.0]),
            "g": pa.array([float("nan"), 1, 2, 3, 4], pa.float32()),
        }
    )
    create(tmp_path, "floats", table)
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
    source = S3IcebergConnector("lake", ConnectorConfig(type="iceberg", uri="s3://nowhere/tables", options=options))
    product = SourceObject(table="orders")
    with pytest.raises(SourceError, match=rf"the endpoint cannot be reached \({endpoint}\)") as first:
        source.stamp("orders", product)
    assert "data product 'lake.orders'" in str(first.value) and "x" * 40 not in str(first.value)
    with pytest.raises(SourceError, match=r"\(retried within 30 s\)"):
        source.stamp("orders", product)


def test_a_table_in_s3_through_the_gateway(s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = s3_catalog(s3)
    table = catalog.create_table("events", orders([1]).schema)
    table.append(orders([1, 2, 3], ["eu", "us", "eu"]))
    monkeypatch.setenv("TEST_S3_KEY", ACCESS_KEY_ID)
    monkeypatch.setenv("TEST_S3_SECRET", SECRET_ACCESS_KEY)
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: lake\n    connector:\n      type: iceberg\n"
        f"      uri: s3://{BUCKET}/warehouse\n      endpoint: {s3.endpoint}\n      allow_http: true\n"
        "      access_key_id: ${TEST_S3_KEY}\n      secret_access_key: ${TEST_S3_SECRET}\n"
        "    products:\n      - {name: events, source: events}\n"
    )
    with serve_in_process(tmp_path / "mesh.yaml") as uri:
        got = query(uri, "SELECT id FROM lake.events WHERE region = 'eu' ORDER BY id")
        assert got.column("id").to_pylist() == [1, 3]
        catalog.load_table("events").append(orders([4]))
        got = query(uri, "SELECT id FROM lake.events WHERE region = 'eu' ORDER BY id")
        assert got.column("id").to_pylist() == [1, 3, 4]


def test_types_come_from_the_table_schema(tmp_path: Path) -> None:
    rows = pa.table(
        {
            "t": pa.array([3_600_000_000, None], pa.time64("us")),
            "code": pa.array([b"abcd", None], pa.binary(4)),
            "tags": pa.array([["x", None], []], pa.list_(pa.string())),
            "attrs": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
            "point": pa.array([{"x": 1.5, "y": None}, None], pa.struct([("x", pa.float64()), ("y", pa.float64())])),
            "tz": pa.array([0, None], pa.timestamp("us", tz="UTC")),
            "d": pa.array([None, None], pa.decimal128(20, 4)),
        }
    )
    create(tmp_path, "typed", rows)
    schema = connector(tmp_path).schema(SourceObject(table="typed"))
    assert [(f.name, f.type) for f in schema] == [
        ("t", pa.time64("us")),
        ("code", pa.binary(4)),
        ("tags", pa.list_(pa.string())),
        ("attrs", pa.map_(pa.string(), pa.int64())),
        ("point", pa.struct([("x", pa.float64()), ("y", pa.float64())])),
        ("tz", pa.timestamp("us", tz="UTC")),
        ("d", pa.decimal128(20, 4)),
    ]
    got = read(connector(tmp_path), "typed", "SELECT t, code, tags, attrs, point FROM product ORDER BY t")
    assert got[0]["code"] == b"abcd" and got[0]["tags"] == ["x", None] and got[0]["attrs"] == [("k", 1)]
    assert got[0]["point"] == {"x": 1.5, "y": None} and got[1] == {
        "t": None,
        "code": None,
        "tags": [],
        "attrs": None,
        "point": None,
    }


def _append_file(table: Table, **fields: Any) -> None:
    """Commit a data or delete file by hand, as another writer (Spark, Flink) could have."""
    added = DataFile.from_args(partition=Record(), record_count=1, file_size_in_bytes=100, **fields)
    added.spec_id = 0
    with table.transaction() as transaction, transaction.update_snapshot().fast_append() as append:
        append.append_data_file(added)


def test_equality_deletes_and_orc_files_are_refused(tmp_path: Path) -> None:
    deleting = create(tmp_path, "deleting", orders([1, 2]))
    _append_file(
        deleting,
        content=DataFileContent.EQUALITY_DELETES,
        file_path=(tmp_path / "deleting" / "data" / "eq.parquet").as_uri(),
        file_format=FileFormat.PARQUET,
        equality_ids=[1],
    )
    with pytest.raises(SourceError, match=r"not supported: its snapshot has equality delete files"):
        connector(tmp_path).schema(SourceObject(table="deleting"))
    mixed = create(tmp_path, "mixed", orders([1, 2]))
    _append_file(
        mixed,
        content=DataFileContent.DATA,
        file_path=(tmp_path / "mixed" / "data" / "part.orc").as_uri(),
        file_format=FileFormat.ORC,
    )
    with pytest.raises(SourceError, match=r"not supported: it has ORC data files \(Parquet only\)"):
        connector(tmp_path).schema(SourceObject(table="mixed"))
