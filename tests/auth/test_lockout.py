"""The log-in lockout under concurrency: a check counts as a failure from the moment it starts.

Real threads, the real argon2id hasher (wrapped to count its checks) and a fake clock for the
one-minute window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import argon2
import pytest

import gateway.auth as auth
from gateway.audit import AuditLog
from gateway.auth import (
    FAILED_LOG_IN_WINDOW_SECONDS,
    FAILED_LOG_INS_BEFORE_LOCK,
    FAILED_LOG_INS_PER_ADDRESS,
    INVALID_CREDENTIALS,
    Authenticator,
    User,
    client_address,
    hash_password,
)
from gateway.errors import AuthenticationError

KEY = b"k" * 32
ALICE = User("alice", hash_password("wonderland"))
BOB = User("bob", hash_password("builder"))
LOCKED_USER = "[Meshgate] too many failed log-ins for this user: try again in"
LOCKED_ADDRESS = "[Meshgate] too many failed log-ins for this address: try again in"


class CountingHasher:
    """The real hasher; counts the password checks and can hold them until released."""

    def __init__(self) -> None:
        self.real = argon2.PasswordHasher()
        self.checks = 0
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.go.set()

    def verify(self, hash_: str, password: str) -> bool:
        with self.lock:
            self.checks += 1
        self.go.wait()
        return bool(self.real.verify(hash_, password))

    def hash(self, password: str) -> str:
        return str(self.real.hash(password))


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    counting = CountingHasher()
    monkeypatch.setattr(auth, "_hasher", counting)
    yield counting
    counting.go.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def at_once(attempts: list[Callable[[], object]]) -> list[str]:
    """Run every attempt on its own thread, released together; what each ended with."""
    results: list[str] = [""] * len(attempts)
    start = threading.Barrier(len(attempts))

    def run(i: int) -> None:
        start.wait()
        try:
            attempts[i]()
            results[i] = "ok"
        except AuthenticationError as error:
            results[i] = str(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(attempts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_24_wrong_passwords_at_once_cost_only_the_lock_limit_of_checks(hasher: CountingHasher) -> None:
    clock = Clock()
    authenticator = Authenticator([ALICE, BOB], key=KEY, clock=clock)
    results = at_once([lambda: authenticator.login("alice", "guess") for _ in range(24)])
    assert hasher.checks == FAILED_LOG_INS_BEFORE_LOCK
    assert results.count(INVALID_CREDENTIALS) == FAILED_LOG_INS_BEFORE_LOCK
    locked = [r for r in results if r.startswith(LOCKED_USER)]
    assert len(locked) == 24 - FAILED_LOG_INS_BEFORE_LOCK
    assert all(r.endswith(f"{int(FAILED_LOG_IN_WINDOW_SECONDS) + 1} s") for r in locked)  # the clock stood still
    with pytest.raises(AuthenticationError, match="too many failed log-ins for this user"):
        authenticator.login("alice", "wonderland")  # the right password waits too, unchecked
    assert hasher.checks == FAILED_LOG_INS_BEFORE_LOCK
    assert authenticator.login("bob", "builder")[1].user == "bob", "other users are not affected"
    clock.now += FAILED_LOG_IN_WINDOW_SECONDS
    assert authenticator.login("alice", "wonderland")[1].user == "alice"


def test_a_crowd_of_right_passwords_all_get_in_though_checks_in_flight_count(hasher: CountingHasher) -> None:
    authenticator = Authenticator([ALICE], key=KEY, clock=Clock())
    results = at_once(
        [lambda: authenticator.login("alice", "wonderland") for _ in range(3 * FAILED_LOG_INS_BEFORE_LOCK)]
    )
    assert results == ["ok"] * (3 * FAILED_LOG_INS_BEFORE_LOCK)
    assert hasher.checks == 3 * FAILED_LOG_INS_BEFORE_LOCK
    # a success releases its reservation and leaves no failure behind
    for _ in range(FAILED_LOG_INS_BEFORE_LOCK - 1):
        with pytest.raises(AuthenticationError, match="invalid user name or password"):
            authenticator.login("alice", "guess")
    assert authenticator.login("alice", "wonderland")[1].user == "alice"


def test_while_checks_are_in_flight_at_the_limit_a_log_in_waits_then_is_refused(
    hasher: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "LOG_IN_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(auth, "_password_checks", threading.BoundedSemaphore(FAILED_LOG_INS_BEFORE_LOCK))
    authenticator = Authenticator([ALICE], key=KEY, clock=Clock())
    hasher.go.clear()  # the checks that start are held in flight
    outcomes: list[str] = []

    def guess() -> None:
        try:
            authenticator.login("alice", "guess")
        except AuthenticationError as error:
            outcomes.append(str(error))

    held = [threading.Thread(target=guess) for _ in range(FAILED_LOG_INS_BEFORE_LOCK)]
    for thread in held:
        thread.start()
    deadline = time.monotonic() + 30
    while hasher.checks < FAILED_LOG_INS_BEFORE_LOCK and time.monotonic() < deadline:  # all five reserved
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="too many failed log-ins for this user"):
        authenticator.login("alice", "wonderland")  # no failure yet, but five checks that may still fail
    assert time.monotonic() - started >= 0.4, "it waited for the checks in flight before refusing"
    hasher.go.set()
    for thread in held:
        thread.join(timeout=60)
    assert outcomes == [INVALID_CREDENTIALS] * FAILED_LOG_INS_BEFORE_LOCK
    assert hasher.checks == FAILED_LOG_INS_BEFORE_LOCK
    with pytest.raises(AuthenticationError, match="too many failed log-ins for this user"):
        authenticator.login("alice", "wonderland")
    assert hasher.checks == FAILED_LOG_INS_BEFORE_LOCK


def test_a_log_in_waiting_on_checks_in_flight_goes_ahead_when_they_succeed(
    hasher: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_password_checks", threading.BoundedSemaphore(FAILED_LOG_INS_BEFORE_LOCK))
    authenticator = Authenticator([ALICE], key=KEY, clock=Clock())
    hasher.go.clear()
    results = ["" for _ in range(FAILED_LOG_INS_BEFORE_LOCK + 1)]

    def log_in(i: int) -> None:
        results[i] = authenticator.login("alice", "wonderland")[1].user

    threads = [threading.Thread(target=log_in, args=(i,)) for i in range(FAILED_LOG_INS_BEFORE_LOCK)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while hasher.checks < FAILED_LOG_INS_BEFORE_LOCK and time.monotonic() < deadline:
        time.sleep(0.01)
    last = threading.Thread(target=log_in, args=(FAILED_LOG_INS_BEFORE_LOCK,))
    last.start()
    time.sleep(0.2)
    assert hasher.checks == FAILED_LOG_INS_BEFORE_LOCK, "the sixth waits instead of checking"
    hasher.go.set()
    for thread in [*threads, last]:
        thread.join(timeout=60)
    assert results == ["alice"] * (FAILED_LOG_INS_BEFORE_LOCK + 1)


def test_one_address_cannot_spray_many_user_names(hasher: CountingHasher) -> None:
    clock = Clock()
    authenticator = Authenticator([ALICE, BOB], key=KEY, clock=clock)
    for i in range(FAILED_LOG_INS_PER_ADDRESS):  # one failure per user name: no user is locked
        with pytest.raises(AuthenticationError, match="invalid user name or password"):
            authenticator.login(f"user{i}", "password1", peer=f"ipv4:10.0.0.7:{40000 + i}")
    assert hasher.checks == FAILED_LOG_INS_PER_ADDRESS
    with pytest.raises(AuthenticationError) as refused:
        authenticator.login("bob", "builder", peer="ipv4:10.0.0.7:50000")  # a new port, the same address
    assert str(refused.value).startswith(LOCKED_ADDRESS)
    assert hasher.checks == FAILED_LOG_INS_PER_ADDRESS, "refused without a check"
    assert authenticator.login("bob", "builder", peer="ipv4:10.0.0.8:50000")[1].user == "bob"
    assert authenticator.login("bob", "builder")[1].user == "bob"  # no address known: the user limit only
    clock.now += FAILED_LOG_IN_WINDOW_SECONDS
    assert authenticator.login("bob", "builder", peer="ipv4:10.0.0.7:50001")[1].user == "bob"


def test_an_address_spraying_at_once_gets_only_its_limit_of_checks(hasher: CountingHasher) -> None:
    authenticator = Authenticator([ALICE, BOB], key=KEY, clock=Clock())
    attempts = 2 * FAILED_LOG_INS_PER_ADDRESS
    results = at_once(
        [
            lambda i=i: authenticator.login(f"user{i}", "password1", peer=f"ipv6:[2001:db8::1]:{i + 1}")
            for i in range(attempts)
        ]
    )
    assert hasher.checks == FAILED_LOG_INS_PER_ADDRESS
    assert results.count(INVALID_CREDENTIALS) == FAILED_LOG_INS_PER_ADDRESS
    assert sum(r.startswith(LOCKED_ADDRESS) for r in results) == attempts - FAILED_LOG_INS_PER_ADDRESS


def test_client_address_drops_the_port() -> None:
    assert client_address("ipv4:10.0.0.7:53422") == "ipv4:10.0.0.7"
    assert client_address("ipv6:[::1]:37626") == "ipv6:[::1]"
    assert client_address("ipv6:[2001:db8::1]:1") == "ipv6:[2001:db8::1]"
    assert client_address("unix:/tmp/meshgate.sock") == "unix:/tmp/meshgate.sock"
    assert client_address("ipv4:10.0.0.7") == "ipv4:10.0.0.7"


def test_every_attempt_is_an_audit_event_without_the_password(tmp_path: Path, hasher: CountingHasher) -> None:
    clock = Clock()
    audit = AuditLog(tmp_path / "audit.jsonl")
    authenticator = Authenticator([ALICE], key=KEY, clock=clock, audit=audit)
    authenticator.login("alice", "wonderland", peer="ipv4:10.1.2.3:4000")
    for _ in range(FAILED_LOG_INS_BEFORE_LOCK):
        with pytest.raises(AuthenticationError):
            authenticator.login("alice", "Secret-Guess-1", peer="ipv4:10.1.2.3:4001")
    with pytest.raises(AuthenticationError):
        authenticator.login("mallory", "Secret-Guess-2", peer="ipv4:10.1.2.3:4002")
    with pytest.raises(AuthenticationError):
        authenticator.login("alice", "wonderland", peer="ipv4:10.1.2.3:4003")
    events = audit.events(everyone=True)
    assert [(e.kind, e.user, e.outcome) for e in events] == [
        ("login", "alice", "ok"),
        *[("login", "alice", "failed")] * FAILED_LOG_INS_BEFORE_LOCK,
        ("login", "mallory", "failed"),
        ("login", "alice", "locked"),
    ]
    assert events[1].detail == "wrong password" and events[-2].detail == "unknown user"
    assert events[-1].detail.startswith(LOCKED_USER)
    assert [e.peer for e in events][:2] == ["ipv4:10.1.2.3:4000", "ipv4:10.1.2.3:4001"]
    assert all(e.at.utcoffset() is not None and e.at.utcoffset().total_seconds() == 0 for e in events)
    assert [e.user for e in audit.events("alice")].count("alice") == len(events) - 1
    text = (tmp_path / "audit.jsonl").read_text()
    assert "wonderland" not in text and "Secret-Guess" not in text
