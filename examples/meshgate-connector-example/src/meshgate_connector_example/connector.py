"""``type: arrow_ipc``: each ``*.arrow`` file (Arrow IPC file format) of a folder is a data product.

A :class:`~connectors.base.FileConnector`: DataFusion itself reads the file's table, through a
``pyarrow.dataset`` it pushes projections, filters and limits into. Before every query the
gateway asks :meth:`ArrowIpcConnector.stamp` (one ``stat``); when the file changed it asks
:meth:`ArrowIpcConnector.open_version`, which reads the whole file into memory and checks it
against the schema the product registered. Queries that started on an older version keep it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from datafusion import SessionContext

from connectors.base import DiscoveredProduct, FileConnector, FileVersion, SourceObject
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError

SUFFIX = ".arrow"
_PRODUCT_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class ArrowIpcConnector(FileConnector):
    """A folder of Arrow IPC files. Settings: ``path`` (the folder)."""

    kind = "arrow_ipc"
    config_keys = frozenset({"path"})

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.path is None:
            raise ConfigError(f"domain {domain!r}: an arrow_ipc connector needs a path (a folder of *.arrow files)")
        super().__init__(domain, config)
        self.folder = Path(config.path)

    def discover(self) -> list[DiscoveredProduct]:
        """Each ``*.arrow`` file whose stem is a product name (lower case, digits, ``_``)."""
        if not self.folder.is_dir():
            raise SourceUnavailableError(self.domain, self.label, f"{self.folder} is not a folder")
        files = sorted(p for p in self.folder.glob(f"*{SUFFIX}") if _PRODUCT_NAME.match(p.stem))
        return [DiscoveredProduct(p.stem, SourceObject(table=p.name)) for p in files]

    def schema(self, source: SourceObject) -> pa.Schema:
        path = self._file(source)
        try:
            with pa.OSFile(str(path)) as file:
                return pa.ipc.open_file(file).schema
        except (pa.ArrowInvalid, OSError) as error:
            raise SourceError(self.domain, self.label, f"{path.name} is not an Arrow IPC file: {error}") from None

    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        _register(ctx, name, self._read(self._file(source))[1])

    def stamp(self, product: str, source: SourceObject) -> Hashable:
        path = self._file(source)
        try:
            return _stamp(path.stat())
        except FileNotFoundError:
            raise SourceUnavailableError(self.domain, self.label, f"{path} of product {product!r} is gone") from None

    def open_version(
        self, product: str, source: SourceObject, schema: pa.Schema, previous: FileVersion | None
    ) -> FileVersion:
        path = self._file(source)
        stamp, table = self._read(path)
        if table.schema != schema:
            raise SourceError(
                self.domain, self.label, f"{path.name} of product {product!r} changed its schema to {table.schema}"
            )
        return _Version(stamp, table)

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """The row count from the file's record batches (memory-mapped: no data is read)."""
        with pa.memory_map(str(self._file(source))) as file:
            reader = pa.ipc.open_file(file)
            rows: int = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            return rows

    def _file(self, source: SourceObject) -> Path:
        """The product's file: a file name of the folder, never a path elsewhere."""
        name = source.table
        if name is None or name != Path(name).name or name in {".", ".."} or not name.endswith(SUFFIX):
            shown = name or source.describe()
            raise SourceError(self.domain, self.label, f"source {shown!r} is not a *.arrow file of the folder")
        path = self.folder / name
        if not path.is_file():
            raise SourceUnavailableError(self.domain, self.label, f"{path} does not exist")
        return path

    def _read(self, path: Path) -> tuple[Hashable, pa.Table]:
        """The file's whole table and the stamp of the file it was read from."""
        try:
            with open(path, "rb") as file:
                stamp = _stamp(os.fstat(file.fileno()))
                return stamp, pa.ipc.open_file(file).read_all()
        except FileNotFoundError:
            raise SourceUnavailableError(self.domain, self.label, f"{path} does not exist") from None
        except (pa.ArrowInvalid, OSError) as error:
            raise SourceError(self.domain, self.label, f"{path.name} is not an Arrow IPC file: {error}") from None


class _Version(FileVersion):
    """One read of a file: a table in memory, freed once no query holds it."""

    def __init__(self, stamp: Hashable, table: pa.Table) -> None:
        self.stamp = stamp
        self.table = table

    def register(self, ctx: SessionContext, name: str) -> None:
        _register(ctx, name, self.table)

    def retire(self) -> None:
        """Nothing to close: the table is freed with the last query's reference to it."""


def _register(ctx: SessionContext, name: str, table: pa.Table) -> None:
    """``table`` as a dataset: DataFusion pushes projections and simple filters into its scanner."""
    ctx.register_dataset(name, ds.dataset(table))


def _stamp(info: os.stat_result) -> Hashable:
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)
