"""gateway/heap.py: start-up's objects kept out of full garbage collections, settled again at reloads."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import heap
from gateway.config import load_config
from gateway.engine import Engine
from gateway.reload import Reloader
from tests.support.gateway import GatewayProcess
from tests.telemetry.support import ROOT, wait_for, write_mesh


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test process's collector as it was: nothing frozen afterwards."""
    yield
    gc.unfreeze()


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_settling_collects_first_then_freezes_what_is_left(thawed: None) -> None:
    garbage = cycle()  # unreachable already: collected, not frozen
    kept = [Node()]
    alive = weakref.ref(kept[0])
    frozen = heap.settle()
    assert garbage() is None and frozen > 0 and gc.get_freeze_count() > 0
    assert alive() is not None
    del kept  # a frozen object nothing refers to is still freed (by its reference count)
    assert alive() is None


def test_a_cycle_frozen_then_dropped_is_collected_at_the_next_settling(thawed: None) -> None:
    holder = [Node(), Node()]
    holder[0].other, holder[1].other = holder[1], holder[0]
    first = weakref.ref(holder[0])
    heap.settle()
    holder.clear()  # the two nodes now refer only to each other, frozen: no collection looks at them
    gc.collect()
    assert first() is not None
    heap.settle()  # what a reload does
    assert first() is None


def test_the_reloader_settles_after_each_change_it_installs(tmp_path: Path) -> None:
    (tmp_path / "kinds.csv").write_text("kind,label\n0,zero\n")
    (tmp_path / "ref.yaml").write_text("domains:\n  - name: ref\n    connector: {type: csv, path: kinds.csv}\n")
    engine = Engine.from_config(load_config(tmp_path))
    installed: list[int] = []
    reloader = Reloader(engine, tmp_path, installed=lambda: installed.append(1))
    try:
        assert not reloader.poll() and not installed  # nothing changed
        (tmp_path / "more.csv").write_text("n\n1\n2\n")
        (tmp_path / "more.yaml").write_text("domains:\n  - name: more\n    connector: {type: csv, path: more.csv}\n")
        assert [applied.changed for applied in reloader.poll()] == [("more",)] and installed == [1]
        (tmp_path / "more.yaml").write_text("domains:\n  - name: more\n    connector: {type: csv, path: [}\n")
        reloader.poll()  # a file that does not load changes nothing
        assert installed == [1]
    finally:
        engine.close()


def test_serve_settles_its_heap_once_it_is_up(tmp_path: Path) -> None:
    process = GatewayProcess(write_mesh(tmp_path), credentials=ROOT, env={"MESHGATE_LOG_LEVEL": "DEBUG"})
    try:
        settled = wait_for(
            lambda: [line for line in process.output if "kept out of full garbage collections" in line],
            bool,
            "the heap's settling",
        )
    finally:
        process.stop()
    assert len(settled) == 1 and "gateway.heap" in settled[0], settled
