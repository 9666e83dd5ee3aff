"""Soak a ``meshgate serve`` subprocess: many ADBC clients, each logged in as a user of the mesh, for a while.

    .venv/bin/python -m tests.stress.soak --clients 32 --seconds 240

Each client thread holds an ADBC Flight SQL DB-API connection logged in as one of the
mesh's users (``tests/governance/mesh.py``: analysts with row filters and masks, an
admin, a user with no grant at all ...), runs a random mix of queries (one source,
federated across PostgreSQL, SQLite and Parquet, a parameterised point lookup, a system
table, a query that sleeps in PostgreSQL), cancels some of them from a timer thread, and
logs in again every so often. Every answer is compared with a reference taken once, per
user and query, before the clients start: the same rows (floats within 1e-9), or the
same error (a user without a grant is refused every time). A difference is a wrong
answer; an error the reference did not have is an unexpected error, except CANCELLED
for a query the client cancelled.

It reports queries run, errors by kind, wrong answers, p50/p95 latency, and the gateway
process's RSS, threads, file descriptors and PostgreSQL connections before, at peak and
after, with the load average; it exits 1 on a wrong answer, an unexpected error or a
gateway that died.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql

from tests.stress.mesh import LOGIN_USERS, SLOW_SECONDS, StressGateway, stress_mesh

POINT_IDS = (1, 2, 17, 250, 999, 1000, 1500, 1999, 2000, 2001)
"""Order ids the point lookup asks for (2001 does not exist)."""

QUERIES: dict[str, str] = {
    "orders_by_status": "SELECT status, count(*) AS n, sum(total) AS total FROM sales.orders GROUP BY status ORDER BY status",
    "customers_by_country": "SELECT country, count(*) AS n FROM sales.customers GROUP BY country ORDER BY country",
    "revenue_by_country": "SELECT c.country, count(*) AS orders, sum(o.total) AS revenue FROM sales.orders o"
    " JOIN sales.customers c USING (customer_id) GROUP BY c.country ORDER BY c.country",
    "units_by_category": "SELECT p.category, sum(i.quantity) AS units FROM inventory.order_items i"
    " JOIN inventory.products p USING (product_id) GROUP BY p.category ORDER BY p.category",
    "orders_with_items": "SELECT o.status, count(*) AS items, sum(i.quantity) AS units FROM sales.orders o"
    " JOIN inventory.order_items i ON o.order_id = i.order_id WHERE o.order_date >= DATE '2024-03-01'"
    " GROUP BY o.status ORDER BY o.status",
    "shipments_by_carrier": "SELECT carrier, count(*) AS n, avg(weight_kg) AS kg FROM logistics.shipments"
    " GROUP BY carrier ORDER BY carrier",
    "shipped_revenue": "SELECT s.carrier, sum(o.total) AS revenue, count(DISTINCT i.product_id) AS products"
    " FROM logistics.shipments s JOIN sales.orders o ON s.order_id = o.order_id"
    " JOIN inventory.order_items i ON i.order_id = o.order_id GROUP BY s.carrier ORDER BY s.carrier",
    "masked_customers": "SELECT customer_id, name, country, lifetime_value FROM sales.customers"
    " ORDER BY customer_id LIMIT 25",
    "top_products": "SELECT product_id, name, price FROM inventory.products ORDER BY price DESC, product_id LIMIT 10",
    "all_orders": "SELECT order_id, customer_id, order_date, status, total FROM sales.orders ORDER BY order_id",
    "system_products": "SELECT domain, product FROM system.products ORDER BY domain, product",
    "point_lookup": "SELECT order_id, customer_id, status, total FROM sales.orders WHERE order_id = ?",
    "slow": "SELECT n FROM ops.slow ORDER BY n",
}
WEIGHTS = {name: 1.0 for name in QUERIES} | {"point_lookup": 3.0, "slow": 0.15, "all_orders": 0.5}
CANCEL_SHARE = 0.05
"""The share of queries a client cancels (after 0-1.2 s; the slow one is picked half of the time)."""
REFUSED_SHARE = 0.1
"""The share of queries drawn from the whole mix; the others are queries the user may run (per the reference)."""
RECONNECT_EVERY = (20, 60)
"""A client logs in again after a number of queries drawn from this range."""


@dataclass(frozen=True)
class Answer:
    """Rows, or an error's text (``rows`` is None)."""

    rows: list[tuple[Any, ...]] | None
    error: str = ""

    def matches(self, other: Answer) -> bool:
        if self.rows is None or other.rows is None:
            return self.rows is None and other.rows is None and _core(self.error) == _core(other.error)
        return len(self.rows) == len(other.rows) and all(
            _same_row(a, b) for a, b in zip(self.rows, other.rows, strict=True)
        )


