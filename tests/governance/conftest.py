"""One governed mesh for the policy tests, served in-process (engine) and by `meshgate serve` (client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from gateway.config import load_config
from gateway.engine import Engine
from tests.e2e.federation_data import build_tables
from tests.governance.mesh import auth_section, credentials, write_governed_mesh
from tests.support.gateway import GatewayProcess

SCHEMA = "meshgate_governance"


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
