"""``/metrics``: scraped and parsed after a known sequence of queries through the ADBC driver.

The gateway is ``meshgate serve`` in a child process with the HTTP listener and a metrics
token; every number is checked exactly.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from adbc_driver_manager import Error as AdbcError
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import ConfigError
from gateway.telemetry.setup import Telemetry, TelemetrySettings
from tests.support.gateway import Credentials, GatewayProcess, query
from tests.telemetry.support import ALICE, ROOT, mesh_yaml, serve_error, wait_for, write_mesh

TOKEN = "metrics-token-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("metrics-mesh")
    config = write_mesh(folder)
    (folder / "token").write_text(TOKEN + "\n")
    process = GatewayProcess(
        config,
        extra=("--http-port", "0", "--metrics-token-file", str(folder / "token"), "--watch-interval", "0.2"),
        credentials=ROOT,
    )
    try:
        yield process
    finally:
        process.stop()


def scrape(url: str, token: str | None = TOKEN) -> Samples:
    request = urllib.request.Request(f"{url}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_counters_after_a_known_sequence_of_queries(gateway: GatewayProcess) -> None:
    assert gateway.http_url is not None
    uri = gateway.uri
    before = scrape(gateway.http_url)
    assert value(before, "meshgate_queries_total", outcome="ok") == 0
    assert value(before, "meshgate_source_up", domain="shop", source="sqlite") == 1
    assert value(before, "meshgate_source_up", domain="ref", source="csv") == 1

    assert query(uri, "SELECT * FROM ref.kinds", ALICE).num_rows == 2
    assert query(uri, "SELECT id, name FROM shop.items WHERE id <= 3", ROOT).num_rows == 3
    with pytest.raises(AdbcError, match="nope"):
        query(uri, "SELECT nope FROM shop.items", ROOT)
    with pytest.raises(AdbcError, match=r"(?i)denied"):
        query(uri, "SELECT * FROM shop.items", ALICE)
    with pytest.raises(AdbcError, match="invalid user name or password"):
        query(uri, "SELECT 1", Credentials("alice", "Not-Alices-Password-42"))

    after = wait_for(
        lambda: scrape(gateway.http_url or ""),
        lambda s: value(s, "meshgate_queries_total", outcome="ok") == 2,
        "both successful queries recorded",
    )
    assert value(after, "meshgate_queries_total", outcome="error") == 1
    assert value(after, "meshgate_queries_total", outcome="denied") == 1
    assert value(after, "meshgate_queries_total", outcome="cancelled") == 0
    assert value(after, "meshgate_query_duration_seconds_count", outcome="ok") == 2
    assert value(after, "meshgate_query_duration_seconds_count", outcome="error") == 1
    assert value(after, "meshgate_query_duration_seconds_bucket", outcome="ok", le="+Inf") == 2
    assert value(after, "meshgate_result_rows_total") == 5
    assert value(after, "meshgate_result_bytes_total") > 0
    assert value(after, "meshgate_domain_queries_total", domain="ref", outcome="ok") == 1
    assert value(after, "meshgate_domain_queries_total", domain="shop", outcome="ok") == 1
    # the whole query went to SQLite: one source query, its three rows
    assert value(after, "meshgate_source_queries_total", domain="shop", source="sqlite") == 1
    assert value(after, "meshgate_source_rows_total", domain="shop", source="sqlite") == 3
    assert value(after, "meshgate_source_bytes_total", domain="shop", source="sqlite") > 0
    assert value(after, "meshgate_source_query_duration_seconds_count", domain="shop", source="sqlite") == 1
    assert value(after, "meshgate_source_errors_total", domain="shop", source="sqlite") == 0
    # four clients logged in (the last with a wrong password)
    assert value(after, "meshgate_logins_total", outcome="ok") == 4
    assert value(after, "meshgate_logins_total", outcome="failed") == 1
    assert value(after, "meshgate_logins_total", outcome="locked") == 0
    assert value(after, "meshgate_active_queries") == 0
    assert value(after, "meshgate_plannings_total") >= 2
    lookups = value(after, "meshgate_plan_cache_hits_total") + value(after, "meshgate_plan_cache_misses_total")
    assert lookups >= 2
    # nothing unbounded in a label: no SQL, no user, no product name
    labels = {label for (_, pairs) in after for label in pairs}
    assert {name for name, _ in labels} <= {"outcome", "domain", "source", "kind", "le"}
    assert not any(v in {"root", "alice", "items", "kinds"} or "SELECT" in v for _, v in labels)


def test_the_same_statement_again_is_a_plan_cache_hit(gateway: GatewayProcess) -> None:
    url = gateway.http_url or ""
    sql = "SELECT name FROM shop.items WHERE id = 4"
    query(gateway.uri, sql, ROOT)
    before = wait_for(lambda: scrape(url), lambda s: value(s, "meshgate_active_queries") == 0, "query done")
    query(gateway.uri, sql, ROOT)
    after = wait_for(
        lambda: scrape(url),
        lambda s: (
            value(s, "meshgate_queries_total", outcome="ok")
            == value(before, "meshgate_queries_total", outcome="ok") + 1
        ),
        "the second run recorded",
    )
    hits = value(after, "meshgate_plan_cache_hits_total") - value(before, "meshgate_plan_cache_hits_total")
    misses = value(after, "meshgate_plan_cache_misses_total") - value(before, "meshgate_plan_cache_misses_total")
    assert (hits, misses) == (1, 0)
    assert value(after, "meshgate_plannings_total") == value(before, "meshgate_plannings_total")


def test_reloads_by_outcome(gateway: GatewayProcess) -> None:
    url = gateway.http_url or ""
    config = gateway.config
    assert config is not None
    config.write_text(mesh_yaml("  - name: more\n    connector: {type: csv, path: kinds.csv}\n"))
    applied = wait_for(
        lambda: scrape(url),
        lambda s: value(s, "meshgate_reloads_total", kind="config_reload", outcome="applied") == 1,
        "the changed config applied",
    )
    assert value(applied, "meshgate_source_up", domain="more", source="csv") == 1
    config.write_text(mesh_yaml("  - name: more\n    connector: {type: nosuch, path: kinds.csv}\n"))
    failed = wait_for(
        lambda: scrape(url),
        lambda s: value(s, "meshgate_reloads_total", kind="config_reload", outcome="failed") == 1,
        "the broken config rejected",
    )
    assert value(failed, "meshgate_reloads_total", kind="config_reload", outcome="applied") == 1
    assert value(failed, "meshgate_reloads_total", kind="domain_apply", outcome="applied") == 0


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", TOKEN + "x", ""])
def test_metrics_need_the_token(gateway: GatewayProcess, token: str | None) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(gateway.http_url or "", token)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"bearer token" in refused.value.read()


def test_without_a_token_there_are_no_metrics(tmp_path: Path) -> None:
    process = GatewayProcess(write_mesh(tmp_path), extra=("--http-port", "0"), credentials=ROOT)
    try:
        with pytest.raises(urllib.error.HTTPError) as off:
            scrape(process.http_url or "")
        assert off.value.code == 404 and b"--metrics-token-file" in off.value.read()
    finally:
        process.stop()


def test_bad_metrics_flags_are_named(tmp_path: Path) -> None:
    config = write_mesh(tmp_path)
    for name, text in [("short", "abc\n"), ("empty", "\n"), ("good", TOKEN)]:
        (tmp_path / name).write_text(text)
    assert "give --http-port too" in serve_error(
        "--config", str(config), "--metrics-token-file", str(tmp_path / "good")
    )
    engine = Engine.from_config(load_config(config))
    try:
        for name, message in [
            ("short", "at least 16 are needed"),
            ("empty", "the file is empty"),
            ("missing", "cannot be read"),
        ]:
            with pytest.raises(ConfigError, match=message):
                Telemetry.start(engine, TelemetrySettings(metrics_token_file=tmp_path / name))
    finally:
        engine.close()


def test_openmetrics_when_the_scraper_asks_for_it(gateway: GatewayProcess) -> None:
    request = urllib.request.Request(f"{gateway.http_url}/metrics")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Accept", "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        text = answer.read().decode()
    assert text.endswith("# EOF\n") and "meshgate_queries_total{outcome=" in text


def test_a_failing_source_and_an_offline_domain(tmp_path: Path) -> None:
    config = write_mesh(tmp_path)
    offline = "  - name: down\n    connector: {type: postgres, uri: 'postgresql://127.0.0.1:1/x?connect_timeout=1'}\n"
    config.write_text(mesh_yaml(offline))
    (tmp_path / "token").write_text(TOKEN)
    process = GatewayProcess(
        config, extra=("--http-port", "0", "--metrics-token-file", str(tmp_path / "token")), credentials=ROOT
    )
    try:
        url = process.http_url or ""
        samples = scrape(url)
        assert value(samples, "meshgate_source_up", domain="down", source="postgres") == 0
        assert value(samples, "meshgate_source_up", domain="shop", source="sqlite") == 1
        (tmp_path / "shop.db").write_bytes(b"not a database, " * 512)  # the source breaks under the gateway
        with pytest.raises(AdbcError):
            query(process.uri, "SELECT id, name FROM shop.items WHERE id = 1", ROOT)
        samples = wait_for(
            lambda: scrape(url),
            lambda s: value(s, "meshgate_queries_total", outcome="error") == 1,
            "the failed query recorded",
        )
        assert value(samples, "meshgate_source_errors_total", domain="shop", source="sqlite") == 1
        assert value(samples, "meshgate_source_queries_total", domain="shop", source="sqlite") == 1
        assert value(samples, "meshgate_domain_queries_total", domain="shop", outcome="error") == 1
    finally:
        process.stop()
