"""Who may use the gateway: users with password hashes, and signed, expiring session tokens.

The flow is the one Flight SQL clients (ADBC, JDBC, ODBC) already follow:

1. The client opens the Flight ``Handshake`` with ``authorization: Basic <user:password>``.
2. :meth:`Authenticator.login` checks the password against the user's hash and answers a
   token, which the server returns as ``authorization: Bearer <token>``.
3. The client sends that header on every later call; :meth:`Authenticator.verify` checks it
   and gives back the caller's :class:`Identity` (user, groups, attributes).

Choices, and why:

- **Password hashes are argon2id** (``argon2-cffi``, RFC 9106 "low memory" profile:
  64 MiB, 3 passes, 4 lanes, 16-byte random salt). Argon2id is the first choice of the
  OWASP password storage guidance; it is salted, slow and memory-hard, and its PHC string
  (``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``) records its own parameters, so they
  can be raised later without invalidating stored hashes. Plain-text passwords are never
  accepted in configuration (:func:`check_password_hash`). ``meshgate user hash`` makes
  the hash line (:func:`hash_password`). A log-in costs about 0.1 s of one core, which
  also slows down password guessing.
- **Tokens are JWTs** (``PyJWT``), HS256-signed with a key of at least 32 bytes from
  ``MESHGATE_TOKEN_KEY``, the config's ``token_key_file``, or generated at start (tokens
  then stop working when the gateway restarts; clients log in again). Only HS256 is
  accepted on the way in, so ``alg: none`` or a switched algorithm is refused. A token
  carries ``sub`` (the user), ``groups``, ``attributes``, ``iss``, ``iat``, ``exp`` and a
  random ``jti``; a token of a user no longer configured is refused.
- A wrong password and an unknown user get the same answer (and the same hashing work),
  so the answer does not reveal which user names exist. Every refusal is logged with its
  precise reason on the ``gateway.auth`` logger; the client gets a short message.
- **Failed log-ins lock, and the count cannot be raced.** :data:`FAILED_LOG_INS_BEFORE_LOCK`
  (5) failed log-ins for one user within :data:`FAILED_LOG_IN_WINDOW_SECONDS` (60 s) refuse
  that user's log-ins, without a password check, until the oldest of them is a minute old;
  :data:`FAILED_LOG_INS_PER_ADDRESS` (20) failed log-ins from one client address (any users)
  do the same for that address, so one address cannot try a password on many user names.
  A check counts as a pending failure from the moment it *starts*: a log-in whose user (or
  address) has recent failures plus checks in flight at the limit waits for one of those
  checks to end before it may start its own (and is refused once the failures reach the
  limit). So 24 wrong passwords sent at once for one user cost 5 argon2id checks, not 24,
  while a crowd of right ones all get in. The address limit applies when the caller passes
  the address (``login(..., peer=...)``); the Flight server cannot (see
  ``gateway/flightsql/middleware.py``).
- **Every log-in attempt is audited** when the Authenticator is given an
  :class:`~gateway.audit.AuditLog`: an event of kind ``login`` with outcome ``ok``,
  ``failed`` or ``locked``, the user name given, the client's address when known, and the
  reason. Never the password.

This module knows nothing about Flight: ``gateway/flightsql/middleware.py`` reads the
headers and turns :class:`~gateway.errors.AuthenticationError` into UNAUTHENTICATED.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import argon2
import jwt
from cachetools import LRUCache

from gateway.errors import AuthenticationError

if TYPE_CHECKING:
    from gateway.audit import AuditLog

log = logging.getLogger(__name__)

DEFAULT_TOKEN_TTL_SECONDS = 8 * 3600  # a working day: BI tools keep connections open
MIN_TOKEN_KEY_BYTES = 32  # HS256 keys shorter than the hash output are weak (RFC 7518 3.2)
TOKEN_ISSUER = "meshgate"
TOKEN_ALGORITHM = "HS256"

USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")
"""User names: letters, digits and ``_ . @ + -`` (never ``:``, which ends the user in Basic auth)."""

RESERVED_ATTRIBUTES = frozenset({"groups", "peer"})
"""Caller attributes the gateway sets itself (see :meth:`Identity.caller_attributes`)."""

MISSING_CREDENTIALS = "[Meshgate] authentication required: connect with a user name and password"
INVALID_CREDENTIALS = "[Meshgate] invalid user name or password"
INVALID_TOKEN = "[Meshgate] invalid session token: connect again with a user name and password"
EXPIRED_TOKEN = "[Meshgate] the session token has expired: connect again with a user name and password"

_hasher = argon2.PasswordHasher()  # argon2-cffi's defaults are RFC 9106's low-memory profile

FAILED_LOG_INS_BEFORE_LOCK = 5
FAILED_LOG_IN_WINDOW_SECONDS = 60.0
"""Five failed log-ins for a user within a minute lock that user's log-ins until the oldest is a minute old."""

