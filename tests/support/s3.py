"""A real S3 server for tests: moto's server mode, in a thread of this process, on a free loopback port.

moto answers the S3 REST API as a store would (buckets, objects, ranged GETs, ETags) and, with
its recorder on, keeps every request it answered: tests count the objects a query read.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

# moto's recorder writes the requests to a file, by default ./moto_recording: one of this process's
# own instead (moto reads the variable when it is imported, below), removed at exit.
_RECORDINGS = tempfile.mkdtemp(prefix="meshgate-moto-")
atexit.register(shutil.rmtree, _RECORDINGS, True)
os.environ.setdefault("MOTO_RECORDER_FILEPATH", os.path.join(_RECORDINGS, "recording"))
from moto.server import ThreadedMotoServer  # noqa: E402 - after the variable it reads

ACCESS_KEY_ID = "AKIAMESHGATETEST0001"
SECRET_ACCESS_KEY = "s3cr3t/meshgate+NEVER-shown"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server: its endpoint and a boto3 client signed with the test credentials."""

    endpoint: str
    client: Any  # boto3's S3 client (untyped)

    def put_parquet(self, bucket: str, key: str, table: pa.Table) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        return buffer.getvalue()

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def options(self) -> dict[str, object]:
        """Connector options reaching this server with the test credentials."""
        return {
            "endpoint": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "allow_http": True,
        }

    def _post(self, path: str, body: bytes = b"") -> bytes:
        headers = {"Content-Type": "text/plain"}  # not a form: moto reads the body as it is
        request = urllib.request.Request(self.endpoint + path, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            data: bytes = response.read()
            return data

    @contextmanager
    def recording(self) -> Iterator[list[dict[str, Any]]]:
        """The requests the server answers inside the block (method, url, headers ...), filled at its end."""
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")
        requests: list[dict[str, Any]] = []
        try:
            yield requests
        finally:
            self._post("/moto-api/recorder/stop-recording")
            with urllib.request.urlopen(self.endpoint + "/moto-api/recorder/download-recording", timeout=10) as answer:
                text = answer.read().decode()
            requests.extend(json.loads(line) for line in text.splitlines() if line.strip())

    @contextmanager
    def authenticating(self) -> Iterator[None]:
        """Inside the block the server checks signatures: only keys made through its IAM API are accepted."""
        self._post("/moto-api/reset-auth", b"0")
        try:
            yield
        finally:
            self._post("/moto-api/reset-auth", b"inf")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 and a free port, stopped at the end."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        yield S3Server(endpoint, client)
    finally:
        server.stop()


def objects_read(requests: list[dict[str, Any]], bucket: str) -> set[str]:
    """The keys of ``bucket`` the recorded requests GET (ranged or whole)."""
    prefix = f"/{bucket}/"
    keys = set()
    for request in requests:
        url = urllib.parse.urlsplit(request.get("url", ""))
        if request.get("method") == "GET" and url.path.startswith(prefix) and not url.query:
            keys.add(urllib.parse.unquote(url.path[len(prefix) :]))
    return keys
