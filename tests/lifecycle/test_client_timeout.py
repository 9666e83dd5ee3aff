"""``meshgate serve --client-timeout``: a client that stops reading gives its query's resources back.

A real gateway process (the demo mesh, two query slots: one per user) and raw
``pyarrow.flight`` clients. Without the timeout, a client that reads one batch of a large
result and then nothing holds its slot for as long as its connection lives: with two such
clients no other query would ever run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.flight as flight
import pytest

from gateway.cli import _parser
from gateway.flightsql import commands
from gateway.flightsql import flight_sql_pb2 as pb
from tests.lifecycle.test_shutdown import STREAM
from tests.support.gateway import GatewayProcess


def test_the_flag_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MESHGATE_CLIENT_TIMEOUT", raising=False)
    assert _parser().parse_args(["serve", "--demo"]).client_timeout == 300.0
    assert _parser().parse_args(["serve", "--demo", "--client-timeout", "0"]).client_timeout is None
    monkeypatch.setenv("MESHGATE_CLIENT_TIMEOUT", "12.5")
    assert _parser().parse_args(["serve", "--demo"]).client_timeout == 12.5
    for bad in ("-1", "never", "inf"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["serve", "--demo", "--client-timeout", bad])
        assert "--client-timeout" in capsys.readouterr().err


def _ticket(client: flight.FlightClient, sql: str) -> flight.Ticket:
    command = commands.pack(pb.CommandStatementQuery(query=sql))
    return client.get_flight_info(flight.FlightDescriptor.for_command(command)).endpoints[0].ticket


def test_a_stalled_client_gives_its_slot_back_to_the_next_query(tmp_path: Path) -> None:
    extra = ("--no-auth", "--max-running", "2", "--client-timeout", "1")  # one slot per user
    gateway = GatewayProcess.demo(tmp_path, extra=extra)
    try:
        with flight.connect(gateway.uri) as stalled, flight.connect(gateway.uri) as other:
            reader = stalled.do_get(_ticket(stalled, STREAM))
            reader.read_chunk()  # and nothing more: the query holds the user's one slot
            started = time.monotonic()
            answer = other.do_get(_ticket(other, "SELECT count(*) AS n FROM sales.customers")).read_all()
            waited = time.monotonic() - started
            assert answer.column("n")[0].as_py() > 0
            assert 1 <= waited < 5  # it waited in line (10 s at most) until the stalled query was stopped
            with pytest.raises(flight.FlightCancelledError, match=r"its client read nothing for 1 s"):
                for _chunk in reader:
                    pass
    finally:
        gateway.stop()
    assert "client timeout: its client read nothing for 1 s; query cancelled" in "".join(gateway.output)


def test_a_statement_whose_stream_is_never_asked_for_gives_its_slot_back(tmp_path: Path) -> None:
    """GetFlightInfo starts the query (sources included); a client that never calls DoGet has read
    nothing of it either: its slot comes back after the client timeout, not when the handle expires."""
    extra = ("--no-auth", "--max-running", "2", "--client-timeout", "1")  # one slot per user
    gateway = GatewayProcess.demo(tmp_path, extra=extra)
    try:
        with flight.connect(gateway.uri) as idle, flight.connect(gateway.uri) as other:
            ticket = _ticket(idle, STREAM)  # and no DoGet
            started = time.monotonic()
            answer = other.do_get(_ticket(other, "SELECT count(*) AS n FROM sales.customers")).read_all()
            waited = time.monotonic() - started
            assert answer.column("n")[0].as_py() > 0
            assert 1 <= waited < 5  # it waited in line until the idle statement was stopped
            with pytest.raises(flight.FlightCancelledError, match=r"its client read nothing for 1 s"):
                idle.do_get(ticket).read_all()
    finally:
        gateway.stop()
    assert "client timeout: its client read nothing for 1 s; query cancelled" in "".join(gateway.output)
