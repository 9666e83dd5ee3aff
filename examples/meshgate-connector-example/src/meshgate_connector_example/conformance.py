"""Meshgate's conformance suite, loaded into this kind: the dataset written as one Arrow IPC file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from connectors.conformance import ConformanceSource


def load(table: pa.Table, name: str, folder: Path) -> ConformanceSource:
    """Write ``table`` to ``folder/name.arrow`` with pyarrow's own IPC writer (Arrow IPC holds every type exactly)."""
    with pa.OSFile(str(folder / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=16)  # several batches, as real files have
    return ConformanceSource(settings={"path": str(folder)}, source=f"{name}.arrow", product=name)
