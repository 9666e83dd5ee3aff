"""Small-query latency and concurrency: a primary-key lookup through Meshgate and straight to PostgreSQL.

``python -m benchmarks.latency`` loads ``events`` (1 million rows by default, see
:mod:`benchmarks.events`) into PostgreSQL, starts ``meshgate serve`` and sends
``SELECT * FROM sales.events WHERE id = <random id>``:

- latency: one client, one connection, ``--queries`` lookups one after another (after a
  warm-up), through the gateway (ADBC Flight SQL) and straight to PostgreSQL (ADBC
  PostgreSQL, the same SQL on the table): p50/p95/p99;
- concurrency: 1, 4, 16 and 64 clients (threads of this process, a connection each) for
  ``--seconds`` each: queries per second, latency percentiles under load, and errors.

Every lookup's answer is checked (one row, the id asked for). The clients run on the same
2 cores as the servers: client time is part of every figure.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg

from benchmarks import events, plots
from benchmarks.harness import (
    Gateway,
    adbc_message,
    arguments,
    cpu_seconds,
    fmt_bytes,
    fmt_seconds,
    log,
    machine,
    machine_markdown,
    markdown_table,
    peak_rss,
    percentile,
    reset_peak,
    write_results,
)
from tests.support.postgres import postgres_server, temporary_schema

FULL_ROWS = 1_000_000
QUICK_ROWS = 10_000
CONCURRENCY = (1, 4, 16, 64)
QUICK_CONCURRENCY = (1, 4, 16)
"""--quick checks that the harness works: 64 clients would spend most of its time logging in
(an argon2id check each, four at a time)."""


@dataclass
class Load:
    target: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_cpu: float = math.nan  # CPU seconds the gateway used (Meshgate only)
    peak_connecting: int | None = None  # gateway peak memory while the clients connected and logged in
    peak_querying: int | None = None  # gateway peak memory while they queried

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "clients": self.clients,
            "queries": len(self.latencies),
            "seconds": self.seconds,
            "queries_per_second": self.throughput,
            "p50": percentile(self.latencies, 0.50),
            "p95": percentile(self.latencies, 0.95),
            "p99": percentile(self.latencies, 0.99),
            "gateway_peak_rss_connecting": self.peak_connecting,
            "gateway_peak_rss_querying": self.peak_querying,
            "gateway_cpu_ms_per_query": 1000 * self.server_cpu / len(self.latencies) if self.latencies else None,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
        }


Lookup = Callable[[Any, int], None]


def gateway_lookup(connection: Any, key: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM sales.events WHERE id = {key}")
        rows = cursor.fetchall()
    if len(rows) != 1 or rows[0][0] != key:
        raise AssertionError(f"id {key}: got {rows[:2]}")


def postgres_lookup(schema: str) -> Lookup:
    def lookup(connection: Any, key: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT * FROM "{schema}".events WHERE id = {key}')
            rows = cursor.fetchall()
        if len(rows) != 1 or rows[0][0] != key:
            raise AssertionError(f"id {key}: got {rows[:2]}")

    return lookup


def sequential(
    target: str,
    open_connection: Callable[[], Any],
    lookup: Lookup,
    rows: int,
    queries: int,
    server_pid: int | None = None,
) -> Load:
    """One connection, ``queries`` lookups in a row after a warm-up (``server_pid``: its CPU is counted)."""
    load = Load(target, 1)
    keys = random.Random(1)
    connection = open_connection()
    try:
        for _ in range(min(50, queries)):  # warm-up
            lookup(connection, keys.randint(1, rows))
        cpu = cpu_seconds(server_pid) if server_pid is not None else math.nan
        began = time.perf_counter()
        for _ in range(queries):
            key = keys.randint(1, rows)
            start = time.perf_counter()
            try:
                lookup(connection, key)
                load.latencies.append(time.perf_counter() - start)
            except Exception as error:
                load.errors.append(adbc_message(error))
        load.seconds = time.perf_counter() - began
        if server_pid is not None:
            load.server_cpu = cpu_seconds(server_pid) - cpu
    finally:
        connection.close()
    return load


def concurrent(
    target: str,
    open_connection: Callable[[], Any],
    lookup: Lookup,
    rows: int,
    clients: int,
    seconds: float,
    server_pid: int | None = None,
) -> Load:
    """``clients`` threads, each with its own connection, looking up for ``seconds``.

    With ``server_pid``, the server's peak memory is taken apart: while the clients connect
    (and log in), and while they query.
    """
    load = Load(target, clients)
    if server_pid is not None:
        reset_peak(server_pid)
    lock = threading.Lock()
    window = [0.0, 0.0]  # start, stop: set once every client is connected, before any starts
    cpu = [0.0]

    def open_window() -> None:
        if server_pid is not None:
            load.peak_connecting = peak_rss(server_pid)
            reset_peak(server_pid)
            cpu[0] = cpu_seconds(server_pid)
        window[0] = time.perf_counter()
        window[1] = window[0] + seconds

    ready = threading.Barrier(clients + 1, action=open_window)

    def client(index: int) -> None:
        keys = random.Random(index)
        latencies: list[float] = []
        errors: list[str] = []
        connection = None
        try:
            connection = open_connection()
            lookup(connection, keys.randint(1, rows))  # warm-up
        except Exception as error:
            errors.append(adbc_message(error))
        ready.wait()
        while connection is not None and time.perf_counter() < window[1]:
            start = time.perf_counter()
            try:
                lookup(connection, keys.randint(1, rows))
                latencies.append(time.perf_counter() - start)
            except Exception as error:
                errors.append(adbc_message(error))
                if len(errors) > 100:
                    break
        if connection is not None:
            connection.close()
        with lock:
            load.latencies += latencies
            load.errors += errors

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    load.seconds = time.perf_counter() - window[0]
    if server_pid is not None:
        load.peak_querying = peak_rss(server_pid)
        load.server_cpu = cpu_seconds(server_pid) - cpu[0]
    return load


def main(argv: list[str] | None = None) -> int:
    parser = arguments("Small-query latency and concurrency through Meshgate vs straight to PostgreSQL.")
    parser.add_argument("--rows", type=int, default=None, help=f"events rows (default {FULL_ROWS:,}; quick 10,000)")
    parser.add_argument("--queries", type=int, default=None, help="sequential lookups (default 1000; quick 50)")
    parser.add_argument("--seconds", type=float, default=None, help="per concurrency level (default 10; quick 0.5)")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    queries = args.queries or (50 if args.quick else 1000)
    seconds = args.seconds or (0.5 if args.quick else 10.0)
    name = "latency-quick" if args.quick else "latency"
    started = time.perf_counter()
    data = events.generate(rows, args.work_dir)
    info = machine()
    loads: list[Load] = []
    with postgres_server(args.work_dir) as pg_uri, temporary_schema(pg_uri, "bench_latency") as pg_schema:
        events.load_postgres(data, pg_uri, pg_schema)
        mesh = events.write_mesh(args.work_dir / f"mesh-latency-{rows}", data, pg_uri, pg_schema)
        direct = postgres_lookup(pg_schema)

        def open_postgres() -> Any:
            return pg.connect(pg_uri, autocommit=True)

        with Gateway(mesh) as server:

            def open_gateway() -> Any:
                return server.connect(60)

            loads.append(sequential("Meshgate", open_gateway, gateway_lookup, rows, queries, server.pid))
            loads.append(sequential("PostgreSQL direct", open_postgres, direct, rows, queries))
            for clients in QUICK_CONCURRENCY if args.quick else CONCURRENCY:
                loads.append(concurrent("Meshgate", open_gateway, gateway_lookup, rows, clients, seconds, server.pid))
                loads.append(concurrent("PostgreSQL direct", open_postgres, direct, rows, clients, seconds))
                log(
                    f"latency {clients} clients: Meshgate {loads[-2].throughput:.0f} q/s ({len(loads[-2].errors)} "
                    f"errors), PostgreSQL {loads[-1].throughput:.0f} q/s ({len(loads[-1].errors)} errors)"
                )
    for load in loads[:2]:
        log(
            f"latency {load.target}: p50 {fmt_seconds(percentile(load.latencies, 0.5))}, "
            f"p99 {fmt_seconds(percentile(load.latencies, 0.99))}, {len(load.errors)} errors"
        )
    payload = {
        "benchmark": "latency",
        "rows": rows,
        "queries": queries,
        "seconds_per_level": seconds,
        "machine": info,
        "sequential": [load.summary() for load in loads[:2]],
        "concurrent": [load.summary() for load in loads[2:]],
        "elapsed_seconds": time.perf_counter() - started,
    }
    report = _report(payload, args.results_dir, name, plots_wanted=not args.no_plots)
    path = write_results(args.results_dir, name, payload, report)
    errors = sum(load.summary()["errors"] for load in loads)
    log(f"latency: {errors} errors. Report: {path}")
    return 0


CPU = "gateway CPU per query"
MEMORY = "gateway peak memory: connecting / querying"


def _memory(summary: dict[str, Any]) -> str:
    connecting, querying = summary.get("gateway_peak_rss_connecting"), summary.get("gateway_peak_rss_querying")
    return f"{fmt_bytes(connecting)} / {fmt_bytes(querying)}" if connecting and querying else ""


def _cpu(summary: dict[str, Any]) -> str:
    value = summary.get("gateway_cpu_ms_per_query")
    return f"{value:.1f} ms" if value is not None and math.isfinite(value) else ""


def _report(payload: dict[str, Any], results_dir: Path, name: str, *, plots_wanted: bool) -> str:
    sequential_rows = [
        [
            s["target"],
            s["queries"],
            fmt_seconds(s["p50"]),
            fmt_seconds(s["p95"]),
            fmt_seconds(s["p99"]),
            f"{s['queries_per_second']:.0f}",
            _cpu(s),
            s["errors"],
        ]
        for s in payload["sequential"]
    ]
    concurrent_rows = [
        [
            s["clients"],
            s["target"],
            s["queries"],
            f"{s['queries_per_second']:.0f}",
            fmt_seconds(s["p50"]),
            fmt_seconds(s["p99"]),
            _cpu(s),
            _memory(s),
            s["errors"],
        ]
        for s in payload["concurrent"]
    ]
    ratio = payload["sequential"][0]["p50"] / payload["sequential"][1]["p50"]
    made: list[Path | None] = []
    if plots_wanted:
        levels = list(dict.fromkeys(s["clients"] for s in payload["concurrent"]))
        made.append(
            plots.lines(
                results_dir / f"{name}-throughput.png",
                "Point lookups per second by concurrent clients (log scale)",
                levels,
                {
                    target: [s["queries_per_second"] for s in payload["concurrent"] if s["target"] == target]
                    for target in ("Meshgate", "PostgreSQL direct")
                },
                "concurrent clients",
                "queries per second",
                log_x=True,
                log_y=True,
            )
        )
        made.append(
            plots.grouped_bars(
                results_dir / f"{name}-percentiles.png",
                "Point-lookup latency, one client (log scale)",
                ["p50", "p95", "p99"],
                {s["target"]: [s["p50"], s["p95"], s["p99"]] for s in payload["sequential"]},
                "seconds",
                log_scale=True,
            )
        )
    errors = [e for s in payload["sequential"] + payload["concurrent"] for e in s["first_errors"]]
    return f"""# Small-query latency and concurrency

