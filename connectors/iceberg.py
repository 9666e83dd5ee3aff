"""Apache Iceberg tables (``type: iceberg``), read from their metadata files with ``pyiceberg``.

A product is one table folder (``metadata/`` beside ``data/``). Its current metadata file is the
one ``metadata/version-hint.text`` names (a file name, or ``N`` for ``vN.metadata.json``: the
layout of Hadoop-style catalogs), else the highest-numbered ``*.metadata.json`` in ``metadata/``.
Tables kept by a REST, Glue or Hive catalog are read the same way from their folder: the catalog
is not asked (see the README for what that means after a catalog-only commit).

A product reads the current snapshot, or the one its ``as_of`` pins: a snapshot id, or an ISO 8601
timestamp (the snapshot current then). pyiceberg plans the snapshot's data files from its manifests,
and they become one pyarrow dataset whose fragments carry their identity-partition values, so a
filter on such a column skips the other partitions' files (connectors/lakehouse.py).

Types: boolean, int, long, float, double, decimal(p,s), date, time (time64[us]), timestamp
(timestamp[us]), timestamptz (timestamp[us, UTC]), string, binary, fixed(n) (fixed_size_binary),
uuid (top-level columns, as their canonical text), lists, maps and structs, by ``pyiceberg``'s
mapping. Refused with an error rather than read wrongly: row-level deletes (position or equality
delete files; compact the table first), ORC or Avro data files, a column renamed, or dropped and
added again, since older files were written (data files are read by column name), nested uuids,
and format-v3 types (variant, geometry, nanosecond timestamps, unknown).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar

import obstore
import pyarrow as pa
import pyarrow.dataset as ds
from pyiceberg.conversions import from_bytes
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import DataFile, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import StaticTable
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from connectors.base import SourceObject
from connectors.lakehouse import LakeSource, Snapshot, classic, fragments, timestamp
from connectors.objects import SETTINGS
from meshcore.errors import SourceError

_SUPPORTED = (
    BooleanType,
    IntegerType,
    LongType,
    FloatType,
    DoubleType,
    DecimalType,
    DateType,
    TimeType,
    TimestampType,
    TimestamptzType,
    StringType,
    BinaryType,
    FixedType,
    ListType,
    MapType,
    StructType,
)
_PYARROW_IO = "pyiceberg.io.pyarrow.PyArrowFileIO"
_EQUALITY = "its snapshot has equality delete files (row-level deletes); compact the table (rewrite its data files)"
_METADATA = re.compile(r"^(?:v(\d+)|(\d+)-[0-9a-fA-F-]+)(?:\.gz)?\.metadata\.json$")


class IcebergConnector(LakeSource):
    """Iceberg tables under a local folder."""

    kind = "iceberg"
    marker = "metadata"
    versioned = True
    config_keys: ClassVar[frozenset[str]] = frozenset({"path"})

    def properties(self) -> dict[str, str]:
        """pyiceberg's FileIO settings (S3 through pyarrow, with the connector's settings)."""
        if self.s3 is None:
            return {"py-io-impl": _PYARROW_IO}  # named: pyiceberg logs each time it chooses one itself
        options = {
            "py-io-impl": _PYARROW_IO,
            "s3.region": self.s3.region,
            "s3.connect-timeout": "5",
            "s3.request-timeout": "10",
        }
        if self.s3.endpoint is not None:
            options["s3.endpoint"] = self.s3.endpoint
        if self.s3.access_key_id is not None and self.s3.secret_access_key is not None:
            options["s3.access-key-id"] = self.s3.access_key_id
            options["s3.secret-access-key"] = self.s3.secret_access_key
            if self.s3.session_token is not None:
                options["s3.session-token"] = self.s3.session_token
        else:
            options["s3.anonymous"] = "true"
        return options

    # -- the current metadata file ---------------------------------------------------------
    def current(self, product: str | None, source: SourceObject) -> Hashable:
        """The current metadata file's name (one small read); a pinned product's ``as_of`` as it is."""
        location = self.table_location(source, product)
        if source.as_of is not None:
            return ("as_of", source.as_of)
        return ("metadata", self.metadata_file(product, location))

    def metadata_file(self, product: str | None, location: str) -> str:
        """The name of the table's current metadata file in ``metadata/`` (see the module doc)."""
        hint = self._read(product, f"{location}/metadata/version-hint.text")
        if hint is not None:
            name = hint.decode("utf-8", "replace").strip()
            name = name if name.endswith(".metadata.json") else f"v{name}.metadata.json"
            if "/" in name or not _METADATA.match(name):
                raise self.failure(product, f"{location}/metadata/version-hint.text names no metadata file: {name!r}")
            return name
        found = [name for name in self._names(product, f"{location}/metadata") if _METADATA.match(name)]
        if not found:
            raise self.failure(
                product, f"no Iceberg table at {location} (no metadata/*.metadata.json)", unavailable=True
            )
        return max(found, key=_number)

    def _read(self, product: str | None, location: str) -> bytes | None:
        try:
            if self.s3 is None:
                return Path(location).read_bytes()
            return bytes(obstore.get(self.store(), self.key(location)).bytes())
        except (FileNotFoundError, NotADirectoryError, obstore.exceptions.NotFoundError):
            return None
        except (OSError, obstore.exceptions.BaseError) as error:
            raise self.failure(product, f"cannot read {location}: {self.reason(error)}", unavailable=True) from None

    def _names(self, product: str | None, folder: str) -> list[str]:
        try:
            if self.s3 is None:
                return [p.name for p in Path(folder).iterdir()]
            chunks = obstore.list(self.store(), prefix=self.key(folder) + "/", chunk_size=1000)
            return [meta["path"].rpartition("/")[2] for chunk in chunks for meta in chunk]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except (OSError, obstore.exceptions.BaseError) as error:
            raise self.failure(product, f"cannot list {folder}: {self.reason(error)}", unavailable=True) from None

    # -- a snapshot ----------------------------------------------------------------------------
    def snapshot(self, product: str | None, source: SourceObject, stamp: Hashable) -> Snapshot:
        location = self.table_location(source, product)
        assert isinstance(stamp, tuple)
        name = stamp[1] if stamp[0] == "metadata" else self.metadata_file(product, location)
        metadata = f"{location}/metadata/{name}"
        try:
            table = StaticTable.from_metadata(metadata, self.properties())
        except Exception as error:  # pyiceberg raises many kinds (JSON, validation, I/O)
            raise self.failure(product, f"cannot read the Iceberg metadata {metadata}: {self.reason(error)}") from None
        chosen = self._chosen(product, location, table, source.as_of)
        schema = table.schema()  # the table as it is now; a pinned snapshot as it was written
        if source.as_of is not None and chosen is not None and chosen.schema_id is not None:
            schema = table.metadata.schema_by_id(chosen.schema_id) or schema
        self._check_schema(product, location, schema, table.metadata.schemas)
        uuids = frozenset(f.name for f in schema.fields if isinstance(f.field_type, UUIDType))
        arrow = pa.schema(
            [
                pa.field(f.name, pa.binary(16) if f.name in uuids else classic(f.type), f.nullable)
                for f in schema_to_pyarrow(schema, include_field_ids=False)
            ]
        )
        if chosen is None:  # a table without a snapshot holds no rows
            return Snapshot(stamp, fragments([], self.filesystem(), arrow), 0, uuids)
        try:
            self.confine(product, location, [chosen.manifest_list], "a manifest list")
            self.confine(product, location, [m.manifest_path for m in chosen.manifests(table.io)], "a manifest")
            tasks = list(table.scan(snapshot_id=chosen.snapshot_id).plan_files())
        except SourceError:
            raise
        except Exception as error:  # pyiceberg's own (Avro, I/O, validation)
            if "equality deletes" in str(error):
                raise self.failure(product, f"the Iceberg table at {location} is not supported: {_EQUALITY}") from None
            raise self.failure(product, f"cannot read the manifests of {location}: {self.reason(error)}") from None
        deletes = sum(len(task.delete_files) for task in tasks)
        if deletes:
            raise self.failure(
                product,
                f"the Iceberg table at {location} is not supported: its snapshot has {deletes} delete file(s)"
                " (row-level deletes); Meshgate cannot read it exactly: compact the table (rewrite its data files)",
            )
        formats = sorted({str(task.file.file_format.value) for task in tasks} - {FileFormat.PARQUET.value})
        if formats:
            raise self.failure(
                product,
                f"the Iceberg table at {location} is not supported: it has {formats[0]} data files (Parquet only)",
            )
        self.confine(product, location, [task.file.file_path for task in tasks], "a data file")
        specs = table.metadata.specs()
        files = [
            (self.file_path(t.file.file_path), _guarantee(schema, specs[t.file.spec_id], t.file, arrow)) for t in tasks
        ]
        rows = sum(task.file.record_count for task in tasks)
        return Snapshot(stamp, fragments(files, self.filesystem(), arrow), rows, uuids)

    def _chosen(self, product: str | None, location: str, table: StaticTable, as_of: int | str | None) -> Any:
        if as_of is None:
            return table.current_snapshot()
        if isinstance(as_of, int):
            chosen = table.snapshot_by_id(as_of)
            if chosen is None:
                raise self.failure(product, f"the Iceberg table at {location} has no snapshot {as_of}")
            return chosen
        try:
            moment = timestamp(as_of, "a snapshot id")
        except ValueError as error:
            raise self.failure(product, str(error)) from None
        chosen = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
        if chosen is None:
            raise self.failure(product, f"the Iceberg table at {location} has no snapshot at {as_of}")
        return chosen

    def _check_schema(self, product: str | None, location: str, schema: Schema, history: list[Schema]) -> None:
        """Refuse types it cannot serve, and columns whose name differs from older files' (see the module doc)."""
        for field_id in sorted(schema.field_ids):
            field = schema.find_field(field_id)
            name = schema.find_column_name(field_id)
            top_level_uuid = isinstance(field.field_type, UUIDType) and schema.find_field(field_id) in schema.fields
            if not isinstance(field.field_type, _SUPPORTED) and not top_level_uuid:
                raise self.failure(
                    product,
                    f"the Iceberg table at {location} is not supported: column {name} has type {field.field_type}",
                )
            for older in history:
                before = older.find_column_name(field_id)
                other = _field_id(older, name) if name is not None else None
                if (before is not None and before != name) or (other is not None and other != field_id):
                    raise self.failure(
                        product,
                        f"the Iceberg table at {location} is not supported: column {name} was renamed, or dropped"
                        " and added again, since older data files were written (they are read by column name)",
                    )

    def read_row_estimate(self, source: SourceObject) -> int | None:
        return self.cached(None, source).rows


