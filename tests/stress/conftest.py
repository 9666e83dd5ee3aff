"""One stress mesh (PostgreSQL, SQLite and Parquet domains, policies, users) for the package's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stress.mesh import stress_mesh


@pytest.fixture(scope="package")
def stress_config(postgres_uri: str) -> Iterator[Path]:
    with stress_mesh(postgres_uri) as (config, _uri):
        yield config
