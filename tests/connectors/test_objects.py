"""Parquet and CSV products in S3, against a real S3 server (moto's server mode, loopback, a free port).

Answers are compared with the same files read locally (connectors/files.py); pruning is proven
by the objects the server was asked for.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from datafusion import SessionConfig, SessionContext

from connectors import objects
from connectors.base import SourceObject
from connectors.files import CsvConnector, ParquetConnector
from connectors.objects import ObjectCsvConnector, ObjectParquetConnector, ObjectSource
from connectors.registry import open_connector
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, SourceError, SourceUnavailableError
from tests.support.gateway import connect, query, serve_in_process
from tests.support.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, objects_read, s3_server

BUCKET = "lake"
ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int32()),
        "customer": ["ada", "bob", None, "ada"],
        "amount": pa.array([Decimal("10.50"), Decimal("3.25"), Decimal("7.00"), None], pa.decimal128(9, 2)),
    }
)
MONTHS = {(2023, 12): [1, 2], (2024, 1): [3, 4, 5], (2024, 2): [6]}
CSV = b"id,city\n1,Paris\n2,\n3,Oslo\n"


def events(year: int, month: int) -> pa.Table:
    ids = MONTHS[(year, month)]
    return pa.table({"id": pa.array(ids, pa.int64()), "kind": [f"k{i % 2}" for i in ids]})


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client.create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def local(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same objects as files: ``lake/shop/...`` in S3 is ``<local>/shop/...`` here."""
    root = tmp_path_factory.mktemp("lake")

    def put(key: str, table: pa.Table) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / key)
        s3.put_parquet(BUCKET, key, table)

    put("shop/orders.parquet", ORDERS)
    for year, month in MONTHS:
        put(f"shop/events/year={year}/month={month}/part-0.parquet", events(year, month))
    (root / "shop" / "cities.csv").write_bytes(CSV)
    s3.put(BUCKET, "shop/cities.csv", CSV)
    s3.put(BUCKET, "shop/readme.txt", b"not data")
    return root


def connector(s3: S3Server, uri: str, kind: str = "parquet", **options: object) -> ObjectSource:
    found = open_connector("lake", ConnectorConfig(type=kind, uri=uri, options={**s3.options(), **options}))
    assert isinstance(found, ObjectSource)
    return found


