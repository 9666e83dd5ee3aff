"""Iceberg tables through an AWS Glue catalog (connectors/iceberg.py, ``catalog: {type: glue}``).

moto's server (tests/support/s3.py, one for the module) answers Glue and S3 at one endpoint;
pyiceberg's own GlueCatalog writes the tables (tests/support/iceberg.py). Queries go through a
gateway and the ADBC Flight SQL driver; the conformance suite runs against a catalog table.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
import yaml

from connectors.base import SourceObject
from connectors.iceberg import IcebergConnector, S3IcebergConnector
from connectors.registry import open_connector
from gateway.config import load_config
from gateway.errors import ConfigError, SourceError
from meshcore.config import ConnectorConfig
from tests.conformance import data
from tests.connectors import test_conformance as conformance
from tests.connectors.conftest import Loaded
from tests.support.gateway import query, serve_in_process
from tests.support.iceberg import glue_catalog, warehouse_of
from tests.support.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, s3_server

if TYPE_CHECKING:
    from pyiceberg.catalog.glue import GlueCatalog

BUCKET = "glue-lake"
WAREHOUSE = f"s3://{BUCKET}/lake"
"""The ``lake`` domain's connector uri: every table it reads must lie under it."""
FINANCE = f"s3://{BUCKET}/finance"
"""Another domain's tables, registered in the same catalog."""


@pytest.fixture(scope="module")
def moto() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client.create_bucket(Bucket=BUCKET)
        catalog = glue_catalog(server.endpoint, WAREHOUSE)
        catalog.create_namespace("sales")
        catalog.create_namespace("finance", {"location": FINANCE})
        yield server


@pytest.fixture(scope="module")
def catalog(moto: S3Server) -> GlueCatalog:
    return glue_catalog(moto.endpoint, WAREHOUSE)


def orders(ids: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "amount": pa.array([i * 10 for i in ids], pa.int32())})


