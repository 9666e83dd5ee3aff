"""``meshgate serve`` stopping on SIGTERM: a grace for the queries in progress, then an end.

A real gateway process (the demo mesh) and raw ``pyarrow.flight`` clients. A client that
stops reading leaves the server's write waiting on it, and gRPC cannot drop such a call
from Python: without a bound, one stalled client would keep the gateway from stopping.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest

from gateway.cli import _parser
from gateway.flightsql import commands
from gateway.flightsql import flight_pb2 as fpb
from gateway.flightsql import flight_sql_pb2 as pb
from tests.support.gateway import GatewayProcess

# 20 M rows that stream as they are made: far more than gRPC buffers for a client that stops reading.
STREAM = (
    "SELECT a.x, b.y FROM (SELECT unnest(range(0, 20000)) AS x) a CROSS JOIN (SELECT unnest(range(0, 1000)) AS y) b"
)
ROWS = 20_000_000


def test_the_flag_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MESHGATE_SHUTDOWN_GRACE", raising=False)
    assert _parser().parse_args(["serve", "--demo"]).shutdown_grace == 20.0
    assert _parser().parse_args(["serve", "--demo", "--shutdown-grace", "0"]).shutdown_grace == 0.0
    monkeypatch.setenv("MESHGATE_SHUTDOWN_GRACE", "3.5")
    assert _parser().parse_args(["serve", "--demo"]).shutdown_grace == 3.5
    for bad in ("-1", "later", "inf", "nan"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["serve", "--demo", "--shutdown-grace", bad])
        assert "--shutdown-grace" in capsys.readouterr().err


def _gateway(directory: Path, grace: float) -> GatewayProcess:
    audit = ("--audit-log", str(directory / "audit.jsonl"))
    return GatewayProcess.demo(directory, extra=("--no-auth", "--shutdown-grace", str(grace), *audit))


def _audited(directory: Path) -> list[tuple[str, str | None]]:
    """The outcome and error of each query of STREAM in the audit log."""
    lines = (directory / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [(r["outcome"], r["error"]) for r in records if r.get("sql") == STREAM]


@pytest.fixture
def stalled(tmp_path: Path) -> Iterator[tuple[GatewayProcess, flight.FlightStreamReader]]:
    """A gateway (grace 1 s) streaming to a client that read one batch and reads no more."""
    gateway = _gateway(tmp_path, 1)
    client = flight.connect(gateway.uri)
    try:
        reader = _stream(client)
        reader.read_chunk()
        time.sleep(0.5)  # the server's writes fill what gRPC buffers, then wait on the client
        yield gateway, reader
    finally:
        client.close()
        gateway.stop()


def _stream(client: flight.FlightClient) -> flight.FlightStreamReader:
    command = commands.pack(pb.CommandStatementQuery(query=STREAM))
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
    return client.do_get(info.endpoints[0].ticket)


def _stopped(gateway: GatewayProcess, within: float) -> tuple[int, float]:
    """SIGTERM, then the exit status and the seconds it took (the test fails past ``within``)."""
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    try:
        status = gateway.process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the gateway did not stop within {within} s of SIGTERM")
    return status, time.monotonic() - started


def _refused(uri: str, within: float = 5.0) -> bool:
    """Whether a new call to ``uri`` is refused within ``within`` seconds: UNAVAILABLE once the
    server stops listening, CANCELLED for a call that reached it while gRPC shuts down."""
    deadline = time.monotonic() + within
    action = flight.Action("GetSessionOptions", fpb.GetSessionOptionsRequest().SerializeToString())
    while time.monotonic() < deadline:
        try:
            with flight.connect(uri) as late:
                list(late.do_action(action))
        except (flight.FlightUnavailableError, flight.FlightCancelledError):
            return True
        time.sleep(0.1)
    return False


_TGKILL = {"x86_64": 234, "aarch64": 131}  # the tgkill system call's number


def _signal_a_thread(pid: int, number: int) -> None:
    """Send signal ``number`` to one of gRPC's threads in process ``pid``: the kernel may deliver a
    process's signal to any thread that does not block it."""
    call = _TGKILL.get(os.uname().machine)
    if call is None:
        pytest.skip(f"no tgkill number known for {os.uname().machine}")
    threads = [tid for tid in _threads(pid) if tid != pid and not _blocks(pid, tid, number)]
    thread = next(tid for tid in threads if _name(pid, tid).startswith(("grpc", "event_engine")))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(call, pid, thread, number) == 0, os.strerror(ctypes.get_errno())


def _threads(pid: int) -> list[int]:
    return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))


def _name(pid: int, tid: int) -> str:
    return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()


def _blocks(pid: int, tid: int, number: int) -> bool:
    """Whether thread ``tid`` of ``pid`` blocks signal ``number`` (jemalloc's blocks nearly all)."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
    return bool(mask >> (number - 1) & 1)


def _log(gateway: GatewayProcess) -> str:
    time.sleep(0.2)  # the drain thread reads what the process printed last
    return "".join(gateway.output)


def test_a_client_that_reads_no_more_does_not_keep_the_gateway_from_stopping(
    stalled: tuple[GatewayProcess, flight.FlightStreamReader],
) -> None:
    gateway, _reader = stalled
    status, seconds = _stopped(gateway, within=10)
    assert status == 0
    assert 1 <= seconds < 6  # the grace (1 s), the cancelled calls' wait (2 s), and the rest of the stop
    assert "some calls still write to clients that read no more; stopping without them" in _log(gateway)
    assert _audited(gateway.config.parent) == [("cancelled", "query cancelled")]  # recorded before the end


def test_a_stalled_client_that_reads_again_is_told_the_server_is_shutting_down(
    stalled: tuple[GatewayProcess, flight.FlightStreamReader],
) -> None:
    gateway, reader = stalled
    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # past the grace: the statement is cancelled while its write still waits
    with pytest.raises(flight.FlightCancelledError, match="the server is shutting down"):
        for _chunk in reader:
            pass
    assert gateway.process.wait(timeout=10) == 0
    assert "stopping without them" not in _log(gateway)  # its call ended: nothing was left behind


def test_a_query_in_progress_finishes_within_the_grace_and_new_calls_are_refused(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path, 30)
    try:
        with flight.connect(gateway.uri) as client:
            reader = _stream(client)
            rows = reader.read_chunk().data.num_rows
            gateway.process.send_signal(signal.SIGTERM)
            assert _refused(gateway.uri)
            for chunk in reader:
                rows += chunk.data.num_rows
        assert rows == ROWS
        assert gateway.process.wait(timeout=10) == 0
        assert _audited(tmp_path) == [("ok", None)]
        assert "stopping without them" not in _log(gateway)
    finally:
        gateway.stop()


def test_a_signal_the_kernel_hands_to_another_thread_stops_the_gateway(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path, 1)
    try:
        _signal_a_thread(gateway.process.pid, signal.SIGTERM)
        assert gateway.process.wait(timeout=10) == 0
        assert "stopping (signal 15)" in _log(gateway)
    finally:
        gateway.stop()


def test_a_second_signal_stops_at_once(stalled: tuple[GatewayProcess, flight.FlightStreamReader]) -> None:
    gateway, _reader = stalled
    gateway.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    status, seconds = _stopped(gateway, within=3)
    assert status == 1 and seconds < 1
    assert "stopping at once (signal 15 again): the queries in progress are dropped" in _log(gateway)
