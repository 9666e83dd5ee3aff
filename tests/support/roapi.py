"""roapi: a foreign Flight SQL server (DataFusion-based, another version than the gateway's) over Parquet files."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import free_port


@contextmanager
def roapi_server(tables: Mapping[str, Path]) -> Iterator[str]:
    """A roapi serving ``tables`` (name: Parquet file) on loopback; yields its ``grpc://`` URI.

    Skips the test when roapi is not installed (it is in the test extra) or does not start."""
    binary = shutil.which("roapi") or str(Path(sys.executable).parent / "roapi")
    if not Path(binary).exists():
        pytest.skip("roapi is not installed (pip install roapi: the test extra)")
    flight, http, pg = free_port(), free_port(), free_port()
    served = [argument for name, path in tables.items() for argument in ("-t", f"{name}={path}")]
    command = [binary, *served, "--addr-flight-sql", f"127.0.0.1:{flight}", "-a", f"127.0.0.1:{http}"]
    process = subprocess.Popen(
        [*command, "-p", f"127.0.0.1:{pg}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", flight)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.skip("roapi did not start listening within 20 s")
        yield f"grpc://127.0.0.1:{flight}"
    finally:
        process.terminate()
        process.wait(timeout=10)