def _same_row(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-9) if isinstance(x, float) and isinstance(y, float) else x == y
        for x, y in zip(a, b, strict=True)
    )


def _core(error: str) -> str:
    """An ADBC error without the driver's trailing context, ``(PermissionDenied; Prepare)``: which
    call failed depends on whether the driver had the statement prepared already."""
    return re.sub(r" \(\w+; [\w ]+\)$", "", error)


def busy(error: str) -> bool:
    """The gateway's admission control refused the query: every slot was taken for ``queue_seconds``."""
    return "the gateway is busy" in error


def status_of(error: str) -> str:
    """``CANCELLED`` from ``CANCELLED: [FlightSQL] ...``; the ADBC error text starts with the status."""
    head = error.split(":", 1)[0]
    return head if head.isupper() and " " not in head else "CLIENT"


def run(cursor: Any, name: str, parameter: int | None) -> Answer:
    try:
        cursor.execute(QUERIES[name], (parameter,) if parameter is not None else None)
        return Answer(cursor.fetchall())
    except Exception as error:  # ADBC raises DB-API errors whose text starts with the status
        return Answer(None, str(error))


def connect(uri: str, user: str) -> Any:
    return flightsql.connect(uri, db_kwargs={"username": user, "password": f"{user}-secret-password"}, autocommit=True)


