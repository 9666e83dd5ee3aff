"""gateway/auth.py on its own: password hashes, log-in, and what makes a token invalid."""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings

import argon2
import jwt
import pytest

from gateway.auth import (
    EXPIRED_TOKEN,
    INVALID_CREDENTIALS,
    INVALID_TOKEN,
    Authenticator,
    Identity,
    User,
    check_password_hash,
    hash_password,
    parse_basic,
)
from gateway.errors import AuthenticationError

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
ALICE = User("alice", hash_password("wonderland"), ("analysts", "sales"), {"region": "eu"})
BOB = User("bob", hash_password("builder"))


@pytest.fixture(scope="module")
def authenticator() -> Authenticator:
    return Authenticator([ALICE, BOB], key=KEY, token_ttl_seconds=600)


def test_hashes_are_salted_argon2id_and_verify() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second  # a fresh salt each time
    parameters = argon2.extract_parameters(first)
    assert parameters.type is argon2.Type.ID and parameters.memory_cost >= 65536 and parameters.salt_len >= 16
    assert "same" not in first
    assert check_password_hash(first) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("wonderland", "not an argon2id hash"),
        ("$2b$12$abcdefghijklmnopqrstuuK4n7mQJ8cW1Qv0rVgJmZ5nE9b2yq6Ha", "not an argon2id hash"),
        (argon2.PasswordHasher(type=argon2.Type.I).hash("x"), "argon2i hash; use argon2id"),
    ],
    ids=["text", "bcrypt", "argon2i"],  # fixed ids: the argon2i hash is salted afresh in each xdist worker
)
def test_anything_but_an_argon2id_hash_is_refused(value: str, problem: str) -> None:
    assert problem in (check_password_hash(value) or "")


def test_login_answers_a_token_with_the_users_identity(authenticator: Authenticator) -> None:
    token, identity = authenticator.login("alice", "wonderland")
    assert identity == Identity("alice", ("analysts", "sales"), {"region": "eu"})
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["iss"] == "meshgate"
    assert claims["groups"] == ["analysts", "sales"] and claims["attributes"] == {"region": "eu"}
    assert claims["exp"] - claims["iat"] == 600
    assert authenticator.verify(token) == identity
    assert identity.caller_attributes() == {"region": "eu", "groups": "analysts,sales"}


def test_wrong_password_and_unknown_user_get_the_same_answer_and_are_logged(
    authenticator: Authenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.auth")
    with pytest.raises(AuthenticationError) as wrong:
        authenticator.login("alice", "Wonderland")
    with pytest.raises(AuthenticationError) as unknown:
        authenticator.login("mallory", "wonderland")
    assert str(wrong.value) == str(unknown.value) == INVALID_CREDENTIALS
    assert "log-in refused for user 'alice': wrong password" in caplog.text
    assert "log-in refused for user 'mallory': unknown user" in caplog.text


def test_an_unknown_user_costs_a_hash_too(authenticator: Authenticator) -> None:
    def seconds(user: str) -> float:
        started = time.perf_counter()
        with pytest.raises(AuthenticationError):
            authenticator.login(user, "nope")
        return time.perf_counter() - started

    known, unknown = min(seconds("alice") for _ in range(3)), min(seconds("mallory") for _ in range(3))
    assert unknown > known / 3, (known, unknown)


def test_an_expired_token_is_refused(authenticator: Authenticator, caplog: pytest.LogCaptureFixture) -> None:
    issued_long_ago = Authenticator([ALICE], key=KEY, token_ttl_seconds=60, clock=lambda: time.time() - 61)
    token = issued_long_ago.issue(Identity("alice"))
    with pytest.raises(AuthenticationError, match="expired") as refused:
        authenticator.verify(token)
    assert str(refused.value) == EXPIRED_TOKEN
    assert "token refused: expired (user 'alice')" in caplog.text


def test_a_token_signed_with_another_key_is_refused(
    authenticator: Authenticator, caplog: pytest.LogCaptureFixture
) -> None:
    forged = Authenticator([ALICE], key=OTHER_KEY).issue(Identity("alice"))
    with pytest.raises(AuthenticationError) as refused:
        authenticator.verify(forged)
    assert str(refused.value) == INVALID_TOKEN
    assert "Signature verification failed" in caplog.text


def test_a_token_with_altered_claims_is_refused(authenticator: Authenticator) -> None:
    header, payload, signature = authenticator.issue(Identity("bob")).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"], claims["groups"] = "alice", ["admin"]
    altered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthenticationError, match="invalid session token"):
        authenticator.verify(f"{header}.{altered}.{signature}")


