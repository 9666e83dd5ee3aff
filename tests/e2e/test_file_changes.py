"""File products whose files change under a running gateway (connectors/files.py, gateway/engine.py).

Each case changes a real file of a Parquet or CSV product while an in-process gateway serves it,
then asks through the engine and through the ADBC Flight SQL driver. A file that cannot be served
as the product registered it (a column missing or of another type, emptied, cut short, garbage,
deleted, a part file of a folder product gone) is a clean error naming the domain, the product and
the file, never NULLs or missing rows; a compatible new version is served whole; and once the file
is restored the next query is answered again. Scans under way finish on the version they started
on, or fail cleanly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.errors import MeshgateError
from gateway.flightsql import FlightSqlServer
from tests.support.errors import assert_clean
from tests.support.gateway import serving

FORMATS = ("parquet", "csv")
DOMAINS = {"parquet": "logi", "csv": "ref"}
ROWS = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["alpha", "beta", "gamma"]})
MESH = """domains:
  - name: logi
    connector: {type: parquet, path: parquet}
  - name: ref
    connector: {type: csv, path: csv}
"""


def write(path: Path, table: pa.Table, suffix: str | None = None) -> None:
    if (suffix or path.suffix) == ".parquet":
        pq.write_table(table, path, row_group_size=4096)
    else:
        pacsv.write_csv(table, path)


def publish(path: Path, table: pa.Table) -> None:
    """Write a new version the safe way: a file of its own, renamed over the old one."""
    staged = path.with_name(f".{path.name}.tmp")
    write(staged, table, path.suffix)
    os.replace(staged, path)


@dataclass
class Mesh:
    root: Path
    engine: Engine
    uri: str

    def path(self, fmt: str, product: str) -> Path:
        """``orders``: a one-file product; ``events``: a folder product (its part-1 file)."""
        return self.root / fmt / (f"orders.{fmt}" if product == "orders" else f"events/part-1.{fmt}")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    for fmt in FORMATS:
        (tmp_path / fmt / "events").mkdir(parents=True)
        write(tmp_path / fmt / f"orders.{fmt}", ROWS)
        for part in range(3):
            write(tmp_path / fmt / "events" / f"part-{part}.{fmt}", ROWS.slice(part, 1))
    (tmp_path / "mesh.yaml").write_text(MESH)
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    with serving(server):
        yield Mesh(tmp_path, engine, f"grpc://127.0.0.1:{server.port}")
    engine.close()


def through_engine(engine: Engine, sql: str) -> list[dict[str, object]]:
    return engine.run(sql).read_all().to_pylist()


def through_client(uri: str, sql: str) -> list[dict[str, object]]:
    with flightsql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetch_arrow_table().to_pylist()


def answered(mesh: Mesh, sql: str) -> list[dict[str, object]]:
    """The rows ``sql`` returns, the same through the engine and through the client."""
    rows = through_engine(mesh.engine, sql)
    assert through_client(mesh.uri, sql) == rows
    return rows


def refused(mesh: Mesh, sql: str, *expected: str) -> None:
    """``sql`` fails through the engine and through the client, with a clean message holding ``expected``."""
    with pytest.raises(MeshgateError) as local:
        through_engine(mesh.engine, sql)
    with pytest.raises(adbc_driver_manager.Error) as remote:
        through_client(mesh.uri, sql)
    for text in (str(local.value), str(remote.value)):
        assert_clean(text)
        for part in expected:
            assert part in text, f"{part!r} not in {text!r}"


def missing_column(path: Path) -> None:
    write(path, ROWS.select(["id"]))


def other_type(path: Path) -> None:
    write(path, ROWS.set_column(0, "id", pa.array(["one", "two", "three"])))


def emptied(path: Path) -> None:
    os.truncate(path, 0)


def cut_short(path: Path) -> None:
    size = path.stat().st_size // 2
    while path.read_bytes()[size - 1 : size] == b"\n":  # a CSV cut after a whole line is a shorter CSV
        size -= 1
    os.truncate(path, size)


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a data file at all\n" * 20)


def deleted(path: Path) -> None:
    path.unlink()


CHANGES: dict[str, Callable[[Path], None]] = {
    f.__name__: f for f in (missing_column, other_type, emptied, cut_short, garbage, deleted)
}
REASONS = {
    ("missing_column", "parquet"): "no longer matches the product's schema: column 'name' is missing (registered string)",
    ("missing_column", "csv"): "no longer matches the product's schema: its header is 'id' where the product has columns 'id, name'",
    ("other_type", "parquet"): "no longer matches the product's schema: column 'id' changed type: registered int64, found string",
    ("other_type", "csv"): "cannot be read with the product's column types",
    ("emptied", "parquet"): "is empty (0 bytes)",
    ("emptied", "csv"): "is empty (0 bytes)",
    ("cut_short", "parquet"): "is not a readable Parquet file (truncated or corrupt: its footer cannot be read)",
    ("cut_short", "csv"): "does not end with a line break: its last row is cut off",
    ("garbage", "parquet"): "is not a readable Parquet file (truncated or corrupt: its footer cannot be read)",
    ("garbage", "csv"): "no longer matches the product's schema: its header is",
    ("deleted", "parquet"): "does not exist",
    ("deleted", "csv"): "does not exist",
}  # fmt: skip


@pytest.mark.parametrize("product", ["orders", "events"])
@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_that_cannot_be_served_as_registered_is_an_error_naming_it(
    mesh: Mesh, fmt: str, change: str, product: str
) -> None:
    domain, path = DOMAINS[fmt], mesh.path(fmt, product)
    table = f"{domain}.{product}"
    expected = answered(mesh, f"SELECT * FROM {table} ORDER BY id")
    assert expected == ROWS.to_pylist()

    CHANGES[change](path)
    reason = REASONS[(change, fmt)]
    if change == "deleted" and product == "events":
        reason = "of the folder is missing: restore it, or read the domain again to serve the folder without it"
    named = (f"[{domain}/{fmt}:", f"data product '{table}'", str(path), reason)
    refused(mesh, f"SELECT * FROM {table} ORDER BY id", *named)
    refused(mesh, f"SELECT count(*) AS n FROM {table}", *named)  # not a count of what is left
    refused(mesh, f"SELECT name FROM {table} WHERE id = 2", *named)

    write(path, ROWS if product == "orders" else ROWS.slice(1, 1))
    assert answered(mesh, f"SELECT * FROM {table} ORDER BY id") == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_new_version_renamed_into_place_is_served_whole(mesh: Mesh, fmt: str) -> None:
    domain = DOMAINS[fmt]
    more = pa.concat_tables([ROWS, pa.table({"id": pa.array([4], pa.int64()), "name": ["delta"]})])
    publish(mesh.path(fmt, "orders"), more)
    assert answered(mesh, f"SELECT * FROM {domain}.orders ORDER BY id") == more.to_pylist()
    # a folder product: a part replaced, a part added, each by a rename
    publish(mesh.path(fmt, "events"), pa.table({"id": pa.array([2, 5], pa.int64()), "name": ["beta", "epsilon"]}))
    publish(mesh.root / fmt / "events" / f"part-3.{fmt}", more.slice(3))
    assert answered(mesh, f"SELECT id, name FROM {domain}.events ORDER BY id") == [
        {"id": 1, "name": "alpha"},
        {"id": 2, "name": "beta"},
        {"id": 3, "name": "gamma"},
        {"id": 4, "name": "delta"},
        {"id": 5, "name": "epsilon"},
    ]
    # A Parquet file may hold columns the product does not serve (yet); a CSV file's columns are
    # read by position, so a new one is a new schema.
    publish(mesh.path(fmt, "orders"), ROWS.append_column("extra", pa.array([True, False, True])))
    if fmt == "parquet":
        assert answered(mesh, f"SELECT * FROM {domain}.orders ORDER BY id") == ROWS.to_pylist()
    else:
        refused(mesh, f"SELECT * FROM {domain}.orders", "its header is 'id,name,extra' where the product has")


def test_other_products_keep_serving_while_one_is_broken(mesh: Mesh) -> None:
    emptied(mesh.path("parquet", "orders"))
    refused(mesh, "SELECT * FROM logi.orders", "data product 'logi.orders'", "is empty (0 bytes)")
    assert answered(mesh, "SELECT count(*) AS n FROM logi.events") == [{"n": 3}]
    assert answered(mesh, "SELECT count(*) AS n FROM ref.orders o JOIN ref.events e USING (id)") == [{"n": 3}]


def test_listings_leave_out_a_broken_product_and_still_answer(mesh: Mesh) -> None:
    """One unreadable file failed every information_schema listing (what BI tools browse with)."""
    listing = "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'logi' ORDER BY 2"
    assert answered(mesh, listing) == [
        {"table_schema": "logi", "table_name": "events"},
        {"table_schema": "logi", "table_name": "orders"},
    ]
    deleted(mesh.path("parquet", "orders"))
    assert answered(mesh, listing) == [{"table_schema": "logi", "table_name": "events"}]
    columns = "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'logi'"
    assert answered(mesh, columns) == [{"table_name": "events"}]
    refused(mesh, "SELECT * FROM logi.orders", "data product 'logi.orders'", "does not exist")


def test_a_product_that_was_registered_with_a_broken_file_names_it_from_the_first_query(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "orders.csv").write_text("id,name\n1,alpha\n2,beta")  # no line break at the end
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: ref\n    connector: {type: csv, path: csv}\n")
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    try:
        with pytest.raises(MeshgateError, match=r"data product 'ref.orders': file .*orders.csv does not end"):
            through_engine(engine, "SELECT * FROM ref.orders")
        assert through_engine(engine, "SELECT 1 AS one") == [{"one": 1}]  # other queries are not affected
    finally:
        engine.close()


# -- files that change while a query reads them ----------------------------------------

BIG = 400_000


def big(start: int) -> pa.Table:
    ids = pa.array(range(start, start + BIG), pa.int64())
    return pa.table({"id": ids, "name": pc.cast(ids, pa.string())})


@pytest.fixture
def streaming(tmp_path: Path) -> Iterator[tuple[Path, Engine, str]]:
    """Big one-file products, read in small batches: a scan is still under way after its first batch."""
    for fmt in FORMATS:
        (tmp_path / fmt).mkdir()
        write(tmp_path / fmt / f"orders.{fmt}", big(0))
    (tmp_path / "mesh.yaml").write_text(MESH)
    engine = Engine(
        MeshCatalog(load_config(tmp_path / "mesh.yaml")),
        EngineSettings(target_partitions=1, batch_size=4096, stream_batch_size=4096),
    )
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    with serving(server):
        yield tmp_path, engine, f"grpc://127.0.0.1:{server.port}"
    engine.close()


def replace_by_rename(path: Path) -> None:
    publish(path, big(BIG))


def cut_in_place(path: Path) -> None:
    os.truncate(path, 0)


def read_while_changing(batches: Iterator[pa.RecordBatch], change: Callable[[], None]) -> pa.Table:
    """Read the first batch, make the change, read the rest."""
    first = next(batches)
    change()
    return pa.Table.from_batches([first, *batches])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_scan_finishes_on_the_version_it_started_on_when_the_file_is_renamed_over(
    streaming: tuple[Path, Engine, str], fmt: str
) -> None:
    root, engine, uri = streaming
    path, sql = root / fmt / f"orders.{fmt}", f"SELECT id FROM {DOMAINS[fmt]}.orders"
    old = list(range(BIG))
    seen = read_while_changing(iter(engine.run(sql)), lambda: replace_by_rename(path))
    assert sorted(seen.column("id").to_pylist()) == old  # the whole old version, nothing of the new one
    assert sorted(r["id"] for r in through_engine(engine, sql)) == list(range(BIG, 2 * BIG))
    with flightsql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        seen = read_while_changing(iter(cursor.fetch_record_batch()), lambda: publish(path, big(0)))
    assert sorted(seen.column("id").to_pylist()) == list(range(BIG, 2 * BIG))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_scan_finishes_whole_or_fails_cleanly_when_the_file_is_cut_in_place(
    streaming: tuple[Path, Engine, str], fmt: str
) -> None:
    """In place, the open file itself shrinks: a Parquet scan fails (DataFusion checks each read's
    length); a CSV version is a copy (DataFusion 55 would loop forever on a shrinking CSV file)."""
    root, engine, uri = streaming
    path, sql = root / fmt / f"orders.{fmt}", f"SELECT id FROM {DOMAINS[fmt]}.orders"
    for batches in (lambda: iter(engine.run(sql)), lambda: iter(_client_batches(uri, sql))):
        write(path, big(0))
        try:
            seen = read_while_changing(batches(), lambda: cut_in_place(path))
        except (MeshgateError, adbc_driver_manager.Error, OSError) as error:  # OSError: the ADBC batch reader
            assert fmt == "parquet", error
            assert_clean(str(error))
        else:
            assert fmt == "csv"
            assert sorted(seen.column("id").to_pylist()) == list(range(BIG))
        refused_now = f"data product '{DOMAINS[fmt]}.orders': file {path} is empty (0 bytes)"
        with pytest.raises(MeshgateError, match=refused_now.replace("(", r"\(").replace(")", r"\)")):
            through_engine(engine, sql)


def _client_batches(uri: str, sql: str) -> Iterator[pa.RecordBatch]:
    with flightsql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        yield from cursor.fetch_record_batch()


def test_a_governed_listing_leaves_out_a_broken_product_too(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    write(tmp_path / "files" / "orders.parquet", ROWS)
    write(tmp_path / "files" / "events.parquet", ROWS)
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: logi\n    connector: {type: parquet, path: files}\n"
        "policies:\n  roles: {analyst: [ana]}\n  grants:\n    - {role: analyst, on: 'logi.*'}\n"
        "  row_filters:\n    - {on: logi.orders, where: 'id > 1'}\n"
    )
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    ana = CallerContext(user="ana")
    listing = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'logi' ORDER BY 1"
    try:
        assert engine.run(listing, ana).read_all().column(0).to_pylist() == ["events", "orders"]
        deleted(tmp_path / "files" / "orders.parquet")
        assert engine.run(listing, ana).read_all().column(0).to_pylist() == ["events"]
        with pytest.raises(MeshgateError, match="does not exist"):
            engine.run("SELECT * FROM logi.orders", ana).read_all()
    finally:
        engine.close()
