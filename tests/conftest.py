"""Fixtures shared by every test package. Keep this small: specific fixtures live near their tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import postgres_server, temporary_schema


@pytest.fixture(scope="session")
def postgres_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq URI of a running PostgreSQL (see tests/support/postgres.py)."""
    with postgres_server(tmp_path_factory.mktemp("postgres")) as uri:
        yield uri


@pytest.fixture(scope="module")
def pg_schema(postgres_uri: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL schema of the test module's own, dropped after the module."""
    with temporary_schema(postgres_uri, request.module.__name__.rsplit(".", 1)[-1]) as schema:
        yield schema
