"""Parquet and CSV files, read by DataFusion itself (pushdown is DataFusion's own).

``config.path`` is a file or a folder. In a folder, each ``*.parquet`` (``*.csv``) file
is a product named after its stem, and each subfolder holding such files is one
product named after the folder. A folder of part files or of ``key=value`` partition
folders (connectors/partitions.py) is one product, named after the folder, even as
``config.path`` itself; its partition keys are columns, and DataFusion prunes by them.
A product's ``source.table`` is its path relative to the folder (the file's own folder
when ``config.path`` is a file; ``.`` for the folder itself).

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

Files change under a running gateway, so queries never read them directly. Before every
query the engine asks :meth:`FileSource.stamp`: one ``stat`` per file (size, mtime,
ctime, inode, device). When it differs from the version being served, it asks
:meth:`FileSource.open_version` for a new one, which opens every file, checks each file
it has not checked before against the product's registered schema (an empty, truncated
or corrupt file, a missing column or a changed type is an error naming the domain,
product and file), and gives DataFusion a folder of its own holding a symbolic link to
each open file (``/proc/self/fd/N``). A file replaced by a rename, or deleted, while a
query reads it is still the version that query started on; a file rewritten in place
is not (see the README, "When a file changes"). A folder product's files are the
``*.parquet`` (``*.csv``) files directly inside it (or in its ``key=value`` folders, whose
paths the version folder keeps); one that was served and disappears
is an error until the domain is read again.
"""

from __future__ import annotations

import atexit
import csv
import heapq
import itertools
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import SessionConfig, SessionContext
from datafusion.options import CsvReadOptions

from connectors import partitions
from connectors.base import DiscoveredProduct, FileConnector, FileVersion, SourceObject
from connectors.naming import identifier, unique
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError
from meshcore.sql import quote_identifier

log = logging.getLogger(__name__)

GRACE_SECONDS = 300.0
"""How long a replaced version stays readable for the queries that started on it."""

_OPEN_FILES = Path("/proc/self/fd")  # Linux: a link to /proc/self/fd/N reopens the file held as fd N


