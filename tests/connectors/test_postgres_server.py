"""The test PostgreSQL server: the local one when it answers, an embedded one otherwise or on demand."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.postgres import PostgresConnector
from gateway.config import ConnectorConfig
from tests.support.postgres import EMBEDDED_ENV, LOCAL_URI, URI_ENV, answers, postgres_server, temporary_schema


def test_embedded_server_starts_serves_and_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EMBEDDED_ENV, "1")
    with postgres_server(tmp_path) as uri:
        assert uri != LOCAL_URI and "host=/" in uri  # a Unix socket of its own
        connector = PostgresConnector("embedded", ConnectorConfig(type="postgres", uri=uri))
        try:
            with temporary_schema(uri, "embedded") as schema:
                stream = connector.execute(
                    f"SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{schema}'", pa.schema([("n", pa.int64())])
                )
                assert [batch.to_pylist() for batch in stream] == [[{"n": 1}]]
        finally:
            connector.close()
    assert not (tmp_path / "pgdata").exists()


def test_the_local_server_is_used_when_it_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EMBEDDED_ENV, raising=False)
    monkeypatch.delenv(URI_ENV, raising=False)
    local = answers(LOCAL_URI)
    with postgres_server(tmp_path) as uri:
        assert (uri == LOCAL_URI) is local


def test_a_silent_server_is_detected_within_the_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert not answers(f"postgresql://postgres@127.0.0.1:{port}/test", timeout=1.0)
    assert time.monotonic() - started < 1.5
