"""The operator may name another build of the PostgreSQL and SQLite drivers; nothing else may be loaded.

An optimised build is not on a fresh machine, so the library named here is each wheel's own under
its path; the connectors' own tests read rows through it (test_postgres.py, test_sqlite.py).
"""

from __future__ import annotations

from pathlib import Path

import adbc_driver_postgresql
import adbc_driver_sqlite
import pytest

from connectors import drivers
from gateway.config import load_config
from gateway.errors import ConfigError

BUILDS = {
    "postgres": (drivers.POSTGRES, adbc_driver_postgresql._driver_path(), adbc_driver_sqlite._driver_path()),
    "sqlite": (drivers.SQLITE, adbc_driver_sqlite._driver_path(), adbc_driver_postgresql._driver_path()),
}


@pytest.mark.parametrize("kind", sorted(BUILDS))
def test_a_named_library_must_be_that_driver(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, own, other = BUILDS[kind]
    monkeypatch.delenv(build.variable, raising=False)
    assert build.library("sales") is None  # unset: the wheel's own
    monkeypatch.setenv(build.variable, "  ")
    assert build.library("sales") is None
    monkeypatch.setenv(build.variable, own)
    assert build.library("sales") == Path(own)
    for wrong, says in [
        ("/nonexistent/libadbc.so", "which is not a file"),
        (str(Path(own).parent), "which is not a file"),
        (other, f"not {build.name}"),  # another ADBC driver: its entry point differs
        (__file__, "which cannot be loaded"),
    ]:
        monkeypatch.setenv(build.variable, wrong)
        with pytest.raises(ConfigError, match=f"domain 'sales': {build.variable} names .*{says}"):
            build.library("sales")


@pytest.mark.parametrize(
    ("kind", "connector"),
    [("postgres", 'uri: "postgresql://127.0.0.1:1/x"'), ("sqlite", "path: shop.db")],
)
def test_a_domain_cannot_name_a_library(kind: str, connector: str, tmp_path: Path) -> None:
    """A domain's YAML (and self-serve, which loads it alike) names no library: one loaded is code run in the gateway."""
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        f"domains:\n  - name: sales\n    connector: {{type: {kind}, {connector}, driver: {BUILDS[kind][1]}}}\n"
    )
    with pytest.raises(ConfigError, match=r"connector\.driver: unknown key"):
        load_config(mesh)
