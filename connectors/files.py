"""Parquet and CSV files, read by DataFusion itself (pushdown is DataFusion's own).

``config.path`` is a file or a folder. In a folder, each ``*.parquet`` (``*.csv``) file
is a product named after its stem, and each subfolder holding such files is one
product named after the folder. A product's ``source.table`` is its path relative to
the folder (the file's own folder when ``config.path`` is a file).

Schemas are what DataFusion infers, with classic string/binary types instead of
views and list elements named ``item`` (Parquet names them ``element``), and products
are registered with that schema pinned, so the engine sees exactly the types
:meth:`schema` reports. Parquet types are served as stored (unsigned integers,
decimals, time and timestamp units, time zones, nested lists), except:

- ``UUID`` columns (16 bytes) are served as their canonical text, like every other
  source's uuids;
- ``INTERVAL`` columns are not served: DataFusion's reader drops their months (a
  warning names them). pyarrow cannot write Arrow intervals to Parquet at all.

CSV options: ``delimiter`` (default ``,``) and ``has_header`` (default true);
DataFusion reads empty CSV fields as NULL and infers int64, float64, bool, date32,
timestamps and strings.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import SessionConfig, SessionContext

from connectors.base import DiscoveredProduct, FileConnector, SourceObject
from connectors.naming import identifier, unique
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError, SourceError, SourceUnavailableError

log = logging.getLogger(__name__)


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
        stored, uuids = self._stored(path)
        for field in stored:
            if _is_interval(field.type):
                log.warning(
                    "[%s/%s] column %r of %s is not served: DataFusion reads Parquet INTERVAL without months",
                    *(self.domain, self.label, field.name, path),
                )
        return pa.schema(
            [f.with_type(pa.string()) if f.name in uuids else f for f in stored if not _is_interval(f.type)]
        )

    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        path = self.locate(source)
        stored, uuids = self._stored(path)
        pinned = pa.schema([f for f in stored if not _is_interval(f.type)])
        try:
            if not uuids:
                self.register_path(ctx, name, path, pinned)
                return
            # The stored file under ``domain.<file stem>``: the name a query's plan shows for it
            # (plan walkers expect ``schema.table``), never a SQL product (this domain has none).
            stored_name = f"{_quoted(self.domain)}.{_quoted(identifier(path.stem))}"
            ctx.sql(f"CREATE SCHEMA IF NOT EXISTS {_quoted(self.domain)}").collect()
            self.register_path(ctx, stored_name, path, pinned)
            items = [_uuid_text(f.name) if f.name in uuids else _quoted(f.name) for f in pinned]
            ctx.register_view(name, ctx.sql(f"SELECT {', '.join(items)} FROM {stored_name}"))
        except Exception as exc:
            raise SourceError(self.domain, self.label, f"cannot register {path}: {exc}") from exc

    def _stored(self, path: Path) -> tuple[pa.Schema, set[str]]:
        """The schema DataFusion reads (classic types) and the names of its UUID columns."""
        scratch = SessionContext(SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false"))
        try:
            self.register_path(scratch, "product", path, None)
            inferred = scratch.table("product").schema()
            uuids = self.uuid_columns(path)
        except Exception as exc:
            raise SourceError(self.domain, self.label, f"cannot read {path}: {exc}") from exc
        return pa.schema([pa.field(f.name, _classic(f.type), f.nullable) for f in inferred]), uuids

    def uuid_columns(self, path: Path) -> set[str]:
        """Top-level columns that hold UUIDs as 16 bytes (served as text)."""
        return set()

    @abstractmethod
    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        """Register a file or folder in ``ctx`` (with ``schema`` pinned when given)."""


class ParquetConnector(FileSource):
    """Parquet files."""

    kind = "parquet"
    suffix = ".parquet"

    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        ctx.register_parquet(name, _location(path), file_extension=self.suffix, schema=schema)

    def uuid_columns(self, path: Path) -> set[str]:
        """Columns of the (first) file with Parquet's UUID logical type."""
        first = path if path.is_file() else min(p for p in path.iterdir() if p.is_file() and p.suffix == self.suffix)
        stored = pq.ParquetFile(first).schema
        columns = (stored.column(i) for i in range(len(stored)))
        return {c.path for c in columns if c.logical_type.type == "UUID" and "." not in c.path}


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
    if pa.types.is_list(kind):
        return pa.list_(_classic(kind.value_type))
    if pa.types.is_large_list(kind):
        return pa.large_list(_classic(kind.value_type))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_classic(kind.value_type), kind.list_size)
    return kind


def _is_interval(kind: pa.DataType) -> bool:
    """Any Arrow interval (pyarrow's ``is_interval`` only knows month_day_nano)."""
    return kind.id in (pa.lib.Type_INTERVAL_DAY_TIME, pa.lib.Type_INTERVAL_MONTHS, pa.lib.Type_INTERVAL_MONTH_DAY_NANO)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _uuid_text(name: str) -> str:
    """DataFusion SQL for 16 UUID bytes as canonical text (``8-4-4-4-12`` lower-case hex digits)."""
    hexa = f"encode(arrow_cast({_quoted(name)}, 'Binary'), 'hex')"
    groups = ", '-', ".join(f"substr({hexa}, {start}, {length})" for start, length in _UUID_GROUPS)
    return f"CASE WHEN {_quoted(name)} IS NULL THEN NULL ELSE concat({groups}) END AS {_quoted(name)}"


_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
