"""Remake the catalog screenshots in this folder from the demo mesh.

Serves ``meshgate serve --demo`` with its HTTP listener, runs the demo's example queries
through the ADBC Flight SQL driver (so the query log and lineage have something to show),
then signs in with Debian's headless Chromium (Playwright) and captures the main pages.

    .venv/bin/python docs/screenshots/make_screenshots.py
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
from playwright.sync_api import sync_playwright

from gateway.demo import EXAMPLE_QUERIES

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
PAGES = {
    "domains": "/",
    "search": "/search?q=customer",
    "product": "/products/sales/vip_customers",
    "query_log": "/admin/queries",
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="meshgate-screenshots-") as directory:
        command = [sys.executable, "-m", "gateway", "serve", "--demo", "--demo-dir", directory]
        process = subprocess.Popen(
            [*command, "--port", "0", "--http-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            flight, web, password = _started(process)
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its log from filling the pipe
            login = {"username": "demo", "password": password}
            for sql in EXAMPLE_QUERIES:
                with flightsql.connect(flight, db_kwargs=login) as connection, connection.cursor() as cursor:
                    cursor.execute(sql)
                    cursor.fetch_arrow_table()
            _capture(web, password)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return 0


def _started(process: subprocess.Popen[str]) -> tuple[str, str, str]:
    """The Flight SQL URI, the catalog's URL and the demo password, from the gateway's log."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    for line in process.stdout:
        for key, pattern in (
            ("password", r"demo login: user 'demo', password '(\S+)'"),
            ("web", r"catalog in the browser at (http://\S+) "),
            ("flight", r"serving catalog '\w+' at (grpc://\S+)"),
        ):
            match = re.search(pattern, line)
            if match:
                found[key] = match.group(1)
        if len(found) == 3:
            return found["flight"], found["web"], found["password"]
    raise SystemExit("the demo gateway did not start")


def _capture(web: str, password: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(base_url=web, viewport={"width": 1280, "height": 800})
        page.goto("/login")
        page.get_by_label("User").fill("demo")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{web}/")
        for name, path in PAGES.items():
            page.goto(path)
            page.screenshot(path=HERE / f"{name}.png", full_page=True)
            print(f"wrote {HERE / name}.png")
        browser.close()


if __name__ == "__main__":
    raise SystemExit(main())
