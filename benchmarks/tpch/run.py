"""Cross-domain TPC-H: Meshgate against DuckDB-federated, the centralised ceiling and the source floor.

``python -m benchmarks.tpch --sf 1`` generates TPC-H with ``tpchgen-cli``, spreads it over four
domains (see :mod:`benchmarks.tpch.data`), starts ``meshgate serve`` and runs the 22 queries of
``queries/`` through the ADBC Flight SQL driver. In the same run, query by query, one system
after the other (so that work elsewhere on a shared machine lands on all of them alike, not on
whichever system's turn it is: whole-suite turns moved single runs' ratios by tens of percent):

- **centralised**: DataFusion in this process over all eight tables as local Parquet. Its
  answer is the reference every other result is checked against.
- **Meshgate**: ``EXPLAIN ANALYZE`` once (warm-up; what each source received), then the timed runs.
- **source floor**: the queries Meshgate's EXPLAIN ANALYZE reports, sent straight to their
  PostgreSQL and SQLite sources with ADBC, plus, for the Parquet and CSV domains (read by
  DataFusion inside the gateway, so not listed there), DataFusion reading the columns and
  filters of the plan's scans of those files. The floor is the sum of those times.
- **DuckDB federated**: DuckDB 1.5.5 in its own environment, PostgreSQL and SQLite attached
  read-only, ``read_parquet``/``read_csv`` for the files, behind views with the mesh's names.

Each system gets one untimed warm-up run per query, then ``--runs`` timed runs (median).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import adbc_driver_sqlite.dbapi as sqlite
import pyarrow as pa
from adbc_driver_manager import Error as AdbcError
from datafusion import SessionConfig, SessionContext
from datafusion.expr import Expr

from benchmarks import duckdb_peer, plots
from benchmarks.compare import differences, has_order_by
from benchmarks.harness import (
    Analyzed,
    Gateway,
    adbc_message,
    arguments,
    current_rss,
    explain_analyze,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    geomean,
    log,
    machine,
    machine_markdown,
    markdown_table,
    median,
    mib,
    peak_rss,
    reset_peak,
    runs_of,
    write_results,
)
from benchmarks.tpch.data import DOMAIN_OF, DOMAINS, TpchData, generate, load_postgres, sf_label, write_mesh
from tests.support.postgres import postgres_server, temporary_schema

QUERIES = Path(__file__).resolve().parent / "queries"
FILE_DOMAINS = ("logistics", "reference")
QUICK_SF = 0.01


@dataclass
class Query:
    name: str
    sql: str
    ordered: bool


@dataclass
class Outcome:
    """One system's measurements of one query."""

    times: list[float] = field(default_factory=list)
    error: str | None = None
    rows: int | None = None
    peak_rss: int | None = None
    correct: bool | None = None
    difference: str | None = None

    @property
    def median(self) -> float:
        return median(self.times) if self.times and self.error is None else math.nan


def load_queries(selection: str = "all") -> list[Query]:
    """The query files, as sent: the text of ``qNN.sql`` without its final semicolon."""
    paths = sorted(QUERIES.glob("q*.sql"))
    if selection != "all":
        wanted = {f"q{int(item):02d}" for item in selection.split(",") if item.strip()}
        paths = [p for p in paths if p.stem in wanted]
    queries = []
    for path in paths:
        sql = path.read_text().strip().rstrip(";").rstrip()
        queries.append(Query(path.stem, sql, has_order_by(sql)))
    return queries


# -- centralised: DataFusion over local Parquet (the ceiling, and the reference answer) ----


def centralised_context(data: TpchData) -> SessionContext:
    ctx = SessionContext(SessionConfig().with_target_partitions(2))
    for domain, tables in DOMAINS.items():
        ctx.sql(f"CREATE SCHEMA {domain}").collect()
        for table in tables:
            ctx.register_parquet(f"{domain}.{table}", str(data.parquet / f"{table}.parquet"))
    return ctx


def run_centralised(
    ctx: SessionContext, queries: list[Query], runs: int
) -> tuple[dict[str, Outcome], dict[str, pa.Table]]:
    outcomes: dict[str, Outcome] = {}
    references: dict[str, pa.Table] = {}
    for query in queries:
        outcome = outcomes[query.name] = Outcome()
        try:
            references[query.name] = ctx.sql(query.sql).to_arrow_table()
            outcome.rows = references[query.name].num_rows
            for _ in range(runs):
                began = time.perf_counter()
                ctx.sql(query.sql).to_arrow_table()
                outcome.times.append(time.perf_counter() - began)
        except Exception as error:
            outcome.error = str(error)
        log(f"centralised {query.name}: {fmt_seconds(outcome.median)} {outcome.error or ''}")
    return outcomes, references