def registered(source: ObjectSource | ParquetConnector | CsvConnector, table: str) -> SessionContext:
    ctx = SessionContext(SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false"))
    source.register(ctx, "product", SourceObject(table=table))
    return ctx


def read(source: ObjectSource | ParquetConnector | CsvConnector, table: str, sql: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = registered(source, table).sql(sql).to_arrow_table().to_pylist()
    return rows


def test_discovery_lists_the_bucket_like_a_folder(s3: S3Server, local: Path) -> None:
    parquet = connector(s3, f"s3://{BUCKET}/shop/")
    assert isinstance(parquet, ObjectParquetConnector)
    found = {p.name: p.source.table for p in parquet.discover()}
    assert found == {"orders": "orders.parquet", "events": "events"}
    assert {
        p.name: p.source.table
        for p in ParquetConnector("l", ConnectorConfig("parquet", path=local / "shop")).discover()
    } == found
    csv = connector(s3, f"s3://{BUCKET}/shop", kind="csv")
    assert isinstance(csv, ObjectCsvConnector)
    assert {p.name: p.source.table for p in csv.discover()} == {"cities": "cities.csv"}
    # a prefix of hive partitions is one product; a uri naming an object is that object
    assert [(p.name, p.source.table) for p in connector(s3, f"s3://{BUCKET}/shop/events").discover()] == [
        ("events", ".")
    ]
    assert [(p.name, p.source.table) for p in connector(s3, f"s3://{BUCKET}/shop/orders.parquet").discover()] == [
        ("orders", "orders.parquet")
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM product ORDER BY id",
        "SELECT customer, sum(amount) AS total FROM product WHERE id > 1 GROUP BY customer ORDER BY customer",
        "SELECT id FROM product WHERE customer IS NULL",
    ],
)
def test_parquet_answers_match_the_local_files(s3: S3Server, local: Path, sql: str) -> None:
    remote = connector(s3, f"s3://{BUCKET}/shop/")
    files = ParquetConnector("l", ConnectorConfig("parquet", path=local / "shop"))
    assert remote.schema(SourceObject(table="orders.parquet")) == files.schema(SourceObject(table="orders.parquet"))
    assert read(remote, "orders.parquet", sql) == read(files, "orders.parquet", sql) != []


def test_partitioned_prefix_answers_match_and_are_typed(s3: S3Server, local: Path) -> None:
    remote = connector(s3, f"s3://{BUCKET}/shop/")
    files = ParquetConnector("l", ConnectorConfig("parquet", path=local / "shop"))
    source = SourceObject(table="events")
    assert remote.schema(source) == files.schema(source)
    assert remote.schema(source).field("year").type == pa.int64()
    sql = "SELECT year, month, count(*) AS n, sum(id) AS s FROM product GROUP BY year, month ORDER BY year, month"
    assert read(remote, "events", sql) == read(files, "events", sql)
    assert len(read(remote, "events", sql)) == 3


def test_csv_answers_match_the_local_file(s3: S3Server, local: Path) -> None:
    remote = connector(s3, f"s3://{BUCKET}/shop/", kind="csv")
    files = CsvConnector("l", ConnectorConfig("csv", path=local / "shop"))
    source = SourceObject(table="cities.csv")
    assert remote.schema(source) == files.schema(source) == pa.schema([("id", pa.int64()), ("city", pa.string())])
    sql = "SELECT * FROM product ORDER BY id"
    assert read(remote, "cities.csv", sql) == read(files, "cities.csv", sql)
    assert remote.estimate_rows(source) == 3


def test_csv_partitions_and_uuid_columns_match_the_local_files(s3: S3Server, tmp_path: Path) -> None:
    for year in (2023, 2024):
        body = f"id,city\n{year},Paris\n{year + 1},\n".encode()
        (tmp_path / "trips" / f"year={year}").mkdir(parents=True)
        (tmp_path / "trips" / f"year={year}" / "part-0.csv").write_bytes(body)
        s3.put(BUCKET, f"more/trips/year={year}/part-0.csv", body)
    ids = pa.array([uuid.UUID(int=7).bytes, None], pa.uuid())
    keys = pa.table({"key": ids, "n": [1, 2]})
    pq.write_table(keys, tmp_path / "keys.parquet", store_schema=False)
    s3.put(BUCKET, "more/keys.parquet", (tmp_path / "keys.parquet").read_bytes())
    remote, files = (
        connector(s3, f"s3://{BUCKET}/more/", kind="csv"),
        CsvConnector("l", ConnectorConfig("csv", path=tmp_path)),
    )
    source = SourceObject(table="trips")
    assert remote.schema(source) == files.schema(source)
    sql = "SELECT * FROM product WHERE year = 2024 ORDER BY id"
    assert (
        read(remote, "trips", sql)
        == read(files, "trips", sql)
        == [
            {"id": 2024, "city": "Paris", "year": 2024},
            {"id": 2025, "city": None, "year": 2024},
        ]
    )
    remote_pq = connector(s3, f"s3://{BUCKET}/more/")
    files_pq = ParquetConnector("l", ConnectorConfig("parquet", path=tmp_path))
    source = SourceObject(table="keys.parquet")
    assert remote_pq.schema(source) == files_pq.schema(source) == pa.schema([("key", pa.string()), ("n", pa.int64())])
    sql = "SELECT * FROM product ORDER BY n"
    assert read(remote_pq, "keys.parquet", sql) == read(files_pq, "keys.parquet", sql)
    assert read(remote_pq, "keys.parquet", sql)[0]["key"] == str(uuid.UUID(int=7))


def test_partition_filters_read_only_matching_objects(s3: S3Server, local: Path) -> None:
    ctx = registered(connector(s3, f"s3://{BUCKET}/shop/"), "events")  # registering reads every footer, once
    with s3.recording() as requests:
        rows = ctx.sql("SELECT id FROM product WHERE year = 2024 AND month = 2").to_arrow_table().to_pylist()
    assert rows == [{"id": 6}]
    assert objects_read(requests, BUCKET) == {"shop/events/year=2024/month=2/part-0.parquet"}
    ctx = registered(connector(s3, f"s3://{BUCKET}/shop/"), "events")  # a fresh one: nothing cached
    with s3.recording() as requests:
        ctx.sql("SELECT id FROM product WHERE year = 2024").collect()
    assert objects_read(requests, BUCKET) == {
        "shop/events/year=2024/month=1/part-0.parquet",
        "shop/events/year=2024/month=2/part-0.parquet",
    }


def test_row_estimate_reads_footers_with_ranged_gets(s3: S3Server, local: Path) -> None:
    remote = connector(s3, f"s3://{BUCKET}/shop/")
    with s3.recording() as requests:
        rows = remote.read_row_estimate(SourceObject(table="events"))
    assert rows == sum(len(ids) for ids in MONTHS.values())
    gets = [r for r in requests if r["method"] == "GET" and "/shop/events/year" in r["url"]]
    assert gets and all(r["headers"].get("Range", "").startswith("bytes=") for r in gets)


def test_credentials_from_the_environment(s3: S3Server, local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    remote = open_connector("lake", ConnectorConfig(type="parquet", uri=f"s3://{BUCKET}/shop/"))
    assert isinstance(remote, ObjectSource)
    assert remote.s3.access_key_id == ACCESS_KEY_ID and remote.s3.endpoint == s3.endpoint
    assert read(remote, "orders.parquet", "SELECT count(*) AS n FROM product") == [{"n": 4}]


def test_a_missing_bucket_names_domain_and_bucket_never_the_secret(s3: S3Server) -> None:
    remote = connector(s3, "s3://no-such-bucket/shop/")
    with pytest.raises(SourceUnavailableError) as caught:
        remote.discover()
    message = str(caught.value)
    assert "lake" in message and "s3://no-such-bucket/shop/" in message and "bucket does not exist" in message
    assert SECRET_ACCESS_KEY not in message and ACCESS_KEY_ID not in message


def test_wrong_credentials_are_refused_cleanly(s3: S3Server, local: Path) -> None:
    remote = connector(
        s3, f"s3://{BUCKET}/shop/", access_key_id="AKIAWRONGWRONGWRONG1", secret_access_key="wrong/secret"
    )
    with s3.authenticating(), pytest.raises(SourceUnavailableError) as caught:
        remote.discover()
    message = str(caught.value)
    assert "access denied" in message and "s3://lake/shop/" in message
    assert "wrong/secret" not in message and "AKIAWRONGWRONGWRONG1" not in message


def test_an_endpoint_that_never_answers_fails_in_seconds_then_at_once() -> None:
    """A hung store must not hold up the mesh: every query stamps every file product."""
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        options = {
            "endpoint": f"http://127.0.0.1:{silent.getsockname()[1]}",
            **{"allow_http": True, "access_key_id": "k", "secret_access_key": "s"},
        }
        remote = open_connector("lake", ConnectorConfig(type="parquet", uri="s3://lake/shop/", options=options))
        source = SourceObject(table="events")
        started = time.monotonic()
        with pytest.raises(
            SourceUnavailableError, match=r"\[lake/parquet:s3://lake/shop/\].*endpoint cannot be reached"
        ):
            remote.stamp("events", source)
        first = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError, match=r"lake\.events.*cannot be reached.*retried within 30 s"):
            remote.stamp("events", source)
        again = time.monotonic() - started
    assert 5 <= first < 15  # one request timeout (10 s) at most, then the retry budget is spent
    assert again < 0.1


def test_a_refused_connection_names_the_endpoint() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = {
        "endpoint": f"http://127.0.0.1:{port}",
        "allow_http": True,
        "access_key_id": "k",
        "secret_access_key": "s",
    }
    remote = open_connector("lake", ConnectorConfig(type="parquet", uri="s3://lake/shop/", options=options))
    with pytest.raises(SourceUnavailableError, match=rf"endpoint cannot be reached \(http://127.0.0.1:{port}\)"):
        remote.discover()


def test_settings_are_checked(s3: S3Server) -> None:
    with pytest.raises(ConfigError, match="allow_http"):
        open_connector("lake", ConnectorConfig(type="parquet", uri="s3://lake/x/", options={"endpoint": "http://h:1"}))
    with pytest.raises(ConfigError, match="both access_key_id and secret_access_key"):
        open_connector("lake", ConnectorConfig(type="parquet", uri="s3://lake/x/", options={"access_key_id": "k"}))
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        open_connector("lake", ConnectorConfig(type="csv", uri="s3://", options={}))


def test_a_bucket_is_read_through_one_set_of_settings(s3: S3Server) -> None:
    def open_at(domain: str, prefix: str, **options: object) -> ObjectSource:
        config = ConnectorConfig(type="parquet", uri=f"s3://shared/{prefix}", options={**s3.options(), **options})
        found = open_connector(domain, config)
        assert isinstance(found, ObjectSource)
        return found

    first = open_at("lake", "shop/")
    assert open_at("sales", "sales/").s3.bucket == first.s3.bucket  # the same settings: fine
    with pytest.raises(ConfigError, match="bucket 'shared' is read by domain 'lake' with another endpoint") as caught:
        open_at("sales", "sales/", secret_access_key="another/secret")
    assert "another/secret" not in str(caught.value)
    assert open_at("lake", "shop/", secret_access_key="another/secret").domain == "lake"  # a domain's reload


def write_mesh(folder: Path, body: str) -> Path:
    path = folder / "mesh.yaml"
    path.write_text(body)
    return path


def s3_domain(s3: S3Server, name: str = "lake", uri: str = f"s3://{BUCKET}/shop/") -> str:
    return f"""
  - name: {name}
    connector:
      type: parquet
      uri: {uri}
      endpoint: {s3.endpoint}
      allow_http: true
      access_key_id: ${{TEST_S3_KEY}}
      secret_access_key: ${{TEST_S3_SECRET}}
"""


def test_config_refuses_mixed_and_wrong_keys(tmp_path: Path) -> None:
    cases = {
        "uri: s3://b/x\n      path: .": "give 'path' (local files) or 'uri' (s3://...), not both",
        "uri: /data/x": "is not an s3:// uri",
        "path: .\n      endpoint: http://h:1": "applies to object storage only",
    }
    for settings, expected in cases.items():
        mesh = write_mesh(tmp_path, f"domains:\n  - name: d\n    connector:\n      type: parquet\n      {settings}\n")
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            load_config(mesh)


def test_versions_follow_the_objects(
    s3: S3Server, local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_S3_KEY", ACCESS_KEY_ID)
    monkeypatch.setenv("TEST_S3_SECRET", SECRET_ACCESS_KEY)
    for year, month in MONTHS:
        s3.put_parquet(BUCKET, f"versions/year={year}/month={month}/part-0.parquet", events(year, month))
    mesh = write_mesh(tmp_path, "domains:" + s3_domain(s3, uri=f"s3://{BUCKET}/versions"))
    engine = Engine.from_config(load_config(mesh))
    try:
        count = "SELECT count(*) AS n FROM lake.versions"
        assert engine.run(count).read_all().to_pylist() == [{"n": 6}]
        s3.put_parquet(BUCKET, "versions/year=2024/month=3/part-0.parquet", events(2024, 2))
        assert engine.run(count).read_all().to_pylist() == [{"n": 7}]  # a new object: listed again
        s3.put_parquet(BUCKET, "versions/year=2024/month=3/part-0.parquet", pa.table({"id": ["text"]}))
        with pytest.raises(SourceError, match=r"lake\.versions.*year=2024/month=3/part-0\.parquet.*changed type"):
            engine.run(count).read_all()
        s3.put_parquet(BUCKET, "versions/year=2024/month=3/part-0.parquet", events(2024, 1))
        assert engine.run(count).read_all().to_pylist() == [{"n": 9}]
        s3.client.delete_object(Bucket=BUCKET, Key="versions/year=2024/month=3/part-0.parquet")
        with pytest.raises(
            SourceUnavailableError, match=r"lake\.versions.*month=3/part-0\.parquet of the product is missing"
        ):
            engine.run(count).read_all()
    finally:
        engine.close()


@pytest.fixture(scope="module")
def customers(postgres_uri: str, pg_schema: str) -> str:
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.customers (name text PRIMARY KEY, country text)")
        cursor.execute(f"INSERT INTO {pg_schema}.customers VALUES ('ada', 'uk'), ('bob', 'fr')")
        connection.commit()
    return pg_schema


def test_through_flight_sql_joined_with_postgres(
    s3: S3Server,
    local: Path,
    postgres_uri: str,
    customers: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_S3_KEY", ACCESS_KEY_ID)
    monkeypatch.setenv("TEST_S3_SECRET", SECRET_ACCESS_KEY)
    mesh = write_mesh(
        tmp_path,
        "domains:"
        + s3_domain(s3)
        + s3_domain(s3, name="gone", uri="s3://no-such-bucket/x/")
        + f"""
  - name: crm
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - name: customers
        source: {customers}.customers
""",
    )
    with serve_in_process(mesh) as uri:
        joined = query(
            uri,
            "SELECT c.country, sum(o.amount) AS total FROM lake.orders o JOIN crm.customers c ON o.customer = c.name"
            " GROUP BY c.country ORDER BY c.country",
        )
        assert joined.to_pylist() == [
            {"country": "fr", "total": Decimal("3.25")},
            {"country": "uk", "total": Decimal("10.50")},
        ]
        events_2024 = query(uri, "SELECT count(*) AS n FROM lake.events WHERE year = 2024")
        assert events_2024.to_pylist() == [{"n": 4}]
        plans = query(uri, "EXPLAIN SELECT * FROM lake.events WHERE year = 2024")
        shown = " ".join(str(v) for v in plans.to_pylist())
        assert "year = Int64(2024)" in shown
        everything = " ".join(
            str(query(uri, sql).to_pylist())
            for sql in ("SELECT * FROM system.domains", "SELECT * FROM system.products", "SHOW TABLES")
        )
        for text in (shown, everything):
            assert SECRET_ACCESS_KEY not in text and ACCESS_KEY_ID not in text
        with pytest.raises(Exception, match=r"gone") as caught:
            query(uri, "SELECT * FROM gone.anything")
        assert SECRET_ACCESS_KEY not in str(caught.value)
    assert "domain 'gone' is offline" in caplog.text and "the bucket does not exist" in caplog.text
    assert SECRET_ACCESS_KEY not in caplog.text and ACCESS_KEY_ID not in caplog.text


def test_an_object_replaced_mid_query_never_mixes_versions(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query reading it fails (or, had it read everything first, returns the old rows only); the next reads the new."""
    monkeypatch.setenv("TEST_S3_KEY", ACCESS_KEY_ID)
    monkeypatch.setenv("TEST_S3_SECRET", SECRET_ACCESS_KEY)

    def numbers(start: int, rows: int) -> pa.Table:
        return pa.table({"a": pa.array(range(start, start + rows), pa.int64())})

    mesh = write_mesh(tmp_path, "domains:" + s3_domain(s3, uri=f"s3://{BUCKET}/midway/"))
    for replacement in (numbers(0, 300_000), numbers(10_000_000, 2_000_000)):  # shorter; as long, other values
        s3.put_parquet(BUCKET, "midway/big.parquet", numbers(0, 2_000_000))
        with serve_in_process(mesh) as uri:
            with connect(uri) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT a FROM lake.big")
                reader = cursor.fetch_record_batch()
                batches = [reader.read_next_batch()]
                s3.put_parquet(BUCKET, "midway/big.parquet", replacement)
                try:
                    batches.extend(reader)
                except Exception as error:  # the expected outcome (measured): the reader's bytes do not decode
                    assert "Parquet" in str(error) or "S3" in str(error)
                else:
                    values = pa.Table.from_batches(batches).column("a")
                    assert (len(values), pc.max(values).as_py()) == (2_000_000, 1_999_999)
            after = query(uri, "SELECT count(*) AS n, min(a) AS lo FROM lake.big").to_pylist()
            assert after == [{"n": replacement.num_rows, "lo": replacement.column("a")[0].as_py()}]


def test_a_port_holding_403_is_not_taken_for_access_denied() -> None:
    """The reason is read from the store's words: a port like 40312 in the endpoint is not a 403 status."""
    timed_out = Exception(
        "Generic S3 error: error sending request for url (http://127.0.0.1:40312/lake): operation timed out"
    )
    assert objects._store_reason(timed_out) == "the endpoint cannot be reached"
    denied = Exception("Generic S3 error: Client error with status 403 Forbidden: <Code>AccessDenied</Code>")
    assert objects._store_reason(denied).startswith("access denied")
