"""The mesh configuration: validated, immutable, and precise about its errors.

A mesh is one YAML file or a directory of YAML files (one per domain, so that each
domain team owns its file). Every error names the file, the domain and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONNECTOR_TYPES = ("postgres", "sqlite", "parquet", "csv", "duckdb")


@dataclass(frozen=True)
class ConnectorConfig:
    """How a domain reaches its source.

    ``uri`` is used by network sources (postgres); ``path`` by file-based ones,
    already resolved against the directory of the config file. ``options`` holds the
    type-specific keys (for example CSV ``delimiter``).
    """

    type: str
    uri: str | None = None
    path: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        if self.uri is not None:
            return _redact_password(self.uri)
        return str(self.path)


@dataclass(frozen=True)
class ProductConfig:
    """A data product a domain publishes: a source table/file or a source query."""

    name: str
    source: str | None = None
    sql: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class DomainConfig:
    """One domain: its owner, its connector and (optionally) its products."""

    name: str
    connector: ConnectorConfig
    file: Path
    owner: str | None = None
    description: str | None = None
    products: tuple[ProductConfig, ...] | None = None


@dataclass(frozen=True)
class MeshConfig:
    """The whole mesh: a catalog name and its domains."""

    domains: tuple[DomainConfig, ...]
    catalog: str = "mesh"


def _redact_password(uri: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    credentials, at, host = rest.rpartition("@")
    if ":" in credentials:
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***{at}{host}"
    return uri
