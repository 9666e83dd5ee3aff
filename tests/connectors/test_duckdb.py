"""DuckDB connector against real files: exact types, text semantics, streaming, cancel, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from sqlglot import exp

from connectors.base import ScanSpec, SourceObject
from connectors.duckdb import DuckdbConnector
from gateway.config import ConnectorConfig
from gateway.errors import SourceError, SourceUnavailableError


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("duckdb") / "warehouse.duckdb"
    connection = duckdb.connect(str(path))
    for statement in [
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE TABLE feelings (id INTEGER, m mood, u UUID)",
        "INSERT INTO feelings VALUES (1, 'sad', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), (2, 'happy', NULL)",
        "CREATE TABLE wide AS SELECT 1::HUGEINT AS h, 2::UINTEGER AS u, [1, 2] AS l, {'a': 1} AS s,"
        " INTERVAL 1 DAY AS i, TIME '01:02:03' AS t, 1.5::FLOAT AS f,"
        " TIMESTAMP_NS '2024-01-01 00:00:00.000000001' AS ns",
        "CREATE SCHEMA archive",
        "CREATE TABLE archive.feelings AS SELECT * FROM feelings",
        "CREATE VIEW happy AS SELECT id FROM feelings WHERE m = 'happy'",
        "CREATE TABLE big AS SELECT range AS id FROM range(300000)",
    ]:
        connection.execute(statement)
    connection.close()
    return path


@pytest.fixture(scope="module")
def connector(database: Path) -> Iterator[DuckdbConnector]:
    connector = DuckdbConnector("warehouse", ConnectorConfig(type="duckdb", path=database))
    yield connector
    connector.close()


def scan(connector: DuckdbConnector, source: SourceObject, predicate: str | None = None) -> pa.Table:
    schema = connector.schema(source)
    spec = ScanSpec(source, tuple(schema.names), exp.condition(predicate) if predicate else None)
    return pa.Table.from_batches(list(connector.execute(connector.scan_sql(spec), schema)), schema)


def test_discover_lists_tables_and_views_by_schema(connector: DuckdbConnector) -> None:
    found = {p.name: p.source.table for p in connector.discover()}
    assert found == {
        "big": '"main"."big"',
        "feelings": '"main"."feelings"',
        "happy": '"main"."happy"',
        "wide": '"main"."wide"',
        "archive_feelings": '"archive"."feelings"',
    }


def test_types_are_duckdbs_own_arrow_types(connector: DuckdbConnector) -> None:
    schema = connector.schema(SourceObject(table="wide"))
    assert schema == pa.schema(
        [
            ("h", pa.decimal128(38, 0)),
            ("u", pa.uint32()),
            ("l", pa.list_(pa.field("l", pa.int32()))),
            ("s", pa.struct([("a", pa.int32())])),
            ("i", pa.month_day_nano_interval()),
            ("t", pa.time64("us")),
            ("f", pa.float32()),
            ("ns", pa.timestamp("ns")),
        ]
    )
    got = scan(connector, SourceObject(table="wide"))
    assert got["l"].to_pylist() == [[1, 2]] and got["s"].to_pylist() == [{"a": 1}]
    assert got["ns"].cast(pa.int64()).to_pylist() == [1704067200000000001]


def test_enums_and_uuids_are_text_in_values_and_predicates(connector: DuckdbConnector) -> None:
    source = SourceObject(table="feelings")
    assert connector.schema(source) == pa.schema([("id", pa.int32()), ("m", pa.string()), ("u", pa.string())])
    assert scan(connector, source)["u"].to_pylist() == ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None]
    # As an enum, 'sad' < 'happy'; as the text the engine sees, 'sad' > 'happy'.
    assert scan(connector, source, "m > 'm'")["id"].to_pylist() == [1]


def test_big_tables_stream_in_several_batches(connector: DuckdbConnector) -> None:
    source = SourceObject(table="big")
    stream = connector.execute(connector.scan_sql(ScanSpec(source, ("id",))), connector.schema(source))
    sizes = [batch.num_rows for batch in stream]
    assert len(sizes) >= 3 and sum(sizes) == 300_000


def test_cancel_interrupts_a_long_query(connector: DuckdbConnector) -> None:
    stream = connector.execute(
        "SELECT count(*) AS n FROM range(100000000) a, range(100000) b", pa.schema([("n", pa.int64())])
    )
    started = time.monotonic()
    threading.Timer(0.5, stream.cancel).start()
    assert list(stream) == []
    assert time.monotonic() - started < 2.5


def test_the_file_is_opened_read_only(connector: DuckdbConnector) -> None:
    with pytest.raises(SourceError, match="read-only"):
        connector.execute("CREATE TABLE nope (id INTEGER)", pa.schema([]))


def test_errors_name_domain_and_source(connector: DuckdbConnector, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^\[warehouse/duckdb:.*warehouse.duckdb\] Catalog Error: .*nowhere"):
        connector.execute("SELECT * FROM nowhere", pa.schema([]))
    missing = DuckdbConnector("warehouse", ConnectorConfig(type="duckdb", path=tmp_path / "missing.duckdb"))
    with pytest.raises(SourceUnavailableError, match=r"DuckDB file .*missing.duckdb does not exist"):
        missing.discover()


def test_every_cursor_reads_zoned_timestamps_in_utc_whatever_the_machines_zone(tmp_path: Path) -> None:
    """DuckDB takes the machine's time zone; the gateway's cursors (a DuckDB file's and the file
    engine's) are in UTC, as DataFusion is, set once when the database opens. Run in a process
    whose TZ is New York (the zone is read when DuckDB starts)."""
    with duckdb.connect(str(tmp_path / "z.duckdb")) as created:
        created.execute("CREATE TABLE t (x INTEGER)")
    script = (
        "from pathlib import Path\n"
        "from meshcore.config import ConnectorConfig\n"
        "from connectors.duckdb import DuckdbConnector\n"
        "from connectors.file_engine import DuckdbFiles, FileEngine\n"
        f"file = DuckdbConnector('d', ConnectorConfig(type='duckdb', path=Path({str(tmp_path / 'z.duckdb')!r})))\n"
        "engine = FileEngine('f', DuckdbFiles(1, 1 << 30))\n"
        "sql = \"SELECT current_setting('TimeZone'), CAST(TIMESTAMPTZ '2024-01-01 00:00:00+00' AS VARCHAR)\"\n"
        "for source in (file, engine, file, engine):\n"
        "    print(source.cursor().execute(sql).fetchall())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TZ": "America/New_York"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[('UTC', '2024-01-01 00:00:00+00')]"] * 4, done.stdout


def test_render_leaves_the_callers_tree_unless_given_it() -> None:
    """``render`` copies the tree it writes (the file engine casts an integer division's operand in
    place, sqlglot's transforms rewrite too) unless the caller gives it away with ``copy=False``: the
    planner does, for a tree of thousands of nodes (TPC-H Q19's part keys) took 9 ms to copy."""
    from connectors.file_engine import DuckdbFiles, FileEngine

    engine = FileEngine("f", DuckdbFiles(1, 1 << 30))
    tree = exp.select(exp.IntDiv(this=exp.column("a"), expression=exp.column("b")).as_("q")).from_("t")
    before = tree.sql(dialect="duckdb")
    written = engine.render(tree)
    assert "CAST(a AS INT128)" in written and tree.sql(dialect="duckdb") == before
    assert engine.render(tree, copy=False) == written
    assert "CAST(a AS INT128)" in tree.sql(dialect="duckdb")  # given away: written in place
