"""Security events: the audit log's ``event`` API, its file, and ``system.events`` through a real client.

A gateway with users and an admin role runs in-process on a CSV mesh, its Authenticator
wired to the engine's audit log as ``meshgate serve`` wires it; clients are the ADBC Flight
SQL driver.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from adbc_driver_manager import Error as AdbcError

from gateway.audit import EVENT_OUTCOMES, EVENTS_SCHEMA, AuditLog, QueryRecord
from gateway.auth import Authenticator, User, hash_password
from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql.server import FlightSqlServer
from tests.support.gateway import Credentials, connect, serving

KEY = b"e" * 32
ROOT = Credentials("root", "root-secret-password")
ALICE = Credentials("alice", "alice-secret-password")
WRONG = "Not-Alices-Password-42"
UNKNOWN_PASSWORD = "Mallorys-Guess-77"


# -- the API -------------------------------------------------------------------------------


def test_events_and_queries_share_the_file_told_apart_by_record(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit" / "log.jsonl")
    audit.record(QueryRecord("q1", "alice", dt.datetime.now(dt.UTC), "SELECT 1"))
    audit.event("domain_apply", "bob", "applied", "sales.yaml: sales", peer="ipv4:10.0.0.1:5000")
    audit.event("login", "alice", "failed", "wrong password")
    lines = [json.loads(line) for line in (tmp_path / "audit" / "log.jsonl").read_text().splitlines()]
    assert [line["record"] for line in lines] == ["query", "event", "event"]
    assert lines[0]["sql"] == "SELECT 1"
    event = lines[1]
    assert set(event) == {"record", "event_id", "kind", "user", "at", "outcome", "detail", "peer"}
    assert (event["kind"], event["user"], event["outcome"], event["peer"]) == (
        "domain_apply",
        "bob",
        "applied",
        "ipv4:10.0.0.1:5000",
    )
    assert dt.datetime.fromisoformat(event["at"]).utcoffset() == dt.timedelta(0)
    assert lines[2]["peer"] is None and lines[1]["event_id"] != lines[2]["event_id"]
    assert [e.kind for e in audit.events("alice")] == ["login"]
    assert [e.kind for e in audit.events(None)] == [], "no user sees no one's events"
    assert len(audit.events(everyone=True)) == 2
    table = audit.events_table("bob")
    assert table.schema == EVENTS_SCHEMA and table.column("detail").to_pylist() == ["sales.yaml: sales"]


def test_the_documented_kinds_and_outcomes() -> None:
    assert EVENT_OUTCOMES == {
        "login": ("ok", "failed", "locked"),
        "domain_apply": ("applied", "refused", "failed"),
        "domain_remove": ("applied", "refused", "failed"),
        "config_reload": ("applied", "failed"),
        "contract_import": ("applied", "refused", "failed"),
    }


def test_an_unknown_kind_or_outcome_is_recorded_and_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog()
    with caplog.at_level(logging.ERROR, logger="gateway.audit"):
        audit.event("domain_aply", "bob", "applied", "typo in the kind")
        audit.event("login", "bob", "success", "typo in the outcome")
    assert [e.detail for e in audit.events("bob")] == ["typo in the kind", "typo in the outcome"]
    assert "'domain_aply'" in caplog.text and "'success'" in caplog.text


def test_events_from_many_threads_are_whole_lines(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "log.jsonl", event_capacity=100)
    threads = [
        threading.Thread(target=lambda i=i: [audit.event("login", f"u{i}", "ok", "x" * 500) for _ in range(50)])
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["record"] == "event" for line in lines)
    assert len(audit.events(everyone=True)) == 100, "the in-memory log is bounded"


def test_a_file_that_cannot_be_written_does_not_stop_the_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(tmp_path / "log.jsonl")
    (tmp_path / "log.jsonl").mkdir()  # appending to a directory fails
    with caplog.at_level(logging.ERROR, logger="gateway.audit"):
        audit.event("login", "alice", "ok", "logged in")
    assert len(audit.events("alice")) == 1 and "cannot append to the audit log" in caplog.text


# -- through a real server and client --------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("events-mesh")
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n")
    (folder / "mesh.yaml").write_text(
        "domains:\n  - name: ref\n    connector: {type: csv, path: kinds.csv}\n"
        "policies:\n  roles:\n    admin: [root]\n    reader: [alice]\n"
        '  grants:\n    - {role: admin, on: "*"}\n    - {role: reader, on: "ref.*"}\n'
    )
    log_file = folder / "audit" / "audit.jsonl"
    engine = Engine.from_config(load_config(folder / "mesh.yaml"), audit=AuditLog(log_file))
    users = [User(c.user, hash_password(c.password)) for c in (ROOT, ALICE)]
    authenticator = Authenticator(users, key=KEY, audit=engine.audit)  # as `meshgate serve` wires it
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0", authenticator=authenticator)
    try:
        with serving(server):
            yield f"grpc://127.0.0.1:{server.port}", log_file
    finally:
        engine.catalog.close()


def events(uri: str, credentials: Credentials) -> list[dict[str, object]]:
    with connect(uri, credentials) as connection, connection.cursor() as cursor:
        cursor.execute('SELECT kind, "user", outcome, detail, peer, at FROM system.events ORDER BY at')
        table: pa.Table = cursor.fetch_arrow_table()
    return table.to_pylist()


def test_a_failed_log_in_is_an_event_the_admin_sees_and_others_do_not(served: tuple[str, Path]) -> None:
    uri, log_file = served
    for credentials in (Credentials("alice", WRONG), Credentials("mallory", UNKNOWN_PASSWORD)):
        with pytest.raises(AdbcError, match="invalid user name or password"):
            events(uri, credentials)

    seen_by_root = events(uri, ROOT)
    failed = [(e["user"], e["detail"]) for e in seen_by_root if e["kind"] == "login" and e["outcome"] == "failed"]
    assert ("alice", "wrong password") in failed and ("mallory", "unknown user") in failed
    assert ("root", "ok") in {(e["user"], e["outcome"]) for e in seen_by_root}
    # pyarrow gives the handshake no call context, so log-ins over Flight have no address
    assert all(e["peer"] is None for e in seen_by_root if e["kind"] == "login")

    seen_by_alice = events(uri, ALICE)
    assert {e["user"] for e in seen_by_alice} == {"alice"}, "only her own events"
    assert {e["outcome"] for e in seen_by_alice} == {"failed", "ok"}

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    logins = [line for line in lines if line["record"] == "event" and line["kind"] == "login"]
    assert {"alice", "mallory", "root"} <= {line["user"] for line in logins if line["outcome"] in {"ok", "failed"}}
    assert any(line["record"] == "query" and "system.events" in line["sql"] for line in lines)
    text = log_file.read_text()
    for password in (WRONG, UNKNOWN_PASSWORD, ALICE.password, ROOT.password):
        assert password not in text


def test_serve_audits_log_ins_in_the_audit_log_file(tmp_path: Path) -> None:
    """``meshgate serve --audit-log`` gives the authenticator the engine's audit log."""
    from tests.support.gateway import GatewayProcess, auth_yaml, query

    (tmp_path / "ref.csv").write_text("code,label\na,alpha\n")
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: ref\n    connector: {type: csv, path: ref.csv}\n" + auth_yaml(ROOT)
    )
    target = tmp_path / "audit" / "audit.jsonl"
    process = GatewayProcess(tmp_path / "mesh.yaml", extra=("--audit-log", str(target)), credentials=ROOT)
    try:
        with pytest.raises(AdbcError, match="invalid user name or password"):
            query(process.uri, "SELECT 1", Credentials("root", WRONG))
        assert query(process.uri, "SELECT count(*) AS n FROM system.events", ROOT).column("n").to_pylist()[0] >= 2
    finally:
        process.stop()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    logins = {(line["user"], line["outcome"]) for line in lines if line["record"] == "event"}
    assert {("root", "failed"), ("root", "ok")} <= logins
    assert WRONG not in target.read_text() and ROOT.password not in target.read_text()