Generated by `python -m benchmarks.latency{" --quick" if name.endswith("quick") else ""}`: primary-key lookups on a
{payload["rows"]:,}-row PostgreSQL table (`SELECT * FROM sales.events WHERE id = <random>`), through
Meshgate (ADBC Flight SQL) and straight to PostgreSQL (ADBC PostgreSQL). Clients run on the same machine.

## Machine

{machine_markdown(payload["machine"])}

## One client, {payload["queries"]} lookups in a row

{markdown_table(["target", "queries", "p50", "p95", "p99", "queries/s", CPU, "errors"], sequential_rows)}

Meshgate p50 / PostgreSQL p50: {ratio:.1f}x.

## Concurrent clients, {payload["seconds_per_level"]:g} s per level

{markdown_table(["clients", "target", "queries", "queries/s", "p50", "p99", CPU, MEMORY, "errors"], concurrent_rows)}

"{CPU}": the CPU time (user + system, all threads) the gateway process used while the clients
sent lookups (after they connected), divided by the lookups answered.
"{MEMORY}": the gateway's peak resident memory while the clients opened their connections (each
logs in: an argon2id password check) and then while they sent lookups.

## Errors

{chr(10).join(f"- `{e}`" for e in errors) if errors else "None."}

## Plots

{plots.image_links(made)}
"""


if __name__ == "__main__":
    raise SystemExit(main())