# -- Meshgate -----------------------------------------------------------------------------


def _fetch(connection: Any, sql: str) -> pa.Table:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        table: pa.Table = cursor.fetch_arrow_table()
        return table


def run_meshgate(
    server: Gateway, queries: list[Query], runs: int, timeout: float
) -> tuple[dict[str, Outcome], dict[str, pa.Table], dict[str, Analyzed | str]]:
    outcomes: dict[str, Outcome] = {}
    results: dict[str, pa.Table] = {}
    analyzed: dict[str, Analyzed | str] = {}
    connection = server.connect(timeout)
    try:
        for query in queries:
            outcome = outcomes[query.name] = Outcome()
            reset_peak(server.pid)
            try:
                analyzed[query.name] = explain_analyze(connection, query.sql)
            except AdbcError as error:
                analyzed[query.name] = f"EXPLAIN ANALYZE failed: {adbc_message(error)}"
            try:
                began = time.perf_counter()
                results[query.name] = _fetch(connection, query.sql)
                first = time.perf_counter() - began
                outcome.rows = results[query.name].num_rows
                for _ in range(runs):
                    began = time.perf_counter()
                    _fetch(connection, query.sql)
                    outcome.times.append(time.perf_counter() - began)
                if not outcome.times:
                    outcome.times.append(first)
            except AdbcError as error:
                outcome.error = adbc_message(error)
            outcome.peak_rss = peak_rss(server.pid)
            if not server.process.alive() or (outcome.error and "deadline" in outcome.error.lower()):
                what = "died" if not server.process.alive() else "timed out"
                log(f"meshgate {query.name}: gateway {what}; restarting")
                outcome.error = f"{outcome.error or 'no error reported'} (gateway log: {server.process.tail(5)})"
                connection.close()
                server.restart()
                connection = server.connect(timeout)
            log(f"meshgate {query.name}: {fmt_seconds(outcome.median)} {outcome.error or ''}")
    finally:
        connection.close()
    return outcomes, results, analyzed


# -- the source floor ---------------------------------------------------------------------


@dataclass
class SourceRead:
    """One read the floor repeats: a source query, or a scan of a file domain."""

    domain: str
    source: str
    sql: str
    rows: int = 0
    bytes: int = 0
    times: list[float] = field(default_factory=list)
    error: str | None = None


def file_scans(ctx: SessionContext, sql: str) -> list[tuple[str, Callable[[], pa.Table], str]]:
    """The plan's scans of file-domain tables: (domain, a function reading them, a description)."""
    found: list[tuple[str, Callable[[], pa.Table], str]] = []

    def walk(node: Any) -> None:
        variant = node.to_variant()
        if type(variant).__name__ == "TableScan":
            name = variant.table_name()
            domain = name.split(".")[-2]
            if domain in FILE_DOMAINS:
                columns = [column for _, column in variant.projection()]
                filters = [Expr(f) for f in variant.filters()]

                def read(name: str = name, columns: list[str] = columns, filters: list[Expr] = filters) -> pa.Table:
                    frame = ctx.table(name)
                    for predicate in filters:
                        frame = frame.filter(predicate)
                    return frame.select(*columns).to_arrow_table()

                where = f" WHERE {' AND '.join(str(f) for f in filters)}" if filters else ""
                found.append((domain, read, f"SELECT {', '.join(columns) or '(no columns)'} FROM {name}{where}"))
        for child in node.inputs():
            walk(child)

    walk(ctx.sql(sql).optimized_logical_plan())
    return found