def settings(moto: S3Server, glue_endpoint: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``lake`` domain's connector settings: S3 keys, and the Glue catalog at the moto server."""
    return {
        "uri": WAREHOUSE,
        **moto.options(),
        "catalog": {"type": "glue", "glue.endpoint": glue_endpoint or moto.endpoint},
        **extra,
    }


def connector(moto: S3Server, **extra: Any) -> S3IcebergConnector:
    return S3IcebergConnector("lake", ConnectorConfig(type="iceberg", uri=WAREHOUSE, options=settings(moto, **extra)))


def mesh(folder: Path, domains: list[dict[str, Any]]) -> Path:
    (folder / "mesh.yaml").write_text(yaml.safe_dump({"domains": domains}, sort_keys=False))
    return folder / "mesh.yaml"


def lake(moto: S3Server, products: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The ``lake`` domain serving ``products`` (none: the tables it discovers)."""
    domain = {"name": "lake", "connector": {"type": "iceberg", **settings(moto, **extra)}}
    return {**domain, "products": products} if products else domain


def ids(uri: str, product: str) -> list[int]:
    return query(uri, f"SELECT id FROM lake.{product} ORDER BY id").column("id").to_pylist()


def test_a_catalog_table_through_the_gateway(moto: S3Server, catalog: GlueCatalog, tmp_path: Path) -> None:
    """The catalog's current table at every query; a pinned snapshot (id or time) stays where it is."""
    table = catalog.create_table("sales.orders", orders([1]).schema)
    table.append(orders([1, 2, 3]))
    first = catalog.load_table("sales.orders").current_snapshot()
    assert first is not None
    time.sleep(0.01)  # the next snapshot's timestamp (milliseconds) is later than the pinned one's
    catalog.load_table("sales.orders").append(orders([4]))
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(first.timestamp_ms // 1000))
    at += f".{first.timestamp_ms % 1000:03d}Z"
    products = [
        {"name": "orders", "source": "sales.orders"},
        {"name": "short", "source": "orders"},  # a table of the connector's namespace
        {"name": "pinned", "source": "sales.orders", "as_of": first.snapshot_id},
        {"name": "then", "source": "sales.orders", "as_of": at},
    ]
    with serve_in_process(mesh(tmp_path, [lake(moto, products, namespace="sales")])) as uri:
        assert ids(uri, "orders") == ids(uri, "short") == [1, 2, 3, 4]
        assert ids(uri, "pinned") == ids(uri, "then") == [1, 2, 3]
        catalog.load_table("sales.orders").append(orders([5]))  # a commit while the gateway runs
        assert ids(uri, "orders") == [1, 2, 3, 4, 5]
        assert ids(uri, "pinned") == [1, 2, 3]
        got = query(uri, "SELECT sum(amount) AS total FROM lake.orders WHERE id > 3")
        assert got.column("total").to_pylist() == [90]


def test_a_version_check_is_one_catalog_call(moto: S3Server, catalog: GlueCatalog) -> None:
    """Glue's GetTable names the current metadata file: nothing is read from S3 to learn the version."""
    catalog.create_table("sales.checked", orders([1]).schema).append(orders([1]))
    source = connector(moto)
    product = SourceObject(table="sales.checked")
    version = source.open_version("checked", product, source.schema(product), None)
    with moto.recording() as requests:
        assert source.stamp("checked", product) == version.stamp
    assert [(r["method"], r["headers"].get("X-Amz-Target")) for r in requests] == [("POST", "AWSGlue.GetTable")]
    catalog.load_table("sales.checked").append(orders([2]))
    assert source.stamp("checked", product) != version.stamp


def test_tables_outside_the_connectors_location_are_refused(
    moto: S3Server, catalog: GlueCatalog, tmp_path: Path
) -> None:
    """A product cannot reach another domain's table through the shared catalog, however it is registered."""
    salaries = catalog.create_table("finance.salaries", orders([1]).schema)  # under FINANCE, the namespace's location
    salaries.append(orders([666]))
    catalog.create_table("sales.moved", orders([1]).schema, location=f"{FINANCE}/moved").append(orders([1]))
    # Another domain's metadata copied under the connector's uri and registered in the catalog.
    metadata = catalog.load_table("finance.salaries").metadata_location
    copied_key = "lake/sales.db/stolen/metadata/00000-copied.metadata.json"
    moto.client.copy_object(Bucket=BUCKET, Key=copied_key, CopySource=f"{BUCKET}/{metadata.split('/', 3)[3]}")
    catalog.register_table("sales.stolen", f"s3://{BUCKET}/{copied_key}")
    # The same, its location rewritten to lie inside: its manifests still name the other domain's files.
    document = json.loads(moto.client.get_object(Bucket=BUCKET, Key=copied_key)["Body"].read())
    document["location"] = f"{WAREHOUSE}/sales.db/relocated"
    relocated_key = "lake/sales.db/relocated/metadata/00000-rewritten.metadata.json"
    moto.put(BUCKET, relocated_key, json.dumps(document).encode())
    catalog.register_table("sales.relocated", f"s3://{BUCKET}/{relocated_key}")
    outside = r", outside s3://glue-lake/lake: a domain reads only the tables under its connector's path or uri"
    cases = {
        "finance.salaries": r"the catalog's metadata file for finance.salaries is s3://glue-lake/finance/salaries/"
        + r"metadata/[^ ]+\.metadata\.json"
        + outside,
        "sales.moved": r"the catalog's metadata file for sales.moved is s3://glue-lake/finance/moved/metadata/[^ ]+"
        + outside,
        "sales.stolen": r"the catalog's table sales.stolen lies at s3://glue-lake/finance/salaries" + outside,
        "sales.relocated": r"the table's metadata names a manifest list outside its folder"
        r" s3://glue-lake/lake/sales.db/relocated \(s3://glue-lake/finance/salaries/metadata/",
    }
    source = connector(moto)
    for table, match in cases.items():
        with pytest.raises(SourceError, match=r"^\[lake/iceberg:s3://glue-lake/lake\] " + match) as raised:
            source.schema(SourceObject(table=table))
        assert SECRET_ACCESS_KEY not in str(raised.value)
    products = [{"name": "salaries", "source": "finance.salaries"}]  # through a gateway: the domain is offline
    with (
        serve_in_process(mesh(tmp_path, [lake(moto, products)])) as uri,
        pytest.raises(Exception, match=r"data product 'lake.salaries': .* is s3://glue-lake/finance/.*" + outside),
    ):
        query(uri, "SELECT * FROM lake.salaries")


def test_missing_and_foreign_tables_are_named(moto: S3Server, catalog: GlueCatalog, tmp_path: Path) -> None:
    catalog.glue.create_table(
        DatabaseName="sales", TableInput={"Name": "csv_table", "Parameters": {"classification": "csv"}}
    )
    cases = {
        "sales.nothing": r"no Iceberg table sales.nothing in the Glue catalog",
        "nowhere.orders": r"no Iceberg table nowhere.orders in the Glue catalog",
        "sales.csv_table": r"sales.csv_table in the Glue catalog is not an Iceberg table"
        r" \(table_type None, no metadata_location\)",
        "orders": r"source 'orders' must name a catalog table as namespace.table",  # no namespace setting
    }
    source = connector(moto)
    for table, match in cases.items():
        with pytest.raises(SourceError, match=r"^\[lake/iceberg:s3://glue-lake/lake\] " + match):
            source.schema(SourceObject(table=table))
    assert source.estimate_rows(SourceObject(table="sales.nothing")) is None
    with moto.authenticating(), pytest.raises(SourceError) as refused:  # keys the catalog does not know
        connector(moto).schema(SourceObject(table="sales.nothing"))
    assert str(refused.value).endswith(
        "cannot ask the Glue catalog for sales.nothing: InvalidClientTokenId: The security token included in the"
        " request is invalid."
    )
    assert SECRET_ACCESS_KEY not in str(refused.value)
    with (
        serve_in_process(mesh(tmp_path, [lake(moto, [{"name": "gone", "source": "sales.nothing"}])])) as uri,
        pytest.raises(Exception, match=r"\[lake/iceberg:s3://glue-lake/lake\] data product 'lake.gone': no Iceberg"),
    ):
        query(uri, "SELECT * FROM lake.gone")


def test_an_unreachable_catalog_takes_only_its_domain_offline(
    moto: S3Server, catalog: GlueCatalog, tmp_path: Path
) -> None:
    catalog.create_table("sales.kept", orders([1]).schema).append(orders([7]))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    offline = lake(moto, [{"name": "orders", "source": "sales.kept"}], glue_endpoint=nowhere)
    fine = {**lake(moto, [{"name": "kept", "source": "sales.kept"}]), "name": "shop"}
    started = time.monotonic()
    with serve_in_process(mesh(tmp_path, [offline, fine])) as uri:
        assert query(uri, "SELECT id FROM shop.kept").column("id").to_pylist() == [7]
        with pytest.raises(
            Exception, match=r"\[lake/iceberg:s3://glue-lake/lake\] data product 'lake.orders'"
        ) as raised:
            query(uri, "SELECT id FROM lake.orders")
        assert raised.match(
            rf"cannot ask the Glue catalog for sales.kept: the endpoint cannot be reached \({nowhere}\)"
        )
        assert SECRET_ACCESS_KEY not in str(raised.value) and ACCESS_KEY_ID not in str(raised.value)
        assert query(uri, "SELECT id FROM shop.kept").column("id").to_pylist() == [7]
    # Every query checks every table's version: a failed check is answered from memory for 30 s, for
    # tables in S3 and local ones alike (the catalog's own keys here: never shown either).
    keys = {
        "glue.access-key-id": ACCESS_KEY_ID,
        "glue.secret-access-key": SECRET_ACCESS_KEY,
        "glue.region": "eu-west-1",
    }
    local = {"catalog": {"type": "glue", "glue.endpoint": nowhere, **keys}}
    for source in (
        connector(moto, glue_endpoint=nowhere),
        IcebergConnector("lake", ConnectorConfig(type="iceberg", path=tmp_path, options=local)),
    ):
        product = SourceObject(table="sales.kept")
        with pytest.raises(SourceError, match=rf"cannot be reached \({nowhere}\)$") as raised:
            source.stamp("orders", product)
        assert SECRET_ACCESS_KEY not in str(raised.value)
        with pytest.raises(SourceError, match=rf"cannot be reached \({nowhere}\) \(retried within 30 s\)$"):
            source.stamp("orders", product)
    assert time.monotonic() - started < 20  # bounded: timeouts, one retry, then the answer from memory


def test_discovery_lists_the_catalogs_tables_under_the_connector(moto: S3Server, catalog: GlueCatalog) -> None:
    catalog.create_namespace("found")
    for name in ("alpha", "beta"):
        catalog.create_table(f"found.{name}", orders([1]).schema)
    catalog.create_table("found.away", orders([1]).schema, location=f"{FINANCE}/away")  # another domain's
    options = settings(moto, namespace="found")
    in_namespace = S3IcebergConnector("lake", ConnectorConfig(type="iceberg", uri=WAREHOUSE, options=options))
    found = {p.name: p.source.table for p in in_namespace.discover()}
    assert found == {"alpha": "found.alpha", "beta": "found.beta"}
    everywhere = S3IcebergConnector("lake", ConnectorConfig(type="iceberg", uri=WAREHOUSE, options=settings(moto)))
    names = {p.name: p.source.table for p in everywhere.discover()}
    assert names["found_alpha"] == "found.alpha" and names["found_beta"] == "found.beta"
    assert not any(table.startswith("finance.") or table == "found.away" for table in names.values()), names


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"catalog": {"type": "rest", "uri": "http://127.0.0.1:1"}}, r"catalog.type must be glue .* got 'rest'"),
        ({"catalog": "glue"}, r"catalog must be a mapping"),
        ({"catalog": {"type": "glue", "glue.regoin": "x"}}, r"catalog.glue.regoin: unknown property"),
        ({"catalog": {"type": "glue", "py-catalog-impl": "x.Y"}}, r"catalog.py-catalog-impl: unknown property"),
        (
            {"catalog": {"type": "glue", "glue.secret-access-key": "${SECRET}", "glue.access-key-id": "k"}},
            r"catalog.glue.secret-access-key: references are not expanded inside catalog",
        ),
        (
            {"catalog": {"type": "glue", "glue.access-key-id": "k"}},
            r"catalog: give both glue.access-key-id and glue.secret",
        ),
        ({"catalog": {"type": "glue", "glue.max-retries": 99}}, r"catalog.glue.max-retries must be a whole number"),
        ({"namespace": "sales"}, r"namespace applies to tables of a catalog"),
        ({"catalog": {"type": "glue"}, "namespace": "a.b"}, r"namespace must be one catalog namespace"),
    ],
    ids=["rest", "not_a_mapping", "typo", "custom_class", "reference", "half_keys", "retries", "no_catalog", "dotted"],
)
def test_catalog_settings_are_checked(tmp_path: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=r"domain 'lake': connector option " + match):
        IcebergConnector("lake", ConnectorConfig(type="iceberg", path=tmp_path, options=options))


