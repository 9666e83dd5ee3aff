"""Quality checks: each product's declared assertions, run against its source through the engine.

    checks:
      - unique: [order_id]
      - {not_null: customer_id, max_null_ratio: 0.01}
      - freshness: {max_age: 24h, column: updated_at}
      - row_count: {min: 1, max: 10000000}
      - {name: no_negative_totals, sql: "SELECT order_id FROM sales.orders WHERE total < 0"}

:func:`run_checks` first reads each domain again from its source (so contract drift
is found as it happens; a ``contract`` result records it), then runs every check as
SQL through the engine. The built-in checks (unique, not_null, freshness, row_count)
read only their own product and run as the platform; a ``sql`` check, whose query can
name anything, runs *as the domain that declares it*: its owner's rights under the same
policies as any query (:func:`domain_caller`), so it cannot read what its owners cannot.
Results go to a :class:`QualityLog` (behind ``system.quality``, and optionally a
JSON-lines file); each product's latest status shows in ``system.products``.
:class:`CheckScheduler` runs them periodically while the gateway serves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from gateway.api import CallerContext
from gateway.config import CheckConfig
from gateway.errors import MeshgateError, NotFoundError, NotSupportedError
from gateway.policy import PolicySet
from meshcore.sql import quote_identifier

if TYPE_CHECKING:
    from gateway.catalog import Product
    from gateway.engine import Engine

log = logging.getLogger(__name__)

OUTCOMES = ("pass", "fail", "error")
HIDDEN_DETAIL = "hidden: your access to this product is filtered or masked, so its counts are not shown"
CHECKER = CallerContext(user="meshgate:checks")  # how built-in check queries appear in the audit log


def domain_caller(domain: str, owner: str | None) -> CallerContext:
    """Who a domain's ``sql`` checks run as: ``meshgate:checks:<domain>``, acting as the domain's owner."""
    return CallerContext(user=f"meshgate:checks:{domain}", acts_as=(owner,) if owner else ())


QUALITY_SCHEMA = pa.schema(
    [
        pa.field("domain", pa.string(), nullable=False),
        pa.field("product", pa.string(), nullable=False),
        pa.field("check", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("observed", pa.float64()),
        pa.field("checked_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("duration_ms", pa.float64()),
    ]
)


@dataclass(frozen=True)
class CheckResult:
    """One check of one product, once."""

    domain: str
    product: str
    check: str
    kind: str  # a check kind, or "contract" / "source"
    outcome: str  # pass | fail | error
    detail: str
    observed: float | None
    checked_at: dt.datetime
    duration_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


@dataclass(frozen=True)
class ProductQuality:
    """A product's latest quality: ``passed`` or ``failed`` (a check failed or could not run)."""

    status: str
    checked_at: dt.datetime
    failed: tuple[str, ...] = ()


class QualityLog:
    """Check results: a bounded history, the latest run per product, and an optional JSON-lines file."""

    def __init__(self, path: Path | None = None, capacity: int = 10_000) -> None:
        self.path = path
        self._results: deque[CheckResult] = deque(maxlen=capacity)
        self._latest: dict[tuple[str, str], tuple[CheckResult, ...]] = {}
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, results: Sequence[CheckResult]) -> None:
        """Add one run's results; each product they name gets them as its latest."""
        by_product: dict[tuple[str, str], list[CheckResult]] = {}
        for result in results:
            by_product.setdefault((result.domain, result.product), []).append(result)
        lines = [json.dumps(_jsonable(result), ensure_ascii=False) for result in results]
        with self._lock:
            self._results.extend(results)
            self._latest.update({key: tuple(found) for key, found in by_product.items()})
            if self.path is not None and lines:
                try:
                    with self.path.open("a", encoding="utf-8") as out:
                        out.write("\n".join(lines) + "\n")
                except OSError as error:
                    log.error("cannot append to the quality log %s: %s", self.path, error)

    def results(self) -> list[CheckResult]:
        with self._lock:
            return list(self._results)

    def latest(self, domain: str, product: str) -> ProductQuality | None:
        with self._lock:
            results = self._latest.get((domain, product))
        if not results:
            return None
        failed = tuple(r.check for r in results if not r.passed)
        return ProductQuality("failed" if failed else "passed", max(r.checked_at for r in results), failed)

    def table(self, visible: Mapping[tuple[str, str], bool] | None = None) -> pa.Table:
        """The history as ``system.quality``: with ``visible``, only the products it names, and
        the details (counts, values) only of those it maps to True."""
        rows = []
        for result in self.results():
            key = (result.domain, result.product)
            if visible is not None and key not in visible:
                continue
            row = {**dataclasses.asdict(result), "passed": result.passed}
            if visible is not None and not visible[key]:
                row.update(detail=HIDDEN_DETAIL, observed=None)
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=QUALITY_SCHEMA)


