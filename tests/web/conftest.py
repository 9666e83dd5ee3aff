"""A ``meshgate serve`` of the catalog test mesh with its HTTP listener on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess
from tests.web.mesh import write_catalog_mesh


@pytest.fixture(scope="module")
def mesh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture(scope="module")
def gateway(mesh_dir: Path) -> Iterator[GatewayProcess]:
    config = write_catalog_mesh(mesh_dir)
    # --checks-every runs every product's checks at start: the product pages have results to show.
    process = GatewayProcess(config, extra=("--http-port", "0", "--checks-every", "1h", "--watch-interval", "0"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def web(gateway: GatewayProcess) -> str:
    assert gateway.http_url is not None
    return gateway.http_url
