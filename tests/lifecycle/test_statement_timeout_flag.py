"""``meshgate serve --statement-timeout``: parsed, and reaching the server it starts."""

from __future__ import annotations

from pathlib import Path

import pyarrow.flight as flight
import pytest

from gateway.cli import _parser
from gateway.flightsql import commands
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.sql_info import MESHGATE_STATEMENT_TIMEOUT
from tests.support.gateway import GatewayProcess


def test_the_flag_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MESHGATE_STATEMENT_TIMEOUT", raising=False)
    assert _parser().parse_args(["serve", "--demo"]).statement_timeout is None
    assert _parser().parse_args(["serve", "--demo", "--statement-timeout", "2.5"]).statement_timeout == 2.5
    assert _parser().parse_args(["serve", "--demo", "--statement-timeout", "0"]).statement_timeout is None
    monkeypatch.setenv("MESHGATE_STATEMENT_TIMEOUT", "7")
    assert _parser().parse_args(["serve", "--demo"]).statement_timeout == 7.0
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["serve", "--demo", "--statement-timeout", bad])
        assert "--statement-timeout" in capsys.readouterr().err


def test_serve_applies_the_statement_timeout(tmp_path: Path) -> None:
    gateway = GatewayProcess.demo(tmp_path, extra=("--no-auth", "--statement-timeout", "0.001"))
    try:
        with flight.connect(gateway.uri) as client:
            command = commands.pack(pb.CommandGetSqlInfo(info=[MESHGATE_STATEMENT_TIMEOUT]))
            info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
            assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [
                {"info_name": MESHGATE_STATEMENT_TIMEOUT, "value": 1}
            ]
            query = commands.pack(pb.CommandStatementQuery(query="SELECT * FROM sales.orders"))
            info = client.get_flight_info(flight.FlightDescriptor.for_command(query))
            with pytest.raises(flight.FlightTimedOutError, match="statement timeout"):
                client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        gateway.stop()
