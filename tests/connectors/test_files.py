"""Parquet and CSV connectors on real files: discovery, pinned schemas, options, errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

from connectors.base import SourceObject
from connectors.files import CsvConnector, ParquetConnector
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError, SourceError, SourceUnavailableError
from gateway.scan import classic_types

TABLE = pa.table({"id": pa.array([1, 2], pa.int32()), "name": ["a", None], "blob": [b"\x00", b""]})


def parquet(path: Path) -> ParquetConnector:
    return ParquetConnector("files", ConnectorConfig(type="parquet", path=path))


def csv(path: Path, **options: object) -> CsvConnector:
    return CsvConnector("files", ConnectorConfig(type="csv", path=path, options=options))


def read(connector: ParquetConnector | CsvConnector, source: SourceObject) -> pa.Table:
    ctx = SessionContext()  # the default configuration: Parquet strings would be string_view
    connector.register(ctx, "product", source)
    return ctx.sql("SELECT * FROM product").to_arrow_table()


def test_discover_files_and_folders(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "Sales Data.parquet")
    pq.write_table(TABLE, tmp_path / "2024-report.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "events").mkdir()
    pq.write_table(TABLE, tmp_path / "events" / "part-1.parquet")
    pq.write_table(TABLE, tmp_path / "events" / "part-2.parquet")
    (tmp_path / "empty").mkdir()
    connector = parquet(tmp_path)
    found = {p.name: p.source for p in connector.discover()}
    assert found == {
        "_2024_report": SourceObject(table="2024-report.parquet"),
        "sales_data": SourceObject(table="Sales Data.parquet"),
        "events": SourceObject(table="events"),
    }
    assert read(connector, found["events"]).num_rows == 4


def test_a_single_file_is_one_product(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "orders.parquet")
    connector = parquet(tmp_path / "orders.parquet")
    (product,) = connector.discover()
    assert (product.name, product.source) == ("orders", SourceObject(table="orders.parquet"))
    assert connector.schema(product.source) == TABLE.schema


def test_registered_schema_is_the_reported_one(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "t.parquet")
    connector = parquet(tmp_path)
    source = SourceObject(table="t.parquet")
    got = read(connector, source)
    assert connector.schema(source) == TABLE.schema
    # DataFusion reads text as views (faster); the engine casts results back to the product's types.
    assert classic_types(got.schema) == TABLE.schema
    assert (got.schema.field("name").type, got.schema.field("blob").type) == (pa.string_view(), pa.binary_view())
    assert got.cast(TABLE.schema).to_pylist() == TABLE.to_pylist()


def test_csv_options(tmp_path: Path) -> None:
    (tmp_path / "plain.csv").write_text("1;x;2.5\n2;;3\n")
    connector = csv(tmp_path, delimiter=";", has_header=False)
    source = SourceObject(table="plain.csv")
    assert connector.schema(source) == pa.schema(
        [("column_1", pa.int64()), ("column_2", pa.string()), ("column_3", pa.float64())]
    )
    assert read(connector, source).to_pylist() == [
        {"column_1": 1, "column_2": "x", "column_3": 2.5},
        {"column_1": 2, "column_2": None, "column_3": 3.0},
    ]


def test_csv_option_errors_name_the_domain(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"domain 'files'.*delimiter"):
        csv(tmp_path, delimiter=";;")
    with pytest.raises(ConfigError, match=r"domain 'files'.*has_header"):
        csv(tmp_path, has_header="yes")


def test_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_text("not parquet at all")
    connector = parquet(tmp_path)
    with pytest.raises(SourceError, match=r"\[files/parquet:.*\] cannot read .*broken.parquet"):
        connector.schema(SourceObject(table="broken.parquet"))
    with pytest.raises(SourceUnavailableError, match=r"\[files/parquet:.*\] .*gone.parquet does not exist"):
        connector.schema(SourceObject(table="gone.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceUnavailableError, match=r"no \*.parquet files in .*empty"):
        connector.schema(SourceObject(table="empty"))
    with pytest.raises(SourceUnavailableError, match="nowhere does not exist"):
        parquet(tmp_path / "nowhere").discover()


# -- versions: what a query reads when files change (see also tests/e2e/test_file_changes.py) --


def versioned(tmp_path: Path, parts: int = 3) -> tuple[ParquetConnector, SourceObject, pa.Schema]:
    (tmp_path / "events").mkdir()
    for part in range(parts):
        pq.write_table(TABLE, tmp_path / "events" / f"part-{part}.parquet")
    connector = parquet(tmp_path)
    source = SourceObject(table="events")
    return connector, source, connector.schema(source)


def test_a_stamp_is_one_stat_per_file(tmp_path: Path) -> None:
    connector, source, _ = versioned(tmp_path)
    (tmp_path / "events" / "notes.txt").write_text("not data")
    stamp = connector.stamp("events", source)
    assert [s.name for s in stamp] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert connector.stamp("events", source) == stamp
    info = (tmp_path / "events" / "part-1.parquet").stat()
    assert (stamp[1].size, stamp[1].mtime_ns, stamp[1].inode) == (info.st_size, info.st_mtime_ns, info.st_ino)
    pq.write_table(TABLE, tmp_path / "events" / "part-1.parquet")  # rewritten: same size, a new mtime
    assert connector.stamp("events", source) != stamp


def test_missing_files_are_named_with_the_product(tmp_path: Path) -> None:
    connector, source, _ = versioned(tmp_path)
    (tmp_path / "events" / "part-2.parquet").unlink()
    with pytest.raises(SourceUnavailableError, match=r"\[files/parquet:.*\] data product 'files.events': part file .*"
                       r"events/part-2.parquet of the folder is missing"):  # fmt: skip
        connector.stamp("events", source)
    with pytest.raises(SourceUnavailableError, match=r"data product 'files.gone': file .*gone.parquet does not exist"):
        connector.stamp("gone", SourceObject(table="gone.parquet"))


def test_unchanged_files_are_checked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connector, source, schema = versioned(tmp_path)
    inspected: list[str] = []
    inspect = ParquetConnector.inspect

    def counted(self: ParquetConnector, path: Path, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        inspected.append(path.name)
        return inspect(self, path, pinned, uuids)

    monkeypatch.setattr(ParquetConnector, "inspect", counted)
    first = connector.open_version("events", source, schema, None)
    assert sorted(inspected) == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    pq.write_table(TABLE, tmp_path / "events" / "part-3.parquet")
    second = connector.open_version("events", source, schema, first)
    assert sorted(inspected) == ["part-0.parquet", "part-1.parquet", "part-2.parquet", "part-3.parquet"]
    ctx = SessionContext()
    second.register(ctx, "product")
    assert ctx.sql("SELECT count(*) AS n FROM product").to_pylist() == [{"n": 8}]
    for version in (first, second):
        version.release()


def test_a_version_reads_the_files_it_opened(tmp_path: Path) -> None:
    connector, source, schema = versioned(tmp_path)
    version = connector.open_version("events", source, schema, None)
    staged = tmp_path / "staged.parquet"
    pq.write_table(pa.table({"id": pa.array([9], pa.int32())}), staged)
    staged.replace(tmp_path / "events" / "part-0.parquet")  # renamed over: another file, not this version's
    (tmp_path / "events" / "part-1.parquet").unlink()
    ctx = SessionContext()
    version.register(ctx, "product")
    assert ctx.sql("SELECT count(*) AS n, count(name) AS named FROM product").to_pylist() == [{"n": 6, "named": 3}]
    version.release()


def _descriptors_under(directory: Path) -> list[str]:
    """The targets of this process's open descriptors that lie in ``directory``."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing
            continue
        if target.startswith(str(directory)):
            targets.append(target)
    return targets