def test_only_an_admin_sets_the_catalog(tmp_path: Path) -> None:
    """The catalog says where tables are found and with which keys: a domain owner may not set or change it."""
    from gateway.api import CallerContext
    from gateway.engine import Engine
    from gateway.errors import PermissionDeniedError
    from gateway.reload import Reloader

    platform = (
        "policies:\n  roles:\n    admin: [root]\n  grants:\n    - {role: admin, on: '*'}\n"
        "self_serve:\n  domains:\n    lake: {owner: lake-team, paths: [lake]}\n"
    )
    domain = (
        "domains:\n  - name: lake\n    owner: lake-team\n    connector: {type: iceberg, path: lake}\n"
        "    products:\n      - {name: orders, source: orders}\n"
    )
    warehouse_of(tmp_path / "lake").create_table("orders", orders([1]).schema)
    (tmp_path / "platform.yaml").write_text(platform)
    (tmp_path / "lake.yaml").write_text(domain)
    engine = Engine.from_config(load_config(tmp_path))
    try:
        owner = CallerContext(user="olga", attributes={"groups": "lake-team"})
        changed = domain.replace("path: lake}", "path: lake, catalog: {type: glue, glue.endpoint: 'http://x:1'}}")
        with pytest.raises(PermissionDeniedError, match=r"may not set connector option catalog of domain 'lake'"):
            Reloader(engine, tmp_path).apply_text(owner, changed)
        assert (tmp_path / "lake.yaml").read_text() == domain
    finally:
        engine.catalog.close()


