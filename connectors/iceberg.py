"""Apache Iceberg tables (``type: iceberg``), read from their metadata files with ``pyiceberg``.

Without a catalog, a product is one table folder (``metadata/`` beside ``data/``). Its current
metadata file is the one ``metadata/version-hint.text`` names (a file name, or ``N`` for
``vN.metadata.json``: the layout of Hadoop-style catalogs), else the highest-numbered
``*.metadata.json`` in ``metadata/``.

With ``catalog: {type: glue, ...}`` (an admin's setting: pyiceberg's Glue catalog, made with
``load_catalog``), a product's ``source`` is a table of the catalog, ``namespace.table`` (or
``table`` in the connector's ``namespace``), and its current metadata file is the one the catalog
names: one Glue ``GetTable`` at every version check, nothing read from storage. The connector's
``path`` or ``uri`` is then where its tables may be: the catalog's metadata file must lie under it
before it is read, and the table's location (the metadata's) too, so that a product cannot reach
another domain's table through a shared catalog. Without products, the connector serves every
Iceberg table of the catalog (of its ``namespace``) that lies under it. Glue requests are signed
with the catalog's ``glue.*`` keys, else the connector's S3 keys, else boto3's own environment.

A product reads the current snapshot, or the one its ``as_of`` pins: a snapshot id, or an ISO 8601
timestamp (the snapshot current then). pyiceberg plans the snapshot's data files from its manifests,
and they become one pyarrow dataset whose fragments carry their identity-partition values, so a
filter on such a column skips the other partitions' files (connectors/lakehouse.py). Every manifest
list, manifest and data file must lie in the table's folder (its location, with a catalog).

Types: boolean, int, long, float, double, decimal(p,s), date, time (time64[us]), timestamp
(timestamp[us]), timestamptz (timestamp[us, UTC]), string, binary, fixed(n) (fixed_size_binary),
uuid (top-level columns, as their canonical text), lists, maps and structs, by ``pyiceberg``'s
mapping. Refused with an error rather than read wrongly: row-level deletes (position or equality
delete files; compact the table first), ORC or Avro data files, a column renamed, or dropped and
added again, since older files were written (data files are read by column name), nested uuids,
and format-v3 types (variant, geometry, nanosecond timestamps, unknown).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
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

from connectors.base import DiscoveredProduct, SourceObject
from connectors.lakehouse import LakeSource, Snapshot, classic, fragments, local_path, timestamp
from connectors.naming import identifier, unique
from connectors.objects import SETTINGS
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

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
_CATALOG_KEYS = frozenset({"catalog", "namespace"})
_GLUE_PROPERTIES = (
    "glue.id",
    "glue.endpoint",
    "glue.region",
    "glue.profile-name",
    "glue.access-key-id",
    "glue.secret-access-key",
    "glue.session-token",
    "glue.max-retries",
    "glue.retry-mode",
)
_GLUE_SECRETS = ("glue.secret-access-key", "glue.session-token")
_GLUE_CONNECT_TIMEOUT = 5  # seconds, as S3 requests (connectors/objects.py)
_GLUE_READ_TIMEOUT = 10
# One retry (botocore's standard mode): pyiceberg's default, 10, would hold a version check for minutes.
_GLUE_RETRIES = 1


@dataclass(frozen=True)
class CatalogSettings:
    """The catalog a connector asks for its tables' metadata (``catalog:``), and its ``namespace``."""

    properties: Mapping[str, str | int]
    """pyiceberg's Glue catalog properties, as the admin gave them (``type`` included)."""
    namespace: str | None

    @classmethod
    def of(cls, domain: str, options: Mapping[str, Any]) -> CatalogSettings | None:
        """The settings in ``options`` (None without ``catalog``); ConfigError naming the key, never a value."""
        raw, namespace = options.get("catalog"), options.get("namespace")
        where = f"domain {domain!r}: connector option"
        if raw is None:
            if namespace is not None:
                raise ConfigError(f"{where} namespace applies to tables of a catalog (catalog: {{type: glue, ...}})")
            return None
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} catalog must be a mapping, e.g. {{type: glue, glue.region: eu-west-1}}")
        if raw.get("type") != "glue":
            raise ConfigError(
                f"{where} catalog.type must be glue (an AWS Glue Data Catalog, or a Glue-compatible endpoint);"
                f" got {raw.get('type')!r}: REST and Hive catalogs are not supported (README, Lakehouse tables)"
            )
        properties: dict[str, str | int] = {}
        for key, value in raw.items():
            if key == "type":
                properties[key] = value
            elif key not in _GLUE_PROPERTIES:
                raise ConfigError(
                    f"{where} catalog.{key}: unknown property; expected one of {', '.join(_GLUE_PROPERTIES)}"
                )
            elif key == "glue.max-retries":
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10:
                    raise ConfigError(f"{where} catalog.{key} must be a whole number from 0 to 10")
                properties[key] = value
            elif not isinstance(value, str) or not value:
                raise ConfigError(f"{where} catalog.{key} must be a non-empty string")
            elif "${" in value:
                raise ConfigError(
                    f"{where} catalog.{key}: references are not expanded inside catalog; give keys as the"
                    " connector's access_key_id/secret_access_key (which may hold references) or in the"
                    " gateway's environment (AWS_ACCESS_KEY_ID, AWS_PROFILE ...)"
                )
            else:
                properties[key] = value
        if ("glue.access-key-id" in properties) != ("glue.secret-access-key" in properties):
            raise ConfigError(f"{where} catalog: give both glue.access-key-id and glue.secret-access-key, or neither")
        if namespace is not None and (not isinstance(namespace, str) or not namespace or "." in namespace):
            raise ConfigError(f"{where} namespace must be one catalog namespace (a name without dots)")
        return cls(properties, namespace)

    def secrets(self) -> list[str]:
        return [str(self.properties[key]) for key in _GLUE_SECRETS if key in self.properties]


