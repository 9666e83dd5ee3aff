"""Parquet and CSV files, read by DataFusion itself (pushdown is DataFusion's own).

``config.path`` is a file or a folder. In a folder, each ``*.parquet`` (``*.csv``) file
is a product named after its stem, and each subfolder holding such files is one
product named after the folder. A product's ``source.table`` is its path relative to
the folder (the file's own folder when ``config.path`` is a file).

Schemas are what DataFusion infers, with classic string/binary types instead of
views, and products are registered with that schema pinned, so the engine sees
exactly the types :meth:`schema` reports. CSV options: ``delimiter`` (default ``,``)
and ``has_header`` (default true); DataFusion reads empty CSV fields as NULL.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
from datafusion import SessionConfig, SessionContext

from connectors.base import DiscoveredProduct, FileConnector, SourceObject
from connectors.naming import identifier, unique
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError, SourceError, SourceUnavailableError


class FileSource(FileConnector):
    """A file or folder of files of one format (see the module doc)."""

    suffix: ClassVar[str]

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.path is None:
            raise ConfigError(f"domain {domain!r}: a {self.kind} connector needs a path")
        super().__init__(domain, config)
        self.path = Path(config.path)

    @property
    def root(self) -> Path:
        """The folder product paths are relative to."""
        return self.path if self.path.is_dir() else self.path.parent

    def discover(self) -> list[DiscoveredProduct]:
        if not self.path.exists():
            raise SourceUnavailableError(self.domain, self.label, f"{self.path} does not exist")
        if self.path.is_file():
            paths = [self.path]
        else:
            entries = sorted(self.path.iterdir())
            paths = [p for p in entries if p.is_file() and p.suffix == self.suffix]
            paths += [p for p in entries if p.is_dir() and _files(p, self.suffix)]
        names = unique(identifier(p.stem if p.is_file() else p.name) for p in paths)
        return [
            DiscoveredProduct(name, SourceObject(table=p.relative_to(self.root).as_posix()))
            for name, p in zip(names, paths, strict=True)
        ]

    def locate(self, source: SourceObject) -> Path:
        """The product's file or folder (raises SourceUnavailableError naming it when absent)."""
        if source.table is None:
            raise SourceError(self.domain, self.label, "file products need a path, not SQL")
        path = self.root / source.table
        if path.is_dir() and not _files(path, self.suffix):
            raise SourceUnavailableError(self.domain, self.label, f"no *{self.suffix} files in {path}")
        if not path.exists():
            raise SourceUnavailableError(self.domain, self.label, f"{path} does not exist")
        return path

    def schema(self, source: SourceObject) -> pa.Schema:
        path = self.locate(source)
        scratch = SessionContext(SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false"))
        try:
            self.register_path(scratch, "product", path, None)
            inferred = scratch.table("product").schema()
        except Exception as exc:
            raise SourceError(self.domain, self.label, f"cannot read {path}: {exc}") from exc
        return pa.schema([pa.field(f.name, _classic(f.type), f.nullable) for f in inferred])

    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        schema = self.schema(source)
        path = self.locate(source)
        try:
            self.register_path(ctx, name, path, schema)
        except Exception as exc:
            raise SourceError(self.domain, self.label, f"cannot register {path}: {exc}") from exc

    @abstractmethod
    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        """Register a file or folder in ``ctx`` (with ``schema`` pinned when given)."""


class ParquetConnector(FileSource):
    """Parquet files."""

    kind = "parquet"
    suffix = ".parquet"

    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        ctx.register_parquet(name, _location(path), file_extension=self.suffix, schema=schema)


class CsvConnector(FileSource):
    """CSV files. Options: ``delimiter``, ``has_header``."""

    kind = "csv"
    suffix = ".csv"

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        delimiter = config.options.get("delimiter", ",")
        has_header = config.options.get("has_header", True)
        if not isinstance(delimiter, str) or len(delimiter.encode()) != 1:
            raise ConfigError(f"domain {domain!r}: connector option delimiter must be one ASCII character")
        if not isinstance(has_header, bool):
            raise ConfigError(f"domain {domain!r}: connector option has_header must be true or false")
        self.delimiter = delimiter
        self.has_header = has_header

    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        ctx.register_csv(
            name,
            _location(path),
            schema=schema,
            has_header=self.has_header,
            delimiter=self.delimiter,
            file_extension=self.suffix,
        )


def _files(folder: Path, suffix: str) -> bool:
    return any(p.is_file() and p.suffix == suffix for p in folder.iterdir())


def _location(path: Path) -> str:
    """DataFusion's spelling: a folder ends with a slash."""
    return f"{path}/" if path.is_dir() else str(path)


def _classic(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_binary_view(kind):
        return pa.binary()
    return kind
