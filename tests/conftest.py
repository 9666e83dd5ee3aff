"""Fixtures shared by every test package. Keep this small: specific fixtures live near their tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mysql import mysql_test_uri, temporary_database, why_not, with_database
from tests.support.postgres import postgres_server, temporary_schema


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--connector",
        action="append",
        default=[],
        metavar="KIND",
        help="run the connector conformance suite (tests/connectors/test_conformance.py) against KIND only"
        " (repeatable); a plugin's kind needs a loader in entry point group meshgate.conformance",
    )


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A libpq URI of a running PostgreSQL (see tests/support/postgres.py).

    An embedded server lives in a directory of its own, not under pytest's temporary
    directories: pytest deletes all but its last three, so another pytest session on the
    same machine would otherwise remove a running server's data and socket.
    """
    with tempfile.TemporaryDirectory(prefix="meshgate-postgres-") as folder, postgres_server(Path(folder)) as uri:
        yield uri


@pytest.fixture(scope="module")
def pg_schema(postgres_uri: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL schema of the test module's own, dropped after the module."""
    with temporary_schema(postgres_uri, request.module.__name__.rsplit(".", 1)[-1]) as schema:
        yield schema


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """The URI of the MariaDB/MySQL server for tests (tests/support/mysql.py); skips when none answers."""
    uri = mysql_test_uri()
    reason = why_not(uri)
    if reason is not None:
        pytest.skip(reason)
    return uri


@pytest.fixture(scope="module")
def mysql_uri(mysql_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``mysql://`` URI of a database of the test module's own, dropped after the module."""
    with temporary_database(mysql_server, request.module.__name__.rsplit(".", 1)[-1]) as database:
        yield with_database(mysql_server, database)


@pytest.fixture(scope="module")
def mysql_or_none(request: pytest.FixtureRequest) -> str | None:
    """The test module's MariaDB database URI, or None when no MariaDB answers (its MySQL cases
    then skip, saying why, while the module's other cases run)."""
    try:
        uri: str = request.getfixturevalue("mysql_uri")
    except pytest.skip.Exception:
        return None
    return uri
