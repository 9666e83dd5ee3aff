"""Pushdown efficiency: rows fetched from the source per row the query needs (1.0 is ideal).

``python -m benchmarks.pushdown`` puts 10 million ``events`` (see :mod:`benchmarks.events`) in
PostgreSQL (``sales.events``) and in a Parquet file (``logistics.events``), 100 000 customers in
SQLite (``crm.customers``), starts ``meshgate serve`` and runs selective queries against each
copy of ``events``: a point lookup, a range, a LIKE prefix, an IN list, a join with a small
filtered side and a bare LIMIT.

- Rows needed: the rows of ``events`` in the answer (checked against DataFusion over the Parquet file).
- Rows fetched, PostgreSQL: what Meshgate's EXPLAIN ANALYZE reports the source returned.
- Rows fetched, Parquet: the gateway reads Parquet with DataFusion's own reader, which its
  EXPLAIN ANALYZE does not report; the figure is the ``output_rows`` of the Parquet scan in a
  DataFusion session configured like the gateway's (filters applied while decoding), after
  row-group and page-index pruning. DataFusion's default (``pushdown_filters`` off, rows
  filtered after decoding) is shown next to it.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
from adbc_driver_manager import Error as AdbcError
from datafusion import SessionConfig, SessionContext

from benchmarks import events, plots
from benchmarks.compare import differences
from benchmarks.harness import (
    Gateway,
    adbc_message,
    arguments,
    explain_analyze,
    fmt_ratio,
    fmt_seconds,
    log,
    machine,
    machine_markdown,
    markdown_table,
    median,
    runs_of,
    write_results,
)
from gateway.plan.late_materialisation import file_spans, late_materialisation
from tests.support.postgres import postgres_server, temporary_schema

FULL_ROWS = 10_000_000
QUICK_ROWS = 100_000
SOURCES = {"sales": "PostgreSQL", "logistics": "Parquet"}


def queries(rows: int) -> dict[str, str]:
    """The selective queries, with ``{t}`` for the events product."""
    ids = ", ".join(str(rows * k // 21) for k in range(1, 21))
    prefix = str(rows // 810)[:5] or "1"
    low = rows // 2
    return {
        "point lookup": f"SELECT * FROM {{t}} WHERE id = {rows * 42 // 100 + 7}",
        "range": f"SELECT * FROM {{t}} WHERE id BETWEEN {low} AND {low + rows // 1000 - 1}",
        "LIKE prefix": f"SELECT * FROM {{t}} WHERE name LIKE 'name-{prefix}%'",
        "IN list": f"SELECT * FROM {{t}} WHERE id IN ({ids})",
        "join, small filtered side": (
            "SELECT e.* FROM {t} e JOIN crm.customers c ON e.customer_id = c.id"
            " WHERE c.region = 'north' AND c.segment = 'gold' AND c.id <= 5000"
        ),
        "LIMIT": "SELECT * FROM {t} LIMIT 10",
    }


@dataclass
class Measurement:
    query: str
    domain: str
    sql: str
    needed: int | None = None
    fetched: int | None = None
    fetched_with_pushdown_filters: int | None = None
    other_fetched: dict[str, int] = field(default_factory=dict)
    source_sql: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    direct_seconds: float | None = None
    error: str | None = None
    correct: bool | None = None
    difference: str | None = None

    @property
    def ratio(self) -> float:
        if self.fetched is None or not self.needed:
            return math.nan
        return self.fetched / self.needed

    @property
    def ratio_with_pushdown_filters(self) -> float:
        if self.fetched_with_pushdown_filters is None or not self.needed:
            return math.nan
        return self.fetched_with_pushdown_filters / self.needed


def reference_context(data: events.EventsData, *, pushdown_filters: bool) -> SessionContext:
    """DataFusion set up like the gateway's sessions, with both events products on the Parquet file."""
    config = (
        SessionConfig()
        .with_target_partitions(2)
        .with_batch_size(65536)
        .set("datafusion.execution.parquet.schema_force_view_types", "false")
        .set("datafusion.execution.parquet.pushdown_filters", "true" if pushdown_filters else "false")
    )
    ctx = SessionContext(config)
    for domain in ("sales", "logistics", "crm"):
        ctx.sql(f"CREATE SCHEMA {domain}").collect()
    ctx.register_parquet("sales.events", str(data.parquet))
    ctx.register_parquet("logistics.events", str(data.parquet))
    with sqlite3.connect(data.sqlite) as connection:
        rows = connection.execute("SELECT id, region, segment FROM customers").fetchall()
    connection.close()
    customers = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "region": [r[1] for r in rows],
            "segment": [r[2] for r in rows],
        }
    )
    ctx.register_record_batches("crm.customers", [customers.to_batches()])
    return ctx


