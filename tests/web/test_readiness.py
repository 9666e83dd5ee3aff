"""``/readyz`` follows the sources: 503 while a domain's source is down, 200 again once it is back.

Two ways a source goes down here: a file domain whose folder disappears, and a PostgreSQL
domain reached through a TCP relay that is cut (the server itself stays up for other tests).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import adbc_driver_postgresql.dbapi as pg
import pytest

from tests.support.gateway import GatewayProcess, auth_yaml
from tests.web.client import WebClient
from tests.web.mesh import ROOT


class Relay:
    """A TCP relay on a free loopback port to ``target``; :meth:`cut` closes it and every connection."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.port = port
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._keep(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            self._keep(client)
            self._keep(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture(scope="module")
def relay(postgres_uri: str) -> Iterator[Relay]:
    parsed = urlparse(postgres_uri)
    if parsed.hostname is None or parsed.hostname.startswith("/") or "host=" in parsed.query:
        pytest.skip("the PostgreSQL server for tests listens on a Unix socket: no TCP connection to cut")
    relay = Relay((parsed.hostname, parsed.port or 5432))
    yield relay
    relay.cut()


@pytest.fixture(scope="module")
def accounts(postgres_uri: str, pg_schema: str) -> str:
    """A table of the module's schema for the PostgreSQL domain: its name."""
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{pg_schema}".accounts AS SELECT g AS account_id FROM generate_series(1, 3) g')
    return f"{pg_schema}.accounts"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, accounts: str, relay: Relay
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("readiness")
    (directory / "kinds").mkdir()
    (directory / "kinds" / "kinds.csv").write_text("g,label\n1,one\n")
    parsed = urlparse(postgres_uri)
    relayed = parsed._replace(netloc=f"{parsed.username or 'postgres'}@127.0.0.1:{relay.port}").geturl()
    config = directory / "mesh.yaml"
    config.write_text(
        f"""domains:
  - name: bank
    connector: {{type: postgres, uri: '{relayed}'}}
    products:
      - {{name: accounts, source: '{accounts}'}}
  - name: files
    connector: {{type: csv, path: kinds}}
"""
        + auth_yaml(ROOT)
    )
    process = GatewayProcess(config, extra=("--http-port", "0", "--watch-interval", "0.2"))
    yield process
    process.stop()


def readiness(web: WebClient) -> tuple[int, dict[str, object]]:
    answer = web.get("/readyz")
    return answer.status, json.loads(answer.text)


def wait_for(web: WebClient, status: int, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        found, body = readiness(web)
        if found == status or time.monotonic() > deadline:
            assert found == status, body
            return body
        time.sleep(0.5)


def test_readyz_is_503_while_a_file_domains_folder_is_gone(gateway: GatewayProcess, tmp_path: Path) -> None:
    assert gateway.http_url is not None and gateway.config is not None
    web = WebClient(gateway.http_url)
    assert readiness(web)[0] == 200
    folder = gateway.config.parent / "kinds"
    shutil.move(folder, tmp_path / "kinds")
    try:
        body = wait_for(web, 503)
        assert body["domains"] == {"online": 1, "offline": 1} and "files" not in json.dumps(body)
        assert web.sign_in(ROOT).status == 303
        assert readiness(web)[1]["domain_states"] == {"bank": "online", "files": "offline"}
        health = web.get("/admin/health").text
        assert "its source could not be reached" in health
    finally:
        shutil.move(tmp_path / "kinds", folder)
    wait_for(web, 200)


def test_readyz_is_503_while_a_postgres_domains_server_cannot_be_reached(gateway: GatewayProcess, relay: Relay) -> None:
    assert gateway.http_url is not None
    web = WebClient(gateway.http_url)
    assert web.sign_in(ROOT).status == 303
    wait_for(web, 200)
    relay.cut()
    try:
        wait_for(web, 503)
        assert readiness(web)[1]["domain_states"] == {"bank": "offline", "files": "online"}
    finally:
        relay.open()
    wait_for(web, 200)


def test_the_admin_health_page_shows_a_rejected_reload_and_its_error(gateway: GatewayProcess) -> None:
    assert gateway.http_url is not None and gateway.config is not None
    web = WebClient(gateway.http_url)
    assert web.sign_in(ROOT).status == 303
    good = gateway.config.read_text()
    gateway.config.write_text(good.replace("type: csv", "type: nosuchkind"))
    try:
        deadline = time.monotonic() + 30
        while "nosuchkind" not in (page := web.get("/admin/health").text) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "config_reload" in page and "state-failed" in page and "nosuchkind" in page
    finally:
        gateway.config.write_text(good)


def test_readyz_turns_ready_once_a_domain_that_was_offline_at_start_can_be_loaded(
    tmp_path: Path, postgres_uri: str, accounts: str, relay: Relay
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # nothing listens there until the relay below starts
    parsed = urlparse(postgres_uri)
    uri = parsed._replace(netloc=f"{parsed.username or 'postgres'}@127.0.0.1:{port}").geturl()
    config = tmp_path / "mesh.yaml"
    config.write_text(
        f"domains:\n  - name: bank\n    connector: {{type: postgres, uri: '{uri}'}}\n"
        f"    products:\n      - {{name: accounts, source: '{accounts}'}}\n" + auth_yaml(ROOT)
    )
    process = GatewayProcess(config, extra=("--http-port", "0", "--watch-interval", "0"))
    late = None
    try:
        assert process.http_url is not None
        web = WebClient(process.http_url)
        offline = {"status": "not ready", "config": "loaded", "domains": {"online": 0, "offline": 1}}
        assert readiness(web) == (503, offline)
        late = Relay(relay.target, port)
        wait_for(web, 200, timeout=60)  # the catalog loads an offline domain again after 10 s
    finally:
        process.stop()
        if late is not None:
            late.cut()