def run_floor(
    ctx: SessionContext,
    queries: list[Query],
    analyzed: dict[str, Analyzed | str],
    pg_uri: str,
    data: TpchData,
    runs: int,
) -> dict[str, list[SourceRead]]:
    floors: dict[str, list[SourceRead]] = {}
    with (
        pg.connect(pg_uri, autocommit=True) as postgres,
        sqlite.connect(f"{data.sqlite.resolve().as_uri()}?mode=ro", autocommit=True) as lite,
    ):
        with lite.cursor() as cursor:
            cursor.execute("PRAGMA case_sensitive_like = ON")
        sources = {"sales": postgres, "procurement": lite}

        def through(connection: Any, sql: str) -> Callable[[], pa.Table]:
            def read() -> pa.Table:
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    table: pa.Table = cursor.fetch_arrow_table()
                    return table

            return read

        for query in queries:
            reads: list[tuple[SourceRead, Callable[[], pa.Table]]] = []
            report = analyzed.get(query.name)
            if isinstance(report, Analyzed):
                for stat in report.sources:
                    connection = sources.get(stat.domain)
                    if connection is not None:
                        reads.append((SourceRead(stat.domain, stat.source, stat.sql), through(connection, stat.sql)))
            try:
                for domain, read, text in file_scans(ctx, query.sql):
                    reads.append((SourceRead(domain, "DataFusion file scan", text), read))
            except Exception as error:
                log(f"floor {query.name}: cannot plan the file scans: {error}")
            for record, read in reads:
                try:
                    table = read()  # warm-up; gives the size
                    record.rows, record.bytes = table.num_rows, table.nbytes
                    for _ in range(runs):
                        began = time.perf_counter()
                        read()
                        record.times.append(time.perf_counter() - began)
                except Exception as error:
                    record.error = str(error)
            floors[query.name] = [record for record, _ in reads]
            log(f"floor {query.name}: {fmt_seconds(floor_seconds(floors[query.name]))}")
    return floors


def floor_seconds(reads: list[SourceRead]) -> float:
    if not reads or any(r.error for r in reads):
        return math.nan
    return sum(median(r.times) for r in reads)


# -- DuckDB as a federated engine -----------------------------------------------------------


def duckdb_setup(data: TpchData, pg_uri: str, pg_schema: str) -> list[str]:
    """ATTACH the databases read-only and give every table its mesh name through a view."""
    sources = {
        "customer": f'pg_sales."{pg_schema}".customer',
        "orders": f'pg_sales."{pg_schema}".orders',
        "lineitem": f"read_parquet({_literal(str(data.parquet / 'lineitem.parquet'))})",
        "part": "sqlite_procurement.part",
        "partsupp": "sqlite_procurement.partsupp",
        "supplier": "sqlite_procurement.supplier",
        "nation": f"read_csv({_literal(str(data.csv / 'nation.csv'))})",
        "region": f"read_csv({_literal(str(data.csv / 'region.csv'))})",
    }
    statements = [
        f"ATTACH {_literal(pg_uri)} AS pg_sales (TYPE postgres, READ_ONLY)",
        f"ATTACH {_literal(str(data.sqlite))} AS sqlite_procurement (TYPE sqlite, READ_ONLY)",
    ]
    statements += [f"CREATE SCHEMA {domain}" for domain in DOMAINS]
    statements += [
        f"CREATE VIEW {DOMAIN_OF[table]}.{table} AS SELECT * FROM {source}" for table, source in sources.items()
    ]
    return statements


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_duckdb(
    data: TpchData, pg_uri: str, pg_schema: str, queries: list[Query], runs: int, timeout: float, scratch: Path
) -> tuple[dict[str, Outcome] | None, dict[str, pa.Table], dict[str, Any]]:
    """DuckDB's outcomes and results, or None with the reason in the info when it cannot run."""
    out_dir = scratch / "duckdb-results"
    spec = {
        "load": ["postgres", "sqlite"],
        "setup": duckdb_setup(data, pg_uri, pg_schema),
        "queries": [{"name": q.name, "sql": q.sql} for q in queries],
        "runs": runs,
        "timeout": timeout,
        "threads": 2,
        "out_dir": str(out_dir),
    }
    try:
        report = duckdb_peer.run(spec, timeout=timeout)
    except duckdb_peer.PeerUnavailable as error:
        log(f"DuckDB peer SKIPPED: {error}")
        return None, {}, {"skipped": str(error)}
    outcomes: dict[str, Outcome] = {}
    results: dict[str, pa.Table] = {}
    for name, entry in report["queries"].items():
        outcomes[name] = Outcome(
            times=entry["times"], error=entry["error"], rows=entry["rows"], peak_rss=entry["peak_rss"]
        )
        path = out_dir / f"{name}.arrow"
        if entry["error"] is None and path.exists():
            with pa.memory_map(str(path)) as source:
                results[name] = pa.ipc.open_file(source).read_all()
        log(f"duckdb {name}: {fmt_seconds(outcomes[name].median)} {entry['error'] or ''}")
    return outcomes, results, {"version": report["version"], "threads": report["threads"]}


