"""Parquet and CSV objects in S3 (or an S3-compatible store), read by DataFusion's own readers.

A ``parquet`` or ``csv`` connector whose ``uri`` is ``s3://bucket/prefix`` serves the objects
under the prefix, laid out as local files are (connectors/files.py): each ``*.parquet``
(``*.csv``) object directly under the prefix is a product named after its stem; each "folder"
(``prefix/name/``) holding data objects, directly or in ``key=value/`` partition folders, is one
product named after it; a prefix that is itself a folder of part objects or of partitions is one
product (``source: .``), and a ``uri`` naming one object is that object. Partition keys are
columns (connectors/partitions.py), and DataFusion prunes by them: a filter on a key reads only
the matching prefixes' objects.

Listing and footers go through ``obstore``: the same Rust ``object_store`` crate DataFusion reads
with (the same endpoint, region and credential semantics), which lists with the objects' sizes
and ETags and reads byte ranges (a Parquet footer is two ranged GETs). DataFusion's object stores
cannot list from Python, and boto3 would be a second, different S3 client.

Settings (connector keys, each may be a ``${VAR}`` reference), else the environment:
``endpoint`` (``AWS_ENDPOINT_URL``), ``region`` (``AWS_REGION``, ``AWS_DEFAULT_REGION``; default
``us-east-1``), ``access_key_id`` (``AWS_ACCESS_KEY_ID``), ``secret_access_key``
(``AWS_SECRET_ACCESS_KEY``), ``session_token`` (``AWS_SESSION_TOKEN``) and ``allow_http``
(``AWS_ALLOW_HTTP``; default false). Keys, secrets and tokens are never shown: every message
this module raises has them replaced by ``***``.

Versions: before every query the engine asks :meth:`ObjectSource.stamp`, one LIST of the
product's prefix (or HEAD of its object): each object's key, size and ETag. A new stamp makes a
new version: new or changed objects are checked against the product's registered schema (a
Parquet footer, or a CSV object read whole), and the product is registered again, so that the
next query lists afresh. What a query reads is what DataFusion lists when its scan starts: the
objects the gateway listed and checked a moment before, unless one changes in between. An object
replaced while a query reads it fails that query (DataFusion reads byte ranges of the size it
listed; see the README, "Object storage").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import SessionConfig, SessionContext
from datafusion.object_store import AmazonS3
from datafusion.options import CsvReadOptions
from obstore.store import S3Store

from connectors import partitions
from connectors.base import DiscoveredProduct, FileConnector, FileVersion, SourceObject
from connectors.files import (
    _classic,
    _is_interval,
    _mismatch,
    _reason,
    _uuid_columns,
    _uuid_text,
    csv_options,
    schema_problems,
)
from connectors.naming import identifier, unique
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError
from meshcore.sql import quote_identifier

log = logging.getLogger(__name__)

SETTINGS = ("endpoint", "region", "access_key_id", "secret_access_key", "session_token", "allow_http")
"""The connector keys of an object-store connector (besides ``type``, ``uri`` and the format's own)."""

_ENVIRONMENT = {
    "endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
    "allow_http": ("AWS_ALLOW_HTTP",),
}
_SECRETS = ("access_key_id", "secret_access_key", "session_token")
_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?$")
_CONNECT_TIMEOUT = "5s"
_REQUEST_TIMEOUT = "10s"
FAILURE_SECONDS = 30.0
"""How long a failed listing is answered from memory: every query stamps every file product, so a
store that hangs would otherwise hold up the whole mesh's queries, not only its own domain's."""


def is_object_uri(uri: str | None) -> bool:
    """Whether a connector ``uri`` names object storage (``s3://``)."""
    return uri is not None and uri.startswith("s3://")


@dataclass(frozen=True)
class S3Settings:
    """Where the store is and how to sign requests: connector options first, then the environment."""

    bucket: str
    prefix: str  # "" or ending with "/" (a folder), or an object's key
    region: str
    endpoint: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    allow_http: bool

    @classmethod
    def of(cls, domain: str, uri: str, options: Mapping[str, Any]) -> S3Settings:
        """The settings for ``uri`` (raises ConfigError naming the domain and key, never a value)."""
        match = _URI.match(uri)
        if match is None:
            raise ConfigError(f"domain {domain!r}: connector uri must be s3://bucket/prefix (a valid bucket name)")
        values: dict[str, Any] = {}
        for key, variables in _ENVIRONMENT.items():
            value = options.get(key)
            if value is None:
                value = next((os.environ[v] for v in variables if os.environ.get(v)), None)
            if key == "allow_http":
                if isinstance(value, str) and value.lower() in ("true", "false"):
                    value = value.lower() == "true"
                if value is not None and not isinstance(value, bool):
                    raise ConfigError(f"domain {domain!r}: connector option allow_http must be true or false")
            elif value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"domain {domain!r}: connector option {key} must be a non-empty string")
            values[key] = value
        if (values["access_key_id"] is None) != (values["secret_access_key"] is None):
            raise ConfigError(
                f"domain {domain!r}: give both access_key_id and secret_access_key"
                " (connector options or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or neither"
            )
        endpoint = values["endpoint"]
        if endpoint is not None and not re.match(r"^https?://[^/\s]+/?$", endpoint):
            raise ConfigError(f"domain {domain!r}: connector option endpoint must be http(s)://host[:port]")
        allow_http = bool(values["allow_http"]) or False
        if endpoint is not None and endpoint.startswith("http://") and not allow_http:
            raise ConfigError(f"domain {domain!r}: endpoint is http://: set allow_http: true to use it")
        return cls(
            bucket=match.group(1),
            prefix=match.group(2) or "",
            region=values["region"] or "us-east-1",
            endpoint=endpoint.rstrip("/") if endpoint else None,
            access_key_id=values["access_key_id"],
            secret_access_key=values["secret_access_key"],
            session_token=values["session_token"],
            allow_http=allow_http,
        )

    def secrets(self) -> list[str]:
        return [value for value in (getattr(self, key) for key in _SECRETS) if value]

    def scrub(self, text: str) -> str:
        """``text`` with every key, secret and token replaced by ``***``."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    def obstore(self) -> S3Store:
        config: dict[str, Any] = {"region": self.region}
        if self.endpoint is not None:
            config["endpoint"] = self.endpoint
        if self.access_key_id is not None:
            config["access_key_id"] = self.access_key_id
            config["secret_access_key"] = self.secret_access_key
            if self.session_token is not None:
                config["session_token"] = self.session_token
        else:
            config["skip_signature"] = True  # no credentials: anonymous requests (public buckets)
        return S3Store(
            self.bucket,
            config=config,  # type: ignore[arg-type]  # S3Config: a TypedDict of these keys
            client_options={
                "allow_http": self.allow_http,
                "connect_timeout": _CONNECT_TIMEOUT,
                "timeout": _REQUEST_TIMEOUT,
            },
            # An unreachable endpoint fails the listing in seconds (object_store retries for 3 minutes by default).
            retry_config={"max_retries": 1, "retry_timeout": dt.timedelta(seconds=5)},
        )

    def datafusion(self) -> AmazonS3:
        return AmazonS3(
            bucket_name=self.bucket,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
            endpoint=self.endpoint,
            allow_http=self.allow_http,
        )


class ObjectStamp(NamedTuple):
    """One listed object: its key (relative to the product), size and ETag. Any difference is a new version."""

    name: str
    size: int
    etag: str


class ObjectSource(FileConnector):
    """Objects of one format under an ``s3://`` prefix (see the module doc)."""

    suffix: ClassVar[str]
    config_keys = frozenset({"uri", *SETTINGS})
    admin_keys = frozenset(SETTINGS)  # the store's endpoint and the gateway's credentials for it

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.uri is None:
            raise ConfigError(f"domain {domain!r}: an object-store {self.kind} connector needs an s3:// uri")
        super().__init__(domain, config)
        self.s3 = S3Settings.of(domain, config.uri, config.options)
        _claim_bucket(self)
        self._store: S3Store | None = None
        self._datafusion_store: AmazonS3 | None = None
        self._registered: dict[str, frozenset[str]] = {}  # source.table -> object names served
        self._uuids: dict[str, frozenset[str]] = {}
        self._failures: dict[str, tuple[float, str]] = {}  # what failed -> (when, reason)

    # -- the store --------------------------------------------------------------------
    @property
    def store(self) -> S3Store:
        if self._store is None:
            self._store = self.s3.obstore()
        return self._store

    def prepare(self, ctx: SessionContext) -> None:
        """Register this connector's bucket in a query's context (DataFusion reads through it)."""
        if self._datafusion_store is None:
            self._datafusion_store = self.s3.datafusion()
        ctx.register_object_store("s3://", self._datafusion_store, self.s3.bucket)

    @property
    def single(self) -> bool:
        """Whether the uri names one object rather than a prefix."""
        return self.s3.prefix.endswith(self.suffix)

    @property
    def root(self) -> str:
        """The key prefix product paths are relative to ("" or ending with ``/``)."""
        prefix = self.s3.prefix
        if self.single:
            return prefix.rpartition("/")[0] + "/" if "/" in prefix else ""
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def _url(self, key: str) -> str:
        return f"s3://{self.s3.bucket}/{key}"

    def _unavailable(self, what: str, reason: str, product: str | None = None) -> SourceUnavailableError:
        where = f"data product '{self.domain}.{product}': " if product else ""
        return SourceUnavailableError(self.domain, self.label, f"{where}{what}: {reason}")

    def _reason(self, error: Exception) -> str:
        reason = self.s3.scrub(_store_reason(error))
        return reason + f" ({self.s3.endpoint or 'AWS S3'})" if reason == _UNREACHABLE else reason

    def _failed_recently(self, what: str, product: str | None) -> None:
        """Raise the failure of ``what`` again, without asking the store, for FAILURE_SECONDS after it."""
        failed = self._failures.get(what)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_SECONDS:
            raise self._unavailable(what, failed[1] + " (retried within 30 s)", product)

    def _failed(self, what: str, error: Exception, product: str | None) -> SourceUnavailableError:
        reason = self._reason(error)
        self._failures[what] = (time.monotonic(), reason)
        return self._unavailable(what, reason, product)

    def _list(self, prefix: str, product: str | None = None) -> list[ObjectStamp]:
        """Every object under ``prefix`` (keys relative to it), sorted; raises SourceUnavailableError."""
        what = f"cannot list {self._url(prefix)}"
        self._failed_recently(what, product)
        try:
            found = [
                ObjectStamp(meta["path"][len(prefix) :], meta["size"], str(meta.get("e_tag") or ""))
                for chunk in obstore.list(self.store, prefix=prefix or None, chunk_size=1000)
                for meta in chunk
            ]
        except Exception as error:
            raise self._failed(what, error, product) from None
        self._failures.pop(what, None)
        return sorted(found)

    def _head(self, key: str, product: str | None = None) -> ObjectStamp | None:
        what = f"cannot read {self._url(key)}"
        self._failed_recently(what, product)
        try:
            meta = obstore.head(self.store, key)
        except obstore.exceptions.NotFoundError:
            return None
        except Exception as error:
            raise self._failed(what, error, product) from None
        self._failures.pop(what, None)
        return ObjectStamp(key.rpartition("/")[2], meta["size"], str(meta.get("e_tag") or ""))

    # -- products -----------------------------------------------------------------------
    def discover(self) -> list[DiscoveredProduct]:
        if self.single:
            name = self.s3.prefix.rpartition("/")[2]
            if self._head(self.s3.prefix) is None:
                raise SourceUnavailableError(self.domain, self.label, f"{self._url(self.s3.prefix)} does not exist")
            return [DiscoveredProduct(identifier(name.removesuffix(self.suffix)), SourceObject(table=name))]
        keys = [stamp.name for stamp in self._list(self.root)]
        if not keys:
            raise SourceUnavailableError(self.domain, self.label, f"no objects under {self._url(self.root)}")
        if _is_dataset(keys, self.suffix):
            stem = self.root.rstrip("/").rpartition("/")[2] or self.s3.bucket
            return [DiscoveredProduct(identifier(stem), SourceObject(table="."))]
        files = [key for key in keys if "/" not in key and _is_data(key, self.suffix)]
        folders: dict[str, list[str]] = {}
        for key in keys:
            folder, slash, rest = key.partition("/")
            if slash and not folder.startswith((".", "_")):
                folders.setdefault(folder, []).append(rest)
        held = [folder for folder, inside in sorted(folders.items()) if _holds_data(inside, self.suffix)]
        tables = files + held
        names = unique(identifier(t.removesuffix(self.suffix) if t in files else t) for t in tables)
        return [DiscoveredProduct(n, SourceObject(table=t)) for n, t in zip(names, tables, strict=True)]

    def _objects(self, source: SourceObject, product: str | None = None) -> tuple[str, list[ObjectStamp], bool]:
        """The product's key (a folder's ends with ``/``), its data objects (named relative to it), whether a folder.

        Raises SourceUnavailableError naming the domain (and product) when there are none.
        """
        if source.table is None:
            raise SourceError(self.domain, self.label, "object products need a path, not SQL")
        table = source.table.strip("/")
        if table in ("", "."):
            key = self.root
        elif table.endswith(self.suffix):
            key = self.root + table
        else:
            key = self.root + table + "/"
        if not key.endswith("/") and key:
            stamp = self._head(key, product)
            if stamp is None:
                raise self._missing(product, f"{self._url(key)} does not exist")
            return key, [stamp], False
        listed = self._list(key, product)
        try:
            names = set(_data_keys([s.name for s in listed], self.suffix))
        except partitions.LayoutError as error:
            raise self._missing(product, f"{self._url(key)}: {error}") from None
        objects = [s for s in listed if s.name in names]
        if not objects:
            raise self._missing(product, f"no *{self.suffix} objects under {self._url(key)}")
        return key, objects, True

    def _missing(self, product: str | None, message: str) -> SourceUnavailableError:
        where = f"data product '{self.domain}.{product}': " if product else ""
        return SourceUnavailableError(self.domain, self.label, where + message)

    def _columns(self, key: str, objects: list[ObjectStamp], folder: bool) -> list[tuple[str, pa.DataType]]:
        if not folder:
            return []
        base = Path("/r")  # pure path arithmetic: nothing on disk is read
        return partitions.layout(base, [base / o.name for o in objects])

    def schema(self, source: SourceObject) -> pa.Schema:
        key, objects, folder = self._objects(source)
        stored, uuids = self._stored(key, objects, folder)
        for field in stored:
            if _is_interval(field.type):
                log.warning(
                    "[%s/%s] column %r of %s is not served: DataFusion reads Parquet INTERVAL without months",
                    *(self.domain, self.label, field.name, self._url(key)),
                )
        assert source.table is not None
        self._registered[source.table] = frozenset(o.name for o in objects)
        self._uuids[source.table] = frozenset(uuids)
        return pa.schema(
            [f.with_type(pa.string()) if f.name in uuids else f for f in stored if not _is_interval(f.type)]
        )

    def _stored(self, key: str, objects: list[ObjectStamp], folder: bool) -> tuple[pa.Schema, set[str]]:
        try:
            inferred = self._inferred(key, self._columns(key, objects, folder))
            uuids = self.uuid_columns(key + objects[0].name if folder else key, objects[0].size)
        except SourceError:
            raise
        except Exception as exc:
            reason = self.s3.scrub(_reason(exc))
            raise SourceError(self.domain, self.label, f"cannot read {self._url(key)}: {reason}") from None
        return inferred, uuids

    def _inferred(self, key: str, columns: list[tuple[str, pa.DataType]], one: bool = False) -> pa.Schema:
        scratch = SessionContext(SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false"))
        self.prepare(scratch)
        self.register_url(scratch, "product", self._url(key), None, [] if one else columns)
        inferred = scratch.table("product").schema()
        return pa.schema([pa.field(f.name, _classic(f.type), f.nullable) for f in inferred])

    def uuid_columns(self, key: str, size: int) -> set[str]:
        return set()

    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        key, objects, folder = self._objects(source)
        stored, uuids = self._stored(key, objects, folder)
        pinned = pa.schema([f for f in stored if not _is_interval(f.type)])
        self._register_at(ctx, name, key, self._columns(key, objects, folder), pinned, uuids)

    def _register_at(
        self,
        ctx: SessionContext,
        name: str,
        key: str,
        columns: list[tuple[str, pa.DataType]],
        pinned: pa.Schema,
        uuids: Iterable[str],
    ) -> None:
        uuids = set(uuids)
        pinned_types = {field.name: field.type for field in pinned}
        columns = [(column, pinned_types.get(column, kind)) for column, kind in columns]
        stored = pa.schema([f for f in pinned if f.name not in {c for c, _ in columns}])
        self.prepare(ctx)
        try:
            if not uuids:
                self.register_url(ctx, name, self._url(key), stored, columns)
                return
            stem = identifier(key.rstrip("/").rpartition("/")[2].removesuffix(self.suffix) or self.s3.bucket)
            stored_name = f"{quote_identifier(self.domain)}.{quote_identifier(stem)}"
            ctx.sql(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.domain)}").collect()
            self.register_url(ctx, stored_name, self._url(key), stored, columns)
            items = [_uuid_text(f.name) if f.name in uuids else quote_identifier(f.name) for f in pinned]
            ctx.register_view(name, ctx.sql(f"SELECT {', '.join(items)} FROM {stored_name}"))
        except Exception as exc:
            reason = self.s3.scrub(_reason(exc))
            raise SourceError(self.domain, self.label, f"cannot register {self._url(key)}: {reason}") from None

    def register_url(
        self, ctx: SessionContext, name: str, url: str, schema: pa.Schema | None, columns: list[tuple[str, pa.DataType]]
    ) -> None:
        """Register an object or a folder (``url`` ending with ``/``) in ``ctx``, its partition ``columns`` typed."""
        raise NotImplementedError

    # -- versions -----------------------------------------------------------------------
    def stamp(self, product: str, source: SourceObject) -> tuple[ObjectStamp, ...]:
        """One LIST of the product's prefix (a HEAD for one object): names, sizes and ETags, sorted."""
        key, objects, _ = self._objects(source, product)
        served = self._registered.get(str(source.table), frozenset())
        missing = sorted(served - {o.name for o in objects})
        if missing:
            names = ", ".join(self._url(key + name) for name in missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise self._missing(
                product,
                f"object {names} of the product is missing: restore it, or read the domain again to serve"
                " the product without it",
            )
        return tuple(objects)

    def open_version(
        self, product: str, source: SourceObject, schema: pa.Schema, previous: FileVersion | None
    ) -> _ObjectVersion:
        """The objects as listed now, new or changed ones checked against ``schema``."""
        key, objects, folder = self._objects(source, product)
        table = str(source.table)
        uuids = self._uuids.get(table)
        if uuids is None:
            uuids = frozenset(self.uuid_columns(key + objects[0].name if folder else key, objects[0].size))
        pinned = pa.schema(
            [f.with_type(pa.binary(16)) if f.name in uuids and f.type == pa.string() else f for f in schema]
        )
        columns = self._columns(key, objects, folder)
        keys = {column for column, _ in columns}
        stored = pa.schema([f for f in pinned if f.name not in keys])
        checked = previous.checked if isinstance(previous, _ObjectVersion) else frozenset()
        for stamp in objects:
            if stamp not in checked:
                self._check(product, key + stamp.name if folder else key, stamp, stored, uuids)
        self._registered[table] = self._registered.get(table, frozenset()) | {o.name for o in objects}
        return _ObjectVersion(self, key, tuple(objects), columns, pinned, uuids)

    def _check(self, product: str, key: str, stamp: ObjectStamp, pinned: pa.Schema, uuids: frozenset[str]) -> None:
        if stamp.size == 0:
            problem: str | None = "is empty (0 bytes)"
        else:
            try:
                problem = self.inspect(key, stamp.size, pinned, uuids)
            except obstore.exceptions.NotFoundError:
                problem = "disappeared while it was checked: try again"
        if problem is not None:
            raise SourceError(
                self.domain, self.label, f"data product '{self.domain}.{product}': object {self._url(key)} {problem}"
            )

    def inspect(self, key: str, size: int, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        """What is wrong with one object against the registered (stored) schema, or None."""
        raise NotImplementedError

    def _compare(self, key: str, pinned: pa.Schema, uuids: frozenset[str], found_uuids: set[str]) -> str | None:
        try:
            found = self._inferred(key, [], one=True)
        except Exception as exc:
            return f"cannot be read: {self.s3.scrub(_reason(exc))}"
        return _mismatch(schema_problems(pinned, uuids, found, found_uuids))


class ObjectParquetConnector(ObjectSource):
    """Parquet objects."""

    kind = "parquet"
    suffix = ".parquet"

    def register_url(
        self, ctx: SessionContext, name: str, url: str, schema: pa.Schema | None, columns: list[tuple[str, pa.DataType]]
    ) -> None:
        ctx.register_parquet(name, url, file_extension=self.suffix, schema=schema, table_partition_cols=columns)

    def footer(self, key: str, size: int) -> pq.FileMetaData:
        """The object's Parquet footer: two ranged GETs (its last 8 bytes, then the footer)."""
        if size < 12:
            raise ValueError("too small to be a Parquet file")
        tail = bytes(obstore.get_range(self.store, key, start=size - 8, end=size))
        if tail[4:] != b"PAR1":
            raise ValueError("not a Parquet file (no PAR1 magic at its end)")
        length = int.from_bytes(tail[:4], "little")
        if length + 12 > size:
            raise ValueError("its footer length is past its start")
        footer = bytes(obstore.get_range(self.store, key, start=size - 8 - length, end=size - 8))
        return pq.read_metadata(pa.BufferReader(b"PAR1" + footer + tail))

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """The rows the product's Parquet footers count (exact; two ranged GETs per object)."""
        key, objects, folder = self._objects(source)
        try:
            return sum(self.footer(key + o.name if folder else key, o.size).num_rows for o in objects)
        except Exception as error:  # logged by estimate_rows: never with a secret
            raise ValueError(self.s3.scrub(str(error))) from None

    def uuid_columns(self, key: str, size: int) -> set[str]:
        return _uuid_columns(self.footer(key, size).schema)

    def inspect(self, key: str, size: int, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        try:
            found_uuids = _uuid_columns(self.footer(key, size).schema)
        except obstore.exceptions.NotFoundError:
            raise
        except Exception:
            return "is not a readable Parquet file (truncated or corrupt: its footer cannot be read)"
        return self._compare(key, pinned, uuids, found_uuids)


class ObjectCsvConnector(ObjectSource):
    """CSV objects. Options: ``delimiter``, ``has_header``."""

    kind = "csv"
    config_keys = ObjectSource.config_keys | {"delimiter", "has_header"}
    suffix = ".csv"

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        self.delimiter, self.has_header = csv_options(domain, config)

    def register_url(
        self, ctx: SessionContext, name: str, url: str, schema: pa.Schema | None, columns: list[tuple[str, pa.DataType]]
    ) -> None:
        options = CsvReadOptions(
            schema=schema,
            has_header=self.has_header,
            delimiter=self.delimiter,
            file_extension=self.suffix,
            table_partition_cols=columns,
        )
        ctx.register_csv(name, url, options=options)

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """The objects' sizes over the mean length of their first lines (one ranged GET of 64 KiB each)."""
        key, objects, folder = self._objects(source)
        rows = 0.0
        for o in objects:
            object_key = key + o.name if folder else key
            start = bytes(obstore.get_range(self.store, object_key, start=0, length=min(o.size, 1 << 16)))
            lines = start.count(b"\n") or 1
            rows += o.size / (max(len(start), 1) / lines) - (1 if self.has_header else 0)
        return max(0, round(rows))

    def inspect(self, key: str, size: int, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        """The header (by position), a final line break, and every value read as its column's type."""
        start = bytes(obstore.get_range(self.store, key, start=0, length=min(size, 1 << 16)))
        first = start.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        fields = next(iter(_csv_rows(first, self.delimiter)), [])
        if self.has_header and fields != pinned.names:
            return _mismatch(
                [f"its header is {first[:80]!r} where the product has columns {', '.join(pinned.names)!r}"]
            )
        if not self.has_header and len(fields) != len(pinned):
            return _mismatch([f"its first row has {len(fields)} fields where the product has {len(pinned)} columns"])
        last = bytes(obstore.get_range(self.store, key, start=size - 1, end=size))
        if last not in (b"\n", b"\r"):
            return "does not end with a line break: its last row is cut off (truncated, or still being written)"
        scratch = SessionContext()
        self.prepare(scratch)
        try:
            self.register_url(scratch, "product", self._url(key), pinned, [])
            counts = ", ".join(f"count({quote_identifier(name)})" for name in pinned.names)
            scratch.sql(f"SELECT {counts} FROM product").collect()
        except Exception as exc:
            return f"cannot be read with the product's column types: {self.s3.scrub(_reason(exc))}"
        return None


class _ObjectVersion(FileVersion):
    """A product's objects as one listing saw them: registered afresh, so that DataFusion lists them again."""

    def __init__(
        self,
        connector: ObjectSource,
        key: str,
        stamp: tuple[ObjectStamp, ...],
        columns: list[tuple[str, pa.DataType]],
        pinned: pa.Schema,
        uuids: frozenset[str],
    ) -> None:
        self._connector = connector
        self.key = key
        self.stamp = stamp
        self.checked = frozenset(stamp)
        self.columns = columns
        self.pinned = pinned
        self.uuids = uuids
        self.sequence = next(_SEQUENCE)

    def register(self, ctx: SessionContext, name: str) -> None:
        self._connector._register_at(ctx, name, self.key, self.columns, self.pinned, self.uuids)

    def retire(self) -> None:
        """Nothing is held: objects are read from the store."""


_SEQUENCE = itertools.count(1)
_BUCKETS: dict[str, weakref.WeakSet[ObjectSource]] = {}  # bucket name -> the live connectors reading it
_BUCKETS_LOCK = threading.Lock()


def _claim_bucket(connector: ObjectSource) -> None:
    """Refuse a second domain reading a bucket name through other settings (endpoint, region, credentials).

    A query's context holds one store per bucket name (``s3://bucket``): the second domain's
    tables would be read with the first one's credentials, or from its endpoint. A domain's own
    older connectors (before a reload) do not count.
    """
    settings = dataclasses.replace(connector.s3, prefix="")
    with _BUCKETS_LOCK:
        readers = _BUCKETS.setdefault(connector.s3.bucket, weakref.WeakSet())
        for other in list(readers):
            if other.domain != connector.domain and dataclasses.replace(other.s3, prefix="") != settings:
                raise ConfigError(
                    f"domain {connector.domain!r}: bucket {connector.s3.bucket!r} is read by domain {other.domain!r}"
                    " with another endpoint, region or credentials; one gateway reads a bucket name through one"
                    " set of settings"
                )
        readers.add(connector)


def _csv_rows(line: str, delimiter: str) -> Iterable[list[str]]:
    import csv

    return csv.reader([line], delimiter=delimiter)


def _is_data(name: str, suffix: str) -> bool:
    return name.endswith(suffix) and name != suffix


def _hidden(part: str) -> bool:
    return part.startswith((".", "_"))


def _data_keys(keys: list[str], suffix: str) -> list[str]:
    """The data objects of a folder product (keys relative to it), as connectors/partitions.py finds files.

    Objects directly inside, or, when the folder has ``key=value`` sub-folders, the objects in the
    deepest ones. Raises partitions.LayoutError when they sit at several depths or name different keys.
    """
    parted = [
        key
        for key in keys
        if "/" in key
        and all(partitions.is_partition(part) for part in key.split("/")[:-1])
        and _is_data(key.rpartition("/")[2], suffix)
    ]
    if not parted:
        return sorted(key for key in keys if "/" not in key and _is_data(key, suffix))
    folders = {key.rpartition("/")[0] for key in parted}
    deepest = [key for key in parted if not any(f.startswith(key.rpartition("/")[0] + "/") for f in folders)]
    if len({key.count("/") for key in deepest}) > 1:
        raise partitions.LayoutError("data objects sit at different depths of its key=value folders")
    base = Path("/r")  # pure path arithmetic: nothing on disk is read
    partitions.layout(base, [base / key for key in deepest])
    return sorted(deepest)


def _holds_data(keys: list[str], suffix: str) -> bool:
    try:
        return bool(_data_keys(keys, suffix))
    except partitions.LayoutError:
        return True


def _is_dataset(keys: list[str], suffix: str) -> bool:
    """Whether a prefix is one product: ``key=value`` folders holding data, or part objects only."""
    if any("/" in key and partitions.is_partition(key.partition("/")[0]) for key in keys):
        return _holds_data(keys, suffix)
    files = [key for key in keys if "/" not in key and _is_data(key, suffix)]
    return bool(files) and all(partitions.is_part_file(Path(f)) for f in files)


def _store_reason(error: Exception) -> str:
    """A short reason from an obstore error: its kind, and the store's own words where it gives them."""
    text = " ".join(str(error).split())
    for pattern, reason in _REASONS:
        if pattern.search(text):
            return reason
    return text[:300]


_REASONS = (
    (re.compile(r"NoSuchBucket|bucket does not exist", re.I), "the bucket does not exist"),
    (
        # 403 as a word only: an endpoint's port (127.0.0.1:40312) is not a status
        re.compile(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden|\b403\b", re.I),
        "access denied: check the credentials (access_key_id, secret_access_key)",
    ),
    (re.compile(r"connect|dns|timed out|timeout", re.I), "the endpoint cannot be reached"),
)
_UNREACHABLE = _REASONS[-1][1]
