"""Resource limits: memory per query (spilling), admission, result size and expression limits.

Real DataFusion work on generated data and a CSV product; a real Flight server for the
"still answers others" case. The memory figures stay within a few hundred MiB.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.errors import ConfigError, GatewayBusyError, PlanningError, ResourceLimitError
from gateway.limits import Admission, Limits, MiB, check_expressions, parse_size

ALICE = CallerContext(user="alice")
BOB = CallerContext(user="bob")


@pytest.fixture
def mesh(tmp_path: Path) -> Path:
    (tmp_path / "ref.csv").write_text("code\n" + "".join(f"{i}\n" for i in range(100)))
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: ref\n    connector: {type: csv, path: ref.csv}\n")
    return tmp_path


def engine_with(mesh: Path, **limits: object) -> Engine:
    return Engine.from_config(load_config(mesh), EngineSettings(limits=Limits(**limits)))  # type: ignore[arg-type]


@pytest.fixture
def small(mesh: Path) -> Iterator[Engine]:
    engine = engine_with(mesh, query_memory=16 * MiB, gateway_memory=64 * MiB, max_result_bytes=4 * MiB)
    yield engine
    engine.close()


def test_a_sort_larger_than_the_query_memory_spills_and_finishes(small: Engine) -> None:
    result = small.run(
        "SELECT v FROM (SELECT value AS v FROM generate_series(1, 3000000)) ORDER BY v % 1000, v DESC", ALICE
    )
    rows = 0
    first = None
    for batch in result:
        first = first if first is not None else batch.column(0)[0].as_py()
        rows += batch.num_rows
        if rows > 200_000:  # the sort finished (its first row is out); the rest is streaming
            break
    assert first == 3000000 and rows > 200_000


def test_an_operator_that_cannot_spill_fails_naming_the_limit(small: Engine) -> None:
    sql = "SELECT count(*) FROM generate_series(1, 3000000) a JOIN generate_series(1, 3000000) b ON a.value = b.value"
    with pytest.raises(ResourceLimitError, match=r"needs more memory than its limit \(query_memory\)"):
        small.run(sql, ALICE).read_all()
    (record,) = small.audit.records(everyone=True)[-1:]
    assert record.outcome == "error" and "query_memory" in (record.error or "")
    assert small.admission.running == 0, "a failed query gives its slot back"
    assert small.run("SELECT count(*) AS n FROM ref.ref", ALICE).read_all().column("n").to_pylist() == [100]


def test_a_result_over_its_size_limit_stops(small: Engine) -> None:
    with pytest.raises(ResourceLimitError, match=r"result is larger than the limit of 4 MiB \(max_result_bytes\)"):
        small.run("SELECT value FROM generate_series(1, 1000000)", ALICE).read_all()
    assert small.admission.running == 0


@pytest.mark.parametrize(
    ("sql", "error", "match"),
    [
        ("SELECT " + " + ".join(["1"] * 600), PlanningError, r"more than 512 arithmetic operators in a row"),
        ("SELECT 1 WHERE " + " OR ".join(["1 = 1"] * 5000), PlanningError, r"more than 1024 AND/OR operators"),
        ("SELECT array_repeat('x', 100000000)", ResourceLimitError, r"array_repeat\(...\) would build 100,000,000"),
        ("SELECT length(repeat('ab', 50000000))", ResourceLimitError, r"repeat\(...\) would build 50,000,000"),
        ("SELECT range(1, 1000000000000)", ResourceLimitError, r"range\(...\) would build"),
        ("SELECT lpad('x', 2000000000)", ResourceLimitError, r"lpad\(...\) would build 2,000,000,000"),
    ],
    ids=["arithmetic_chain", "or_chain", "array_repeat", "repeat", "range", "lpad"],
)
def test_expressions_too_costly_to_plan_or_too_large_are_refused_before_planning(
    small: Engine, sql: str, error: type[Exception], match: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(error, match=match):
        small.run(sql, ALICE)
    assert time.perf_counter() - started < 2.0
    assert small.audit.records(everyone=True)[-1].outcome == "error"


def test_what_stays_allowed(small: Engine) -> None:
    check_expressions("SELECT * FROM generate_series(1, 100000000000) LIMIT 1", small.settings.limits)
    check_expressions("SELECT " + " + ".join(["1"] * 500), small.settings.limits)
    check_expressions("SELECT 1 WHERE x IN (" + ", ".join(str(i) for i in range(20000)) + ")", small.settings.limits)
    assert small.run("SELECT count(*) AS n FROM generate_series(1, 100000)", ALICE).read_all().to_pylist() == [
        {"n": 100000}
    ]


def test_admission_queues_then_refuses_and_keeps_one_user_to_half(mesh: Path) -> None:
    engine = engine_with(mesh, query_memory=16 * MiB, gateway_memory=64 * MiB, queue_seconds=0.3)
    try:
        assert engine.settings.limits.slots == 4 and engine.admission.per_user == 2
        held = [engine.run("SELECT code FROM ref.ref", ALICE) for _ in range(2)]
        with pytest.raises(GatewayBusyError, match=r"2 of your queries are running"):
            engine.run("SELECT code FROM ref.ref", ALICE)
        others = [engine.run("SELECT code FROM ref.ref", BOB) for _ in range(2)]
        with pytest.raises(GatewayBusyError, match=r"4 queries are running \(at most 4 at once\)"):
            engine.run("SELECT code FROM ref.ref", CallerContext(user="carol"))
        released = threading.Timer(0.1, held[0].close)
        released.start()
        waited = engine.run("SELECT count(*) AS n FROM ref.ref", ALICE)  # waits for alice's slot to free up
        assert waited.read_all().column("n").to_pylist() == [100]
        for execution in [held[1], *others]:  # held[0] was closed (its slot freed the wait above)
            execution.read_all()
        assert engine.admission.running == 0
    finally:
        engine.close()


def test_admission_hands_a_freed_slot_to_one_waiter_in_turn_and_skips_a_user_at_their_share() -> None:
    admission = Admission(Limits(query_memory=1 * MiB, gateway_memory=4 * MiB, queue_seconds=5))
    alice = [admission.enter("alice"), admission.enter("alice")]  # her share: 2 of 4 slots
    order: list[str] = []

    def wait_for(user: str) -> None:
        admission.enter(user)
        order.append(user)

    waiting_alice = threading.Thread(target=wait_for, args=("alice",))
    waiting_alice.start()
    while admission.waiting < 1:
        time.sleep(0.001)
    admission.enter("bob")  # alice's waiter cannot run yet: bob is not held back behind her
    carol = threading.Thread(target=wait_for, args=("carol",))
    carol.start()
    carol.join(5)
    assert order == ["carol"] and admission.running == 4 and admission.waiting == 1
    alice[0].release()  # her slot goes to her waiter, the only one in line
    waiting_alice.join(5)
    assert order == ["carol", "alice"] and admission.running == 4 and admission.waiting == 0


def test_admission_counts_every_way_a_query_ends(mesh: Path) -> None:
    engine = engine_with(mesh, query_memory=16 * MiB, gateway_memory=16 * MiB, queue_seconds=0.2)
    try:
        engine.run("SELECT code FROM ref.ref", ALICE).read_all()  # read to the end
        engine.run("SELECT code FROM ref.ref", ALICE).close()  # dropped before reading
        cancelled = engine.run("SELECT code FROM ref.ref", ALICE)
        cancelled.cancel()
        cancelled.close()
        with pytest.raises(PlanningError):
            engine.run("SELECT nope FROM ref.ref", ALICE)  # failed while planning
        assert engine.admission.running == 0
        assert engine.run("EXPLAIN ANALYZE SELECT * FROM ref.ref", ALICE).read_all().num_rows > 0
        assert engine.admission.running == 0
    finally:
        engine.close()


def test_a_heavy_query_leaves_the_gateway_responsive(mesh: Path) -> None:
    from gateway.flightsql.server import FlightSqlServer
    from tests.support.gateway import query, serving

    engine = engine_with(mesh, query_memory=32 * MiB, gateway_memory=128 * MiB)
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    uri = f"grpc://127.0.0.1:{server.port}"
    heavy_error: list[BaseException] = []

    def heavy() -> None:
        try:
            query(uri, "SELECT count(*) FROM (SELECT value % 2000003 AS g FROM generate_series(1, 6000000)) GROUP BY g")
        except BaseException as error:
            heavy_error.append(error)

    worker = threading.Thread(target=heavy)
    try:
        with serving(server):
            worker.start()
            time.sleep(0.3)
            started = time.perf_counter()
            assert query(uri, "SELECT count(*) AS n FROM ref.ref").column("n").to_pylist() == [100]
            assert time.perf_counter() - started < 5.0
            worker.join(timeout=120)
    finally:
        engine.close()
    assert not heavy_error, heavy_error


def test_sizes_and_limits_are_checked() -> None:
    assert parse_size("512MiB") == 512 * MiB and parse_size("2G") == 2 << 30 and parse_size("1.5k") == 1536
    for bad in ("lots", "12 parsecs", "0", "-3MiB"):
        with pytest.raises(ValueError, match=r"is (not a size|no size at all)"):
            parse_size(bad)
    with pytest.raises(ConfigError, match=r"max_running must be at least 1"):
        Limits(max_running=0)
    assert Limits(query_memory=3 * MiB, gateway_memory=10 * MiB, max_running=16).slots == 3
    assert Admission(Limits(query_memory=8 << 30, gateway_memory=1 << 30)).limits.slots == 1


def test_serve_takes_the_limit_flags(mesh: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(mesh), "--query-memory", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "'lots' is not a size" in result.stderr and "Traceback" not in result.stderr