def reference(uri: str) -> dict[tuple[str, str, int | None], Answer]:
    """Every user's answer to every query (the point lookup per id): one connection per user, one query at a time."""
    answers: dict[tuple[str, str, int | None], Answer] = {}

    def of(user: str) -> None:
        with connect(uri, user) as connection:
            for name in QUERIES:
                for parameter in POINT_IDS if name == "point_lookup" else (None,):
                    # A cursor per query, as the clients do: the ADBC driver keeps a failed prepare's
                    # state, and binding on that cursor next tries a bulk ingestion (INVALID_STATE).
                    with connection.cursor() as cursor:
                        answers[(user, name, parameter)] = run(cursor, name, parameter)

    threads = [threading.Thread(target=of, args=(user,)) for user in LOGIN_USERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@dataclass
class Tally:
    """What the clients saw; threads add to it under ``lock``."""

    queries: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cancels: int = 0
    logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _key(user: str, name: str) -> tuple[str, str, int | None]:
    return (user, name, POINT_IDS[0] if name == "point_lookup" else None)


def client(
    number: int,
    uri: str,
    references: dict[tuple[str, str, int | None], Answer],
    deadline: float,
    tally: Tally,
    seed: int,
) -> None:
    rng = random.Random(seed * 1000 + number)
    user = LOGIN_USERS[number % len(LOGIN_USERS)]
    allowed = [name for name in WEIGHTS if references[_key(user, name)].rows is not None] or list(WEIGHTS)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    mine = [WEIGHTS[name] for name in allowed]
    connection = None
    left = 0
    try:
        while time.monotonic() < deadline:
            if connection is None or left == 0:
                if connection is not None:
                    connection.close()
                connection = connect(uri, user)
                left = rng.randint(*RECONNECT_EVERY)
                with tally.lock:
                    tally.logins += 1
            left -= 1
            cancel = rng.random() < CANCEL_SHARE
            if cancel and "slow" in allowed and rng.random() < 0.5:
                name = "slow"
            elif rng.random() < REFUSED_SHARE:  # any query, refusals included
                name = rng.choices(names, weights)[0]
            else:
                name = rng.choices(allowed, mine)[0]
            parameter = rng.choice(POINT_IDS) if name == "point_lookup" else None
            with connection.cursor() as cursor:
                timer = threading.Timer(rng.uniform(0, 1.2), cursor.adbc_cancel) if cancel else None
                if timer is not None:
                    timer.start()
                started = time.monotonic()
                answer = run(cursor, name, parameter)
                seconds = time.monotonic() - started
                if timer is not None:
                    timer.cancel()
                    timer.join()
            judge(tally, user, name, parameter, answer, references[(user, name, parameter)], cancel, seconds)
    finally:
        if connection is not None:
            connection.close()


def judge(
    tally: Tally,
    user: str,
    name: str,
    parameter: int | None,
    answer: Answer,
    expected: Answer,
    cancelled: bool,
    seconds: float,
) -> None:
    with tally.lock:
        tally.queries[name] += 1
        tally.cancels += cancelled
        if answer.matches(expected):
            if answer.rows is not None:
                tally.outcomes["rows as in the reference"] += 1
                tally.latency[name].append(seconds)
            else:
                tally.outcomes[f"refused as in the reference ({status_of(answer.error)})"] += 1
        elif answer.rows is None and cancelled and status_of(answer.error) == "CANCELLED":
            tally.outcomes["cancelled"] += 1
        elif answer.rows is None and busy(answer.error):
            tally.outcomes["refused: the gateway is busy (admission control)"] += 1
            tally.examples.setdefault("busy", f"{user} {name}({parameter}): {answer.error[:300]}")
        elif answer.rows is None:
            kind = status_of(answer.error)
            tally.unexpected[kind] += 1
            tally.examples.setdefault(f"unexpected {kind}", f"{user} {name}({parameter}): {answer.error[:400]}")
        else:
            tally.wrong.append(f"{user} {name}({parameter}): got {answer.rows!r:.300} expected {expected!r:.300}")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def refusals(references: dict[tuple[str, str, int | None], Answer]) -> Counter[str]:
    """The reference's refusals by kind (status and message, names of users and products left out)."""
    kinds: Counter[str] = Counter()
    for (_user, name, parameter), answer in references.items():
        if answer.rows is None and (name != "point_lookup" or parameter == POINT_IDS[0]):
            text = re.sub(r"'[^']*'", "'...'", _core(answer.error).removeprefix(status_of(answer.error) + ": "))
            kinds[f"{status_of(answer.error)} {' '.join(text.split())[:110]}"] += 1
    return kinds


@dataclass
class SoakResult:
    clients: int
    seconds: float
    tally: Tally
    before: dict[str, int]
    after: dict[str, int]
    peak: dict[str, int]
    loads: tuple[tuple[float, ...], tuple[float, ...]]
    alive: bool
    death: str = ""
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.alive and not self.tally.wrong and not self.tally.unexpected

    def latencies(self, *, slow: bool = False) -> list[float]:
        return [s for name, values in self.tally.latency.items() if (name == "slow") == slow for s in values]


def soak(
    gateway: StressGateway,
    postgres_uri: str,
    *,
    clients: int,
    seconds: float,
    seed: int = 1,
    settle: float = 5.0,
) -> SoakResult:
    """Run ``clients`` client threads for ``seconds`` against ``gateway`` (references first)."""
    references = reference(gateway.uri)
    tally = Tally()
    loads = [_load()]
    before = gateway.vitals(postgres_uri)
    peak = dict(before)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0) and gateway.alive():
            for key, value in gateway.vitals(postgres_uri).items():
                peak[key] = max(peak[key], value)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(n, gateway.uri, references, deadline, tally, seed), daemon=True)
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    elapsed = time.monotonic() - started
    stop.set()
    watcher.join()
    loads.append(_load())
    alive = gateway.alive()
    after = _settled(gateway, postgres_uri, before, settle) if alive else {}
    return SoakResult(
        clients, elapsed, tally, before, after, peak, (loads[0], loads[1]), alive, gateway.death(), refusals(references)
    )