def _kind(table_scan: Any) -> str | None:
    """What the gateway's rule takes a scan of :func:`reference_context` for."""
    _, schema, table = table_scan.fqn()
    return {("logistics", "events"): "files", ("crm", "customers"): "sql"}.get((str(schema), str(table)))


_OUTPUT_ROWS = re.compile(r"output_rows=([\d.]+)\s*([KMB]?)")
_SCALE = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}


def parquet_rows(ctx: SessionContext, sql: str) -> int:
    """Rows the Parquet scans of ``sql`` produced (DataFusion's EXPLAIN ANALYZE ``output_rows``).

    DataFusion prints large counts with 4 significant digits (``20.00 K``).
    """
    table = ctx.sql(f"EXPLAIN ANALYZE {sql}").to_arrow_table()
    total = 0.0
    for text in table.column(1).to_pylist():
        for line in text.splitlines():
            if "DataSourceExec" in line and ".parquet" in line:
                found = _OUTPUT_ROWS.search(line)
                if found:
                    total += float(found.group(1)) * _SCALE[found.group(2)]
    return round(total)


def main(argv: list[str] | None = None) -> int:
    parser = arguments("Pushdown efficiency: rows fetched per row needed, PostgreSQL and Parquet.", runs=3)
    parser.add_argument("--rows", type=int, default=None, help=f"events rows (default {FULL_ROWS:,}; quick 100,000)")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    runs = runs_of(args)
    name = "pushdown-quick" if args.quick else "pushdown"
    started = time.perf_counter()
    data = events.generate(rows, args.work_dir)
    # The gateway evaluates Parquet filters while decoding where the plan shows it pays
    # (gateway/plan/late_materialisation.py); DataFusion's default never does, and is shown
    # next to it for comparison.
    gateway_like = reference_context(data, pushdown_filters=True)
    default = reference_context(data, pushdown_filters=False)
    spans = file_spans([pq.read_metadata(data.parquet)])  # what the gateway reads from the footer
    info = machine()
    measurements: list[Measurement] = []
    with postgres_server(args.work_dir) as pg_uri, temporary_schema(pg_uri, "bench_pushdown") as pg_schema:
        events.load_postgres(data, pg_uri, pg_schema)
        mesh = events.write_mesh(args.work_dir / f"mesh-events-{rows}", data, pg_uri, pg_schema)
        with Gateway(mesh) as server:
            connection = server.connect(600)
            try:
                for label, template in queries(rows).items():
                    for domain in SOURCES:
                        sql = template.format(t=f"{domain}.events")
                        measurements.append(
                            _measure(connection, label, domain, sql, gateway_like, default, runs, spans)
                        )
            finally:
                connection.close()
        _direct_postgres_times(measurements, pg_uri, pg_schema, runs)
    payload = {
        "benchmark": "pushdown",
        "rows": rows,
        "runs": runs,
        "machine": info,
        "measurements": [
            {**m.__dict__, "ratio": m.ratio, "ratio_with_pushdown_filters": m.ratio_with_pushdown_filters}
            for m in measurements
        ],
        "elapsed_seconds": time.perf_counter() - started,
    }
    report = _report(payload, measurements, args.results_dir, name, plots_wanted=not args.no_plots)
    path = write_results(args.results_dir, name, payload, report)
    failures = [m for m in measurements if m.error or m.correct is False]
    log(f"pushdown: {len(measurements)} measurements, {len(failures)} failed or wrong. Report: {path}")
    return 0


def _measure(
    connection: Any,
    label: str,
    domain: str,
    sql: str,
    gateway_like: SessionContext,
    default: SessionContext,
    runs: int,
    spans: dict[str, tuple[float, float]],
) -> Measurement:
    measurement = Measurement(label, domain, sql)
    try:
        analyzed = explain_analyze(connection, sql)
        for stat in analyzed.sources:
            if stat.domain == domain:
                measurement.fetched = (measurement.fetched or 0) + stat.rows
                measurement.source_sql.append(stat.sql)
            else:
                measurement.other_fetched[stat.domain] = measurement.other_fetched.get(stat.domain, 0) + stat.rows
        result: pa.Table | None = None
        for _ in range(max(1, runs)):
            began = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(sql)
                result = cursor.fetch_arrow_table()
            measurement.times.append(time.perf_counter() - began)
        assert result is not None
        measurement.needed = result.num_rows
        reference = default.sql(sql).to_arrow_table()
        if "LIMIT" in sql:  # any 10 rows will do: check the count and that they exist
            measurement.difference = None if result.num_rows == reference.num_rows else "wrong row count"
        else:
            measurement.difference = differences(result, reference, ordered=False)
        measurement.correct = measurement.difference is None
    except AdbcError as error:
        measurement.error = adbc_message(error)
    if domain == "logistics":
        plan = default.sql(sql).optimized_logical_plan()
        late = late_materialisation(plan, _kind, lambda _, column: spans.get(column))
        measurement.fetched = parquet_rows(gateway_like if late else default, sql)
        measurement.fetched_with_pushdown_filters = parquet_rows(default, sql)
    log(
        f"pushdown {label} [{SOURCES[domain]}]: needed {measurement.needed}, fetched {measurement.fetched}"
        f" ({fmt_ratio(measurement.ratio)}), {fmt_seconds(median(measurement.times))} {measurement.error or ''}"
    )
    return measurement


