"""A 5-million-row result streams through the gateway without being collected in memory.

The gateway runs as its own process (``meshgate serve``) so that its peak resident
memory can be read from /proc and compared with the size of the result it sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.support.gateway import GatewayProcess, auth_yaml
from tests.support.postgres import worker_schema

ROWS = 5_000_000
SCHEMA = worker_schema("meshgate_streaming")


@pytest.fixture(scope="module")
def big_mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Path:
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {SCHEMA}")
        cursor.execute(
            f"CREATE TABLE {SCHEMA}.events AS SELECT i::int8 AS id, (i % 5)::int4 AS kind,"
            " 'event number ' || i AS name, (i % 1000) * 0.25::float8 AS amount,"
            " TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '1 second' AS at"
            f" FROM generate_series(1, {ROWS}) AS i"
        )
        connection.commit()
    directory = tmp_path_factory.mktemp("streaming")
    (directory / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n2,two\n3,three\n4,four\n")
    (directory / "mesh.yaml").write_text(
        f"""domains:
  - name: big
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: events, source: {SCHEMA}.events}}
  - name: ref
    connector: {{type: csv, path: kinds.csv}}
    products:
      - {{name: kinds, source: kinds.csv}}
"""
        + auth_yaml()
    )
    return directory / "mesh.yaml"


@pytest.fixture(scope="module")
def gateway_process(big_mesh: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(big_mesh)
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("route", "sql"),
    [
        ("whole query in PostgreSQL", "SELECT id, name, amount, at FROM big.events"),
        # DataFusion builds its hash table from the join's left input when the sources
        # report no statistics (README: "Known limits"), so the small side comes first.
        (
            "federated join with a CSV",
            "SELECT e.id, e.name, e.amount, e.at, k.label FROM ref.kinds k JOIN big.events e ON k.kind = e.kind",
        ),
    ],
)
def test_large_result_streams_intact_in_bounded_memory(gateway_process: GatewayProcess, route: str, sql: str) -> None:
    baseline = gateway_process.peak_rss_bytes()
    started = time.perf_counter()
    first_batch_at: float | None = None
    rows = batches = result_bytes = id_sum = 0
    with gateway_process.connect() as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        reader = cursor.fetch_record_batch()
        for batch in reader:
            if first_batch_at is None:
                first_batch_at = time.perf_counter() - started
            assert not pa.types.is_string_view(batch.schema.field("name").type)
            rows += batch.num_rows
            batches += 1
            result_bytes += batch.nbytes
            id_sum += pc.sum(batch.column("id")).as_py() or 0
    elapsed = time.perf_counter() - started
    peak = gateway_process.peak_rss_bytes()
    growth = peak - baseline
    print(
        f"\n[{route}] {rows:,} rows in {batches} batches, {result_bytes / 2**20:.0f} MiB of Arrow data,"
        f" {elapsed:.2f} s ({rows / elapsed / 1e6:.2f} M rows/s), first batch after {first_batch_at or 0:.3f} s;"
        f" gateway peak RSS {peak / 2**20:.0f} MiB (grew {growth / 2**20:.0f} MiB during the query)"
    )
    assert rows == ROWS
    assert id_sum == ROWS * (ROWS + 1) // 2
    assert batches > 10, "the result must arrive as a stream of batches"
    # Buffering is bounded by the pipeline (prefetch queues, repartitioning, gRPC), not
    # by the result: well under half of what was streamed.
    assert growth < result_bytes / 2, f"gateway grew by {growth:,} bytes for a {result_bytes:,}-byte result"