def _jsonable(result: CheckResult) -> dict[str, object]:
    data = dataclasses.asdict(result)
    data["checked_at"] = result.checked_at.isoformat()
    data["passed"] = result.passed
    return data


# --------------------------------------------------------------------------- running


def run_checks(engine: Engine, domain: str | None = None, *, refresh: bool = True) -> list[CheckResult]:
    """Check every product (of ``domain``, or of the mesh) and record the results in ``engine.quality``.

    With ``refresh``, each domain is first read again from its source, so that contract
    drift is found now. Products of a domain that is offline get one ``source`` error
    each. A blocked product's checks are not run: its ``contract`` result says why.

    Raises:
        NotFoundError: ``domain`` is not a domain of the mesh.
    """
    from gateway.engine import Engine

    names = [d.name for d in engine.catalog.domains()]
    if domain is not None and domain not in names:
        raise NotFoundError(f"unknown domain '{domain}' (domains: {', '.join(sorted(names)) or 'none'})")
    # The platform's own view: the same catalog and audit log, no policies.
    platform = Engine(engine.catalog, engine.settings, PolicySet(), engine.audit, engine.quality)
    results: list[CheckResult] = []
    for name in [domain] if domain is not None else names:
        loaded = engine.refresh(name) if refresh else engine.catalog.domain(name)
        if loaded.error is not None:
            declared = [p.name for p in loaded.config.products or ()] or sorted(loaded.products) or ["*"]
            results.extend(_result(name, p, "source", "source", "error", str(loaded.error)) for p in declared)
            continue
        as_domain = domain_caller(name, loaded.config.owner)
        for product in loaded.products.values():
            results.extend(_check_product(platform, engine, as_domain, product))
    engine.quality.record(results)
    return results


def _check_product(platform: Engine, engine: Engine, as_domain: CallerContext, product: Product) -> list[CheckResult]:
    results: list[CheckResult] = []
    declared = product.declared
    if declared is not None and declared.columns is not None:
        drift = "; ".join(str(d) for d in product.drift)
        outcome = "fail" if product.drift else "pass"
        detail = f"{product.status}: {drift}" if drift else "the source matches the contract"
        results.append(
            _result(product.domain, product.name, "contract", "contract", outcome, detail, float(len(product.drift)))
        )
    if product.blocked or declared is None:
        return results
    for check in declared.checks:
        started = time.perf_counter()
        try:
            if check.kind == "sql":
                assert check.sql is not None
                outcome, detail, observed = _assertion(engine, check.sql, as_domain)
            else:
                outcome, detail, observed = _run(platform, product, check)
        except MeshgateError as error:
            outcome, detail, observed = "error", str(error), None
        except Exception:  # one broken check must not stop the others (or the scheduler)
            log.exception("check %s of %s failed to run", check.name, product.qualified_name)
            outcome, detail, observed = "error", "the check failed to run (the gateway's log has the details)", None
        elapsed = (time.perf_counter() - started) * 1000
        results.append(
            _result(product.domain, product.name, check.name, check.kind, outcome, detail, observed, elapsed)
        )
    return results


def _result(
    domain: str,
    product: str,
    check: str,
    kind: str,
    outcome: str,
    detail: str,
    observed: float | None = None,
    duration_ms: float = 0.0,
) -> CheckResult:
    detail = " ".join(detail.split())  # one line, also for a source's multi-line message
    return CheckResult(domain, product, check, kind, outcome, detail, observed, dt.datetime.now(dt.UTC), duration_ms)