FAILED_LOG_INS_PER_ADDRESS = 20
"""Twenty failed log-ins from one client address within the same window (any user names) lock
log-ins from that address the same way: one address cannot spray a password over many users."""

LOG_IN_WAIT_SECONDS = 30.0
"""How long a log-in waits for the checks in flight of its user or address (which may still
fail) before it is refused as if locked. Checks take about 0.1 s each; this bounds a queue."""

CONCURRENT_PASSWORD_CHECKS = 4
"""At most this many argon2id checks at once: each needs 64 MiB, and a crowd of log-ins (64
clients at once took the gateway to 3.5 GiB, benchmarks/latency.py) waits in line instead."""
_password_checks = threading.BoundedSemaphore(CONCURRENT_PASSWORD_CHECKS)


@dataclass(frozen=True)
class User:
    """A configured user: a name, an argon2id password hash, and what governance may use."""

    name: str
    password_hash: str
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    """An authenticated caller, as the token states it."""

    user: str
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)

    def caller_attributes(self) -> dict[str, str]:
        """The user's attributes plus ``groups`` (comma-separated), for ``CallerContext``."""
        return {**self.attributes, "groups": ",".join(self.groups)}


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` with a fresh random salt (a PHC string)."""
    if not password:
        raise ValueError("the password is empty")
    return _hasher.hash(password)


def check_password_hash(value: str) -> str | None:
    """Why ``value`` is not a usable password hash, or ``None`` when it is one."""
    try:
        parameters = argon2.extract_parameters(value)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return "is not an argon2id hash (make one with `meshgate user hash NAME`; plain-text passwords are refused)"
    if parameters.type is not argon2.Type.ID:
        return f"is an argon2{parameters.type.name.lower()} hash; use argon2id (`meshgate user hash NAME`)"
    return None


def parse_basic(value: str) -> tuple[str, str]:
    """``Basic dXNlcjpwYXNz`` (without the scheme: ``dXNlcjpwYXNz``) -> ``("user", "pass")``."""
    encoded = value.strip()
    encoded += "=" * (-len(encoded) % 4)  # Go clients (the ADBC driver) send it unpadded
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError("[Meshgate] malformed basic credentials") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise AuthenticationError("[Meshgate] malformed basic credentials")
    return user, password


class Authenticator:
    """Checks passwords and issues and verifies session tokens.

    Args:
        users: the configured users (names must be unique).
        key: the token signing key (at least 32 bytes); ``None`` generates one.
        token_ttl_seconds: how long a token is valid after log-in.
        clock: seconds since the epoch (tests pass a fake one).
        audit: where every log-in attempt is recorded as a ``login`` event (optional).
    """

    def __init__(
        self,
        users: Iterable[User],
        *,
        key: bytes | None = None,
        token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        audit: AuditLog | None = None,
    ) -> None:
        self._users = {user.name: user for user in users}
        if not self._users:
            raise ValueError("an Authenticator needs at least one user")
        if key is not None and len(key) < MIN_TOKEN_KEY_BYTES:
            raise ValueError(f"the token signing key must be at least {MIN_TOKEN_KEY_BYTES} bytes")
        self._key = key if key is not None else secrets.token_bytes(MIN_TOKEN_KEY_BYTES)
        self.key_generated = key is None
        if token_ttl_seconds <= 0:
            raise ValueError("token_ttl_seconds must be positive")
        self.token_ttl_seconds = token_ttl_seconds
        self._clock = clock
        # Tokens already verified, until they expire: every RPC carries one (a lookup through
        # the ADBC client is four RPCs), and checking its signature again cost 6% of a lookup.
        self._verified: LRUCache[str, tuple[float, Identity]] = LRUCache(VERIFIED_TOKENS)
        self._verified_lock = threading.Lock()
        # Verified against when the user is unknown, so that both cases cost the same.
        self._dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        self.audit = audit
        self._by_user = _Attempts(FAILED_LOG_INS_BEFORE_LOCK, FAILED_LOG_IN_WINDOW_SECONDS)
        self._by_address = _Attempts(FAILED_LOG_INS_PER_ADDRESS, FAILED_LOG_IN_WINDOW_SECONDS)
        self._attempts = threading.Condition()  # guards both; notified when a check ends

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._users)

    def login(self, user: str, password: str, peer: str | None = None) -> tuple[str, Identity]:
        """Check ``password``; answer a fresh token and the identity it stands for.

        ``peer`` is the client's address as gRPC gives it (``ipv4:10.0.0.7:53422``), when the
        caller knows it: it goes into the audit event and keys the per-address limit.

        Raises:
            AuthenticationError: unknown user or wrong password (one message for both), or
                too many failed log-ins for this user or from this address (no check made).
        """
        address = client_address(peer) if peer else None
        try:
            self._reserve(user, address)
        except AuthenticationError as locked:
            self._audit(user, "locked", str(locked), peer)
            raise
        known = self._users.get(user)
        failed = True  # until the check says otherwise
        try:
            with _password_checks:
                _hasher.verify(known.password_hash if known else self._dummy_hash, password)
        except argon2.exceptions.VerificationError:
            reason = "wrong password" if known else "unknown user"
            log.warning("log-in refused for user %r: %s", user, reason)
            self._audit(user, "failed", reason, peer)
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        except argon2.exceptions.InvalidHashError:  # config validation makes this unreachable
            failed = False  # the client is not to blame
            log.error("log-in refused for user %r: the configured password hash is invalid", user)
            self._audit(user, "failed", "the configured password hash is invalid", peer)
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        else:
            failed = known is None  # the dummy hash's password is random: never reached in practice
        finally:
            self._release(user, address, failed=failed)
        if known is None:
            self._audit(user, "failed", "unknown user", peer)
            raise AuthenticationError(INVALID_CREDENTIALS)
        identity = Identity(known.name, known.groups, dict(known.attributes))
        log.info("user %r logged in (token valid %d s)", user, self.token_ttl_seconds)
        self._audit(user, "ok", "logged in", peer)
        return self.issue(identity), identity

    def _reserve(self, user: str, address: str | None) -> None:
        """Count this log-in as a pending failure of ``user`` and ``address`` before its check.

        Refuses at once (without checking a password) while the recent failures reach a
        limit; while failures plus checks in flight reach it, waits for one of those checks
        to end first, since each may still fail. Guessing costs the guesser a wait instead
        of the gateway an argon2id check each, and concurrent guesses cannot slip past the
        count.
        """
        deadline = time.monotonic() + LOG_IN_WAIT_SECONDS
        with self._attempts:
            while True:
                now = self._clock()
                self._refuse_while_locked(user, address, now)
                user_room = self._by_user.has_room(user, now)
                if user_room and (address is None or self._by_address.has_room(address, now)):
                    self._by_user.reserve(user)
                    if address is not None:
                        self._by_address.reserve(address)
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "log-in refused for user %r: waited %.0f s for checks in flight", user, LOG_IN_WAIT_SECONDS
                    )
                    who = "this user" if not user_room else "this address"
                    raise AuthenticationError(_locked_message(who, int(FAILED_LOG_IN_WINDOW_SECONDS)))
                self._attempts.wait(remaining)

    def _refuse_while_locked(self, user: str, address: str | None, now: float) -> None:
        """Raise the lock message when ``user`` or ``address`` has too many recent failures."""
        wait = self._by_user.locked_for(user, now)
        if wait is not None:
            log.warning(
                "log-in refused for user %r: %d failed log-ins, locked for %d s", user, self._by_user.limit, wait
            )
            raise AuthenticationError(_locked_message("this user", wait))
        wait = self._by_address.locked_for(address, now) if address else None
        if wait is not None:
            log.warning(
                "log-in refused for user %r: %d failed log-ins from %s, locked for %d s",
                user,
                self._by_address.limit,
                address,
                wait,
            )
            raise AuthenticationError(_locked_message("this address", wait))

    def _release(self, user: str, address: str | None, *, failed: bool) -> None:
        """End a check reserved by :meth:`_reserve`: a failure is kept, a success leaves no trace."""
        with self._attempts:
            now = self._clock()
            self._by_user.release(user, now if failed else None)
            if address is not None:
                self._by_address.release(address, now if failed else None)
            self._attempts.notify_all()

    def _audit(self, user: str, outcome: str, detail: str, peer: str | None) -> None:
        if self.audit is not None:
            self.audit.event("login", user[:MAX_AUDITED_USER_NAME], outcome, detail, peer)

    def issue(self, identity: Identity) -> str:
        """A signed token for ``identity``, valid for ``token_ttl_seconds`` from now."""
        now = int(self._clock())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": identity.user,
            "iat": now,
            "exp": now + self.token_ttl_seconds,
            "jti": uuid.uuid4().hex,
            "groups": list(identity.groups),
            "attributes": dict(identity.attributes),
        }
        return jwt.encode(claims, self._key, algorithm=TOKEN_ALGORITHM)

    def verify(self, token: str) -> Identity:
        """The identity a token stands for.

        Raises:
            AuthenticationError: expired, forged (another key, altered, another
                algorithm), malformed, or for a user who is no longer configured.
        """
        with self._verified_lock:
            known = self._verified.get(token)
        if known is not None and time.time() < known[0] and known[1].user in self._users:
            return known[1]
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[TOKEN_ALGORITHM],
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            log.warning("token refused: expired (user %r)", _unverified_subject(token))
            raise AuthenticationError(EXPIRED_TOKEN) from None
        except jwt.PyJWTError as error:
            log.warning("token refused: %s (claims user %r)", error, _unverified_subject(token))
            raise AuthenticationError(INVALID_TOKEN) from None
        user = claims["sub"]
        groups, attributes = claims.get("groups", []), claims.get("attributes", {})
        if not (
            isinstance(user, str)
            and isinstance(groups, list)
            and all(isinstance(g, str) for g in groups)
            and isinstance(attributes, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
        ):
            log.warning("token refused: malformed claims (user %r)", user)
            raise AuthenticationError(INVALID_TOKEN)
        if user not in self._users:
            log.warning("token refused: user %r is no longer configured", user)
            raise AuthenticationError(INVALID_TOKEN)
        identity = Identity(user, tuple(groups), attributes)
        with self._verified_lock:
            self._verified[token] = (float(claims["exp"]), identity)
        return identity


VERIFIED_TOKENS = 4096
"""How many verified tokens an Authenticator remembers (each until it expires)."""

MAX_AUDITED_USER_NAME = 256
"""An unknown user name is audited as given, cut to this many characters."""


def client_address(peer: str) -> str:
    """The client's address without its port: ``ipv4:10.0.0.7:53422`` -> ``ipv4:10.0.0.7``.

    gRPC peers are ``ipv4:ADDR:PORT``, ``ipv6:[ADDR]:PORT`` or ``unix:PATH``; a client's
    port changes with each connection, so the per-address limit counts by address.
    """
    scheme, colon, rest = peer.partition(":")
    if colon and scheme in {"ipv4", "ipv6"}:
        host, colon, port = rest.rpartition(":")
        if colon and port.isdigit():
            return f"{scheme}:{host}"
    return peer


def _locked_message(who: str, wait: int) -> str:
    return f"[Meshgate] too many failed log-ins for {who}: try again in {wait} s"


class _Attempts:
    """Recent failed log-ins and checks in flight, per key (a user name or a client address).

    Not thread-safe on its own: the Authenticator holds its lock around every call.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}  # the newest `limit` failure times, oldest first
        self._in_flight: dict[str, int] = {}
        self._sweep_at = 1024

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._failures.get(key, ()) if now - t < self.window]

    def locked_for(self, key: str, now: float) -> int | None:
        """Seconds until ``key`` may try again, or ``None`` when it is not locked."""
        recent = self._recent(key, now)
        if len(recent) < self.limit:
            return None
        return int(self.window - (now - recent[-self.limit])) + 1

    def has_room(self, key: str, now: float) -> bool:
        """Whether one more check fits: recent failures plus checks in flight under the limit."""
        return len(self._recent(key, now)) + self._in_flight.get(key, 0) < self.limit

    def reserve(self, key: str) -> None:
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def release(self, key: str, failed_at: float | None) -> None:
        """End a reserved check; ``failed_at`` records it as a failure at that time."""
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
        if failed_at is not None:
            self._failures[key] = [*self._recent(key, failed_at), failed_at][-self.limit :]
            if len(self._failures) >= self._sweep_at:
                self._sweep(failed_at)

    def _sweep(self, now: float) -> None:
        """Forget keys without recent failures, so that sprayed user names do not pile up."""
        self._failures = {k: kept for k, times in self._failures.items() if (kept := self._recent(k, now))}
        self._sweep_at = max(1024, 2 * len(self._failures))


def _unverified_subject(token: str) -> str | None:
    """The ``sub`` a token claims, read without checking it: for log lines only."""
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return subject if isinstance(subject, str) else None
