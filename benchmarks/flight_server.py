"""A bare ``pyarrow.flight`` server streaming one Parquet file's rows from memory: the streaming ceiling.

``python -m benchmarks.flight_server PATH`` reads the file into memory (classic string types,
as Meshgate sends), listens on a free loopback port, prints ``listening on grpc://127.0.0.1:PORT``
and answers ``DoGet`` with any ticket by streaming the whole table.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq


class InMemoryServer(flight.FlightServerBase):  # type: ignore[misc]
    def __init__(self, table: pa.Table) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.table = table

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        return flight.RecordBatchStream(self.table)


def classic(table: pa.Table) -> pa.Table:
    fields = [f.with_type(pa.string()) if pa.types.is_string_view(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def main(path: str) -> int:
    table = classic(pq.read_table(path))
    server = InMemoryServer(table)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on grpc://127.0.0.1:{server.port} ({table.num_rows} rows)", flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