def _settled(gateway: StressGateway, postgres_uri: str, before: dict[str, int], settle: float) -> dict[str, int]:
    """The gateway's figures once threads and descriptors are back at their start, or after ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while True:
        after = gateway.vitals(postgres_uri)
        back = own_fds(after) <= own_fds(before) and after["threads"] <= before["threads"]
        if back or time.monotonic() > deadline:
            return after
        time.sleep(0.5)


def own_fds(figures: dict[str, int]) -> int:
    """File descriptors apart from the PostgreSQL connections (pooled: up to 4 idle per domain stay open)."""
    return figures["fds"] - figures["pg_connections"]


def _load() -> tuple[float, ...]:
    return os.getloadavg()


def report(result: SoakResult, seed: int) -> str:
    tally = result.tally
    total = sum(tally.queries.values())
    fast, slow = result.latencies(), result.latencies(slow=True)
    lines = [
        f"Meshgate soak, seed {seed}: {result.clients} clients ({len(LOGIN_USERS)} users), {result.seconds:.1f} s",
        f"  queries run:      {total} ({total / result.seconds:.1f}/s), {tally.cancels} with a cancel,"
        f" {tally.logins} log-ins",
        "  by query:         " + ", ".join(f"{name} {n}" for name, n in sorted(tally.queries.items())),
        "  answers:          " + ", ".join(f"{kind} {n}" for kind, n in sorted(tally.outcomes.items())),
        f"  reference:        {len(LOGIN_USERS) * len(QUERIES)} (user, query) pairs, refused:"
        + "".join(f"\n    {n} x {kind}" for kind, n in sorted(result.refused.items())),
        f"  wrong answers:    {len(tally.wrong)}",
        f"  unexpected errors: {sum(tally.unexpected.values())}"
        + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(tally.unexpected.items())) + ")" if tally.unexpected else ""),
        f"  latency:          p50 {percentile(fast, 0.5) * 1000:.0f} ms, p95 {percentile(fast, 0.95) * 1000:.0f} ms"
        f" over {len(fast)} queries that returned the reference's rows, ops.slow apart"
        f" (it sleeps {SLOW_SECONDS:g} s in PostgreSQL: p50 {percentile(slow, 0.5) * 1000:.0f} ms,"
        f" p95 {percentile(slow, 0.95) * 1000:.0f} ms over {len(slow)})",
    ]
    names = {
        "rss": "RSS (MiB)",
        "threads": "threads",
        "fds": "file descriptors",
        "pg_connections": "PostgreSQL connections",
        "pg_backends": "pg_stat_activity backends",
    }
    for key, label in names.items():
        scale = 2**20 if key == "rss" else 1
        shown = [
            f"{figures[key] / scale:.0f}" if key in figures else "-"
            for figures in (result.before, result.peak, result.after)
        ]
        lines.append(f"  {label + ':':<27}before {shown[0]}, peak {shown[1]}, after {shown[2]}")
    lines.append(f"  gateway:          {'alive' if result.alive else result.death}")
    lines.append(f"  load average:     {_loads(result.loads[0])} at start, {_loads(result.loads[1])} at the end")
    for line in tally.wrong[:10]:
        lines.append(f"  WRONG {line}")
    for kind, example in tally.examples.items():
        lines.append(f"  {kind}: {example}")
    return "\n".join(lines)


def _loads(load: tuple[float, ...]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", help="libpq URI (default: the test suite's PostgreSQL)")
    args = parser.parse_args(argv)
    with stress_mesh(args.postgres) as (config, postgres_uri):
        gateway = StressGateway(config, statement_timeout=30.0)
        try:
            result = soak(gateway, postgres_uri, clients=args.clients, seconds=args.seconds, seed=args.seed)
            out(report(result, args.seed))
            if not result.alive:
                out(gateway.tail(60))
        finally:
            if gateway.alive():
                gateway.stop()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
