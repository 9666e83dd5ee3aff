"""Small-query latency and concurrency: a primary-key lookup through Meshgate and straight to PostgreSQL.

``python -m benchmarks.latency`` loads ``events`` (1 million rows by default, see
:mod:`benchmarks.events`) into PostgreSQL, starts ``meshgate serve`` and sends
``SELECT * FROM sales.events WHERE id = <random id>``:

- latency: one client, one connection, ``--queries`` lookups one after another (after a
  warm-up), through the gateway and straight to PostgreSQL (ADBC PostgreSQL, the same SQL
  on the table): p50/p95/p99;
- concurrency: 1, 4, 16 and 64 clients (threads of this process, a connection each) for
  ``--seconds`` each: queries per second, latency percentiles under load, and errors.

The gateway is asked through two Flight SQL clients: the ADBC driver (what BI tools and
notebooks use; it prepares every statement, four calls a lookup) and ``flightsql-dbapi``
(pyarrow's Flight client; a statement query and its DoGet, two calls). Every lookup's answer
is checked (one row, the id asked for). The clients run on the same 2 cores as the servers:
client time is part of every figure, so the CPU the clients' process used per lookup is
reported next to the gateway's.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import adbc_driver_postgresql.dbapi as pg
from flightsql import FlightSQLClient

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
    client_cpu: float = math.nan  # CPU seconds this process (the clients) used
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
            "client_cpu_ms_per_query": 1000 * self.client_cpu / len(self.latencies) if self.latencies else None,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
        }


Lookup = Callable[[Any, int], None]


ADBC = "Meshgate (ADBC)"
PYARROW = "Meshgate (pyarrow)"
DIRECT = "PostgreSQL direct"


def gateway_lookup(connection: Any, key: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM sales.events WHERE id = {key}")
        rows = cursor.fetchall()
    if len(rows) != 1 or rows[0][0] != key:
        raise AssertionError(f"id {key}: got {rows[:2]}")


def pyarrow_lookup(client: Any, key: int) -> None:
    """The lookup through flightsql-dbapi's client: a statement query, then its one endpoint's DoGet."""
    info = client.execute(f"SELECT * FROM sales.events WHERE id = {key}")
    table = client.do_get(info.endpoints[0].ticket).read_all()
    if table.num_rows != 1 or table.column(0)[0].as_py() != key:
        raise AssertionError(f"id {key}: got {table.slice(0, 2).to_pylist()}")


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
        own = _own_cpu()
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
        load.client_cpu = _own_cpu() - own
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
    cpu = [0.0, 0.0]  # the gateway's and this process's, when the window opened

    def open_window() -> None:
        if server_pid is not None:
            load.peak_connecting = peak_rss(server_pid)
            reset_peak(server_pid)
            cpu[0] = cpu_seconds(server_pid)
        cpu[1] = _own_cpu()
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
    load.client_cpu = _own_cpu() - cpu[1]
    if server_pid is not None:
        load.peak_querying = peak_rss(server_pid)
        load.server_cpu = cpu_seconds(server_pid) - cpu[0]
    return load


def _own_cpu() -> float:
    """CPU seconds (user + system, all threads) this process, the clients, has used."""
    times = os.times()
    return times.user + times.system


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

            host, port = urlparse(server.uri).hostname, urlparse(server.uri).port
            credentials = server.credentials

            def open_pyarrow() -> Any:
                return FlightSQLClient(
                    host=host, port=port, insecure=True, user=credentials.user, password=credentials.password
                )

            targets: list[tuple[str, Callable[[], Any], Lookup, int | None]] = [
                (ADBC, open_gateway, gateway_lookup, server.pid),
                (PYARROW, open_pyarrow, pyarrow_lookup, server.pid),
                (DIRECT, open_postgres, direct, None),
            ]
            for target, open_, lookup, pid in targets:
                loads.append(sequential(target, open_, lookup, rows, queries, pid))
            sequential_loads = len(loads)
            for clients in QUICK_CONCURRENCY if args.quick else CONCURRENCY:
                level = [
                    concurrent(t, connect, lookup, rows, clients, seconds, pid) for t, connect, lookup, pid in targets
                ]
                loads += level
                log(
                    f"latency {clients} clients: "
                    + ", ".join(
                        f"{load.target} {load.throughput:.0f} q/s ({len(load.errors)} errors)" for load in level
                    )
                )
    for load in loads[:sequential_loads]:
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
        "sequential": [load.summary() for load in loads[:sequential_loads]],
        "concurrent": [load.summary() for load in loads[sequential_loads:]],
        "elapsed_seconds": time.perf_counter() - started,
    }
    report = _report(payload, args.results_dir, name, plots_wanted=not args.no_plots)
    path = write_results(args.results_dir, name, payload, report)
    errors = sum(load.summary()["errors"] for load in loads)
    log(f"latency: {errors} errors. Report: {path}")
    return 0


CPU = "gateway CPU per query"
CLIENT_CPU = "client CPU per query"
MEMORY = "gateway peak memory: connecting / querying"
CONCURRENT_COLUMNS = ["clients", "target", "queries", "queries/s", "p50", "p99", CPU, CLIENT_CPU, MEMORY, "errors"]


def _memory(summary: dict[str, Any]) -> str:
    connecting, querying = summary.get("gateway_peak_rss_connecting"), summary.get("gateway_peak_rss_querying")
    return f"{fmt_bytes(connecting)} / {fmt_bytes(querying)}" if connecting and querying else ""


def _cpu(summary: dict[str, Any], key: str = "gateway_cpu_ms_per_query") -> str:
    value = summary.get(key)
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
            _cpu(s, "client_cpu_ms_per_query"),
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
            _cpu(s, "client_cpu_ms_per_query"),
            _memory(s),
            s["errors"],
        ]
        for s in payload["concurrent"]
    ]
    p50 = {s["target"]: s["p50"] for s in payload["sequential"]}
    overhead = "; ".join(
        f"{target}: p50 {fmt_seconds(p50[target])}, {p50[target] / p50[DIRECT]:.1f}x PostgreSQL's, "
        f"{fmt_seconds(p50[target] - p50[DIRECT])} over it"
        for target in (ADBC, PYARROW)
        if target in p50 and DIRECT in p50
    )
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
                    for target in (ADBC, PYARROW, DIRECT)
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
Meshgate and straight to PostgreSQL (ADBC PostgreSQL). Meshgate is asked through two Flight SQL clients: the ADBC
driver, which prepares every statement (four calls a lookup), and flightsql-dbapi over pyarrow's Flight client (a
statement query and its DoGet: two calls). Clients run on the same machine.

## Machine

{machine_markdown(payload["machine"])}

## One client, {payload["queries"]} lookups in a row

{markdown_table(["target", "queries", "p50", "p95", "p99", "queries/s", CPU, CLIENT_CPU, "errors"], sequential_rows)}

{overhead}.

## Concurrent clients, {payload["seconds_per_level"]:g} s per level

{markdown_table(CONCURRENT_COLUMNS, concurrent_rows)}

"{CPU}": the CPU time (user + system, all threads) the gateway process used while the clients
sent lookups (after they connected), divided by the lookups answered. "{CLIENT_CPU}": the same of
the benchmark's own process, where the clients run (their drivers, and Python turning answers into rows).
"{MEMORY}": the gateway's peak resident memory while the clients opened their connections (each
logs in: an argon2id password check) and then while they sent lookups.

## Errors

{chr(10).join(f"- `{e}`" for e in errors) if errors else "None."}

## Plots

{plots.image_links(made)}
"""


if __name__ == "__main__":
    raise SystemExit(main())
