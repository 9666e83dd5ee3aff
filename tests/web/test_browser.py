"""The catalog in a real browser: Debian's headless Chromium driven by Playwright.

Two users with different grants sign in, search, open product pages and the admin pages;
a masked column shows masked values, and a product alice may not read appears nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Credentials
from tests.web.mesh import ALICE, ROOT

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian's chromium package): browser tests need it"
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect, sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page_for(browser: Browser, web: str) -> Iterator[Callable[[Credentials], Page]]:
    """A function that opens a fresh browser context signed in as a user; CSP or script errors fail the test."""
    contexts = []
    problems: list[str] = []

    def sign_in(who: Credentials) -> Page:
        context = browser.new_context(base_url=web)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto("/")
        expect(page).to_have_url(f"{web}/login?next=%2F")
        page.get_by_label("User").fill(who.user)
        page.get_by_label("Password").fill(who.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Domains")).to_be_visible()
        return page

    yield sign_in
    for context in contexts:
        context.close()
    assert [p for p in problems if "404" not in p] == []  # a 404 page logs its status, nothing else may


def test_alice_searches_and_opens_a_product_with_a_masked_column(
    page_for: Callable[[Credentials], Page], web: str
) -> None:
    page = page_for(ALICE)
    domains = page.locator("table.list tbody")
    expect(domains).to_contain_text("sales-team")
    expect(domains).to_contain_text("Clickstream of the shop's pages")
    page.get_by_label("Search").fill("pii")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading")).to_contain_text("Products matching “pii”")
    expect(page.locator("main")).to_contain_text("sales.customers")
    page.get_by_role("link", name="sales.customers").click()
    expect(page.get_by_role("heading", name="sales.customers")).to_be_visible()
    email = page.locator("#schema tr", has_text="email")
    expect(email).to_have_class("masked")
    expect(email).to_contain_text("masked (hash)")
    sample = page.locator("#sample tbody")
    expect(sample).to_contain_text("Anna Schmidt")
    expect(sample).not_to_contain_text("@")  # every e-mail address is hashed
    expect(sample).not_to_contain_text("Jean Dupont")  # a French customer: alice's row filter keeps DE only
    expect(page.locator("svg.chart .mark-pass").first).to_be_visible()
    expect(page.locator("#snippet-python")).to_contain_text("SELECT * FROM sales.customers LIMIT 10")
    expect(page.locator("#snippet-jdbc")).to_contain_text("jdbc:arrow-flight-sql://127.0.0.1:")
    expect(page.get_by_role("link", name="Query log")).to_have_count(0)


def test_a_product_alice_may_not_read_never_appears(page_for: Callable[[Credentials], Page], web: str) -> None:
    page = page_for(ALICE)
    page.goto("/search")
    expect(page.locator("main")).to_contain_text("sales.big_orders")
    expect(page.locator("main")).not_to_contain_text("salaries")
    page.get_by_label("Search").fill("salar")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("main")).to_contain_text("No product you can read matches.")
    page.goto("/domains/hr")
    expect(page.locator("main")).not_to_contain_text("salaries")
    answer = page.goto("/products/hr/salaries")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    answer = page.goto("/admin/queries")
    assert answer is not None and answer.status == 404


def test_the_admin_sees_every_product_the_query_log_and_source_health(
    page_for: Callable[[Credentials], Page], web: str
) -> None:
    alice = page_for(ALICE)
    alice.goto("/products/web/visits")
    expect(alice.locator("main")).to_contain_text("expected: seen_at within 1d")
    expect(alice.locator(".age")).to_contain_text("h")  # the newest visit is 2 hours old
    page = page_for(ROOT)
    page.goto("/search")
    expect(page.locator("main")).to_contain_text("hr.salaries")
    page.get_by_role("link", name="Query log").click()
    page.get_by_label("User").fill("alice")
    page.get_by_label("Product").fill("web.visits")
    page.get_by_role("button", name="Filter").click()
    log = page.locator("#query-log tbody")
    expect(log).to_contain_text("alice")
    expect(log).to_contain_text("seen_at")
    expect(log).not_to_contain_text("root")
    page.get_by_role("link", name="Health").click()
    expect(page.locator("#source-health")).to_contain_text("sqlite")
    expect(page.locator("#source-health tbody tr")).to_have_count(3)
    page.goto("/products/sales/big_orders")
    expect(page.locator("main")).to_contain_text("Fed by: sales.orders")