# -- the run --------------------------------------------------------------------------------


def check(
    outcomes: dict[str, Outcome], results: dict[str, pa.Table], references: dict[str, pa.Table], queries: list[Query]
) -> None:
    for query in queries:
        outcome = outcomes.get(query.name)
        if outcome is None or outcome.error is not None or query.name not in results:
            continue
        reference = references.get(query.name)
        if reference is None:
            continue
        outcome.difference = differences(results[query.name], reference, ordered=query.ordered)
        outcome.correct = outcome.difference is None


def main(argv: list[str] | None = None) -> int:
    parser = arguments(
        "Cross-domain TPC-H through Meshgate, against DuckDB federated and DataFusion centralised.", runs=3
    )
    parser.add_argument("--sf", type=float, default=None, help="scale factor (default 1; 0.01 with --quick)")
    parser.add_argument("--queries", default="all", help="which queries, e.g. 1,3,18 (default all 22)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per query run (default 600; 120 quick)")
    parser.add_argument("--no-duckdb", action="store_true", help="leave the DuckDB peer out")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report and plots from the results JSON, run nothing"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        return _rewrite_report(args.results_dir, "tpch-quick" if args.quick else "tpch", plots_wanted=not args.no_plots)
    sf = args.sf if args.sf is not None else (QUICK_SF if args.quick else 1.0)
    runs = runs_of(args)
    timeout = args.timeout or (120.0 if args.quick else 600.0)
    queries = load_queries(args.queries)
    name = "tpch-quick" if args.quick else "tpch"
    work_dir: Path = args.work_dir
    started = time.perf_counter()

    data = generate(sf, work_dir)
    ctx = centralised_context(data)
    info = machine()
    with postgres_server(work_dir) as pg_uri, temporary_schema(pg_uri, f"bench_tpch_sf{sf_label(sf)}") as pg_schema:
        info["postgresql"] = _postgres_version(pg_uri)
        load_postgres(data, pg_uri, pg_schema)
        mesh = write_mesh(work_dir / f"mesh-tpch-sf{sf_label(sf)}", data, pg_uri, pg_schema)

        central: dict[str, Outcome] = {}
        references: dict[str, pa.Table] = {}
        mesh_outcomes: dict[str, Outcome] = {}
        mesh_results: dict[str, pa.Table] = {}
        analyzed: dict[str, Analyzed | str] = {}
        floors: dict[str, list[SourceRead]] = {}
        duck_outcomes: dict[str, Outcome] | None = None if args.no_duckdb else {}
        duck_results: dict[str, pa.Table] = {}
        duck_info: dict[str, Any] = {"skipped": "--no-duckdb"}
        server = Gateway(mesh)
        try:
            idle_rss = current_rss(server.pid)
            for query in queries:  # each system in turn, query by query (see the module doc)
                _merge((central, references), run_centralised(ctx, [query], runs))
                _merge((mesh_outcomes, mesh_results, analyzed), run_meshgate(server, [query], runs, timeout))
                floors.update(run_floor(ctx, [query], analyzed, pg_uri, data, runs))
                if duck_outcomes is not None:
                    outcomes, results, duck_info = run_duckdb(
                        data, pg_uri, pg_schema, [query], runs, timeout, work_dir / f"scratch-{name}"
                    )
                    if outcomes is None:
                        duck_outcomes = None  # the peer cannot run: skipped for every query
                    else:
                        _merge((duck_outcomes, duck_results), (outcomes, results))
        finally:
            server.stop()
        if duck_outcomes is not None:
            check(duck_outcomes, duck_results, references, queries)
    check(mesh_outcomes, mesh_results, references, queries)
    info["duckdb_peer"] = duck_info

    payload = _payload(sf, runs, queries, central, mesh_outcomes, analyzed, floors, duck_outcomes, idle_rss, info)
    payload["elapsed_seconds"] = time.perf_counter() - started
    report = _report(payload, args.results_dir, name, plots_wanted=not args.no_plots)
    path = write_results(args.results_dir, name, payload, report)
    summary = payload["summary"]
    log(
        f"TPC-H SF{sf:g}: {summary['meshgate_correct']}/{len(queries)} correct; geomean Meshgate/DuckDB "
        f"{fmt_ratio(summary['geomean_vs_duckdb'])}, "
        f"Meshgate/centralised {fmt_ratio(summary['geomean_vs_centralised'])}"
        f" ({payload['elapsed_seconds']:.0f} s). Report: {path}"
    )
    if duck_outcomes is None:
        log(f"DuckDB peer skipped: {duck_info.get('skipped')}")
    return 0


