"""Iceberg tables for tests, written with pyiceberg: through a file-system catalog of our own, or Glue.

pyiceberg's SqlCatalog (and its in-memory one, a SqlCatalog on SQLite) needs SQLAlchemy 2, and
the test extra pins SQLAlchemy < 2 (flightsql-dbapi). :class:`FolderCatalog` keeps no database: a
table is its folder, each commit writes the next ``NNNNN-<uuid>.metadata.json`` and points
``metadata/version-hint.text`` at it, the layout Hadoop-style catalogs use and the ``iceberg``
connector reads. pyiceberg does the rest (manifests, snapshots, Parquet data files).

:func:`glue_catalog` is pyiceberg's own GlueCatalog against moto's server (tests/support/s3.py),
which answers the Glue API beside S3 at one endpoint: the catalog the connector's ``catalog:``
setting reads through.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyiceberg.catalog import MetastoreCatalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.io import load_file_io
from pyiceberg.table import CommitTableResponse, StaticTable, Table

if TYPE_CHECKING:
    from pyiceberg.catalog.glue import GlueCatalog


class FolderCatalog(MetastoreCatalog):
    """Tables ``<warehouse>/<name>`` (namespace ignored), found by their version hint."""

    def __init__(self, warehouse: str, **properties: str) -> None:
        super().__init__("tests", warehouse=warehouse, **properties)
        self.warehouse = warehouse.rstrip("/")

    def _location(self, identifier: Any) -> str:
        return f"{self.warehouse}/{self.table_name_from(identifier)}"

    def create_table(self, identifier: Any, schema: Any, location: str | None = None, **kwargs: Any) -> Table:
        """A new table ``<warehouse>/<name>`` (``identifier``: a name, or ``namespace.name``)."""
        identifier = ("tests", self.table_name_from(identifier))
        staged = self._create_staged_table(identifier, schema, location or self._location(identifier), **kwargs)
        self._write_metadata(staged.metadata, staged.io, staged.metadata_location)
        self._hint(staged.metadata.location, staged.metadata_location)
        return self.load_table(identifier)

    def load_table(self, identifier: Any) -> Table:
        location = self._location(identifier)
        hint = f"{location}/metadata/version-hint.text"
        io = load_file_io(self.properties, hint)
        if not io.new_input(hint).exists():
            raise NoSuchTableError(f"no table at {location}")
        with io.new_input(hint).open() as stream:
            name = stream.read().decode().strip()
        static = StaticTable.from_metadata(f"{location}/metadata/{name}", self.properties)
        return Table(
            identifier=("tests", self.table_name_from(identifier)),
            metadata=static.metadata,
            metadata_location=static.metadata_location,
            io=static.io,
            catalog=self,
        )

    def commit_table(self, table: Table, requirements: Any, updates: Any) -> CommitTableResponse:
        current = self.load_table(table.name())
        staged = self._update_and_stage_table(current, table.name(), requirements, updates)
        self._write_metadata(staged.metadata, staged.io, staged.metadata_location)
        self._hint(staged.metadata.location, staged.metadata_location)
        return CommitTableResponse(metadata=staged.metadata, metadata_location=staged.metadata_location)

    def _hint(self, location: str, metadata_location: str) -> None:
        hint = f"{location}/metadata/version-hint.text"
        io = load_file_io(self.properties, hint)
        with io.new_output(hint).create(overwrite=True) as stream:
            stream.write(metadata_location.rpartition("/")[2].encode())

    # What the tests do not use.
    def _unsupported(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("not used by the tests")

    create_table_transaction = register_table = drop_table = purge_table = rename_table = _unsupported
    create_namespace = drop_namespace = list_tables = list_namespaces = list_views = _unsupported
    load_namespace_properties = update_namespace_properties = drop_view = view_exists = _unsupported
    table_exists = namespace_exists = load_view = create_view = register_view = _unsupported


def warehouse_of(path: Path) -> FolderCatalog:
    """A catalog writing tables under a local folder."""
    path.mkdir(parents=True, exist_ok=True)
    return FolderCatalog(path.as_uri())


def glue_catalog(endpoint: str, warehouse: str) -> GlueCatalog:
    """pyiceberg's Glue catalog on the moto server at ``endpoint``, writing new tables under ``warehouse``
    (``s3://bucket/prefix``: a namespace's tables go to ``<warehouse>/<namespace>.db/<table>``)."""
    from pyiceberg.catalog.glue import GlueCatalog  # boto3 and moto: only for the tests using them

    from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

    keys = {"access-key-id": ACCESS_KEY_ID, "secret-access-key": SECRET_ACCESS_KEY, "region": REGION}
    catalog = load_catalog(
        "tests",
        **{"type": "glue", "glue.endpoint": endpoint, "s3.endpoint": endpoint, "warehouse": warehouse},
        **{f"{service}.{key}": value for service in ("glue", "s3") for key, value in keys.items()},
        **{"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"},
    )
    assert isinstance(catalog, GlueCatalog)
    return catalog
