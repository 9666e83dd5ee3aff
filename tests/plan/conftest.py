"""Fixtures shared by the planner rules' tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.engine import Engine, EngineSettings


@pytest.fixture(scope="module")
def engines(mesh: Path) -> Iterator[tuple[Engine, Engine]]:
    """The test module's mesh (its ``mesh`` fixture: a folder holding mesh.yaml) with the rules, and without."""
    on = Engine.from_config(load_config(mesh / "mesh.yaml"))
    off = Engine(on.catalog, EngineSettings(plan_rules=False))
    yield on, off
    on.close()
