"""Connector kinds come from the ``meshgate.connectors`` entry points, the built-in ones included;
a plugin that cannot load is left out, named in the log, and never takes the others with it."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import EntryPoint, distributions, entry_points
from pathlib import Path

import pytest

from connectors.duckdb import DuckdbConnector
from connectors.files import CsvConnector, ParquetConnector
from connectors.mysql import MysqlConnector
from connectors.objects import ObjectCsvConnector, ObjectParquetConnector
from connectors.postgres import PostgresConnector
from connectors.registry import BUILT_IN, GROUP, Registry, load, open_connector, registry
from connectors.sqlite import SqliteConnector
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError
from tests.support.plugins import write_distribution

BUILT_INS = {"postgres", "sqlite", "duckdb", "parquet", "csv", "mysql", "mariadb", "flightsql"}


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("postgres", PostgresConnector),
        ("sqlite", SqliteConnector),
        ("duckdb", DuckdbConnector),
        ("parquet", ParquetConnector),
        ("csv", CsvConnector),
        ("mariadb", MysqlConnector),
    ],
)
def test_each_type_opens_its_connector(kind: str, cls: type) -> None:
    uri = "postgresql://h/db" if kind == "postgres" else "mysql://h/db" if kind == "mariadb" else None
    connector = open_connector("sales", ConnectorConfig(type=kind, uri=uri, path=Path("x")))
    assert type(connector) is cls
    assert connector.domain == "sales"


def test_the_built_in_kinds_are_meshgate_entry_points() -> None:
    found = registry()
    assert set(found.kinds) >= BUILT_INS
    assert {found.kinds[kind].distribution for kind in BUILT_INS} == {BUILT_IN}
    declared = {ep.name for ep in entry_points(group=GROUP) if ep.dist is not None and ep.dist.name == BUILT_IN}
    assert declared >= BUILT_INS | {"parquet+s3", "csv+s3"}
    assert {found.kinds[name.partition("+")[0]].distribution for name in declared} == {BUILT_IN}
    assert all(found.problem(kind) is None for kind in found.names)


@pytest.mark.parametrize(("kind", "cls"), [("parquet", ObjectParquetConnector), ("csv", ObjectCsvConnector)])
def test_an_s3_uri_opens_the_object_storage_class_of_a_file_kind(kind: str, cls: type) -> None:
    assert registry().kinds[kind].class_for("s3://bucket/prefix/") is cls
    connector = open_connector("lake", ConnectorConfig(type=kind, uri="s3://bucket/prefix/"))
    assert type(connector) is cls


def test_unknown_types_name_domain_and_type() -> None:
    with pytest.raises(ConfigError, match=r"domain 'sales': unknown connector type 'oracle' \(expected one of csv, "):
        open_connector("sales", ConnectorConfig(type="oracle"))


@pytest.mark.parametrize("kind", ["postgres", "sqlite", "duckdb", "parquet", "csv"])
def test_a_missing_location_names_the_domain(kind: str) -> None:
    with pytest.raises(ConfigError, match=f"domain 'sales': a {kind} connector needs a (uri|path)"):
        open_connector("sales", ConnectorConfig(type=kind))


GOOD = """
from connectors.files import ParquetConnector

class Good(ParquetConnector):
    kind = "good"


class Keyed(ParquetConnector):
    kind = "keyed"
    config_keys = frozenset({"path", "token", "ca_file", "delimiter"})
    admin_keys = frozenset({"token"})
    path_keys = frozenset({"ca_file"})


class Nowhere(ParquetConnector):
    kind = "nowhere"
    config_keys = frozenset({"folder"})
"""
ABSTRACT = """
from connectors.base import FileConnector

class Half(FileConnector):
    kind = "half"