def _merge(into: tuple[dict[str, Any], ...], parts: tuple[dict[str, Any], ...]) -> None:
    """Add one query's dictionaries (outcomes, results ...) to the run's, position by position."""
    for whole, part in zip(into, parts, strict=True):
        whole.update(part)


def _rewrite_report(results_dir: Path, name: str, *, plots_wanted: bool) -> int:
    """Rebuild the report from ``<name>.json`` (after changing how reports are written)."""
    payload: dict[str, Any] = json.loads((results_dir / f"{name}.json").read_text())

    def number(value: Any) -> float:
        return math.nan if value is None else float(value)

    for row in payload["queries"]:
        for system in ("meshgate", "duckdb", "centralised"):
            if row[system] is not None:
                row[system] = Outcome(**row[system])
        row["floor_reads"] = [SourceRead(**read) for read in row["floor_reads"]]
        for key, value in list(row.items()):
            if key.endswith("_seconds") or key.startswith("vs_"):
                row[key] = number(value)
    payload["summary"] = summarize(payload["queries"], payload["summary"]["gateway_idle_rss"])
    path = write_results(results_dir, name, payload, _report(payload, results_dir, name, plots_wanted=plots_wanted))
    log(f"rewrote {path}")
    return 0


def _postgres_version(uri: str) -> str:
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        row = cursor.fetchone()
        return str(row[0]) if row else "unknown"


