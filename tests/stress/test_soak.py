"""The soak, short: 4 ADBC clients for 10 s against a ``meshgate serve`` subprocess.

Every answer must match the reference taken before the clients start (rows, or the same
refusal), no error may be unexpected (CANCELLED only for a query the client cancelled),
and once the clients are gone the gateway must be back to its threads and file
descriptors (its PostgreSQL pools may keep up to 4 idle connections per domain). The long
run is ``python -m tests.stress.soak --clients 32 --seconds 240`` (RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stress.mesh import StressGateway
from tests.stress.soak import own_fds, report, soak

pytestmark = [pytest.mark.stress, pytest.mark.soak]


def test_a_short_soak_gives_right_answers_and_the_gateway_gives_back_threads_and_descriptors(
    stress_config: Path, postgres_uri: str
) -> None:
    gateway = StressGateway(stress_config, statement_timeout=30.0)
    try:
        # Up to 15 s for threads and descriptors to come back: longer when the machine is loaded.
        result = soak(gateway, postgres_uri, clients=4, seconds=10.0, settle=15.0)
    finally:
        if gateway.alive():
            gateway.stop()
    text = report(result, seed=1)
    print(text)
    assert result.alive, text + "\n" + gateway.tail()
    assert result.tally.wrong == [], text
    assert not result.tally.unexpected, text
    assert sum(result.tally.queries.values()) > 40 and result.tally.cancels > 0, text
    assert result.after["threads"] <= result.before["threads"] + 2, text
    assert own_fds(result.after) <= own_fds(result.before) + 2, text
    assert result.after["pg_connections"] <= 8, text  # two PostgreSQL domains (sales, ops), 4 idle each at most