def _direct_postgres_times(measurements: list[Measurement], uri: str, schema: str, runs: int) -> None:
    """For context: each single-table PostgreSQL query sent straight to PostgreSQL."""
    with pg.connect(uri, autocommit=True) as connection:
        for measurement in measurements:
            if measurement.domain != "sales" or "JOIN" in measurement.sql:
                continue
            sql = measurement.sql.replace("sales.events", f'"{schema}".events')
            times = []
            for _ in range(max(1, runs)):
                began = time.perf_counter()
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    cursor.fetch_arrow_table()
                times.append(time.perf_counter() - began)
            measurement.direct_seconds = median(times)


def _report(
    payload: dict[str, Any], measurements: list[Measurement], results_dir: Path, name: str, *, plots_wanted: bool
) -> str:
    table = []
    for m in measurements:
        others = ", ".join(f"{k} {v:,}" for k, v in m.other_fetched.items())
        table.append(
            [
                m.query,
                SOURCES[m.domain],
                f"{m.needed:,}" if m.needed is not None else "-",
                f"{m.fetched:,}" if m.fetched is not None else "-",
                fmt_ratio(m.ratio),
                fmt_ratio(m.ratio_with_pushdown_filters) if m.domain == "logistics" else "",
                others or "",
                fmt_seconds(median(m.times)),
                fmt_seconds(m.direct_seconds) if m.direct_seconds is not None else "",
                "FAILED" if m.error else ("ok" if m.correct else "WRONG"),
            ]
        )
    header = [
        "query",
        "source",
        "rows needed",
        "rows fetched",
        "fetched/needed",
        "DataFusion's default (filters after decoding)",
        "other sources",
        "Meshgate time",
        "PostgreSQL direct",
        "correct",
    ]
    sent = "\n".join(
        f"- {m.query}: `{' ; '.join(m.source_sql)}`" for m in measurements if m.domain == "sales" and m.source_sql
    )
    problems = "\n".join(
        f"- {m.query} [{SOURCES[m.domain]}]: {m.error or m.difference}"
        for m in measurements
        if m.error or m.correct is False
    )
    made: list[Path | None] = []
    if plots_wanted:
        labels = list(dict.fromkeys(m.query for m in measurements))
        made.append(
            plots.grouped_bars(
                results_dir / f"{name}-ratios.png",
                f"Rows fetched per row needed ({payload['rows']:,} events; log scale; 1 is ideal)",
                labels,
                {
                    "PostgreSQL": [_ratio(measurements, q, "sales") for q in labels],
                    "Parquet": [_ratio(measurements, q, "logistics") for q in labels],
                },
                "rows fetched / rows needed",
                log_scale=True,
                reference_line=1.0,
            )
        )
    return f"""# Pushdown efficiency, {payload["rows"]:,} events

Generated by `python -m benchmarks.pushdown{" --quick" if name.endswith("quick") else ""}`; Meshgate times are the
median of {payload["runs"]} run(s) through the ADBC Flight SQL driver.

## Machine

{machine_markdown(payload["machine"])}

## Results

{markdown_table(header, table)}

"rows fetched": for PostgreSQL, the rows the source returned to the gateway (EXPLAIN ANALYZE); for
Parquet, the rows DataFusion's Parquet scan produced after row-group and page-index pruning, in a
session configured like the gateway's, which applies filters while decoding (its EXPLAIN ANALYZE
does not report file scans); "DataFusion's default": the same scan with
`datafusion.execution.parquet.pushdown_filters` off, as DataFusion ships it. "other sources":
rows fetched from the other side of a join. "PostgreSQL direct": the same single-table query sent
straight to PostgreSQL with ADBC.

## What PostgreSQL received

{sent or "-"}

## Failures and wrong answers

{problems or "None."}

## Plots

{plots.image_links(made)}
"""


def _ratio(measurements: list[Measurement], query: str, domain: str) -> float | None:
    for m in measurements:
        if m.query == query and m.domain == domain:
            return m.ratio
    return None


if __name__ == "__main__":
    raise SystemExit(main())