def _payload(
    sf: float,
    runs: int,
    queries: list[Query],
    central: dict[str, Outcome],
    mesh: dict[str, Outcome],
    analyzed: dict[str, Analyzed | str],
    floors: dict[str, list[SourceRead]],
    duck: dict[str, Outcome] | None,
    idle_rss: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for query in queries:
        m, c = mesh[query.name], central[query.name]
        d = duck.get(query.name) if duck is not None else None
        reads = floors.get(query.name, [])
        report = analyzed.get(query.name)
        floor = floor_seconds(reads)
        domains: dict[str, dict[str, int]] = {}
        for read in reads:
            entry = domains.setdefault(read.domain, {"rows": 0, "bytes": 0, "queries": 0})
            entry["rows"] += read.rows
            entry["bytes"] += read.bytes
            entry["queries"] += 1
        rows.append(
            {
                "query": query.name,
                "route": report.route if isinstance(report, Analyzed) else report,
                "split": _split_reads(report) if isinstance(report, Analyzed) else [],
                "meshgate": m,
                "meshgate_seconds": m.median,
                "duckdb": d,
                "duckdb_seconds": d.median if d is not None else math.nan,
                "centralised": c,
                "centralised_seconds": c.median,
                "floor_seconds": floor,
                "floor_reads": reads,
                "fetched": domains,
                "vs_duckdb": m.median / d.median if d is not None else math.nan,
                "vs_centralised": m.median / c.median,
                "vs_floor": m.median / floor if floor and floor > 0 else math.nan,
            }
        )
    summary = summarize(rows, idle_rss)
    return {"benchmark": "tpch", "sf": sf, "runs": runs, "machine": info, "summary": summary, "queries": rows}


def summarize(rows: list[dict[str, Any]], idle_rss: int) -> dict[str, Any]:
    """Counts, failures and geometric means. Means are over the queries Meshgate answered
    correctly (a wrong answer's time means nothing), and each ratio over those both systems ran."""
    counted = [r for r in rows if r["meshgate"].correct]
    return {
        "queries": len(rows),
        "meshgate_correct": len(counted),
        "geomean_queries": [r["query"] for r in counted],
        "meshgate_failed": [r["query"] for r in rows if r["meshgate"].error is not None],
        "meshgate_wrong": [r["query"] for r in rows if r["meshgate"].correct is False],
        "duckdb_failed": [r["query"] for r in rows if r["duckdb"] is not None and r["duckdb"].error is not None],
        "duckdb_wrong": [r["query"] for r in rows if r["duckdb"] is not None and r["duckdb"].correct is False],
        "geomean_vs_duckdb": geomean([r["vs_duckdb"] for r in counted]),
        "geomean_vs_centralised": geomean([r["vs_centralised"] for r in counted]),
        "geomean_vs_floor": geomean([r["vs_floor"] for r in counted]),
        "geomean_meshgate_seconds": geomean([r["meshgate_seconds"] for r in counted]),
        "geomean_duckdb_seconds": geomean([r["duckdb_seconds"] for r in counted]),
        "geomean_centralised_seconds": geomean([r["centralised_seconds"] for r in counted]),
        "geomean_floor_seconds": geomean([r["floor_seconds"] for r in counted]),
        "total_meshgate_seconds": sum(r["meshgate_seconds"] for r in rows if math.isfinite(r["meshgate_seconds"])),
        "total_duckdb_seconds": sum(r["duckdb_seconds"] for r in rows if math.isfinite(r["duckdb_seconds"])),
        "total_centralised_seconds": sum(
            r["centralised_seconds"] for r in rows if math.isfinite(r["centralised_seconds"])
        ),
        "gateway_idle_rss": idle_rss,
        "gateway_peak_rss": max((r["meshgate"].peak_rss or 0 for r in rows), default=0),
        "duckdb_peak_rss": max((r["duckdb"].peak_rss or 0 for r in rows if r["duckdb"] is not None), default=0),
    }


def _status(outcome: Outcome | None) -> str:
    if outcome is None:
        return "-"
    if outcome.error is not None:
        return "FAILED"
    if outcome.correct is None:
        return "?"
    return "ok" if outcome.correct else "WRONG"


def _route(text: str) -> str:
    if text.startswith("single source"):
        found = re.search(r"domain '(\w+)'", text)
        return f"whole query to {found.group(1) if found else '?'}"
    if text.startswith("federated"):
        rules = re.search(r"planner rules applied: ([\w, ]+)", text)
        return f"federated; rules: {rules.group(1)}" if rules else "federated"
    return text[:40]


def _split_reads(report: Analyzed) -> list[str]:
    """The source reads split into ranges, as ``domain: 2 ctid ranges``."""
    found = []
    for source in report.sources:
        if source.detail:
            ranges = re.match(r"read in (\d+ [\w ]+?ranges)", source.detail)
            found.append(f"{source.domain}: {ranges.group(1) if ranges else source.detail}")
    return found


MAX_HEADLINE_LOAD = 1.5
"""Above this 1-minute load average at the start, the report writes no headline (the machine is
shared: figures taken under load are not comparable)."""


def _report(payload: dict[str, Any], results_dir: Path, name: str, *, plots_wanted: bool) -> str:
    rows = payload["queries"]
    summary = payload["summary"]
    info = payload["machine"]
    duck_info = info.get("duckdb_peer", {})
    duck_note = (
        f"DuckDB {duck_info.get('version')} ({duck_info.get('threads')} threads)"
        if "version" in duck_info
        else f"DuckDB peer skipped: {duck_info.get('skipped')}"
    )
    table = []
    for r in rows:
        m: Outcome = r["meshgate"]
        fetched = ", ".join(
            f"{domain} {entry['rows']:,} rows/{fmt_bytes(entry['bytes'])}" for domain, entry in r["fetched"].items()
        )
        table.append(
            [
                r["query"],
                _route(r["route"]) + (f"; split reads: {', '.join(r['split'])}" if r.get("split") else ""),
                fmt_seconds(r["meshgate_seconds"]),
                fmt_seconds(r["duckdb_seconds"]),
                fmt_seconds(r["centralised_seconds"]),
                fmt_seconds(r["floor_seconds"]),
                fmt_ratio(r["vs_duckdb"]),
                fmt_ratio(r["vs_centralised"]),
                fmt_ratio(r["vs_floor"]),
                f"{_status(m)} / {_status(r['duckdb'])}",
                fetched or "-",
                f"{mib(m.peak_rss or 0):.0f}",
            ]
        )
    header = [
        "query",
        "route",
        "Meshgate",
        "DuckDB fed.",
        "centralised",
        "source floor",
        "M/DuckDB",
        "M/central",
        "M/floor",
        "correct (M / DuckDB)",
        "fetched from sources",
        "gateway peak MiB",
    ]
    problems = []
    for r in rows:
        for system in ("meshgate", "duckdb"):
            outcome: Outcome | None = r[system]
            if outcome is None:
                continue
            if outcome.error is not None:
                problems.append(f"- **{r['query']} {system}: failed**: `{outcome.error[:500]}`")
            elif outcome.correct is False:
                problems.append(f"- **{r['query']} {system}: wrong answer**: {outcome.difference}")
    made: list[Path | None] = []
    if plots_wanted:
        names = [r["query"] for r in rows]
        made.append(
            plots.grouped_bars(
                results_dir / f"{name}-times.png",
                f"TPC-H SF{payload['sf']:g}: median time per query (log scale)",
                names,
                {
                    "Meshgate": [r["meshgate_seconds"] for r in rows],
                    "DuckDB federated": [r["duckdb_seconds"] for r in rows],
                    "DataFusion centralised": [r["centralised_seconds"] for r in rows],
                    "source floor": [r["floor_seconds"] for r in rows],
                },
                "seconds",
                log_scale=True,
            )
        )
        made.append(
            plots.grouped_bars(
                results_dir / f"{name}-ratios.png",
                f"TPC-H SF{payload['sf']:g}: Meshgate time as a multiple of each peer (log scale)",
                names,
                {
                    "Meshgate / DuckDB federated": [r["vs_duckdb"] for r in rows],
                    "Meshgate / centralised": [r["vs_centralised"] for r in rows],
                    "Meshgate / source floor": [r["vs_floor"] for r in rows],
                },
                "ratio",
                log_scale=True,
                reference_line=1.0,
            )
        )
    headline = markdown_table(
        ["", "geometric mean"],
        [
            ["Meshgate / DuckDB federated", fmt_ratio(summary["geomean_vs_duckdb"])],
            ["Meshgate / DataFusion centralised", fmt_ratio(summary["geomean_vs_centralised"])],
            ["Meshgate / source floor", fmt_ratio(summary["geomean_vs_floor"])],
            *[
                [f"{label} time", fmt_seconds(summary[f"geomean_{key}_seconds"])]
                for label, key in (
                    ("Meshgate", "meshgate"),
                    ("DuckDB federated", "duckdb"),
                    ("centralised", "centralised"),
                    ("source floor", "floor"),
                )
            ],
        ],
    )
    load = (info.get("load_average_at_start") or [0.0])[0]
    if load > MAX_HEADLINE_LOAD:
        headline = (
            f"**No headline: the 1-minute load average was {load:.2f} when the run started (over"
            f" {MAX_HEADLINE_LOAD}).** Other work competed for the cores; rerun on a quiet machine. The"
            f" geometric mean of this run, for what it is worth: Meshgate / DuckDB federated"
            f" {fmt_ratio(summary['geomean_vs_duckdb'])}."
        )
    totals = ", ".join(
        f"{label} {fmt_seconds(summary[f'total_{key}_seconds'])}"
        for label, key in (("Meshgate", "meshgate"), ("DuckDB", "duckdb"), ("centralised", "centralised"))
    )
    return f"""# Cross-domain TPC-H, SF{payload["sf"]:g}

Generated by `python -m benchmarks.tpch --sf {payload["sf"]:g}{" --quick" if name.endswith("quick") else ""}`;
median of {payload["runs"]} timed run(s) after one warm-up; query by query, each system in turn.
Domains: sales (customer, orders) in PostgreSQL {info.get("postgresql", "?")}; logistics (lineitem) as Parquet;
procurement (part, partsupp, supplier) in SQLite; reference (nation, region) as CSV. {duck_note}.

## Machine

{machine_markdown({k: v for k, v in info.items() if k not in ("duckdb_peer", "postgresql")})}

## Headline

{headline}

Correct answers: Meshgate {summary["meshgate_correct"]} of {summary["queries"]}. Gateway memory: after start-up
{fmt_bytes(summary["gateway_idle_rss"])}, peak {fmt_bytes(summary["gateway_peak_rss"])}; DuckDB's process: peak
{fmt_bytes(summary["duckdb_peak_rss"])}. Total of medians: {totals}.
Geometric means are over the {len(summary["geomean_queries"])} queries Meshgate answered correctly.

## Per query

{markdown_table(header, table)}

"fetched from sources": rows and Arrow bytes read from each domain (for PostgreSQL and SQLite, the
queries Meshgate's EXPLAIN ANALYZE lists, re-run for the floor; for Parquet and CSV, DataFusion's scans
of the files with the plan's columns and filters).

## Failures and wrong answers

{chr(10).join(problems) if problems else "None."}

## Plots

{plots.image_links(made)}
"""