def test_a_retired_version_lets_its_files_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.files

    connector, source, schema = versioned(tmp_path)
    version = connector.open_version("events", source, schema, None)
    held = version.directory
    assert len(_descriptors_under(tmp_path / "events")) == 3  # the product's files, held open
    assert len(list(held.iterdir())) == 3
    monkeypatch.setattr(connectors.files, "GRACE_SECONDS", 0.0)
    version.retire()
    deadline = time.monotonic() + 5  # the reaper removes the links, then closes the files: wait for both
    while (held.exists() or _descriptors_under(tmp_path / "events")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not held.exists()
    assert _descriptors_under(tmp_path / "events") == []


def test_row_estimates_come_from_parquet_footers_and_csv_line_lengths(tmp_path: Path) -> None:
    table = pa.table({"id": list(range(5000)), "name": [f"name {i}" for i in range(5000)]})
    (tmp_path / "events").mkdir()
    for part in range(3):
        pq.write_table(table.slice(part * 1000, 1000 + part * 500), tmp_path / "events" / f"part-{part}.parquet")
    parquet = ParquetConnector("logs", ConnectorConfig(type="parquet", path=tmp_path))
    assert parquet.estimate_rows(SourceObject(table="events")) == 1000 + 1500 + 2000
    pacsv.write_csv(table, tmp_path / "people.csv")
    csv = CsvConnector("people", ConnectorConfig(type="csv", path=tmp_path))
    estimate = csv.estimate_rows(SourceObject(table="people.csv"))
    assert estimate is not None and 4000 <= estimate <= 6000
    assert csv.estimate_rows(SourceObject(table="missing.csv")) is None  # never raises: no estimate
