"""One governed mesh for the policy tests, served in-process (engine) and by `meshgate serve` (client)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import adbc_driver_manager
import pyarrow as pa
import pytest

from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import AuthenticationError, PermissionDeniedError, PlanningError
from tests.e2e.federation_data import build_tables
from tests.governance.mesh import USERS, auth_section, credentials, write_governed_mesh
from tests.support.gateway import GatewayProcess, query
from tests.support.postgres import worker_schema

Run = Callable[[str, str], pa.Table]
"""Run SQL as a user of :data:`tests.governance.mesh.USERS`: in the engine, or through the ADBC client."""

SCHEMA = worker_schema("meshgate_governance")


@pytest.fixture(scope="package")
def tables() -> dict[str, pa.Table]:
    return build_tables()


@pytest.fixture(scope="package")
def governed_config(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, tables: dict[str, pa.Table]) -> Path:
    config = write_governed_mesh(tmp_path_factory.mktemp("governed"), postgres_uri, SCHEMA, tables)
    (config / "auth.yaml").write_text(auth_section())
    return config


@pytest.fixture(scope="package")
def engine(governed_config: Path) -> Iterator[Engine]:
    engine = Engine.from_config(load_config(governed_config))
    yield engine
    engine.close()


@pytest.fixture(scope="package")
def gateway(governed_config: Path) -> Iterator[str]:
    process = GatewayProcess(governed_config, credentials=credentials("root"))
    yield process.uri
    process.stop()


@pytest.fixture(scope="module", params=["engine", "client"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run as a user: in the engine, or through the ADBC client logged in as that user."""
    if request.param == "engine":
        engine: Engine = request.getfixturevalue("engine")

        def in_engine(user: str, sql: str) -> pa.Table:
            return engine.run(sql, USERS[user]).read_all()

        return in_engine
    uri: str = request.getfixturevalue("gateway")

    def through_client(user: str, sql: str) -> pa.Table:
        login = credentials(user) if USERS[user].user is not None else None
        try:
            return query(uri, sql, login)
        except adbc_driver_manager.Error as error:
            # The driver's exceptions carry the gateway's message: map it back to its kind.
            message = str(error)
            if "access denied" in message:
                raise PermissionDeniedError(message) from None
            if "authentication required" in message:
                raise AuthenticationError(message) from None
            raise PlanningError(message) from None

    return through_client
