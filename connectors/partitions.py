"""Folders of data files read as one product: part files and hive partitions.

A folder is one product when it holds *part files* (``part-00000.parquet``, ``part_1.csv``,
``data_0.parquet``, ``000000_0.parquet``: the names engines give the pieces of one table) or
*hive partitions*: ``key=value`` folders, at any depth, with the data files in the deepest
ones (``year=2024/month=01/part-0.parquet``). Each ``key`` is a column of the product, after
the files' own columns: ``int64`` when every value is an integer written as such (``2024``,
``-3``; not ``01``), ``string`` otherwise. DataFusion's listing table reads these columns from
the paths and prunes partitions: a filter on them opens only the matching folders' files.

Folders whose names start with ``.`` or ``_`` (``_temporary/``) are never partitions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa

_PART_FILE = re.compile(r"^(?:part[-_.]?\d.*|part-.*|data_\d+|[\d_]+)$", re.IGNORECASE)
_INTEGER = re.compile(r"^(?:0|-?[1-9]\d{0,18})$")
_INT64 = (-(2**63), 2**63 - 1)


class LayoutError(ValueError):
    """A folder's partitions are not one layout (keys differ between folders, or files sit at several depths)."""


def is_part_file(path: Path) -> bool:
    """Whether a file's name is one an engine gives a piece of a table (``part-0001``, ``data_0``)."""
    return bool(_PART_FILE.match(path.stem))


def is_partition(name: str) -> bool:
    """Whether a folder name is a hive partition, ``key=value``."""
    key, equals, _ = name.partition("=")
    return bool(equals and key) and not name.startswith((".", "_"))


def is_dataset(folder: Path, suffix: str) -> bool:
    """Whether ``folder`` is one product of many files: hive partitions, or part files only."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    if any(entry.is_dir() and is_partition(entry.name) for entry in entries):
        return holds_data(folder, suffix)
    files = [Path(entry.path) for entry in entries if _is_data_file(entry, suffix)]
    return bool(files) and all(is_part_file(path) for path in files)


def holds_data(folder: Path, suffix: str) -> bool:
    """Whether ``folder`` is a product: it holds data files, directly or in ``key=value`` folders.

    Partitions that disagree count (the product's schema then fails with the reason).
    """
    try:
        return bool(data_files(folder, suffix))
    except LayoutError:
        return True
    except OSError:
        return False


def data_files(folder: Path, suffix: str) -> list[Path]:
    """The data files of a folder product, sorted: directly inside, or in its ``key=value`` folders.

    With partitions, only the files in the deepest ``key=value`` folders count (see :func:`layout`).
    """
    return [path for path, _ in scan(folder, suffix)]


def scan(folder: Path, suffix: str) -> list[tuple[Path, os.stat_result]]:
    """``data_files`` with each file's ``stat`` (one ``scandir`` per folder; a file gone meanwhile is left out).

    Raises:
        OSError: a folder cannot be listed.
        LayoutError: the partitions are not one layout.
    """
    found: list[tuple[Path, os.stat_result]] = []
    depths: set[int] = set()

    def walk(at: Path, depth: int) -> None:
        with os.scandir(at) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
        partitions = [entry for entry in listed if entry.is_dir() and is_partition(entry.name)]
        if partitions:
            for entry in partitions:
                walk(Path(entry.path), depth + 1)
            return
        for entry in listed:
            if _is_data_file(entry, suffix):
                try:
                    found.append((Path(entry.path), entry.stat()))
                except FileNotFoundError:
                    continue
                depths.add(depth)

    walk(folder, 0)
    if len(depths) > 1:
        raise LayoutError(f"{folder}: data files sit at different depths of its key=value folders")
    layout(folder, [path for path, _ in found])
    return found


def layout(folder: Path, files: list[Path]) -> list[tuple[str, pa.DataType]]:
    """The partition columns of ``folder`` (empty without ``key=value`` folders), typed from their values.

    Raises:
        LayoutError: two files' folders name different keys, or a key twice.
    """
    keys: tuple[str, ...] | None = None
    values: dict[str, list[str]] = {}
    for file in files:
        parts = [part.partition("=") for part in file.parent.relative_to(folder).parts]
        names = tuple(key for key, _, _ in parts)
        if keys is None:
            keys = names
            if len(set(keys)) != len(keys):
                raise LayoutError(f"{file.parent}: names a partition key twice")
        elif names != keys:
            raise LayoutError(
                f"{folder}: its key=value folders name different keys ({'/'.join(keys)} and {'/'.join(names)})"
            )
        for key, _, value in parts:
            values.setdefault(key, []).append(value)
    return [(key, _type(values[key])) for key in keys or ()]


def _type(values: list[str]) -> pa.DataType:
    """``int64`` when every value is an integer written canonically (DataFusion prunes by the text), else string."""
    if all(_INTEGER.match(value) and _INT64[0] <= int(value) <= _INT64[1] for value in values):
        return pa.int64()
    return pa.string()


def _is_data_file(entry: os.DirEntry[str], suffix: str) -> bool:
    name = entry.name
    return name.endswith(suffix) and name != suffix and entry.is_file()