"""


def load_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The built-in kinds and six plugin distributions, some of them broken, loaded from ``tmp_path``."""
    connectors = "meshgate.connectors"
    write_distribution(tmp_path, "good-plugin", {connectors: {"good": "good_plugin:Good", "nowhere": "good_plugin:Nowhere", "keyed": "good_plugin:Keyed"}}, {"good_plugin": GOOD})
    write_distribution(tmp_path, "broken-import", {connectors: {"broken": "broken_plugin:Broken"}}, {"broken_plugin": "import no_such_module\n"})
    write_distribution(tmp_path, "not-a-class", {connectors: {"func": "os.path:join", "half": "half_plugin:Half"}}, {"half_plugin": ABSTRACT})
    write_distribution(tmp_path, "usurper", {connectors: {"postgres": "good_plugin:Good", "csv+ftp": "good_plugin:Good"}}, {})
    write_distribution(tmp_path, "twin-one", {connectors: {"twin": "good_plugin:Good"}}, {})
    write_distribution(tmp_path, "twin-two", {connectors: {"twin": "good_plugin:Good"}}, {})
    found: list[EntryPoint] = list(entry_points(group=GROUP))
    monkeypatch.syspath_prepend(str(tmp_path))  # where the plugins' modules are imported from
    for dist in distributions(path=[str(tmp_path)]):
        found += [ep for ep in dist.entry_points if ep.group == GROUP]
    return load(found)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    return load_plugins(tmp_path, monkeypatch)


def test_a_plugin_adds_a_kind(plugins: Registry) -> None:
    good = plugins.kind("good")
    assert good.distribution == "good-plugin" and good.connector.__name__ == "Good"
    assert set(plugins.kinds) >= BUILT_INS


def test_a_plugin_cannot_replace_or_extend_a_built_in_kind(plugins: Registry) -> None:
    assert plugins.kind("postgres").connector is PostgresConnector
    assert plugins.kind("csv").schemes == {"s3": ObjectCsvConnector}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("broken", r"entry point 'broken = broken_plugin:Broken' of distribution 'broken-import' cannot be imported: ModuleNotFoundError: No module named 'no_such_module'"),
        ("func", r"entry point 'func = os.path:join' of distribution 'not-a-class' names <function join .*>, not a connector class \(a subclass of SqlConnector or FileConnector\)"),
        ("half", r"entry point 'half = half_plugin:Half' of distribution 'not-a-class' names Half, which does not implement discover, open_version, register, schema, stamp"),
        ("nowhere", r"entry point 'nowhere = good_plugin:Nowhere' of distribution 'good-plugin' names Nowhere, whose config_keys name neither 'uri' nor 'path' \(where its source is\)"),
        ("twin", r"entry point 'twin = good_plugin:Good' of distribution 'twin-two' clashes with the one of distribution 'twin-one'"),
    ],
)
def test_a_plugin_that_cannot_load_is_unavailable_saying_why(plugins: Registry, kind: str, reason: str) -> None:
    assert kind not in plugins.kinds
    with pytest.raises(ConfigError, match=f"connector type '{kind}' is unavailable: {reason}"):
        plugins.kind(kind)


def test_each_plugin_left_out_is_logged_naming_its_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="connectors.registry"):
        found = load_plugins(tmp_path, monkeypatch)
        assert "'postgres = good_plugin:Good' of distribution 'usurper'" in caplog.text  # known without importing
        for name in found.names:
            found.problem(name)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for distribution in ("broken-import", "not-a-class", "usurper", "twin-two"):
        assert f"distribution '{distribution}'" in logged
    assert "'postgres = good_plugin:Good' of distribution 'usurper': 'postgres' is a built-in connector type" in logged
    assert "'good = good_plugin:Good'" not in logged


def test_a_kind_is_imported_when_first_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "good_plugin", raising=False)
    found = load_plugins(tmp_path, monkeypatch)
    assert "good" in found.names and "good_plugin" not in sys.modules
    assert found.kind("good").connector.__module__ == "good_plugin"
    assert "good_plugin" in sys.modules


def test_options_naming_a_file_are_an_admins_like_the_declared_ones(plugins: Registry) -> None:
    assert plugins.kind("keyed").admin_keys == {"token", "ca_file"}
    assert {"tls_root_certs", "username", "password"} <= registry().kind("flightsql").admin_keys
    assert {"endpoint", "access_key_id"} <= registry().kind("parquet").admin_keys  # from its s3 class


def test_without_meshgates_entry_points_the_message_says_so() -> None:
    with pytest.raises(ConfigError, match=r"unknown connector type 'sqlite' \(expected one of none: Meshgate's entry points are not installed \(pip install \.\)\)"):
        load([]).kind("sqlite")