class S3IcebergConnector(IcebergConnector):
    """Iceberg tables under an ``s3://`` prefix (the object-store settings of connectors/objects.py)."""

    config_keys: ClassVar[frozenset[str]] = frozenset({"uri", *SETTINGS})
    admin_keys: ClassVar[frozenset[str]] = frozenset(SETTINGS)


def _field_id(schema: Schema, name: str) -> int | None:
    try:
        return schema.find_field(name).field_id
    except ValueError:
        return None


def _guarantee(schema: Schema, spec: Any, data: DataFile, arrow: pa.Schema) -> ds.Expression | None:
    """What a data file's identity-partition values and column bounds guarantee of its rows (None: nothing)."""
    terms = _bounds(schema, data, arrow)
    partition = data.partition
    for position, field in enumerate(spec.fields):
        if not isinstance(field.transform, IdentityTransform):
            continue
        name = schema.find_column_name(field.source_id)
        if name is None or "." in name or arrow.get_field_index(name) < 0:
            continue
        if pa.types.is_floating(arrow.field(name).type):
            continue  # pyarrow would simplify filters by it with IEEE comparisons (see connectors/lakehouse.py)
        value = partition[position]
        column = ds.field(name)
        if value is None:
            terms.append(column.is_null())
            continue
        try:
            terms.append(column == pa.scalar(value, type=arrow.field(name).type))
        except (pa.ArrowException, TypeError, ValueError):
            continue  # a value pyarrow cannot hold as the column's type: that file is read, not skipped
    if not terms:
        return None
    guarantee = terms[0]
    for term in terms[1:]:
        guarantee = guarantee & term
    return guarantee


