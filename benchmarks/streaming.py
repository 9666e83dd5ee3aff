"""Streaming throughput: a 10-million-row, six-column result streamed to a client.

``python -m benchmarks.streaming`` streams ``SELECT * FROM events`` (see :mod:`benchmarks.events`)
from, one at a time:

- Meshgate over the Parquet file (``logistics.events``) and over PostgreSQL (``sales.events``),
  through the ADBC Flight SQL driver;
- a bare ``pyarrow.flight`` server holding the same rows in memory (:mod:`benchmarks.flight_server`),
  through the ``pyarrow.flight`` client (it speaks plain Flight, not Flight SQL): the ceiling;
- ``roapi`` serving the same Parquet file over its Flight SQL endpoint, through ADBC;
- PostgreSQL itself through the ADBC PostgreSQL driver, no gateway: the floor of the
  PostgreSQL row.

Per system: rows/s, MB/s (of the rows as classic Arrow, the same figure for every system, plus
the bytes the client actually received), time to first batch and the server's peak memory.
The client counts each batch and drops it.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

from benchmarks import events, plots
from benchmarks.harness import (
    REPO,
    Credentials,
    Gateway,
    Process,
    adbc_message,
    arguments,
    connect,
    current_rss,
    executable,
    fmt_bytes,
    fmt_seconds,
    log,
    machine,
    machine_markdown,
    markdown_table,
    median,
    peak_rss,
    reset_peak,
    runs_of,
    write_results,
)
from tests.support.ports import free_port
from tests.support.postgres import postgres_server, temporary_schema

FULL_ROWS = 10_000_000
QUICK_ROWS = 100_000


@dataclass
class Run:
    seconds: float
    first_batch: float
    rows: int
    bytes: int
    batches: int


@dataclass
class System:
    name: str
    client: str
    runs: list[Run] = field(default_factory=list)
    peak_rss: int | None = None
    idle_rss: int | None = None
    error: str | None = None
    note: str = ""

    def median(self, attribute: str) -> float:
        values = [getattr(run, attribute) for run in self.runs]
        return median(values) if values else math.nan


def _count(batches: Iterator[pa.RecordBatch], began: float) -> Run:
    first = math.nan
    rows = size = count = 0
    for batch in batches:
        if count == 0:
            first = time.perf_counter() - began
        rows += batch.num_rows
        size += batch.nbytes
        count += 1
    return Run(time.perf_counter() - began, first, rows, size, count)


def _cursor_run(cursor: Any, sql: str) -> Run:
    """Run ``sql`` on a DB-API cursor of an ADBC driver and count what streams back."""
    began = time.perf_counter()
    cursor.execute(sql)
    return _count(iter(cursor.fetch_record_batch()), began)


def adbc_stream(uri: str, sql: str, credentials: Credentials | None = None) -> Callable[[], Run]:
    def run() -> Run:
        with connect(uri, 3600, credentials) as connection, connection.cursor() as cursor:
            return _cursor_run(cursor, sql)

    return run


def flight_stream(uri: str) -> Callable[[], Run]:
    def run() -> Run:
        client = flight.connect(uri)
        try:
            began = time.perf_counter()
            reader = client.do_get(flight.Ticket(b"events"))

            def batches() -> Iterator[pa.RecordBatch]:
                while True:
                    try:
                        yield reader.read_chunk().data
                    except StopIteration:
                        return

            return _count(batches(), began)
        finally:
            client.close()

    return run


def postgres_stream(uri: str, sql: str) -> Callable[[], Run]:
    """Straight from PostgreSQL with the ADBC PostgreSQL driver: what a gateway over it could reach."""

    def run() -> Run:
        with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
            return _cursor_run(cursor, sql)

    return run


def measure(system: System, pid: int | None, run: Callable[[], Run], runs: int, expected_rows: int) -> None:
    """``pid``: the server whose memory is measured (None: no server of ours)."""
    if pid is not None:
        system.idle_rss = current_rss(pid)
        reset_peak(pid)
    try:
        for _ in range(runs):
            result = run()
            if result.rows != expected_rows:
                raise RuntimeError(f"streamed {result.rows} rows, expected {expected_rows}")
            system.runs.append(result)
    except Exception as error:
        system.error = adbc_message(error)
    if pid is not None:
        system.peak_rss = peak_rss(pid)
    log(
        f"streaming {system.name}: {fmt_seconds(system.median('seconds'))}, first batch "
        f"{fmt_seconds(system.median('first_batch'))}, peak {fmt_bytes(system.peak_rss)} {system.error or ''}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments("Streaming throughput: Meshgate vs a bare pyarrow.flight server vs roapi.", runs=5)
    parser.add_argument("--rows", type=int, default=None, help=f"rows (default {FULL_ROWS:,}; quick {QUICK_ROWS:,})")
    parser.add_argument("--no-postgres", action="store_true", help="leave out Meshgate over PostgreSQL")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    runs = runs_of(args)
    name = "streaming-quick" if args.quick else "streaming"
    started = time.perf_counter()
    data = events.generate(rows, args.work_dir)
    logical_bytes = pq.read_table(data.parquet).nbytes  # classic types: what every system streams
    info = machine()
    systems: list[System] = []

    with postgres_server(args.work_dir) as pg_uri, temporary_schema(pg_uri, "bench_streaming") as pg_schema:
        if not args.no_postgres:
            events.load_postgres(data, pg_uri, pg_schema)
        mesh = events.write_mesh(args.work_dir / f"mesh-events-{rows}", data, pg_uri, pg_schema)
        with Gateway(mesh) as server:
            system = System("Meshgate, Parquet source", "ADBC Flight SQL")
            measure(
                system,
                server.pid,
                adbc_stream(server.uri, "SELECT * FROM logistics.events", server.credentials),
                runs,
                rows,
            )
            systems.append(system)
        if not args.no_postgres:
            with Gateway(mesh) as server:
                system = System("Meshgate, PostgreSQL source", "ADBC Flight SQL")
                measure(
                    system,
                    server.pid,
                    adbc_stream(server.uri, "SELECT * FROM sales.events", server.credentials),
                    runs,
                    rows,
                )
                systems.append(system)
            system = System("PostgreSQL direct (no gateway)", "ADBC PostgreSQL")
            measure(system, None, postgres_stream(pg_uri, f'SELECT * FROM "{pg_schema}".events'), runs, rows)
            systems.append(system)

    bare = Process([sys.executable, "-m", "benchmarks.flight_server", str(data.parquet)], cwd=REPO)
    try:
        uri = bare.wait_for(re.compile(r"listening on (grpc://127\.0\.0\.1:\d+)"), timeout=300).group(1)
        system = System("bare pyarrow.flight, in memory", "pyarrow.flight")
        measure(system, bare.pid, flight_stream(uri), runs, rows)
        systems.append(system)
    finally:
        bare.stop()

    systems.append(_roapi(data, runs, rows))
    payload = {
        "benchmark": "streaming",
        "rows": rows,
        "columns": 6,
        "logical_bytes": logical_bytes,
        "runs": runs,
        "machine": info,
        "systems": [
            {
                **s.__dict__,
                "seconds": s.median("seconds"),
                "first_batch_seconds": s.median("first_batch"),
                "rows_per_second": rows / s.median("seconds"),
                "mb_per_second": logical_bytes / 1e6 / s.median("seconds"),
                "received_bytes": s.median("bytes"),
            }
            for s in systems
        ],
        "elapsed_seconds": time.perf_counter() - started,
    }
    report = _report(payload, args.results_dir, name, plots_wanted=not args.no_plots)
    path = write_results(args.results_dir, name, payload, report)
    log(f"streaming: report {path}")
    return 0


def _roapi(data: events.EventsData, runs: int, rows: int) -> System:
    system = System("roapi, Parquet file", "ADBC Flight SQL")
    tool = executable("roapi")
    if tool is None:
        system.error = "roapi is not installed (pip install roapi): skipped"
        log(f"streaming roapi: {system.error}")
        return system
    port = free_port()
    process = Process(
        [
            tool,
            "-t",
            f"events={data.parquet}",
            "--addr-flight-sql",
            f"127.0.0.1:{port}",
            "-a",
            f"127.0.0.1:{free_port()}",
            "-p",
            f"127.0.0.1:{free_port()}",
        ]
    )
    try:
        process.wait_for(re.compile(r"Listening on 127\.0\.0\.1:\d+ for FlightSQL"), timeout=300)
        process.wait_for_port(port)
        measure(system, process.pid, adbc_stream(f"grpc://127.0.0.1:{port}", "SELECT * FROM events"), runs, rows)
    except RuntimeError as error:
        system.error = str(error)[:500]
    finally:
        process.stop()
    return system


def _spread(system: dict[str, Any]) -> str:
    times = [run.seconds if isinstance(run, Run) else run["seconds"] for run in system["runs"]]
    return f"{fmt_seconds(min(times))}-{fmt_seconds(max(times))}" if times else "-"


def _report(payload: dict[str, Any], results_dir: Path, name: str, *, plots_wanted: bool) -> str:
    systems = payload["systems"]
    table = [
        [
            s["name"],
            s["client"],
            "FAILED: " + s["error"] if s["error"] else f"{fmt_seconds(s['seconds'])} ({_spread(s)})",
            f"{s['rows_per_second'] / 1e6:.2f} M" if not s["error"] else "-",
            f"{s['mb_per_second']:.0f}" if not s["error"] else "-",
            fmt_seconds(s["first_batch_seconds"]),
            fmt_bytes(s["received_bytes"]),
            fmt_bytes(s["idle_rss"]),
            fmt_bytes(s["peak_rss"]),
        ]
        for s in systems
    ]
    header = [
        "system",
        "client",
        "time (min-max)",
        "rows/s",
        "MB/s",
        "first batch",
        "bytes received",
        "server memory before",
        "server peak memory",
    ]
    made: list[Path | None] = []
    if plots_wanted:
        ok = [s for s in systems if not s["error"]]
        made.append(
            plots.grouped_bars(
                results_dir / f"{name}-throughput.png",
                f"Streaming {payload['rows']:,} rows: throughput (MB/s of the rows as Arrow)",
                [s["name"] for s in ok],
                {"MB/s": [s["mb_per_second"] for s in ok]},
                "MB/s",
            )
        )
        made.append(
            plots.grouped_bars(
                results_dir / f"{name}-first-batch.png",
                "Time to first batch (log scale)",
                [s["name"] for s in ok],
                {"seconds": [s["first_batch_seconds"] for s in ok]},
                "seconds",
                log_scale=True,
            )
        )
    return f"""# Streaming throughput, {payload["rows"]:,} rows x {payload["columns"]} columns

Generated by `python -m benchmarks.streaming{" --quick" if name.endswith("quick") else ""}`; median of
{payload["runs"]} run(s), one system at a time, each server freshly started. The rows are
{fmt_bytes(payload["logical_bytes"])} as classic Arrow; MB/s is that size (10^6 bytes) over the
time from sending the query to the last batch. "bytes received": the Arrow size of the batches
as the client received them (view types and shared buffers make it differ).

## Machine

{machine_markdown(payload["machine"])}

## Results

{markdown_table(header, table)}

## Plots

{plots.image_links(made)}
"""


if __name__ == "__main__":
    raise SystemExit(main())
