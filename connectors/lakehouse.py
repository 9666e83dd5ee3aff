"""What Delta Lake and Iceberg tables share: where tables are, confinement, snapshots as datasets.

A lakehouse connector's ``path`` (a local folder) or ``uri`` (``s3://bucket/prefix``, with the
object-store settings of connectors/objects.py) is a table, or a folder of tables; a product's
``source`` is a table's folder relative to it (``.`` for the root itself). Every file a table's
metadata names (log entries, manifests, data files) must lie inside that table's folder, symbolic
links resolved: a table's metadata cannot make the gateway read another domain's files.

Before every query the engine asks :meth:`LakeSource.stamp`: the table's current version (one
small read), or the version the product pins (``as_of``). A new stamp makes a new
:class:`LakeVersion`: the snapshot's data files as one ``pyarrow.dataset`` whose fragments carry
the partition values the metadata records, registered with DataFusion (``register_dataset``), so
that DataFusion pushes projections and filters into the scan and pyarrow skips the files whose
partition values cannot match and the row groups whose statistics cannot. A query reads the one
snapshot it started on, whatever is committed meanwhile; the next query sees the new version.

pyarrow evaluates the filters pushed into a dataset with IEEE comparisons, where DataFusion (and
every other source) orders floating-point values totally (NaN above every number, -0.0 below
0.0). Float columns are therefore served through a view as ``nanvl(f, f)`` (the same value,
through a function pyarrow is not handed): filters on them stay in DataFusion, exact, and
filters on every other column still reach the scan. UUID columns (Iceberg) are read as 16 bytes
and served as their canonical text through the same view.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from abc import abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import obstore
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from datafusion import SessionContext

from connectors.base import DiscoveredProduct, FileConnector, FileVersion, SourceObject
from connectors.files import _uuid_text
from connectors.naming import identifier, unique
from connectors.objects import _UNREACHABLE, FAILURE_SECONDS, S3Settings, _store_reason
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError
from meshcore.sql import quote_identifier


@dataclass(frozen=True)
class Snapshot:
    """One version of a table: its data files as a dataset, its row count and what identifies it."""

    stamp: Hashable
    dataset: ds.Dataset
    rows: int | None
    uuids: frozenset[str] = frozenset()
    """Columns of 16-byte UUIDs (``binary(16)`` in the dataset), served as their canonical text."""

    def served(self) -> pa.Schema:
        """The product's schema: classic types, UUIDs as text."""
        return pa.schema(
            [
                pa.field(f.name, pa.string() if f.name in self.uuids else classic(f.type), f.nullable)
                for f in self.dataset.schema
            ]
        )