# ----------------------------------------------------------------------- the conformance suite


@pytest.fixture(scope="module")
def loaded(moto: S3Server, catalog: GlueCatalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """The conformance dataset as a Glue catalog table, its connector made from a mesh file as the gateway makes it."""
    expected = data.expected("iceberg")
    catalog.create_namespace(data.TABLE)
    table = catalog.create_table(f"{data.TABLE}.{data.TABLE}", expected.schema)
    table.append(expected.slice(0, 20))
    catalog.load_table(f"{data.TABLE}.{data.TABLE}").append(expected.slice(20))
    folder = tmp_path_factory.mktemp("glue")
    config = load_config(mesh(folder, [lake(moto, [], namespace=data.TABLE)])).domains[0].connector
    connector = open_connector("conformance", config)
    assert isinstance(connector, S3IcebergConnector) and connector.catalog is not None
    yield Loaded("iceberg", connector, SourceObject(table=f"{data.TABLE}.{data.TABLE}"), data.TABLE, expected)
    connector.close()


# The shared suite (tests/connectors/test_conformance.py), run here with the ``loaded`` fixture above.
test_conformance_discover_names_the_product = conformance.test_discover_names_the_product
test_conformance_schema_is_exact = conformance.test_schema_is_exact
test_conformance_every_value_round_trips = conformance.test_every_value_round_trips
test_conformance_projection_and_predicate = conformance.test_projection_and_predicate_match_datafusion
test_conformance_limit = conformance.test_limit
test_conformance_no_columns_still_counts_rows = conformance.test_no_columns_still_counts_rows
test_conformance_ilike = conformance.test_ilike_matches_datafusion_where_declared
