"""The catalog's HTTP listener through a plain HTTP client: health, sign-in, CSRF, 404s, headers, governance."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from urllib.parse import urlparse

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from tests.support.gateway import Credentials, GatewayProcess, connect
from tests.web.client import WebClient
from tests.web.mesh import ALICE, ROOT


def signed_in(web: str, who: Credentials) -> WebClient:
    client = WebClient(web)
    answer = client.sign_in(who)
    assert answer.status == 303, answer.text
    return client


def test_healthz_and_readyz_answer_without_sign_in_and_tell_an_anonymous_caller_counts_only(web: str) -> None:
    client = WebClient(web)
    health = client.get("/healthz")
    assert (health.status, json.loads(health.text)) == (200, {"status": "ok"})
    ready = client.get("/readyz")
    body = json.loads(ready.text)
    assert ready.status == 200
    assert body == {"status": "ready", "config": "loaded", "domains": {"online": 3, "offline": 0}}
    for name in ("sales", "web", "hr"):
        assert name not in ready.text


def test_readyz_names_each_domain_and_its_state_to_a_signed_in_caller(web: str) -> None:
    body = json.loads(signed_in(web, ALICE).get("/readyz").text)
    assert body["domain_states"] == {"sales": "online", "web": "online", "hr": "online"}


@pytest.mark.parametrize("path", ["/healthz", "/login", "/products/hr/salaries", "/static/style.css"])
def test_every_answer_carries_the_security_headers(web: str, path: str) -> None:
    answer = WebClient(web).get(path)
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in answer.headers  # plain HTTP: HSTS only with TLS (test_https.py)


def test_the_session_cookie_is_httponly_samesite_strict_and_holds_no_token(web: str) -> None:
    client = WebClient(web)
    client.get("/login")
    answer = client.post("/login", {"csrf": _csrf_of(client), "user": ROOT.user, "password": ROOT.password})
    header = answer.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header
    assert "secure" not in header  # plain HTTP: a Secure cookie would never come back (test_https.py)
    (cookie,) = [c for c in client.cookies if c.name == "meshgate_session"]
    payload = base64.b64decode(cookie.value.split(".")[0] + "==").decode()
    assert set(json.loads(payload)) == {"sid", "csrf"}  # the bearer token stays in the gateway


def _csrf_of(client: WebClient) -> str:
    return client.csrf("/login")


def test_pages_send_a_caller_who_is_not_signed_in_to_the_sign_in_page(web: str) -> None:
    answer = WebClient(web).get("/products/sales/customers?x=1")
    assert answer.status == 303
    assert answer.location == "/login?next=%2Fproducts%2Fsales%2Fcustomers%3Fx%3D1"


def test_a_wrong_password_is_refused_with_one_message_and_audited_as_a_login_event(
    web: str, gateway: GatewayProcess
) -> None:
    client = WebClient(web)
    answer = client.sign_in(Credentials(ALICE.user, "not her password"))
    assert answer.status == 401
    assert "Invalid user name or password." in answer.text
    assert client.get("/").status == 303  # still not signed in
    with connect(gateway.uri, ROOT) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT outcome, detail FROM system.events WHERE kind = 'login' AND \"user\" = 'alice'")
        events = cursor.fetchall()
    assert ("failed", "wrong password") in events


def test_failed_sign_ins_lock_the_user_for_flight_sql_too(web: str, gateway: GatewayProcess) -> None:
    client = WebClient(web)
    for _ in range(5):
        assert client.sign_in(Credentials("mallory", "guess")).status == 401
    locked = client.sign_in(Credentials("mallory", "guess"))
    assert locked.status == 401 and "Too many failed log-ins for this user: try again in" in locked.text
    with (  # the same lock holds on Flight SQL
        pytest.raises(flightsql.Error, match="too many failed log-ins"),
        connect(gateway.uri, Credentials("mallory", "guess")) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT 1")


def test_a_post_without_this_sessions_csrf_token_is_refused(web: str) -> None:
    client = WebClient(web)
    client.get("/login")
    assert client.post("/login", {"user": ROOT.user, "password": ROOT.password}).status == 403
    other = WebClient(web)
    foreign = other.csrf()
    assert client.post("/login", {"csrf": foreign, "user": ROOT.user, "password": ROOT.password}).status == 403
    assert client.get("/").status == 303
    root = signed_in(web, ROOT)
    assert root.post("/logout", {}).status == 403
    assert root.get("/").status == 200  # still signed in


def test_sign_out_ends_the_session_in_the_gateway_even_for_a_copied_cookie(web: str) -> None:
    client = signed_in(web, ALICE)
    copy = WebClient(web)
    for cookie in client.cookies:
        copy.cookies.set_cookie(cookie)
    assert copy.get("/").status == 200
    answer = client.post("/logout", {"csrf": client.csrf("/")})
    assert (answer.status, answer.location) == (303, "/login")
    assert copy.get("/").status == 303  # the copied cookie names a session the gateway forgot


def test_a_form_that_is_not_url_encoded_or_too_large_is_refused(web: str) -> None:
    client = WebClient(web)
    csrf = client.csrf()
    fields = {"csrf": csrf, "user": ROOT.user, "password": ROOT.password}
    as_json = urllib.request.Request(
        web + "/login", data=json.dumps(fields).encode(), headers={"content-type": "application/json"}
    )
    assert client.send(as_json).status == 403
    assert client.post("/login", {**fields, "padding": "x" * 20_000}).status == 403
    assert client.post("/login", fields).status == 303  # the same form, small and URL-encoded


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_sign_in_goes_only_to_a_page_of_this_site(web: str, target: str) -> None:
    answer = WebClient(web).sign_in(ROOT, next_page=target)
    assert (answer.status, answer.location) == (303, "/")


def test_a_product_the_user_may_not_read_answers_the_same_404_as_one_that_does_not_exist(web: str) -> None:
    alice = signed_in(web, ALICE)
    hidden, missing = alice.get("/products/hr/salaries"), alice.get("/products/hr/nothing_here")
    assert hidden.status == missing.status == 404
    assert hidden.text == missing.text
    assert alice.get("/products/HR/../x").status == 404
    assert "salaries" not in alice.get("/search?q=salar").text
    assert "salaries" not in alice.get("/domains/hr").text
    assert "salaries" not in alice.get("/search").text
    root = signed_in(web, ROOT)
    assert root.get("/products/hr/salaries").status == 200
    assert "hr.salaries" in root.get("/search?q=salar").text


def test_admin_pages_are_a_404_to_a_user_without_the_admin_role(web: str) -> None:
    alice, root = signed_in(web, ALICE), signed_in(web, ROOT)
    alice.get("/products/sales/customers")
    for path in ("/admin/queries", "/admin/health"):
        assert alice.get(path).status == 404
        assert root.get(path).status == 200
    log = root.get("/admin/queries?user=alice&product=sales.customers")
    assert "sales.customers" in log.text and "<td>alice</td>" in log.text
    assert "<td>root</td>" not in log.text  # the filter holds
    assert "FROM system.products" not in root.get("/admin/queries").text  # the pages' own queries: on request
    assert "FROM system.products" in root.get("/admin/queries?system=1").text


def test_the_sample_applies_the_users_masks_and_row_filters(web: str) -> None:
    alice = signed_in(web, ALICE).get("/products/sales/customers").text
    assert "masked (hash)" in alice
    assert "anna@example.de" not in alice and "Anna Schmidt" in alice
    assert "Jean Dupont" not in alice  # a French customer: the row filter keeps alice to DE
    assert "A row filter applies to you" in alice
    root = signed_in(web, ROOT).get("/products/sales/customers").text
    assert "anna@example.de" in root and "Jean Dupont" in root and "masked (" not in root


def test_a_sample_is_shown_only_for_a_product_that_opts_in(web: str) -> None:
    page = signed_in(web, ROOT).get("/products/sales/orders").text
    assert "This product shows no sample" in page and 'id="sample"' not in page


def test_the_product_page_shows_the_contracts_drift_and_each_checks_latest_result(web: str) -> None:
    alice = signed_in(web, ALICE)
    orders = alice.get("/products/sales/orders").text
    assert "state-flagged" in orders and "column &#39;currency&#39; is missing (declared string)" in orders
    customers = alice.get("/products/sales/customers").text
    assert "the source matches the contract" in customers
    assert customers.count('class="mark-pass"') >= 2 and customers.count('class="mark-fail"') >= 1
    assert "at_most_two" in customers and "Version</dt><dd>1.2.0" in customers


def test_user_input_is_escaped(web: str) -> None:
    page = signed_in(web, ALICE).get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_a_busy_http_port_is_a_clear_error(web: str, gateway: GatewayProcess) -> None:
    port = str(urlparse(web).port)
    assert gateway.config is not None
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(gateway.config), "--port", "0", "--http-port", port],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"error: HTTP port {port} on 127.0.0.1 is already in use: choose another with --http-port" in done.stderr
    assert "Traceback" not in done.stderr