def _run(platform: Engine, product: Product, check: CheckConfig) -> tuple[str, str, float | None]:
    """One check: its outcome, what it found, and the number it judged."""
    table = f"{quote_identifier(product.domain)}.{quote_identifier(product.name)}"
    if check.kind == "unique":
        columns = ", ".join(quote_identifier(c) for c in check.columns)
        # NULLs: not_null's business
        present = " AND ".join(f"{quote_identifier(c)} IS NOT NULL" for c in check.columns)
        row = _one_row(
            platform,
            f"SELECT count(*) AS keys, coalesce(sum(n), 0) AS rows FROM (SELECT count(*) AS n FROM {table}"
            f" WHERE {present} GROUP BY {columns} HAVING count(*) > 1) AS duplicated",
        )
        keys = int(row["keys"])
        names = ", ".join(check.columns)
        if keys == 0:
            return "pass", f"every ({names}) is unique", 0.0
        return "fail", f"{keys} values of ({names}) occur more than once, in {int(row['rows'])} rows", float(keys)
    if check.kind == "not_null":
        (column,) = check.columns
        row = _one_row(platform, f"SELECT count(*) AS total, count({quote_identifier(column)}) AS filled FROM {table}")
        total, nulls = int(row["total"]), int(row["total"]) - int(row["filled"])
        ratio = nulls / total if total else 0.0
        detail = f"{nulls} of {total} rows have no {column} (ratio {ratio:.4g}, at most {check.max_null_ratio:.4g})"
        return ("pass" if ratio <= check.max_null_ratio else "fail"), detail, ratio
    if check.kind == "freshness":
        assert check.freshness is not None
        column, max_age = check.freshness.column, check.freshness.max_age
        row = _one_row(platform, f"SELECT max({quote_identifier(column)}) AS newest FROM {table}")
        newest = _as_utc(row["newest"], column)
        if newest is None:
            return "fail", f"no {column} to judge freshness by: the product has no rows with one", None
        age = dt.datetime.now(dt.UTC) - newest
        detail = f"the newest {column} is {format_duration(age)} old (at most {format_duration(max_age)})"
        return ("pass" if age <= max_age else "fail"), detail, age.total_seconds()
    if check.kind == "row_count":
        rows = int(_one_row(platform, f"SELECT count(*) AS n FROM {table}")["n"])
        low = check.min_rows if check.min_rows is not None else 0
        high = f"{check.max_rows}" if check.max_rows is not None else "any"
        within = rows >= low and (check.max_rows is None or rows <= check.max_rows)
        return ("pass" if within else "fail"), f"{rows} rows (expected {low} to {high})", float(rows)
    raise NotSupportedError(f"unknown check kind '{check.kind}'")


def _assertion(engine: Engine, sql: str, caller: CallerContext) -> tuple[str, str, float | None]:
    """A custom assertion, run as ``caller``: one boolean (true passes), or failing rows (none passes)."""
    result = engine.run(sql, caller).read_all()
    if result.num_columns == 1 and result.num_rows == 1 and pa.types.is_boolean(result.schema.field(0).type):
        value = result.column(0)[0].as_py()
        return ("pass" if value is True else "fail"), f"the assertion returned {value}", float(value is True)
    return ("pass" if result.num_rows == 0 else "fail"), f"{result.num_rows} failing rows", float(result.num_rows)


def _one_row(platform: Engine, sql: str) -> dict[str, Any]:
    rows = platform.run(sql, CHECKER).read_all().to_pylist()
    return rows[0]


def _as_utc(value: object, column: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    kind = type(value).__name__
    raise NotSupportedError(f"freshness needs a timestamp or date column; '{column}' holds {kind} values")


def format_duration(delta: dt.timedelta) -> str:
    """``1d 2h``, ``3h 12m``, ``45s``: the two largest units."""
    seconds = int(abs(delta.total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return ("-" if delta.total_seconds() < 0 else "") + " ".join(parts[:2])


# --------------------------------------------------------------------------- schedule


class CheckScheduler:
    """Runs :func:`run_checks` every ``every`` seconds in a background thread (first run at start)."""

    def __init__(self, engine: Engine, every: float) -> None:
        self.engine = engine
        self.every = every
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="meshgate-checks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                results = run_checks(self.engine)
                failed = [f"{r.domain}.{r.product} {r.check}" for r in results if not r.passed]
                if failed:
                    log.warning("quality: %d of %d checks failed: %s", len(failed), len(results), ", ".join(failed))
                else:
                    log.info("quality: all %d checks passed", len(results))
            except Exception:  # the schedule must outlive any one bad run
                log.exception("quality checks failed to run")
            self.runs += 1
            self._stop.wait(self.every)