class LakeSource(FileConnector):
    """Tables of one format under a local folder or an ``s3://`` prefix (see the module doc)."""

    marker: str
    """The folder (``_delta_log``, ``metadata``) whose presence makes a folder a table."""

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        self.s3: S3Settings | None = None
        if config.uri is not None:
            if not config.uri.startswith("s3://"):
                raise ConfigError(f"domain {domain!r}: a {self.kind} connector's uri must be s3://bucket/prefix")
            self.s3 = S3Settings.of(domain, config.uri, config.options)
            self.base = f"s3://{self.s3.bucket}/{self.s3.prefix}".rstrip("/")
        elif config.path is not None:
            self.base = str(Path(config.path).resolve())
        else:
            raise ConfigError(f"domain {domain!r}: a {self.kind} connector needs a path or an s3:// uri")
        self._lock = threading.Lock()
        self._snapshots: dict[SourceObject, Snapshot] = {}
        self._store: Any = None
        self._failures: dict[SourceObject, tuple[float, str]] = {}  # what failed, when and why (S3)

    # -- where tables are -----------------------------------------------------------------
    def table_location(self, source: SourceObject, product: str | None = None) -> str:
        """The table's folder: an absolute local path or an ``s3://`` URI (confined to the connector's)."""
        if source.table is None:
            raise self.failure(product, f"{self.kind} products name a table folder (source), not SQL")
        relative = PurePosixPath(source.table)
        if relative.is_absolute() or ".." in relative.parts:
            raise self.failure(product, f"source '{source.table}' must be a folder inside the connector's")
        if self.s3 is not None:
            return self.base if str(relative) == "." else f"{self.base}/{relative}"
        folder = (Path(self.base) / relative).resolve()
        if not folder.is_relative_to(self.base):
            raise self.failure(product, f"source '{source.table}' leads outside {self.base} (a symbolic link)")
        return str(folder)

    def inside(self, location: str, uri: str) -> bool:
        """Whether a file ``uri`` a table's metadata names lies in the table's folder (links resolved)."""
        if self.s3 is not None:
            for scheme in ("s3a://", "s3n://"):
                uri = "s3://" + uri[len(scheme) :] if uri.startswith(scheme) else uri
            return uri.startswith(location + "/") and ".." not in PurePosixPath(uri[len(location) :]).parts
        path = local_path(uri)
        return path is not None and Path(path).resolve().is_relative_to(location)

    def confine(self, product: str | None, location: str, uris: list[str], what: str) -> None:
        """Refuse a table whose metadata names a file outside its folder."""
        outside = [uri for uri in uris if not self.inside(location, uri)]
        if outside:
            raise self.failure(
                product,
                f"the table's metadata names {what} outside its folder {location} ({outside[0]}):"
                " a table may only read its own files",
            )

    def discover(self) -> list[DiscoveredProduct]:
        """The root itself when it is a table, else each folder directly inside that holds one."""
        if self._is_table(self.base):
            name = self.base.rstrip("/").rpartition("/")[2] or self.kind
            return [DiscoveredProduct(identifier(name), SourceObject(table="."))]
        folders = [f for f in self._children(self.base) if self._is_table(f"{self.base}/{f}")]
        if not folders:
            raise self.failure(None, f"no {self.kind} tables in {self.base}", unavailable=True)
        names = unique(identifier(folder) for folder in folders)
        return [DiscoveredProduct(name, SourceObject(table=f)) for name, f in zip(names, folders, strict=True)]

    def _children(self, location: str) -> list[str]:
        """The folders directly inside ``location``, sorted."""
        try:
            if self.s3 is None:
                return sorted(p.name for p in Path(location).iterdir() if p.is_dir() and not p.name.startswith("."))
            prefix = self.key(location)
            listed = obstore.list_with_delimiter(self.store(), prefix + "/" if prefix else None)
            return sorted(p.rstrip("/").rpartition("/")[2] for p in listed["common_prefixes"])
        except (OSError, obstore.exceptions.BaseError) as error:
            raise self.failure(None, f"cannot list {location}: {error}", unavailable=True) from None

    def _is_table(self, location: str) -> bool:
        if self.s3 is None:
            return (Path(location) / self.marker).is_dir()
        prefix = f"{self.key(location)}/{self.marker}/".lstrip("/")
        try:
            return any(obstore.list(self.store(), prefix=prefix, chunk_size=1))
        except obstore.exceptions.BaseError:
            return False

    # -- S3 ----------------------------------------------------------------------------------
    def store(self) -> Any:
        """The obstore client for listings and small reads (S3 connectors only)."""
        assert self.s3 is not None
        if self._store is None:
            self._store = self.s3.obstore()
        return self._store

    def key(self, location: str) -> str:
        """An ``s3://bucket/key`` location's key."""
        assert self.s3 is not None
        return location[len(f"s3://{self.s3.bucket}/") :] if location.count("/") > 2 else ""

    def filesystem(self) -> pafs.FileSystem:
        """pyarrow's file system for the data files: local, or S3 with the connector's settings."""
        if self.s3 is None:
            return pafs.LocalFileSystem()
        endpoint = self.s3.endpoint
        return pafs.S3FileSystem(
            access_key=self.s3.access_key_id,
            secret_key=self.s3.secret_access_key,
            session_token=self.s3.session_token,
            region=self.s3.region,
            endpoint_override=endpoint.split("://", 1)[1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint else "https",
            anonymous=self.s3.access_key_id is None,
            connect_timeout=5,
            request_timeout=10,
        )

    def file_path(self, uri: str) -> str:
        """A data file's path for :meth:`filesystem` (``bucket/key`` on S3)."""
        if self.s3 is not None:
            return uri.split("://", 1)[1]
        path = local_path(uri)
        assert path is not None  # checked by confine()
        return path

    def reason(self, error: BaseException) -> str:
        """A short reason for a failure of a table's reader: its first line; on S3, the store's kind of failure."""
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        text = lines[0][:300] if lines else type(error).__name__
        if self.s3 is None:
            return text
        reason = _store_reason(Exception(" ".join(str(error).split())))
        if reason == _UNREACHABLE:
            return f"{reason} ({self.s3.endpoint or 'AWS S3'})"
        return reason if reason != " ".join(str(error).split())[:300] else text

    def scrub(self, text: str) -> str:
        return self.s3.scrub(text) if self.s3 is not None else text

    # -- the engine's contract -------------------------------------------------------------
    def failure(self, product: str | None, message: str, *, unavailable: bool = False) -> SourceError:
        kind = SourceUnavailableError if unavailable else SourceError
        where = f"data product '{self.domain}.{product}': " if product else ""
        return kind(self.domain, self.label, self.scrub(where + message))

    def cached(self, product: str | None, source: SourceObject, stamp: Hashable | None = None) -> Snapshot:
        """The table's snapshot at ``stamp`` (now, if None), kept until the next one is asked for."""
        stamp = self.current(product, source) if stamp is None else stamp
        with self._lock:
            held = self._snapshots.get(source)
        if held is not None and held.stamp == stamp:
            return held
        snapshot = self.snapshot(product, source, stamp)
        with self._lock:
            self._snapshots[source] = snapshot
        return snapshot

    def schema(self, source: SourceObject) -> pa.Schema:
        """The snapshot's schema in classic types: what :meth:`open_version` later checks versions against."""
        return self.cached(None, source).served()

    @property
    def remote(self) -> bool:
        """Whether :meth:`current` asks something over the network (S3; an Iceberg catalog)."""
        return self.s3 is not None

    def stamp(self, product: str, source: SourceObject) -> Hashable:
        """:meth:`current`; when :attr:`remote`, a failure is answered from memory for FAILURE_SECONDS.

        Every query stamps every file product of the mesh: a store that hangs would otherwise hold
        up every query, not only its own domain's (as connectors/objects.py does for listings).
        """
        if not self.remote:
            return self.current(product, source)
        with self._lock:
            failed = self._failures.get(source)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_SECONDS:
            raise self.failure(product, f"{failed[1]} (retried within {FAILURE_SECONDS:.0f} s)", unavailable=True)
        try:
            stamp = self.current(product, source)
        except SourceError as error:
            with self._lock:
                self._failures[source] = (time.monotonic(), str(error).partition("] ")[2].split("': ", 1)[-1])
            raise
        with self._lock:
            self._failures.pop(source, None)
        return stamp

    def open_version(
        self, product: str, source: SourceObject, schema: pa.Schema, previous: FileVersion | None
    ) -> LakeVersion:
        snapshot = self.cached(product, source)
        found = snapshot.served()
        if found.names != schema.names or found.types != schema.types:
            raise self.failure(
                product,
                f"the table's schema changed to ({_columns(found)}) from the registered ({_columns(schema)}):"
                " read the domain again to serve the new schema",
            )
        return LakeVersion(self, str(source.table), snapshot, schema)

    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        snapshot = self.cached(None, source)
        register(ctx, name, self.domain, str(source.table), snapshot.dataset, snapshot.uuids)

    def read_row_estimate(self, source: SourceObject) -> int | None:
        return self.cached(None, source).rows

    @abstractmethod
    def current(self, product: str | None, source: SourceObject) -> Hashable:
        """The version a query would read now (the pinned one when the product pins it): cheap."""

    @abstractmethod
    def snapshot(self, product: str | None, source: SourceObject, stamp: Hashable) -> Snapshot:
        """The table at ``stamp``: its data files, confined and checked (raises SourceError)."""


class LakeVersion(FileVersion):
    """One snapshot of a table, registered as a dataset of its data files."""

    def __init__(self, connector: LakeSource, table: str, snapshot: Snapshot, schema: pa.Schema) -> None:
        self.domain = connector.domain
        self.table = table
        self.stamp = snapshot.stamp
        self.snapshot = snapshot
        stored = pa.schema([f.with_type(pa.binary(16)) if f.name in snapshot.uuids else f for f in schema])
        self.dataset = (
            snapshot.dataset.replace_schema(stored) if snapshot.dataset.schema != stored else snapshot.dataset
        )

    def register(self, ctx: SessionContext, name: str) -> None:
        register(ctx, name, self.domain, self.table, self.dataset, self.snapshot.uuids)

    def retire(self) -> None:
        """Nothing is held: a table's data files are immutable (until a vacuum or expiry removes them)."""


def register(
    ctx: SessionContext, name: str, domain: str, table: str, dataset: ds.Dataset, uuids: frozenset[str]
) -> None:
    """Register ``dataset`` as ``name``: itself, or a view serving float columns as ``nanvl(f, f)``
    and UUID columns as their canonical text (as every source serves UUIDs)."""
    floats = {f.name for f in dataset.schema if pa.types.is_floating(f.type)}
    if not floats and not uuids:
        ctx.register_dataset(name, dataset)
        return
    # The dataset under ``domain.<table>``: the name a query's plan shows for it (plan walkers
    # expect ``schema.table``), never a product's (this domain has no SQL products).
    stored = f"{quote_identifier(domain)}.{quote_identifier(identifier(PurePosixPath(table).name or domain))}"
    ctx.sql(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(domain)}").collect()
    ctx.register_dataset(stored, dataset)
    items = [
        f"nanvl({q}, {q}) AS {q}" if f.name in floats else _uuid_text(f.name) if f.name in uuids else q
        for f in dataset.schema
        for q in [quote_identifier(f.name)]
    ]
    ctx.register_view(name, ctx.sql(f"SELECT {', '.join(items)} FROM {stored}"))


def fragments(
    files: list[tuple[str, ds.Expression | None]], filesystem: pafs.FileSystem, schema: pa.Schema
) -> ds.FileSystemDataset:
    """A Parquet dataset of ``files`` (paths, each with what its partition values guarantee)."""
    form = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
    parts = [
        form.make_fragment(path, filesystem=filesystem, partition_expression=guarantee)
        if guarantee is not None
        else form.make_fragment(path, filesystem=filesystem)
        for path, guarantee in files
    ]
    return ds.FileSystemDataset(parts, schema, form, filesystem)


def classic(kind: pa.DataType) -> pa.DataType:
    """Classic Arrow types (no large or view variants; list elements named ``item``), as every source serves."""
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(pa.field("item", classic(kind.value_type), kind.value_field.nullable))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(pa.field("item", classic(kind.value_type), kind.value_field.nullable), kind.list_size)
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, classic(f.type), f.nullable) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(classic(kind.key_type), pa.field("value", classic(kind.item_type), kind.item_field.nullable))
    return kind


def local_path(uri: str) -> str | None:
    """A local file's path from its URI (``file:///x``, ``file:/x``) or path; None for another scheme."""
    if uri.startswith("/"):
        return uri
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)
    return None


def timestamp(value: str, what: str) -> dt.datetime:
    """An ``as_of`` timestamp (ISO 8601; UTC unless it gives an offset)."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"as_of {value!r} is neither {what} nor an ISO 8601 timestamp") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)
