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

import argon2
import jwt

from gateway.errors import AuthenticationError

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
    """

    def __init__(
        self,
        users: Iterable[User],
        *,
        key: bytes | None = None,
        token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
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
        # Verified against when the user is unknown, so that both cases cost the same.
        self._dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        self._failures: dict[str, list[float]] = {}
        self._failures_lock = threading.Lock()

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._users)

    def login(self, user: str, password: str) -> tuple[str, Identity]:
        """Check ``password``; answer a fresh token and the identity it stands for.

        Raises:
            AuthenticationError: unknown user or wrong password (one message for both).
        """
        self._refuse_while_locked(user)
        known = self._users.get(user)
        try:
            with _password_checks:
                _hasher.verify(known.password_hash if known else self._dummy_hash, password)
        except argon2.exceptions.VerificationError:
            log.warning("log-in refused for user %r: %s", user, "wrong password" if known else "unknown user")
            self._record_failure(user)
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        except argon2.exceptions.InvalidHashError:  # config validation makes this unreachable
            log.error("log-in refused for user %r: the configured password hash is invalid", user)
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        if known is None:  # the dummy hash's password is random: never reached in practice
            raise AuthenticationError(INVALID_CREDENTIALS)
        identity = Identity(known.name, known.groups, dict(known.attributes))
        log.info("user %r logged in (token valid %d s)", user, self.token_ttl_seconds)
        return self.issue(identity), identity

    def _record_failure(self, user: str) -> None:
        now = self._clock()
        with self._failures_lock:
            recent = [t for t in self._failures.get(user, []) if now - t < FAILED_LOG_IN_WINDOW_SECONDS]
            self._failures[user] = [*recent, now][-FAILED_LOG_INS_BEFORE_LOCK:]

    def _refuse_while_locked(self, user: str) -> None:
        """After too many failed log-ins in a short time, refuse without checking a password.

        Guessing costs the guesser a wait instead of the gateway an argon2id check each.
        """
        now = self._clock()
        with self._failures_lock:
            recent = [t for t in self._failures.get(user, []) if now - t < FAILED_LOG_IN_WINDOW_SECONDS]
        if len(recent) >= FAILED_LOG_INS_BEFORE_LOCK:
            wait = int(FAILED_LOG_IN_WINDOW_SECONDS - (now - recent[0])) + 1
            log.warning("log-in refused for user %r: %d failed log-ins, locked for %d s", user, len(recent), wait)
            raise AuthenticationError(f"[Meshgate] too many failed log-ins for this user: try again in {wait} s")

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
        return Identity(user, tuple(groups), attributes)


def _unverified_subject(token: str) -> str | None:
    """The ``sub`` a token claims, read without checking it: for log lines only."""
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return subject if isinstance(subject, str) else None
