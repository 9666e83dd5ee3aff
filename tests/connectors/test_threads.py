"""connectors/threads.py: background work reuses idle threads, never waits for one, and survives failures."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from connectors import threads


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test counts the threads of a pool of its own."""
    monkeypatch.setattr(threads, "_POOL", threads._Pool())


def _run(name: str, work: object = None) -> tuple[int, str]:
    """Start one task and wait for it; the thread (ident, name) it ran on."""
    done = threading.Event()
    seen: list[tuple[int, str]] = []

    def task() -> None:
        seen.append((threading.get_ident(), threading.current_thread().name))
        done.set()

    threads.start(task, name=name)
    assert done.wait(10)
    return seen[0]


def _idle_again(count: int) -> None:
    deadline = time.monotonic() + 10
    while threads.idle_threads() < count:
        assert time.monotonic() < deadline, "the pool's thread never became idle"
        time.sleep(0.005)


def test_work_in_a_row_reuses_one_thread_named_after_the_work() -> None:
    first, name = _run("source-a")
    assert name == "source-a"
    _idle_again(1)
    second, name = _run("source-b")
    assert second == first and name == "source-b"


def test_work_that_waits_never_holds_up_other_work() -> None:
    """No bound: 40 tasks that block until all 40 have started all run at once."""
    count = 40
    started = threading.Barrier(count + 1, timeout=10)
    threads_seen: set[int] = set()
    lock = threading.Lock()

    def task() -> None:
        with lock:
            threads_seen.add(threading.get_ident())
        started.wait()

    for n in range(count):
        threads.start(task, name=f"blocked-{n}")
    started.wait()  # raises BrokenBarrierError if any task could not start
    assert len(threads_seen) == count


def test_a_failing_task_is_logged_and_its_thread_serves_on(caplog: pytest.LogCaptureFixture) -> None:
    failed = threading.Event()

    def task() -> None:
        failed.set()
        raise RuntimeError("boom")

    threads.start(task, name="failing")
    assert failed.wait(10)
    deadline = time.monotonic() + 10
    while "boom" not in caplog.text:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert "background work 'failing' failed" in caplog.text
    assert _run("after")[1] == "after"


def test_idle_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.05)
    count = 5
    gate = threading.Barrier(count + 1, timeout=10)
    idents: set[int] = set()

    def task() -> None:
        idents.add(threading.get_ident())
        gate.wait()

    for n in range(count):
        threads.start(task, name=f"short-{n}")
    gate.wait()
    assert len(idents) == count
    deadline = time.monotonic() + 10
    while any(t.ident in idents for t in threading.enumerate()):
        assert time.monotonic() < deadline, "idle threads did not end"
        time.sleep(0.01)
    assert threads.idle_threads() == 0


def test_an_idle_thread_keeps_nothing_of_its_work_alive() -> None:
    class Work:
        def __init__(self) -> None:
            self.done = threading.Event()

        def run(self, argument: object) -> None:
            self.done.set()

    work, argument = Work(), Work()
    threads.start(work.run, argument, name="kept")
    assert work.done.wait(10)
    _idle_again(1)
    collected = [weakref.ref(work), weakref.ref(argument)]
    del work, argument
    gc.collect()
    assert [ref() for ref in collected] == [None, None]