def test_unsigned_and_other_algorithm_tokens_are_refused(authenticator: Authenticator) -> None:
    now = int(time.time())
    claims = {"iss": "meshgate", "sub": "alice", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with warnings.catch_warnings():  # the right key, a switched algorithm: PyJWT finds the key short for HS512
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        other_algorithm = jwt.encode(claims, KEY, algorithm="HS512")
    for token in (unsigned, other_algorithm, "not a token", ""):
        with pytest.raises(AuthenticationError, match="invalid session token"):
            authenticator.verify(token)


def test_a_token_needs_expiry_and_issuer(authenticator: Authenticator) -> None:
    now = int(time.time())
    for claims in (
        {"iss": "meshgate", "sub": "alice", "iat": now},  # never expires
        {"sub": "alice", "iat": now, "exp": now + 60},  # no issuer
        {"iss": "someone-else", "sub": "alice", "iat": now, "exp": now + 60},
    ):
        with pytest.raises(AuthenticationError, match="invalid session token"):
            authenticator.verify(jwt.encode(claims, KEY, algorithm="HS256"))


def test_the_token_of_a_user_no_longer_configured_is_refused() -> None:
    token = Authenticator([ALICE, BOB], key=KEY).issue(Identity("bob"))
    assert Authenticator([ALICE, BOB], key=KEY).verify(token).user == "bob"  # a restart with the same key
    with pytest.raises(AuthenticationError, match="invalid session token"):
        Authenticator([ALICE], key=KEY).verify(token)


def test_a_generated_key_is_random_so_tokens_end_with_the_process() -> None:
    token = Authenticator([ALICE]).issue(Identity("alice"))
    with pytest.raises(AuthenticationError):
        Authenticator([ALICE]).verify(token)


def test_keys_shorter_than_32_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Authenticator([ALICE], key=b"short")


def test_basic_credentials() -> None:
    encoded = base64.b64encode(b"alice:pa:ss word").decode()
    assert parse_basic(encoded) == ("alice", "pa:ss word")
    assert parse_basic(encoded.rstrip("=")) == ("alice", "pa:ss word")  # Go clients send no padding
    for bad in ("!!!", base64.b64encode(b"no colon").decode(), base64.b64encode(b"\xff:x").decode()):
        with pytest.raises(AuthenticationError, match="malformed basic credentials"):
            parse_basic(bad)


def test_a_crowd_of_log_ins_runs_few_password_checks_at_once(
    authenticator: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import gateway.auth as auth

    running = peak = 0
    lock = threading.Lock()
    real = auth._hasher

    class Counting:
        """The real hasher, with the checks running at once counted."""

        def verify(self, hash_: str, password: str) -> bool:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                return bool(real.verify(hash_, password))
            finally:
                with lock:
                    running -= 1

    monkeypatch.setattr(auth, "_hasher", Counting())
    identities: list[str] = []

    def log_in() -> None:
        identities.append(authenticator.login("alice", "wonderland")[1].user)

    threads = [threading.Thread(target=log_in) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert identities == ["alice"] * 16
    assert 1 <= peak <= auth.CONCURRENT_PASSWORD_CHECKS


def test_repeated_failed_log_ins_lock_the_user_for_a_while(caplog: pytest.LogCaptureFixture) -> None:
    from gateway.auth import FAILED_LOG_IN_WINDOW_SECONDS, FAILED_LOG_INS_BEFORE_LOCK

    now = [1_000_000.0]
    authenticator = Authenticator([ALICE, BOB], key=KEY, clock=lambda: now[0])
    for _ in range(FAILED_LOG_INS_BEFORE_LOCK):
        with pytest.raises(AuthenticationError, match="invalid user name or password"):
            authenticator.login("alice", "guess")
        now[0] += 1
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(AuthenticationError, match=r"too many failed log-ins.*try again in \d+ s"),
    ):
        authenticator.login("alice", "wonderland")  # even the right password waits
    assert "locked" in caplog.text
    assert authenticator.login("bob", "builder")[1].user == "bob", "other users are not affected"
    now[0] += FAILED_LOG_IN_WINDOW_SECONDS
    assert authenticator.login("alice", "wonderland")[1].user == "alice"


def test_a_verified_token_is_remembered_only_for_configured_users(monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = User("alice", hash_password("a-long-password-1")), User("bob", hash_password("a-long-password-2"))
    authenticator = Authenticator([alice, bob])
    token = authenticator.issue(Identity("alice", ("analysts",), {"region": "eu"}))
    first = authenticator.verify(token)
    checks: list[str] = []
    original = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: checks.append("decode") or original(*a, **k))
    assert authenticator.verify(token) == first and checks == []  # remembered: no second signature check
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(AuthenticationError):
        authenticator.verify(forged)  # another string: checked, and refused
    assert checks  # a string not verified before is checked
    authenticator._users.pop("alice")
    with pytest.raises(AuthenticationError):
        authenticator.verify(token)  # no longer configured: refused, remembered or not
