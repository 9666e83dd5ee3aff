"""Delta Lake tables (``type: delta``), read through the ``deltalake`` package's log replay.

A product is one table (its folder holds ``_delta_log``), read at its latest version, or at the
version its ``as_of`` pins: a version number, or an ISO 8601 timestamp (the version that was
current then). The snapshot's data files become one pyarrow dataset whose fragments carry the
partition values (``DeltaTable.to_pyarrow_dataset``) and the column statistics of the log
(:func:`_stats`), so a filter on a partition column, or outside a file's bounds, skips the file
(connectors/lakehouse.py).

Types come from the table's schema: byte/short/integer/long as int8-64, float/double,
decimal(p,s) as decimal128, string, binary, boolean, date as date32, timestamp as
timestamp[us, UTC], timestamp_ntz as timestamp[us], arrays, maps and structs as lists, maps
and structs. Refused with an error rather than read wrongly: deletion vectors, column mapping
(``delta.columnMapping.mode`` name or id) and any reader feature ``deltalake`` cannot read into
a dataset.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Hashable
from typing import ClassVar

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, DeltaProtocolError, TableNotFoundError

from connectors.base import SourceObject
from connectors.lakehouse import LakeSource, Snapshot, classic, timestamp
from connectors.objects import SETTINGS
from meshcore.config import ConnectorConfig


class DeltaConnector(LakeSource):
    """Delta Lake tables under a local folder."""

    kind = "delta"
    marker = "_delta_log"
    versioned = True
    config_keys: ClassVar[frozenset[str]] = frozenset({"path"})

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        self._heads: dict[str, DeltaTable] = {}  # by location: the latest version, kept up to date
        self._heads_lock = threading.Lock()

    def storage_options(self) -> dict[str, str]:
        """delta-rs's object-store settings for S3 (none for local tables)."""
        if self.s3 is None:
            return {}
        options = {
            "AWS_REGION": self.s3.region,
            "AWS_ALLOW_HTTP": str(self.s3.allow_http).lower(),
            # A store that hangs fails in seconds (object_store retries for 3 minutes by default).
            "timeout": "10s",
            "connect_timeout": "5s",
            "max_retries": "1",
            "retry_timeout": "5s",
        }
        if self.s3.endpoint is not None:
            options["AWS_ENDPOINT_URL"] = self.s3.endpoint
        if self.s3.access_key_id is not None and self.s3.secret_access_key is not None:
            options["AWS_ACCESS_KEY_ID"] = self.s3.access_key_id
            options["AWS_SECRET_ACCESS_KEY"] = self.s3.secret_access_key
            if self.s3.session_token is not None:
                options["AWS_SESSION_TOKEN"] = self.s3.session_token
        else:
            options["AWS_SKIP_SIGNATURE"] = "true"
        return options

    def _open(self, product: str | None, location: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(location, version=version, storage_options=self.storage_options())
        except TableNotFoundError:
            raise self.failure(product, f"no Delta table at {location} (no _delta_log)", unavailable=True) from None
        except (DeltaError, OSError, ValueError) as error:
            if version is not None and _no_version(error):
                raise self.failure(product, f"the Delta table at {location} has no version {version}") from None
            raise self.failure(product, f"cannot read the Delta log of {location}: {self.reason(error)}") from None

    def current(self, product: str | None, source: SourceObject) -> Hashable:
        """The pinned version (or timestamp), else the latest version number: one listing of the log."""
        location = self.table_location(source, product)
        if source.as_of is not None:
            return ("as_of", source.as_of)
        with self._heads_lock:
            head = self._heads.get(location)
            if head is None:
                head = self._heads[location] = self._open(product, location)
            else:
                try:
                    head.update_incremental()
                except (DeltaError, OSError, ValueError) as error:
                    del self._heads[location]
                    message = f"cannot read the Delta log of {location}: {self.reason(error)}"
                    raise self.failure(product, message, unavailable=True) from None
            return ("version", head.version())

    def snapshot(self, product: str | None, source: SourceObject, stamp: Hashable) -> Snapshot:
        location = self.table_location(source, product)
        table = self._at(product, location, source.as_of, stamp)
        _check_features(self, product, location, table)
        self.confine(product, location, table.file_uris(), "a data file")
        schema = pa.schema(
            [pa.field(f.name, classic(f.type), f.nullable) for f in pa.schema(table.schema().to_arrow())]
        )
        try:
            # deltalake's own guarantees are its partition values only: it turns a missing statistic
            # into "col >= NULL", which pyarrow then takes to mean every value is NULL (see _stats).
            partitions = pa.schema([schema.field(name) for name in table.metadata().partition_columns])
            located = table.to_pyarrow_dataset(schema=partitions)
            actions = pa.table(table.get_add_actions(flatten=True))
            guarantees = _stats(actions, schema)
            form = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
            parts = [
                form.make_fragment(
                    f.path,
                    filesystem=located.filesystem,
                    partition_expression=_and([f.partition_expression, *guarantees.get(f.path, [])]),
                )
                for f in located.get_fragments()
            ]
            dataset = ds.FileSystemDataset(parts, schema, form, located.filesystem)
            counts = actions.column("num_records")
        except DeltaProtocolError as error:
            raise self.failure(product, f"the Delta table at {location} cannot be read exactly: {error}") from None
        except (DeltaError, OSError, ValueError) as error:
            raise self.failure(product, f"cannot read the Delta table at {location}: {self.reason(error)}") from None
        rows = None if counts.null_count else int(pa.compute.sum(counts).as_py() or 0)
        return Snapshot(("version", table.version()) if source.as_of is None else stamp, dataset, rows)

    def _at(self, product: str | None, location: str, as_of: int | str | None, stamp: Hashable) -> DeltaTable:
        if as_of is None:
            assert isinstance(stamp, tuple)
            return self._open(product, location, int(stamp[1]))
        if isinstance(as_of, int):
            return self._open(product, location, as_of)
        try:
            moment = timestamp(as_of, "a version number")
        except ValueError as error:
            raise self.failure(product, str(error)) from None
        table = self._open(product, location)
        try:
            first = min(int(entry["timestamp"]) for entry in table.history() if "timestamp" in entry)
            if moment.timestamp() * 1000 < first:
                raise ValueError("the table did not exist yet")
            table.load_as_version(moment)
        except (DeltaError, OSError, ValueError) as error:
            raise self.failure(
                product, f"the Delta table at {location} has no version at {as_of}: {self.reason(error)}"
            ) from None
        return table


_BOUNDED = (pa.types.is_integer, pa.types.is_decimal, pa.types.is_date, pa.types.is_timestamp, pa.types.is_string)
_STRING_STATS = 32
"""Writers (Spark) truncate string statistics to 32 characters: a bound that long may be cut, and is not used."""


def _stats(actions: pa.Table, schema: pa.Schema) -> dict[str, list[ds.Expression]]:
    """What each data file's statistics in the log guarantee of its top-level columns, by path.

    A bound holds for non-NULL values only, so it is ``bound OR IS NULL`` unless the file counts no
    NULLs; a column without both bounds gets none (deltalake's own guarantees compare it with NULL
    then, and pyarrow takes that to mean the column is all NULL: measured, a filter ``ts > now()``
    lost rows whose statistics the writer had left out). Timestamp bounds are widened by a
    millisecond (Spark writes them in milliseconds), long strings are not used, and float columns
    are left out (connectors/lakehouse.py).
    """
    paths = actions.column("path").to_pylist()
    found: dict[str, list[ds.Expression]] = {path: [] for path in paths}
    for field in schema:
        names = (f"min.{field.name}", f"max.{field.name}", f"null_count.{field.name}")
        if not any(test(field.type) for test in _BOUNDED) or not set(names) <= set(actions.column_names):
            continue
        lows, highs, nulls = (actions.column(name).to_pylist() for name in names)
        rows = actions.column("num_records").to_pylist()
        column = ds.field(field.name)
        for path, low, high, null, count in zip(paths, lows, highs, nulls, rows, strict=True):
            if null is not None and count is not None and null == count and count > 0:
                found[path].append(column.is_null())
                continue
            if low is None or high is None or (isinstance(high, str) and len(high) >= _STRING_STATS):
                continue
            try:
                if pa.types.is_timestamp(field.type):
                    low, high = low - dt.timedelta(milliseconds=1), high + dt.timedelta(milliseconds=1)
                bounds = [column >= pa.scalar(low, field.type), column <= pa.scalar(high, field.type)]
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                continue
            if null == 0:
                found[path].extend([*bounds, column.is_valid()])
            else:
                found[path].extend(bound | column.is_null() for bound in bounds)
    return found


def _and(terms: list[ds.Expression]) -> ds.Expression:
    combined = terms[0]
    for term in terms[1:]:
        combined = combined & term
    return combined


def _check_features(connector: DeltaConnector, product: str | None, location: str, table: DeltaTable) -> None:
    """Refuse what a dataset of the data files would read wrongly (see the module doc)."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    mode = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    problem = None
    if "deletionVectors" in features:
        problem = "it uses deletion vectors (rows deleted without rewriting files)"
    elif "columnMapping" in features or mode != "none":
        problem = f"it uses column mapping (mode {mode}: column names differ from the files')"
    elif protocol.min_reader_version > 3:
        problem = f"it needs reader version {protocol.min_reader_version}"
    elif features - {"timestampNtz"}:
        problem = f"it uses reader features {', '.join(sorted(features - {'timestampNtz'}))}"
    if problem is not None:
        raise connector.failure(
            product, f"the Delta table at {location} is not supported: {problem}; Meshgate cannot read it exactly"
        )


def _no_version(error: Exception) -> bool:
    text = str(error).lower()
    return "version" in text and ("not" in text or "invalid" in text)


class S3DeltaConnector(DeltaConnector):
    """Delta Lake tables under an ``s3://`` prefix (the object-store settings of connectors/objects.py)."""

    config_keys: ClassVar[frozenset[str]] = frozenset({"uri", *SETTINGS})
    admin_keys: ClassVar[frozenset[str]] = frozenset(SETTINGS)
