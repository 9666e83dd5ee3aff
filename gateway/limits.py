"""Resource limits: what one query, and all of them together, may take of the gateway.

- **Memory.** Each query plans and runs in a DataFusion context of its own whose memory pool
  holds ``query_memory`` bytes; sorts, joins and aggregates that need more spill to disk
  (DataFusion's fair spill pool and disk manager), and an operator that cannot spill fails
  the query with a message naming the limit. At most ``gateway_memory // query_memory``
  queries (and at most ``max_running``) run at once: :class:`Admission`.
- **Admission.** A query beyond those waits up to ``queue_seconds`` for a slot, then is
  refused as "busy" (UNAVAILABLE: retryable), so the gateway stays responsive.
- **Results.** At most ``max_result_bytes`` of Arrow data leave one query.
- **Planning.** Query text is checked before any parser runs (size and nesting,
  ``gateway.engine.check_query_text``) and so are the expressions that make DataFusion's
  planner slow or make one value huge (:func:`check_expressions`): a run of more than
  ``max_operator_chain`` binary operators without parentheses, and functions that
  generate data (``array_repeat``, ``repeat``, ``lpad`` ...) asked for more than
  ``max_generated`` elements by a literal.

Memory that DataFusion does not account for (Python batches in flight, prefetch queues of
the sources) is bounded by batch sizes and queue lengths, not by the pool.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from gateway.errors import ConfigError, GatewayBusyError, PlanningError, ResourceLimitError
from gateway.tokens import one_level
from gateway.tokens import tokens as sql_tokens

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """The gateway's resource limits (defaults suit the 2-core, 24 GiB machines it is tested on)."""

    query_memory: int = 1 * GiB
    gateway_memory: int = 8 * GiB
    max_running: int = 16
    queue_seconds: float = 10.0
    max_result_bytes: int = 8 * GiB
    max_operator_chain: int = 512
    max_generated: int = 10_000_000
    spill_path: Path | None = None  # None: the system's temporary directory

    def __post_init__(self) -> None:
        for name in ("query_memory", "gateway_memory", "max_running", "max_result_bytes", "max_operator_chain"):
            if getattr(self, name) < 1:
                raise ConfigError(f"limits: {name} must be at least 1, got {getattr(self, name)}")
        if self.queue_seconds < 0:
            raise ConfigError(f"limits: queue_seconds must not be negative, got {self.queue_seconds}")

    @property
    def slots(self) -> int:
        """How many queries may run at once."""
        return max(1, min(self.max_running, self.gateway_memory // max(self.query_memory, 1)))


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": MiB,
    "mib": MiB,
    "g": GiB,
    "gib": GiB,
    "t": 1 << 40,
    "tib": 1 << 40,
}


def parse_size(text: str) -> int:
    """``512MiB``, ``1GiB``, ``2G``, ``1048576``: a size in bytes (binary units).

    >>> parse_size("512MiB"), parse_size("1g"), parse_size("4096")
    (536870912, 1073741824, 4096)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"'{text}' is not a size; use for example 512MiB, 1GiB or a number of bytes")
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"'{text}' is no size at all; give more than zero")
    return size


class Admission:
    """Bounds the queries running at once, in all and per user; the rest wait in line, for a while.

    One user may hold at most half the slots (at least one), so one caller cannot take the
    gateway from the others by starting queries and not reading them. Waiters are served in
    the order they came, each woken only when a slot is handed to it (a freed slot wakes one
    thread, not every waiter: with 16 clients of one user, waking all of them on every query's
    end cost more CPU than the lookups themselves). A waiter that cannot run yet (its user holds
    its share) does not hold back the ones behind it that can.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.per_user = max(1, limits.slots // 2)
        self._lock = threading.Lock()
        self._by_user: dict[str | None, int] = {}
        self._line: list[_Waiter] = []  # in the order they came; none of them fits (see _hand_out)
        self.running = 0

    @property
    def waiting(self) -> int:
        return len(self._line)

    def enter(self, user: str | None) -> Ticket:
        """A slot for one query of ``user``; raises GatewayBusyError when none frees up in time."""
        with self._lock:
            if self._fits(user):
                self._take(user)
                return Ticket(self, user)
            waiter = _Waiter(user)
            self._line.append(waiter)
        if not waiter.handed.wait(self.limits.queue_seconds):
            with self._lock:
                if not waiter.handed.is_set():  # else a slot came between the timeout and the lock
                    self._line.remove(waiter)
                    raise GatewayBusyError(self._busy(user))
        return Ticket(self, user)

    def _fits(self, user: str | None) -> bool:
        return self.running < self.limits.slots and self._by_user.get(user, 0) < self.per_user

    def _take(self, user: str | None) -> None:
        self.running += 1
        self._by_user[user] = self._by_user.get(user, 0) + 1

    def _busy(self, user: str | None) -> str:
        waited = f"waited {self.limits.queue_seconds:g} s for a slot; try again shortly"
        if self._by_user.get(user, 0) >= self.per_user:
            return f"the gateway is busy: {self.per_user} of your queries are running (the most per user); {waited}"
        return (
            f"the gateway is busy: {self.running} queries are running (at most {self.limits.slots} at once); {waited}"
        )

    def _leave(self, user: str | None) -> None:
        with self._lock:
            self.running -= 1
            self._by_user[user] -= 1
            if not self._by_user[user]:
                del self._by_user[user]
            self._hand_out()

    def _hand_out(self) -> None:
        """Give freed slots to the first waiters that fit, in line order (the lock is held)."""
        for waiter in list(self._line):
            if self.running >= self.limits.slots:
                return
            if self._fits(waiter.user):
                self._take(waiter.user)
                self._line.remove(waiter)
                waiter.handed.set()


class _Waiter:
    """A query in line for a slot; ``handed`` is set once the slot is taken on its behalf."""

    __slots__ = ("handed", "user")

    def __init__(self, user: str | None) -> None:
        self.user = user
        self.handed = threading.Event()


class Ticket:
    """One admitted query's slot; :meth:`release` is idempotent and thread-safe."""

    def __init__(self, admission: Admission, user: str | None) -> None:
        self._admission = admission
        self._user = user
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._admission._leave(self._user)


_GENERATORS = {"array_repeat": 1, "repeat": 1, "lpad": 1, "rpad": 1, "range": -1, "generate_series": -1}
"""Functions that build one value (or one array) as large as one of their arguments: which argument
(by position; -1 the span of the first two) is the size."""
_ARITHMETIC = {TokenType.PLUS, TokenType.DASH, TokenType.STAR, TokenType.SLASH, TokenType.MOD, TokenType.DPIPE}
_LOGICAL = {TokenType.AND, TokenType.OR}
LOGICAL_CHAIN_FACTOR = 2
"""AND/OR chains may run this many times longer than arithmetic ones (DataFusion plans them faster):
1,024 operators. Not more: a 3,750-term AND chain overflowed a gRPC thread's stack and killed the
gateway (SIGSEGV), and 3,150 terms took 10-28 s to plan (tests/stress/RESULTS.md, F1)."""


def check_expressions(sql: str, limits: Limits) -> None:
    """Refuse expressions DataFusion would take too long to plan, or that build a huge value.

    >>> check_expressions("SELECT a + b + c FROM t WHERE x IN (1, 2, 3)", Limits())
    >>> check_expressions("SELECT array_repeat('x', 100000000)", Limits())
    Traceback (most recent call last):
    ...
    meshcore.errors.ResourceLimitError: array_repeat(...) would build 100,000,000 elements (at most 10,000,000)
    """
    try:
        tokens = sql_tokens(sql)
    except SqlglotError:
        return  # the parser reports it, with its position
    chains = [[0, 0]]  # consecutive arithmetic and logical operators at each parenthesis level
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            chains.append([0, 0])
        elif kind == TokenType.R_PAREN and len(chains) > 1:
            chains.pop()
        elif kind in (TokenType.COMMA, TokenType.SEMICOLON, TokenType.SELECT, TokenType.FROM, TokenType.WHERE):
            chains[-1] = [0, 0]
        elif kind in _ARITHMETIC or kind in _LOGICAL:
            logical = kind in _LOGICAL
            chains[-1][logical] += 1
            allowed = limits.max_operator_chain * (LOGICAL_CHAIN_FACTOR if logical else 1)
            if chains[-1][logical] > allowed:
                raise PlanningError(
                    f"expression too long: more than {allowed} {'AND/OR' if logical else 'arithmetic'} operators"
                    " in a row without parentheses; split it, or use IN (...) for long lists of alternatives"
                )
        elif _calls_generator(tokens, i):
            _check_generator(token.text.lower(), _literal_arguments(tokens, i + 2), limits)


def _calls_generator(tokens: Sequence[Token], i: int) -> bool:
    """Whether token ``i`` calls a generating function as a scalar (not a table function after FROM/JOIN)."""
    if tokens[i].text.lower() not in _GENERATORS or i + 1 >= len(tokens):
        return False
    table_function = i > 0 and tokens[i - 1].token_type in (TokenType.FROM, TokenType.JOIN, TokenType.LATERAL)
    return tokens[i + 1].token_type == TokenType.L_PAREN and not table_function


def _literal_arguments(tokens: Sequence[Token], start: int) -> list[float | None]:
    """The top-level arguments of a call opening at ``start``: numbers where they are plain literals."""
    arguments: list[float | None] = []
    current: list[Token] = []
    for token, top in one_level(tokens, start):
        if token.token_type == TokenType.COMMA and top:
            arguments.append(_number(current))
            current = []
        else:
            current.append(token)
    arguments.append(_number(current))
    return arguments


def _number(tokens: Sequence[Token]) -> float | None:
    sign = 1.0
    if len(tokens) == 2 and tokens[0].token_type == TokenType.DASH:
        sign, tokens = -1.0, tokens[1:]
    if len(tokens) != 1 or tokens[0].token_type != TokenType.NUMBER:
        return None
    try:
        return sign * float(tokens[0].text)
    except ValueError:
        return None


def _check_generator(name: str, arguments: list[float | None], limits: Limits) -> None:
    which = _GENERATORS[name]
    size: float | None = None
    if which >= 0:
        size = arguments[which] if len(arguments) > which else None
    elif len(arguments) == 1:
        size = arguments[0]
    elif arguments[0] is not None and arguments[1] is not None:
        step = arguments[2] if len(arguments) > 2 and arguments[2] else 1.0
        size = abs((arguments[1] - arguments[0]) / step)
    if size is not None and size > limits.max_generated:
        raise ResourceLimitError(f"{name}(...) would build {int(size):,} elements (at most {limits.max_generated:,})")
