"""The HTTP listener over TLS: ``meshgate serve --tls-cert/--tls-key`` serves HTTPS only, with the Flight certificate.

The gateway of this module (overriding ``tests/web/conftest.py``'s) serves the catalog test
mesh over ``grpc+tls://`` and ``https://`` with a server certificate of a CA made here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import ssl
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from starlette.applications import Starlette

from gateway.cli import _log_http_security
from gateway.errors import MeshgateError
from gateway.web.server import HttpServer, HttpTls, is_loopback
from tests.support.gateway import GatewayProcess
from tests.support.tls import CertificateAuthority
from tests.web.client import WebClient
from tests.web.mesh import ALICE, write_catalog_mesh

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def server_files(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ca.server().write(tmp_path_factory.mktemp("https-certs"), "server")


@pytest.fixture(scope="module")
def gateway(mesh_dir: Path, server_files: tuple[Path, Path]) -> Iterator[GatewayProcess]:
    cert, key = server_files
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    process = GatewayProcess(write_catalog_mesh(mesh_dir), extra=("--http-port", "0", "--watch-interval", "0", *tls))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def trusting(ca: CertificateAuthority) -> ssl.SSLContext:
    """A client context that trusts the test CA only, checking the host name as browsers do."""
    return ssl.create_default_context(cadata=ca.cert_pem.decode())


def test_the_listener_says_https_and_healthz_answers_over_a_verified_connection(
    web: str, gateway: GatewayProcess, trusting: ssl.SSLContext
) -> None:
    assert web.startswith("https://127.0.0.1:")
    assert gateway.uri.startswith("grpc+tls://")
    health = WebClient(web, trusting).get("/healthz")
    assert (health.status, json.loads(health.text)) == (200, {"status": "ok"})
    assert json.loads(WebClient(web, trusting).get("/readyz").text)["status"] == "ready"


def test_the_listener_presents_the_flight_certificate(web: str, server_files: tuple[Path, Path]) -> None:
    address = urlparse(web)
    assert address.hostname is not None and address.port is not None
    served = ssl.get_server_certificate((address.hostname, address.port))
    cert = server_files[0].read_text()
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert)


def test_a_client_that_does_not_trust_the_ca_is_refused(web: str) -> None:
    with pytest.raises(urllib.error.URLError) as refused:
        WebClient(web, ssl.create_default_context()).get("/healthz")  # the system's trust store only
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises(urllib.error.URLError) as refused:
        WebClient(web, ssl.create_default_context(cadata=CertificateAuthority().cert_pem.decode())).get("/healthz")
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_to_the_port_gets_no_answer_and_https_keeps_working(web: str, trusting: ssl.SSLContext) -> None:
    address = urlparse(web)
    assert address.hostname is not None and address.port is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.request("GET", "/healthz")
            connection.getresponse()
    finally:
        connection.close()
    assert WebClient(web, trusting).get("/healthz").status == 200


@pytest.mark.parametrize("path", ["/healthz", "/login", "/products/hr/salaries", "/static/style.css", "/nowhere"])
def test_every_answer_carries_hsts_and_the_security_headers(web: str, trusting: ssl.SSLContext, path: str) -> None:
    answer = WebClient(web, trusting).get(path)
    assert answer.headers["strict-transport-security"] == "max-age=31536000"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_the_session_cookie_is_secure_and_the_pages_stay_governed(web: str, trusting: ssl.SSLContext) -> None:
    client = WebClient(web, trusting)
    answer = client.sign_in(ALICE)
    assert answer.status == 303, answer.text
    attributes = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
    assert {"secure", "httponly", "samesite=strict"} <= set(attributes)
    (cookie,) = [c for c in client.cookies if c.name == "meshgate_session"]
    assert cookie.secure
    page = client.get("/products/sales/customers")  # the jar sends a Secure cookie over https:// only
    assert page.status == 200
    assert "masked (hash)" in page.text and "anna@example.de" not in page.text and "Jean Dupont" not in page.text
    assert client.get("/products/hr/salaries").status == 404  # alice has no grant on hr


def test_the_demo_with_mutual_tls_says_https_and_browsers_need_no_client_certificate(
    tmp_path: Path, ca: CertificateAuthority, server_files: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    cert, key = server_files
    client_ca = tmp_path / "clients.crt"
    client_ca.write_bytes(ca.cert_pem)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(client_ca))
    gateway = GatewayProcess.demo(tmp_path / "demo", extra=tls)
    try:
        assert gateway.http_url is not None and gateway.http_url.startswith("https://")
        assert gateway.credentials is not None
        expected = f"or browse the data products at {gateway.http_url}, signing in as 'demo'"
        deadline = time.monotonic() + 30  # the line follows "serving": read by the output's drain
        while not any(expected in line for line in gateway.output) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(expected in line for line in gateway.output)
        assert any("mutual TLS (--tls-client-ca) applies to Flight SQL only" in line for line in gateway.startup_log)
        web = WebClient(gateway.http_url, trusting)  # no client certificate
        assert web.get("/healthz").status == 200
        assert web.sign_in(gateway.credentials).status == 303
        assert web.get("/products/sales/customers").status == 200
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.7", False), ("gateway.example.com", False)],
)  # fmt: skip
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plain_http_on_every_interface_warns_once_and_loopback_or_https_does_not(
    caplog: pytest.LogCaptureFixture, server_files: tuple[Path, Path]
) -> None:
    args = argparse.Namespace(tls_client_ca=None)
    servers = [
        HttpServer(Starlette(), "0.0.0.0", 0),  # bound, never started: nothing is served
        HttpServer(Starlette(), "127.0.0.1", 0),
        HttpServer(Starlette(), "0.0.0.0", 0, HttpTls(*server_files)),
    ]
    try:
        for server in servers:
            with caplog.at_level(logging.WARNING, logger="meshgate"):
                caplog.clear()
                _log_http_security(args, server)
                warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            if server.tls is None and server.host == "0.0.0.0":
                assert len(warnings) == 1 and "plain http://: passwords cross the network" in warnings[0]
                assert server.url.startswith("http://")
            else:
                assert warnings == []
        assert servers[2].url.startswith("https://0.0.0.0:")
    finally:
        for server in servers:
            server.stop()


def test_a_certificate_and_key_that_do_not_match_stop_the_listener_at_start(
    ca: CertificateAuthority, server_files: tuple[Path, Path], tmp_path: Path
) -> None:
    _, other_key = ca.server().write(tmp_path, "other")
    with pytest.raises(MeshgateError, match=r"HTTPS listener: cannot load --tls-cert \S+/server\.crt and --tls-key"):
        HttpServer(Starlette(), "127.0.0.1", 0, HttpTls(server_files[0], other_key))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian's chromium package)")
def test_a_browser_signs_in_over_https_and_gets_a_secure_cookie(web: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            # Chromium trusts the system's store only: the certificate itself is checked by the tests above.
            context = browser.new_context(base_url=web, ignore_https_errors=True)
            page = context.new_page()
            page.goto("/")
            expect(page).to_have_url(f"{web}/login?next=%2F")
            page.get_by_label("User").fill(ALICE.user)
            page.get_by_label("Password").fill(ALICE.password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Domains")).to_be_visible()
            (cookie,) = [c for c in context.cookies() if c["name"] == "meshgate_session"]
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            context.close()
        finally:
            browser.close()