class FileStamp(NamedTuple):
    """What one ``stat`` says of a file; any difference makes a new version (a rename changes the inode).

    A tuple, so that stamping a folder of many files before every query stays cheap.
    """

    name: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, name: str, info: os.stat_result) -> FileStamp:
        return cls(name, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


@dataclass(frozen=True)
class _Registration:
    """What the catalog registered of a product: its files (and those served since) and its UUID columns."""

    files: frozenset[str]
    uuids: frozenset[str]


class FileSource(FileConnector):
    """A file or folder of files of one format (see the module doc)."""

    suffix: ClassVar[str]
    copied: ClassVar[bool] = False
    """Whether a version copies its files rather than holding them open (see CsvConnector)."""

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.path is None:
            raise ConfigError(f"domain {domain!r}: a {self.kind} connector needs a path")
        super().__init__(domain, config)
        self.path = Path(config.path)
        self._lock = threading.Lock()
        self._registered: dict[str, _Registration] = {}  # by source.table
        self._held = _HeldFiles()
        self._versions: weakref.WeakSet[_Version] = weakref.WeakSet()

    @property
    def root(self) -> Path:
        """The folder product paths are relative to."""
        return self.path if self.path.is_dir() else self.path.parent

    def discover(self) -> list[DiscoveredProduct]:
        if not self.path.exists():
            raise SourceUnavailableError(self.domain, self.label, f"{self.path} does not exist")
        if self.path.is_file() or partitions.is_dataset(self.path, self.suffix):
            paths = [self.path]  # a file, or a folder of part files or key=value partitions: one product
        else:
            entries = sorted(self.path.iterdir())
            paths = [p for p in entries if p.is_file() and p.suffix == self.suffix]
            paths += [p for p in entries if p.is_dir() and partitions.holds_data(p, self.suffix)]
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
        try:
            empty = path.is_dir() and not _files(path, self.suffix)
        except partitions.LayoutError as error:
            raise SourceError(self.domain, self.label, str(error)) from None
        if empty:
            raise SourceUnavailableError(self.domain, self.label, f"no *{self.suffix} files in {path}")
        if not path.exists():
            raise SourceUnavailableError(self.domain, self.label, f"{path} does not exist")
        return path

    def schema(self, source: SourceObject) -> pa.Schema:
        """The product's schema; also what :meth:`open_version` later checks the files against."""
        path = self.locate(source)
        stored, uuids = self._stored(path)
        for field in stored:
            if _is_interval(field.type):
                log.warning(
                    "[%s/%s] column %r of %s is not served: DataFusion reads Parquet INTERVAL without months",
                    *(self.domain, self.label, field.name, path),
                )
        assert source.table is not None
        files = frozenset(_names(path, _files(path, self.suffix))) if path.is_dir() else frozenset({path.name})
        with self._lock:
            self._registered[source.table] = _Registration(files, frozenset(uuids))
        return pa.schema(
            [f.with_type(pa.string()) if f.name in uuids else f for f in stored if not _is_interval(f.type)]
        )

    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        """Register the product's files as they are now (the engine reads versions: :meth:`open_version`)."""
        path = self.locate(source)
        stored, uuids = self._stored(path)
        pinned = pa.schema([f for f in stored if not _is_interval(f.type)])
        self._register_at(ctx, name, path, pinned, uuids, path.stem)

    def _register_at(
        self, ctx: SessionContext, name: str, path: Path, pinned: pa.Schema, uuids: Iterable[str], stem: str
    ) -> None:
        uuids = set(uuids)
        try:
            if not uuids:
                self.register_path(ctx, name, path, pinned)
                return
            # The stored file under ``domain.<file stem>``: the name a query's plan shows for it
            # (plan walkers expect ``schema.table``), never a SQL product (this domain has none).
            stored_name = f"{quote_identifier(self.domain)}.{quote_identifier(identifier(stem))}"
            ctx.sql(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.domain)}").collect()
            self.register_path(ctx, stored_name, path, pinned)
            items = [_uuid_text(f.name) if f.name in uuids else quote_identifier(f.name) for f in pinned]
            ctx.register_view(name, ctx.sql(f"SELECT {', '.join(items)} FROM {stored_name}"))
        except Exception as exc:
            raise SourceError(self.domain, self.label, f"cannot register {path}: {exc}") from exc

    # -- versions -----------------------------------------------------------------
    def stamp(self, product: str, source: SourceObject) -> tuple[FileStamp, ...]:
        """One ``stat`` per file, sorted by name (see the module doc).

        Raises SourceUnavailableError naming the domain, product and file when the file or
        folder is missing, the folder holds no data file, or a file it served is gone.
        """
        path = self._path(product, source)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            what = "file" if path.suffix == self.suffix else "folder"
            raise self._failure(product, f"{what} {path} does not exist", unavailable=True) from None
        except OSError as error:
            raise self._failure(product, f"cannot read {path}: {error.strerror}", unavailable=True) from None
        if not stat.S_ISDIR(info.st_mode):
            return (FileStamp.of(path.name, info),)
        try:  # the files directly inside, or in key=value folders (connectors/partitions.py)
            found = partitions.scan(path, self.suffix)
        except OSError as error:
            raise self._failure(product, f"cannot list {path}: {error.strerror}", unavailable=True) from None
        except partitions.LayoutError as error:
            raise self._failure(product, str(error), unavailable=True) from None
        stamps = [FileStamp.of(file.relative_to(path).as_posix(), info) for file, info in found]
        registered = self._registered.get(str(source.table))
        missing = sorted(registered.files - {s.name for s in stamps}) if registered is not None else []
        if missing:
            files = ", ".join(str(path / name) for name in missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise self._failure(
                product,
                f"part file {files} of the folder is missing: restore it, or read the domain again"
                " to serve the folder without it",
                unavailable=True,
            )
        if not stamps:
            raise self._failure(product, f"no *{self.suffix} files in {path}", unavailable=True)
        return tuple(sorted(stamps))

    def open_version(
        self, product: str, source: SourceObject, schema: pa.Schema, previous: FileVersion | None
    ) -> _Version:
        """The files as they are now, held open and each checked against ``schema`` (see the module doc).

        Raises SourceError naming the domain, product and file that cannot be served.
        """
        path = self._path(product, source)
        names = [s.name for s in self.stamp(product, source)]
        folder = path.is_dir()
        files = [path / name for name in names] if folder else [path]
        version = _Version.open(self, product, files, folder, previous, root=path if folder else None)
        try:
            registered = self._registered.get(str(source.table))
            uuids = registered.uuids if registered is not None else frozenset(self.uuid_columns(version.links[0]))
            version.pinned = pa.schema(
                [f.with_type(pa.binary(16)) if f.name in uuids and f.type == pa.string() else f for f in schema]
            )
            version.uuids = uuids
            checked = previous.checked if isinstance(previous, _Version) else frozenset()
            keys = {key for key, _ in partitions.layout(path, files)} if folder else set()
            stored = pa.schema([f for f in version.pinned if f.name not in keys])  # a file holds no partition column
            for original, link, stamped in zip(files, version.links, version.stamp, strict=True):
                if stamped not in checked:
                    self._check(product, original, link, stamped, stored, uuids)
        except BaseException:
            version.release()
            raise
        version.checked = frozenset(version.stamp)
        with self._lock:
            served = frozenset(s.name for s in version.stamp)
            old = self._registered.get(str(source.table))
            self._registered[str(source.table)] = _Registration(
                served | (old.files if old is not None else frozenset()), uuids
            )
            self._versions.add(version)
        return version

    def _check(
        self, product: str, original: Path, link: Path, stamped: FileStamp, pinned: pa.Schema, uuids: frozenset[str]
    ) -> None:
        try:
            problem = "is empty (0 bytes)" if stamped.size == 0 else self.inspect(link, pinned, uuids)
        except OSError as error:
            problem = f"cannot be read: {error.strerror or 'input/output error'}"
        if problem is not None:
            raise self._failure(product, f"file {original} {problem}")

    @abstractmethod
    def inspect(self, path: Path, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        """What is wrong with one file against the registered (stored) schema, or None."""

    def close(self) -> None:
        for version in list(self._versions):
            version.release()
        self._held.close()

    def _path(self, product: str, source: SourceObject) -> Path:
        if source.table is None:
            raise self._failure(product, "file products need a path, not SQL")
        return self.root / source.table

    def _failure(self, product: str, message: str, *, unavailable: bool = False) -> SourceError:
        kind = SourceUnavailableError if unavailable else SourceError
        return kind(self.domain, self.label, f"data product '{self.domain}.{product}': {message}")

    # -- schemas ------------------------------------------------------------------
    def _stored(self, path: Path) -> tuple[pa.Schema, set[str]]:
        """The schema DataFusion reads (classic types) and the names of its UUID columns."""
        try:
            inferred = self._inferred(path)
            uuids = self.uuid_columns(path)
        except Exception as exc:
            raise SourceError(self.domain, self.label, f"cannot read {path}: {exc}") from exc
        return inferred, uuids

    def _inferred(self, path: Path) -> pa.Schema:
        """The schema DataFusion infers for a file or folder, with classic types."""
        scratch = SessionContext(SessionConfig().set("datafusion.execution.parquet.schema_force_view_types", "false"))
        self.register_path(scratch, "product", path, None)
        inferred = scratch.table("product").schema()
        return pa.schema([pa.field(f.name, _classic(f.type), f.nullable) for f in inferred])

    def uuid_columns(self, path: Path) -> set[str]:
        """Top-level columns that hold UUIDs as 16 bytes (served as text)."""
        return set()

    @abstractmethod
    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        """Register a file or folder in ``ctx`` (with ``schema`` pinned when given)."""


class ParquetConnector(FileSource):
    """Parquet files."""

    kind = "parquet"
    config_keys = frozenset({"path"})
    suffix = ".parquet"

    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        columns, stored = _partitioned(path, self.suffix, schema)
        ctx.register_parquet(
            name, _location(path), file_extension=self.suffix, schema=viewed(stored), table_partition_cols=columns
        )

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """The rows the product's Parquet footers count (exact; one footer read per file)."""
        path = self.locate(source)
        files = [path] if path.is_file() else _files(path, self.suffix)
        return sum(pq.read_metadata(file).num_rows for file in files)

    def uuid_columns(self, path: Path) -> set[str]:
        """Columns of the (first) file with Parquet's UUID logical type."""
        first = path if path.is_file() else _files(path, self.suffix)[0]
        return _uuid_columns(pq.ParquetFile(first).schema)

    def inspect(self, path: Path, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        """A readable footer, and every registered column with its registered type."""
        try:
            with pq.ParquetFile(path) as footer:
                found_uuids = _uuid_columns(footer.schema)
        except Exception:
            return "is not a readable Parquet file (truncated or corrupt: its footer cannot be read)"
        try:
            found = self._inferred(path)
        except Exception as exc:
            return f"cannot be read: {_reason(exc)}"
        return _mismatch(schema_problems(pinned, uuids, found, found_uuids))


class CsvConnector(FileSource):
    """CSV files. Options: ``delimiter``, ``has_header``."""

    kind = "csv"
    config_keys = frozenset({"path", "delimiter", "has_header"})
    suffix = ".csv"
    # A version is a copy: DataFusion 55 streams a CSV file and, when the file shrinks under it
    # (rewritten in place), loops forever at 100% CPU (measured). A copy cannot shrink, and the
    # copy is what the checks read (a whole CSV is read to check it anyway).
    copied = True

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """The files' size over the mean length of their first lines (up to 64 KiB of each file)."""
        path = self.locate(source)
        rows = 0.0
        for file in [path] if path.is_file() else _files(path, self.suffix):
            with open(file, "rb") as handle:
                start = handle.read(1 << 16)
            lines = start.count(b"\n") or 1
            rows += os.path.getsize(file) / (len(start) / lines) - (1 if self.has_header else 0)
        return max(0, round(rows))

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        self.delimiter, self.has_header = csv_options(domain, config)

    def register_path(self, ctx: SessionContext, name: str, path: Path, schema: pa.Schema | None) -> None:
        columns, stored = _partitioned(path, self.suffix, schema)
        options = CsvReadOptions(
            schema=stored,
            has_header=self.has_header,
            delimiter=self.delimiter,
            file_extension=self.suffix,
            table_partition_cols=columns,
        )
        ctx.register_csv(name, _location(path), options=options)

    def inspect(self, path: Path, pinned: pa.Schema, uuids: frozenset[str]) -> str | None:
        """The registered columns in the header (by position), and every value read as its column's type.

        Inference cannot tell (it reads a sample, and an empty column infers as text), so the
        whole file is read once per version with the registered schema.
        """
        try:
            with open(path, newline="", encoding="utf-8", errors="replace") as handle:
                first = next(csv.reader(handle, delimiter=self.delimiter), None)
        except OSError as exc:
            return f"cannot be read: {exc.strerror}"
        except csv.Error as exc:
            return f"cannot be read as CSV: {exc}"
        if first is None:
            return "holds no lines"
        if self.has_header and first != pinned.names:
            header = _shortened(self.delimiter.join(first))
            return _mismatch([f"its header is {header!r} where the product has columns {', '.join(pinned.names)!r}"])
        if not self.has_header and len(first) != len(pinned):
            return _mismatch([f"its first row has {len(first)} fields where the product has {len(pinned)} columns"])
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) not in (b"\n", b"\r"):
                return "does not end with a line break: its last row is cut off (truncated, or still being written)"
        scratch = SessionContext()
        try:
            self.register_path(scratch, "product", path, pinned)
            counts = ", ".join(f"count({quote_identifier(name)})" for name in pinned.names)
            scratch.sql(f"SELECT {counts} FROM product").collect()
        except Exception as exc:
            return f"cannot be read with the product's column types: {_reason(exc)}"
        return None


class _HeldFiles:
    """Open files by (device, inode), each shared by the versions that read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[int, int], list[int]] = {}  # -> [fd, versions holding it]

    def open(self, path: Path) -> tuple[int, os.stat_result]:
        """A descriptor of ``path`` (shared with a version holding the same file) and its ``fstat``."""
        fd = os.open(path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        key = (info.st_dev, info.st_ino)
        with self._lock:
            held = self._files.get(key)
            if held is None:
                self._files[key] = [fd, 1]
                return fd, info
            held[1] += 1
        os.close(fd)
        return held[0], info

    def release(self, keys: Iterable[tuple[int, int]]) -> None:
        with self._lock:
            for key in keys:
                held = self._files.get(key)
                if held is None:
                    continue
                held[1] -= 1
                if held[1] == 0:
                    del self._files[key]
                    os.close(held[0])

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._files.values():
                os.close(fd)
            self._files.clear()


class _Version(FileVersion):
    """A product's files held open (or copied), seen by DataFusion through a folder of its own.

    The links are removed before the files are let go, so that no link ever points at a
    descriptor number the process has reused for another file.
    """

    def __init__(self, connector: FileSource, directory: Path, location: Path) -> None:
        self._connector = connector
        self.directory = directory
        self.location = location  # what DataFusion reads: the folder of links, or the one link
        self.links: list[Path] = []
        self.stamp: tuple[FileStamp, ...] = ()
        self.checked: frozenset[FileStamp] = frozenset()
        self.pinned = pa.schema([])
        self.uuids: frozenset[str] = frozenset()
        self._keys: list[tuple[int, int]] = []
        self._release = weakref.finalize(self, _let_go, directory, connector._held, self._keys)

    @classmethod
    def open(
        cls,
        connector: FileSource,
        product: str,
        files: list[Path],
        folder: bool,
        previous: FileVersion | None,
        root: Path | None = None,
    ) -> _Version:
        directory = _snapshots() / f"{connector.domain}.{product}.{next(_SEQUENCE)}"
        directory.mkdir()
        version = cls(connector, directory, directory if folder else directory / files[0].name)
        copies = dict(zip(previous.stamp, previous.links, strict=True)) if isinstance(previous, _Version) else {}
        stamps = []
        try:
            for original in files:
                name = original.relative_to(root).as_posix() if root is not None else original.name
                link = directory / name  # key=value folders are kept: DataFusion reads partition values from them
                link.parent.mkdir(parents=True, exist_ok=True)
                if connector.copied:
                    info = os.stat(original)
                    if not _shared(copies.get(FileStamp.of(name, info)), link):
                        info = _copy(original, link)
                elif _OPEN_FILES.is_dir():
                    fd, info = connector._held.open(original)
                    version._keys.append((info.st_dev, info.st_ino))
                    os.symlink(_OPEN_FILES / str(fd), link)
                else:  # no /proc: the files themselves (a rename is then seen at the next query, not mid-scan)
                    info = os.stat(original)
                    os.symlink(original.absolute(), link)
                version.links.append(link)
                stamps.append(FileStamp.of(name, info))
        except _Changed:
            version.release()
            changed = f"file {original} changed while it was read: try again"
            raise connector._failure(product, changed, unavailable=True) from None
        except OSError as error:
            version.release()
            missing = isinstance(error, FileNotFoundError)
            what = f"file {original} does not exist" if missing else f"cannot open {original}: {error.strerror}"
            raise connector._failure(product, what, unavailable=True) from None
        version.stamp = tuple(stamps)
        return version

    def register(self, ctx: SessionContext, name: str) -> None:
        self._connector._register_at(ctx, name, self.location, self.pinned, self.uuids, self.location.stem)

    def retire(self) -> None:
        _REAPER.add(self, GRACE_SECONDS)

    def release(self) -> None:
        """Remove the links and let the files go (at once; once only)."""
        self._release()


class _Changed(Exception):
    """A file changed while it was copied."""


def _shared(copy: Path | None, target: Path) -> bool:
    """Link ``target`` to the previous version's ``copy`` of an unchanged file, if it still exists."""
    if copy is None:
        return False
    try:
        os.link(copy, target)
    except OSError:
        return False
    return True


def _copy(original: Path, target: Path) -> os.stat_result:
    """Copy ``original`` to ``target``; what ``fstat`` said of it (raises _Changed if it changed meanwhile)."""
    with open(original, "rb") as source, open(target, "wb") as copy:
        before = os.fstat(source.fileno())
        shutil.copyfileobj(source, copy, 1 << 20)
        after = os.fstat(source.fileno())
    if FileStamp.of("", before) != FileStamp.of("", after):
        raise _Changed
    return before


def _let_go(directory: Path, held: _HeldFiles, keys: list[tuple[int, int]]) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    held.release(keys)


class _Reaper:
    """Releases retired versions when their grace period ends: one thread for all of them."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Version]] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, version: _Version, delay: float) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay, next(_SEQUENCE), version))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="meshgate-file-versions", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, version = heapq.heappop(self._due)
            version.release()


_REAPER = _Reaper()


_SEQUENCE = itertools.count(1)
_SNAPSHOTS: list[Path] = []
_SNAPSHOTS_LOCK = threading.Lock()


def csv_options(domain: str, config: ConnectorConfig) -> tuple[str, bool]:
    """A CSV connector's ``delimiter`` (one ASCII character, default ``,``) and ``has_header`` (default true)."""
    delimiter = config.options.get("delimiter", ",")
    has_header = config.options.get("has_header", True)
    if not isinstance(delimiter, str) or len(delimiter.encode()) != 1:
        raise ConfigError(f"domain {domain!r}: connector option delimiter must be one ASCII character")
    if not isinstance(has_header, bool):
        raise ConfigError(f"domain {domain!r}: connector option has_header must be true or false")
    return delimiter, has_header


def _snapshots() -> Path:
    """This process's folder of version folders (removed at exit)."""
    with _SNAPSHOTS_LOCK:
        if not _SNAPSHOTS:
            _SNAPSHOTS.append(Path(tempfile.mkdtemp(prefix="meshgate-files-")))
            atexit.register(shutil.rmtree, _SNAPSHOTS[0], True)
        return _SNAPSHOTS[0]


def _files(folder: Path, suffix: str) -> list[Path]:
    """The data files of a folder product: the ``*<suffix>`` files directly inside, or in its ``key=value`` folders."""
    return partitions.data_files(folder, suffix)


def _names(folder: Path, files: Iterable[Path]) -> list[str]:
    """Files by their path in ``folder`` (``year=2024/part-0.parquet``)."""
    return [file.relative_to(folder).as_posix() for file in files]


def schema_problems(
    pinned: pa.Schema, uuids: frozenset[str], found: pa.Schema, found_uuids: set[str]
) -> list[str]:
    """How ``found`` (a file's schema) differs from the registered ``pinned`` one, column by column."""
    problems = []
    for field in pinned:
        index = found.get_field_index(field.name)
        if index < 0:
            problems.append(f"column '{field.name}' is missing (registered {_type_name(field, uuids)})")
            continue
        other = found.field(index)
        if other.type != field.type or (field.name in uuids) != (field.name in found_uuids):
            problems.append(
                f"column '{field.name}' changed type: registered {_type_name(field, uuids)},"
                f" found {_type_name(other, found_uuids)}"
            )
        elif other.nullable and not field.nullable:
            problems.append(f"column '{field.name}' now allows NULLs (registered as NOT NULL)")
    return problems


def _uuid_columns(stored: pq.ParquetSchema) -> set[str]:
    columns = (stored.column(i) for i in range(len(stored)))
    return {c.path for c in columns if c.logical_type.type == "UUID" and "." not in c.path}


def _type_name(field: pa.Field, uuids: Iterable[str]) -> str:
    return "uuid" if field.name in set(uuids) else str(field.type)


def _shortened(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mismatch(problems: list[str]) -> str | None:
    if not problems:
        return None
    return (
        f"no longer matches the product's schema: {'; '.join(problems)}"
        " (restore a matching file, or read the domain again to serve the new schema)"
    )


_ENGINE_PREFIXES = ("DataFusion error: ", "Arrow error: ", "External error: ", "Execution error: ", "External: ")


def _reason(error: Exception) -> str:
    """The last line of a DataFusion error, without its layers' prefixes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else "no reason given"
    while text.startswith(_ENGINE_PREFIXES):
        text = text.split(": ", 1)[1]
    return text


def _partitioned(
    path: Path, suffix: str, schema: pa.Schema | None
) -> tuple[list[tuple[str, pa.DataType]], pa.Schema | None]:
    """A folder's partition columns (typed as ``schema`` pins them, if it does) and ``schema`` without them."""
    if not path.is_dir():
        return [], schema
    columns = partitions.layout(path, _files(path, suffix))
    if schema is None or not columns:
        return columns, schema
    pinned = {field.name: field.type for field in schema}
    columns = [(key, pinned.get(key, kind)) for key, kind in columns]
    keys = {key for key, _ in columns}
    return columns, pa.schema([field for field in schema if field.name not in keys])


def viewed(schema: pa.Schema | None) -> pa.Schema | None:
    """``schema`` with text and binary columns as Arrow's view types, which DataFusion reads
    Parquet into without copying and hashes and compares faster (TPC-H Q1 groups six million
    rows by two text columns: 499 -> 391 ms in one run). The product keeps its classic types:
    results are cast back where they leave (``gateway.scan.classic_types``)."""
    if schema is None:
        return None
    return pa.schema([field.with_type(_view(field.type)) for field in schema], metadata=schema.metadata)


def _view(kind: pa.DataType) -> pa.DataType:
    if kind == pa.string():  # large types stay (they are served as such), as do UUIDs' binary(16)
        return pa.string_view()
    if kind == pa.binary():
        return pa.binary_view()
    return kind


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


def _uuid_text(name: str) -> str:
    """DataFusion SQL for 16 UUID bytes as canonical text (``8-4-4-4-12`` lower-case hex digits)."""
    hexa = f"encode(arrow_cast({quote_identifier(name)}, 'Binary'), 'hex')"
    groups = ", '-', ".join(f"substr({hexa}, {start}, {length})" for start, length in _UUID_GROUPS)
    return f"CASE WHEN {quote_identifier(name)} IS NULL THEN NULL ELSE concat({groups}) END AS {quote_identifier(name)}"


_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
