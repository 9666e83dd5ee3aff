"""``meshgate serve --demo`` turns the catalog on: its banner says where, and the demo's pages work."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.support.gateway import GatewayProcess
from tests.web.client import WebClient


def test_the_demo_serves_the_catalog_and_says_where(tmp_path: Path) -> None:
    gateway = GatewayProcess.demo(tmp_path)
    try:
        assert gateway.http_url is not None and gateway.credentials is not None
        expected = f"or browse the data products at {gateway.http_url}, signing in as 'demo'"
        deadline = time.monotonic() + 30  # the line follows "serving": read by the output's drain
        while not any(expected in line for line in gateway.output) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(expected in line for line in gateway.output)
        web = WebClient(gateway.http_url)
        assert web.sign_in(gateway.credentials).status == 303
        page = web.get("/products/sales/vip_customers").text
        assert 'Fed by: <a href="/products/sales/customers">sales.customers</a>' in page
        assert 'id="sample"' in page  # the demo opts this product in
        assert web.get("/admin/queries").status == 200  # a mesh without policies: every user sees the log
    finally:
        gateway.stop()


def test_the_demo_without_auth_shows_the_pages_without_a_sign_in(tmp_path: Path) -> None:
    gateway = GatewayProcess.demo(tmp_path, extra=("--no-auth",))
    try:
        assert gateway.http_url is not None
        web = WebClient(gateway.http_url)
        assert web.get("/login").location == "/"
        page = web.get("/")
        assert page.status == 200 and "sales-team" in page.text and "Sign out" not in page.text
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0  # SIGTERM stops Flight SQL and the HTTP listener cleanly
    port = urlparse(gateway.http_url).port
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_the_demo_starts_on_a_free_port_when_8080_is_taken(tmp_path: Path) -> None:
    """The quick start's demo must start on any machine: its default catalog port may be busy."""
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 8080))
            holder.listen()
        except OSError:
            pass  # something else holds it already: busy either way
        gateway = GatewayProcess(None, extra=("--demo", "--demo-dir", str(tmp_path)), credentials=None)
        try:
            assert gateway.http_url is not None and urlparse(gateway.http_url).port != 8080
            assert any("already in use" in line and "free port" in line for line in gateway.startup_log)
            assert WebClient(gateway.http_url).get("/healthz").status == 200
        finally:
            gateway.stop()
    finally:
        holder.close()