class IcebergConnector(LakeSource):
    """Iceberg tables under a local folder (found there, or through a catalog)."""

    kind = "iceberg"
    marker = "metadata"
    versioned = True
    config_keys: ClassVar[frozenset[str]] = frozenset({"path", *_CATALOG_KEYS})
    admin_keys: ClassVar[frozenset[str]] = frozenset({"catalog"})  # where tables are found, with which keys

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        self.catalog = CatalogSettings.of(domain, config.options)
        self._glue_catalog: Any = None  # pyiceberg's GlueCatalog, made on first use

    @property
    def remote(self) -> bool:
        return super().remote or self.catalog is not None

    def scrub(self, text: str) -> str:
        text = super().scrub(text)
        for secret in self.catalog.secrets() if self.catalog is not None else ():
            text = text.replace(secret, "***")
        return text

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
        """The current metadata file's name (one small read, or one catalog call: its location); a pinned
        product's ``as_of`` as it is."""
        if self.catalog is not None:
            namespace, name = self.table_name(product, source)
            if source.as_of is not None:
                return ("as_of", source.as_of)
            return ("metadata", self.catalog_metadata(product, namespace, name))
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

    # -- a catalog's tables ----------------------------------------------------------------------
    def table_name(self, product: str | None, source: SourceObject) -> tuple[str, str]:
        """A catalog product's table: ``(namespace, table)`` from ``namespace.table``, or ``table`` in ``namespace``."""
        assert self.catalog is not None
        if source.table is None:
            raise self.failure(product, "iceberg products name a catalog table (source: namespace.table), not SQL")
        namespace, dot, name = source.table.partition(".")
        if not dot and self.catalog.namespace is not None:
            namespace, name = self.catalog.namespace, source.table
        if not namespace or not name or "." in name or "/" in source.table:
            raise self.failure(product, f"source '{source.table}' must name a catalog table as namespace.table")
        return namespace, name

    def glue(self, product: str | None) -> Any:
        """The boto3 Glue client of the connector's catalog (pyiceberg's GlueCatalog, made on first use)."""
        with self._lock:
            if self._glue_catalog is not None:
                return self._glue_catalog.glue
        assert self.catalog is not None
        import botocore.config  # type: ignore[import-untyped]  # boto3 (pyiceberg[glue]): only when a catalog is set
        import botocore.session  # type: ignore[import-untyped]
        from pyiceberg.catalog import BOTOCORE_SESSION, load_catalog

        session = botocore.session.Session()
        session.set_default_client_config(
            botocore.config.Config(connect_timeout=_GLUE_CONNECT_TIMEOUT, read_timeout=_GLUE_READ_TIMEOUT)
        )
        properties: dict[str, Any] = {"py-io-impl": _PYARROW_IO, "glue.max-retries": _GLUE_RETRIES}
        if self.s3 is not None:  # the connector's AWS settings sign Glue requests too, unless the catalog's do
            properties["glue.region"] = self.s3.region
            if self.s3.access_key_id is not None and self.s3.secret_access_key is not None:
                properties["glue.access-key-id"] = self.s3.access_key_id
                properties["glue.secret-access-key"] = self.s3.secret_access_key
                if self.s3.session_token is not None:
                    properties["glue.session-token"] = self.s3.session_token
        properties.update(self.catalog.properties)
        properties[BOTOCORE_SESSION] = session
        try:
            catalog = load_catalog(self.domain, **properties)
        except Exception as error:  # boto3's (a profile not found, no region) or pyiceberg's
            raise self.failure(product, f"cannot open the Glue catalog: {self._glue_reason(error)}") from None
        with self._lock:
            self._glue_catalog = self._glue_catalog or catalog
            return self._glue_catalog.glue

    def catalog_metadata(self, product: str | None, namespace: str, name: str) -> str:
        """The table's current metadata file, as the Glue catalog records it (one ``GetTable``)."""
        glue = self.glue(product)
        try:
            table = glue.get_table(DatabaseName=namespace, Name=name)["Table"]
        except Exception as error:  # botocore's: the service's answer, or no answer
            if _service_error(error)[0] == "EntityNotFoundException":
                raise self.failure(
                    product, f"no Iceberg table {namespace}.{name} in the Glue catalog", unavailable=True
                ) from None
            raise self.failure(
                product,
                f"cannot ask the Glue catalog for {namespace}.{name}: {self._glue_reason(error)}",
                unavailable=True,
            ) from None
        parameters = table.get("Parameters") or {}
        kind = parameters.get("table_type")
        location = parameters.get("metadata_location")
        if not isinstance(kind, str) or kind.lower() != "iceberg" or not isinstance(location, str) or not location:
            raise self.failure(
                product,
                f"{namespace}.{name} in the Glue catalog is not an Iceberg table"
                f" (table_type {kind!r}{'' if location else ', no metadata_location'})",
            )
        return location

    def _glue_reason(self, error: BaseException) -> str:
        """Why a Glue call failed, in a few words: unreachable (naming the endpoint), the service's error, no keys."""
        import botocore.exceptions  # type: ignore[import-untyped]

        if isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
            endpoint = self._glue_catalog.glue.meta.endpoint_url if self._glue_catalog is not None else "AWS Glue"
            return f"the endpoint cannot be reached ({endpoint})"
        if isinstance(error, botocore.exceptions.NoCredentialsError):
            return (
                "no AWS credentials (the connector's access_key_id and secret_access_key, catalog"
                " glue.access-key-id and glue.secret-access-key, or the gateway's AWS environment)"
            )
        if isinstance(error, botocore.exceptions.NoRegionError):
            return "no AWS region (catalog glue.region, the connector's region, or AWS_REGION)"
        code, message = _service_error(error)
        if code is not None:
            return f"{code}: {message}".rstrip(": ")[:300]
        return self.reason(error)

    def _under(self, root: str, uri: str) -> str | None:
        """``uri`` (a catalog's location) as this connector writes locations, when it is ``root`` or inside it."""
        if self.s3 is not None:
            for scheme in ("s3a://", "s3n://"):
                uri = "s3://" + uri[len(scheme) :] if uri.startswith(scheme) else uri
            uri = uri.rstrip("/")
            return uri if uri == root or self.inside(root, uri) else None
        path = local_path(uri)
        if path is None:
            return None
        resolved = Path(path).resolve()
        return str(resolved) if resolved.is_relative_to(root) else None

    def _catalog_table(
        self, product: str | None, source: SourceObject, stamp: tuple[Any, ...]
    ) -> tuple[str, StaticTable]:
        """The table's location and metadata, each confined to the connector's (see the module doc)."""
        namespace, name = self.table_name(product, source)
        metadata = stamp[1] if stamp[0] == "metadata" else self.catalog_metadata(product, namespace, name)
        outside = "a domain reads only the tables under its connector's path or uri"
        if not self.inside(self.base, metadata):
            raise self.failure(
                product,
                f"the catalog's metadata file for {namespace}.{name} is {metadata}, outside {self.base}: {outside}",
            )
        table = self._read_metadata(product, metadata)
        location = self._under(self.base, table.metadata.location)
        if location is None:
            raise self.failure(
                product,
                f"the catalog's table {namespace}.{name} lies at {table.metadata.location},"
                f" outside {self.base}: {outside}",
            )
        if not self.inside(location, metadata):
            raise self.failure(
                product, f"the catalog's metadata file for {namespace}.{name} lies outside its location {location}"
            )
        return location, table

    def discover(self) -> list[DiscoveredProduct]:
        """Without a catalog, the folder's tables; with one, its Iceberg tables (in ``namespace``) under ``base``."""
        if self.catalog is None:
            return super().discover()
        glue = self.glue(None)
        found: list[tuple[str, str]] = []
        try:
            if self.catalog.namespace is not None:
                namespaces = [self.catalog.namespace]
            else:
                namespaces = [
                    d["Name"] for page in glue.get_paginator("get_databases").paginate() for d in page["DatabaseList"]
                ]
            for namespace in namespaces:
                for page in glue.get_paginator("get_tables").paginate(DatabaseName=namespace):
                    for table in page["TableList"]:
                        parameters = table.get("Parameters") or {}
                        if str(parameters.get("table_type", "")).lower() != "iceberg":
                            continue
                        if self.inside(self.base, str(parameters.get("metadata_location", ""))):
                            found.append((namespace, table["Name"]))
                        else:
                            log.info(
                                "[%s] %s.%s lies outside %s: not served",
                                self.domain,
                                namespace,
                                table["Name"],
                                self.base,
                            )
        except Exception as error:  # botocore's
            raise self.failure(
                None, f"cannot list the Glue catalog's tables: {self._glue_reason(error)}", unavailable=True
            ) from None
        if not found:
            where = f"namespace {self.catalog.namespace}" if self.catalog.namespace else "any namespace"
            raise self.failure(
                None, f"no Iceberg tables under {self.base} in the Glue catalog ({where})", unavailable=True
            )
        raw = [name if self.catalog.namespace else f"{namespace}_{name}" for namespace, name in found]
        names = unique(identifier(name) for name in raw)
        return [DiscoveredProduct(n, SourceObject(table=f"{ns}.{t}")) for n, (ns, t) in zip(names, found, strict=True)]

    # -- a snapshot ----------------------------------------------------------------------------
    def _read_metadata(self, product: str | None, metadata: str) -> StaticTable:
        try:
            return StaticTable.from_metadata(metadata, self.properties())
        except Exception as error:  # pyiceberg raises many kinds (JSON, validation, I/O)
            raise self.failure(product, f"cannot read the Iceberg metadata {metadata}: {self.reason(error)}") from None

    def snapshot(self, product: str | None, source: SourceObject, stamp: Hashable) -> Snapshot:
        assert isinstance(stamp, tuple)
        if self.catalog is not None:
            location, table = self._catalog_table(product, source, stamp)
        else:
            location = self.table_location(source, product)
            name = stamp[1] if stamp[0] == "metadata" else self.metadata_file(product, location)
            table = self._read_metadata(product, f"{location}/metadata/{name}")
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

    config_keys: ClassVar[frozenset[str]] = frozenset({"uri", *SETTINGS, *_CATALOG_KEYS})
    admin_keys: ClassVar[frozenset[str]] = frozenset({*SETTINGS, "catalog"})


def _service_error(error: BaseException) -> tuple[str | None, str]:
    """A botocore ClientError's code (``EntityNotFoundException``) and message; (None, "") for another error."""
    response = getattr(error, "response", None)
    found = response.get("Error") if isinstance(response, dict) else None
    if not isinstance(found, dict) or not found.get("Code"):
        return None, ""
    code, message = str(found["Code"]), " ".join(str(found.get("Message") or "").split())
    xml = re.search(r"<Code>([^<]*)</Code>\s*<Message>([^<]*)</Message>", message)  # an answer in XML (moto's)
    return (xml.group(1), xml.group(2)) if xml else (code, message)


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