_BOUNDED = (IntegerType, LongType, DateType, TimeType, TimestampType, TimestamptzType, StringType, DecimalType)


def _bounds(schema: Schema, data: DataFile, arrow: pa.Schema) -> list[ds.Expression]:
    """The file's lower and upper bounds of its top-level columns, as the manifest records them.

    A bound holds for the column's non-NULL values only, so each is ``bound OR IS NULL`` unless the
    manifest counts no NULLs (pyarrow would otherwise take a NULL to be within the bounds). Float
    columns are left out (connectors/lakehouse.py), and so are binary, fixed, boolean and nested
    ones. Truncated string bounds (Iceberg keeps 16 characters) still bound: the lower one is a
    prefix, the upper one is incremented.
    """
    lower, upper = data.lower_bounds or {}, data.upper_bounds or {}
    nulls, values = data.null_value_counts or {}, data.value_counts or {}
    terms: list[ds.Expression] = []
    for field in schema.fields:
        if not isinstance(field.field_type, _BOUNDED) or arrow.get_field_index(field.name) < 0:
            continue
        kind = arrow.field(field.name).type
        column = ds.field(field.name)
        known_nulls = nulls.get(field.field_id)
        if known_nulls is not None and known_nulls == values.get(field.field_id, -1) and known_nulls > 0:
            terms.append(column.is_null())  # every value is NULL
            continue
        for bounds, compare in ((lower, column.__ge__), (upper, column.__le__)):
            if field.field_id not in bounds:
                continue
            try:
                bound = compare(pa.scalar(from_bytes(field.field_type, bounds[field.field_id]), type=kind))
            except (pa.ArrowException, TypeError, ValueError, UnicodeDecodeError):
                continue  # a bound pyarrow cannot hold as the column's type: not used
            terms.append(bound if known_nulls == 0 else bound | column.is_null())
        if known_nulls == 0:
            terms.append(column.is_valid())
    return terms


def _number(name: str) -> int:
    match = _METADATA.match(name)
    assert match is not None
    return int(match.group(1) or match.group(2))
