"""The SQL shell as people use it: a real terminal (a pseudo-terminal driven by pexpect), a real gateway.

One ``meshgate serve`` process serves a CSV domain with a contract (descriptions for ``\\d``)
and a PostgreSQL domain with slow products: ``pg.ticks`` sleeps 10.7 ms a row for 3,000 rows
(half a minute, to cancel), ``pg.quick`` about 1.5 s (long enough for the progress line).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pexpect
import pytest

from gateway.shell import Statement, caret_lines, server_message, server_uri, split_statements
from tests.support.gateway import TEST_CREDENTIALS, Credentials, GatewayProcess, auth_yaml
from tests.support.tls import CertificateAuthority

SLOW_SLEEP = "pg_sleep(0.0107)"  # a fragment only the slow product's source query holds
MESH = """\
domains:
  - name: ref
    description: Reference data
    connector: {{type: csv, path: kinds.csv}}
    products:
      - name: kinds
        source: kinds.csv
        description: The kinds of things
        columns:
          - {{name: kind, type: int64, description: The kind's number}}
          - {{name: label, type: string, description: Its name}}
  - name: pg
    connector: {{type: postgres, uri: "{uri}"}}
    products:
      - name: ticks
        sql: SELECT g, {slow} FROM generate_series(1, 3000) g
      - name: quick
        sql: SELECT g, pg_sleep(0.0009) AS s FROM generate_series(1, 1500) g
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
PROMPT = "meshgate>"


def plain(text: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return ANSI.sub("", text).replace("\r", "")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Path:
    folder = tmp_path_factory.mktemp("shell")
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n2,two\n")
    (folder / "mesh.yaml").write_text(MESH.format(uri=postgres_uri, slow=SLOW_SLEEP) + auth_yaml())
    return folder / "mesh.yaml"


@pytest.fixture(scope="module")
def gateway(mesh: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(mesh)
    yield process
    process.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A terminal's environment: the test user's log-in, and a history directory of the test's own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    terminal = {
        **clean,
        **TEST_CREDENTIALS.env(),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # nobody answers cursor position requests in a pexpect terminal
    }
    # COLUMNS and LINES (set for pytest-xdist's workers) would override the terminal's own size.
    return {k: v for k, v in terminal.items() if k not in ("COLUMNS", "LINES")}


class Terminal:
    """``meshgate ARGS`` in a pseudo-terminal (40 x 120 by default); ``seen`` is everything it printed."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str],
        command: list[str] | None = None,
        columns: int = 120,
        interrupts: signal.Handlers = signal.SIG_DFL,
    ) -> None:
        """``interrupts``: how the child starts out treating SIGINT (what it inherits from whoever started it)."""
        argv = command or [sys.executable, "-m", "gateway", *args]
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            env=env,
            dimensions=(40, columns),
            encoding="utf-8",
            timeout=30,
            preexec_fn=lambda: signal.signal(signal.SIGINT, interrupts),
        )
        self.raw = ""
        self.mark = 0  # where the last match in ``seen`` ended

    @property
    def seen(self) -> str:
        return plain(self.raw)

    def expect(self, pattern: str, timeout: float = 30) -> str:
        """Wait for ``pattern`` (a regex over the plain text printed after the last match)."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.seen, self.mark)
            if found:
                self.mark = found.end()
                return found.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not appear; the terminal shows:\n{self.seen}")
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                found = re.compile(pattern).search(self.seen, self.mark)
                if not found:
                    raise AssertionError(f"{pattern!r} did not appear before exit; seen:\n{self.seen}") from None

    def run(self, line: str, until: str) -> str:
        """Type ``line`` and Enter; answer what was printed until ``until`` and the next prompt."""
        start = self.mark
        self.child.send(line + "\r")
        self.expect(until)
        self.expect(PROMPT)
        return self.seen[start : self.mark]

    def exit_code(self, timeout: float = 15) -> int:
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.raw += self.child.before or ""
        self.child.close()
        assert self.child.exitstatus is not None, self.child.signalstatus
        code: int = self.child.exitstatus
        return code


@pytest.fixture
def shell(gateway: GatewayProcess, env: dict[str, str]) -> Iterator[Terminal]:
    terminal = Terminal("shell", "--server", gateway.uri, env=env)
    terminal.expect(PROMPT)
    yield terminal
    terminal.child.close(force=True)


def meshgate(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, text=True, timeout=120, env=env
    )


# -- the prompt ----------------------------------------------------------------------------------


def test_history_is_kept_across_sessions(gateway: GatewayProcess, env: dict[str, str]) -> None:
    first = Terminal("shell", "--server", gateway.uri, env=env)
    first.expect(PROMPT)
    first.run("SELECT 41 + 1 AS answer;", r"\(1 row\)")
    first.child.sendcontrol("d")
    assert first.exit_code() == 0
    history = Path(env["XDG_STATE_HOME"]) / "meshgate" / "history"
    assert "SELECT 41 + 1 AS answer;" in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

    second = Terminal("shell", "--server", gateway.uri, env=env)
    second.expect(PROMPT)
    start = second.mark
    second.child.send("\x1b[A")  # up arrow
    second.expect(r"SELECT 41 \+ 1 AS answer;")
    second.child.send("\r")
    second.expect(r"answer[\s\S]*42[\s\S]*\(1 row\)")
    assert "answer" not in second.seen[:start]
    second.expect(PROMPT)  # keys typed while a query runs reach a terminal in line mode, not the shell
    second.child.sendcontrol("d")
    assert second.exit_code() == 0


def test_a_statement_over_several_lines(shell: Terminal) -> None:
    shell.child.send("SELECT kind,\r")
    shell.expect(r"->")  # the continuation prompt: the statement goes on
    shell.child.send("  label\r")
    shell.child.send("FROM ref.kinds\r")
    shell.child.send("WHERE kind > 0 ORDER BY kind;\r")
    shell.expect(r"\(2 rows\)")
    result = shell.seen
    assert re.search(r"│ +1 │ one +│", result) and re.search(r"│ +2 │ two +│", result), result
    assert "zero" not in result


def test_backslash_d_lists_and_describes_products(shell: Terminal) -> None:
    listing = shell.run("\\d", r"\(3 rows\)")
    for domain, product in [("pg", "quick"), ("pg", "ticks"), ("ref", "kinds")]:
        assert re.search(rf"│ {domain} +│ {product} +│ TABLE │", listing), listing
    described = shell.run("\\d ref.kinds", r"\(2 rows\)")
    assert "ref.kinds: The kinds of things" in described
    assert re.search(r"│ kind +│ int64 +│ true +│ The kind's number │", described), described
    assert re.search(r"│ label +│ string +│ true +│ Its name +│", described), described
    domains = shell.run("\\dn", r"\(2 rows\)")
    assert re.search(r"│ pg +│ +2 │", domains) and re.search(r"│ ref +│ +1 │", domains), domains
    missing = shell.run("\\d ref.nope", "no data product")
    assert "error: no data product named ref.nope" in missing


def test_format_csv(shell: Terminal) -> None:
    shell.run("\\format csv", "output format is csv")
    result = shell.run("SELECT * FROM ref.kinds ORDER BY kind;", r'2,"two"')
    assert '"kind","label"\n0,"zero"\n1,"one"\n2,"two"\n' in result


def test_an_error_points_at_its_column(shell: Terminal) -> None:
    one_line = shell.run("SELECT kind FROM ref.kinds WHER x;", r"\^")
    assert "error: SQL syntax error at line 1, column 33: Expected: end of statement, found: x" in one_line
    source, caret = _caret(one_line)
    assert source == "LINE 1: SELECT kind FROM ref.kinds WHER x"
    assert caret.index("^") == source.index(" x") + 1

    shell.child.send("SELECT kind,\r")
    shell.expect("->")
    second_line = shell.run("  label FROM ref.kinds WHER x;", r"\^")
    assert "error: SQL syntax error at line 2, column 29: Expected: end of statement, found: x" in second_line
    source, caret = _caret(second_line)
    assert source == "LINE 2:   label FROM ref.kinds WHER x"
    assert caret.index("^") == source.index(" x") + 1


def _caret(printed: str) -> tuple[str, str]:
    lines = printed.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("LINE "))
    return lines[index], lines[index + 1]


def test_ctrl_c_cancels_the_query_on_the_server(shell: Terminal, postgres_uri: str) -> None:
    shell.child.send("SELECT count(*) FROM pg.ticks;\r")
    assert _wait_for(lambda: _running(postgres_uri) > 0, 15), "the slow source query never started"
    shell.expect("Ctrl-C cancels")  # the progress line
    interrupted = time.monotonic()
    shell.child.sendintr()
    shell.expect("query cancelled", timeout=5)
    assert _wait_for(lambda: _running(postgres_uri) == 0, 10.0)
    gone = time.monotonic() - interrupted
    assert gone < 1.0, f"the PostgreSQL backend ran {gone:.2f} s after Ctrl-C"
    shell.expect(PROMPT)
    assert "Traceback" not in shell.seen
    # The session goes on; two Ctrl-C at an empty prompt quit.
    shell.run("SELECT 'still here' AS s;", r"│ still here │")
    shell.child.sendintr()
    shell.expect("Ctrl-C again quits")
    shell.expect(PROMPT)
    shell.child.sendintr()
    assert shell.exit_code() == 0


def test_ctrl_c_cancels_even_when_the_shell_started_with_it_ignored(
    gateway: GatewayProcess, env: dict[str, str], postgres_uri: str
) -> None:
    """Started where SIGINT is ignored (nohup, the children of a background job, a test runner's
    workers), the shell still takes Ctrl-C at its terminal: it cancels the running query."""
    terminal = Terminal("shell", "--server", gateway.uri, env=env, interrupts=signal.SIG_IGN)
    try:
        terminal.expect(PROMPT)
        terminal.child.send("SELECT count(*) FROM pg.ticks;\r")
        assert _wait_for(lambda: _running(postgres_uri) > 0, 15)
        terminal.child.sendintr()
        terminal.expect("query cancelled", timeout=5)
        terminal.expect(PROMPT)
        assert _wait_for(lambda: _running(postgres_uri) == 0, 10.0)
    finally:
        terminal.child.close(force=True)


def test_ctrl_c_at_the_prompt_right_after_a_cancel_quits(shell: Terminal, postgres_uri: str) -> None:
    shell.child.send("SELECT count(*) FROM pg.ticks;\r")
    assert _wait_for(lambda: _running(postgres_uri) > 0, 15)
    shell.child.sendintr()
    shell.expect("query cancelled")
    shell.expect(PROMPT)
    shell.child.sendintr()
    assert shell.exit_code() == 0


def _running(uri: str) -> int:
    """How many PostgreSQL backends run the slow product's query now."""
    with pg.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ILIKE $1"
            " AND pid <> pg_backend_pid()",
            (f"%{SLOW_SLEEP}%",),
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _wait_for(condition: object, seconds: float, since: float | None = None) -> bool:
    assert callable(condition)
    deadline = (since if since is not None else time.monotonic()) + seconds
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- the progress line ---------------------------------------------------------------------------

QUICK = "SELECT count(*) AS n FROM pg.quick"


def test_the_progress_line_shows_on_a_terminal(gateway: GatewayProcess, env: dict[str, str]) -> None:
    terminal = Terminal("query", "--server", gateway.uri, QUICK, env=env)
    terminal.expect(r"\d+ rows · [\d.]+ (bytes|kB) · \d+\.\d s · Ctrl-C cancels")
    terminal.expect(r"1500")
    assert terminal.exit_code() == 0
    # A rich table on a terminal.
    assert re.search(r"│ +n │\n├─+┤\n│ 1500 │", terminal.seen), terminal.seen


def test_a_table_fits_the_terminal(gateway: GatewayProcess, env: dict[str, str]) -> None:
    sql = "SELECT kind, repeat(label, 12) AS long_label, repeat('x', 30) AS other, 'a' || label AS third FROM ref.kinds ORDER BY kind"
    terminal = Terminal("query", "--server", gateway.uri, sql, env=env, columns=60)
    assert terminal.exit_code() == 0
    lines = terminal.seen.splitlines()
    assert max(len(line) for line in lines) <= 60, terminal.seen
    # The wide columns are cut; the narrow ones stay whole.
    assert "│ kind │ long_label          │ other               │ third │" in lines, terminal.seen
    assert "│    0 │ zerozerozerozeroze… │ xxxxxxxxxxxxxxxxxx… │ azero │" in lines, terminal.seen


def test_no_progress_line_when_the_output_is_piped(gateway: GatewayProcess, env: dict[str, str]) -> None:
    # Standard error stays the terminal; standard output goes through a pipe.
    command = " ".join(
        shlex.quote(part) for part in [sys.executable, "-m", "gateway", "query", "--server", gateway.uri]
    )
    terminal = Terminal(env=env, command=["/bin/sh", "-c", f"{command} {shlex.quote(QUICK)} | cat"])
    assert terminal.exit_code() == 0
    assert terminal.seen == "   n\n----\n1500\n(1 row)\n", terminal.seen


# -- scripts and standard input ------------------------------------------------------------------


def test_a_file_of_three_statements(gateway: GatewayProcess, env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "three.sql"
    script.write_text(
        "-- kinds, then labels; the ';' in the string does not split\n"
        "SELECT count(*) AS kinds FROM ref.kinds;\n"
        "SELECT label FROM ref.kinds\n  WHERE label <> 'a;b'\n  ORDER BY kind LIMIT 2;\n"
        "SELECT 'three' AS third /* ; */;\n"
    )
    result = meshgate("query", "--server", gateway.uri, "-f", str(script), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "kinds\n-----\n    3\n(1 row)\n\nlabel\n-----\nzero\none\n(2 rows)\n\nthird\n-----\nthree\n(1 row)\n"
    )
    assert result.stderr == ""


def test_a_script_stops_at_the_first_error(gateway: GatewayProcess, env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "broken.sql"
    script.write_text("SELECT 1 AS one;\n\nSELECT kind\n  FROM ref.nope;\nSELECT 3 AS three;\n")
    result = meshgate("shell", "--server", gateway.uri, "-f", str(script), "--format", "csv", env=env)
    assert result.returncode == 1
    assert result.stdout == '"one"\n1\n'
    assert (
        result.stderr
        == f"error: statement 2 (line 3 of {script}): unknown data product 'ref.nope' (domain 'ref' has: kinds)\n"
    )


def test_statements_from_standard_input(gateway: GatewayProcess, env: dict[str, str]) -> None:
    piped = meshgate(
        "query", "--server", gateway.uri, "--format", "csv", env=env, stdin="SELECT 1 AS a;\nSELECT 2 AS b;\n"
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == '"a"\n1\n"b"\n2\n'
    commands = meshgate("shell", "--server", gateway.uri, env=env, stdin="\\format json\nSELECT 'x' AS s; \\dn ref\n")
    assert commands.returncode == 0, commands.stderr
    assert commands.stdout == '{"s": "x"}\n{"domain": "ref", "products": 1}\n'
    failing = meshgate("query", "--server", gateway.uri, env=env, stdin="SELECT 1;\nSELEC 2;\n")
    assert failing.returncode == 1
    assert failing.stderr == (
        "error: statement 2 (line 2 of standard input): SQL syntax error at line 1, column 1:"
        " Expected: an SQL statement, found: SELEC\nLINE 1: SELEC 2\n        ^\n"
    )


# -- what the command line prints ----------------------------------------------------------------


def test_the_servers_whole_message_without_the_drivers_wrapping(gateway: GatewayProcess, env: dict[str, str]) -> None:
    result = meshgate("query", "--server", gateway.uri, "SELECT * FROM ref.nope", env=env)
    assert result.returncode == 1
    assert result.stderr == "error: unknown data product 'ref.nope' (domain 'ref' has: kinds)\n"


def test_explain_prints_as_a_tree(gateway: GatewayProcess, env: dict[str, str]) -> None:
    sql = "EXPLAIN SELECT label, count(*) FROM ref.kinds WHERE kind > 0 GROUP BY label"
    result = meshgate("query", "--server", gateway.uri, sql, env=env)
    assert result.returncode == 0, result.stderr
    sections = result.stdout.split("\n\n")
    assert [section.splitlines()[0] for section in sections][:2] == ["route", "logical_plan"]
    plan = sections[1].splitlines()[1:]
    assert plan[0].startswith("  Projection: ") and all(line.startswith("  ") for line in plan)
    assert any(len(line) > 60 and "…" not in line for line in plan), plan  # whole, not cut at 40


def test_a_server_without_a_scheme(gateway: GatewayProcess, env: dict[str, str]) -> None:
    address = gateway.uri.removeprefix("grpc://")
    result = meshgate("query", "--server", address, "--format", "csv", "SELECT 7 AS n", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == '"n"\n7\n'


def test_an_unreachable_server(env: dict[str, str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = meshgate("query", "--server", f"127.0.0.1:{port}", "SELECT 1", env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot connect to 127.0.0.1:{port}: connection refused (is a gateway running there, on this port?)\n"
    )
    terminal = Terminal("shell", "--server", f"127.0.0.1:{port}", env=env)
    assert terminal.exit_code() == 1
    assert "connection refused" in terminal.seen and PROMPT not in terminal.seen


def test_wrong_credentials(gateway: GatewayProcess, env: dict[str, str]) -> None:
    wrong = {**env, **Credentials(TEST_CREDENTIALS.user, "nope").env()}
    result = meshgate("query", "--server", gateway.uri, "SELECT 1", env=wrong)
    assert result.returncode == 1
    assert result.stderr == "error: [Meshgate] invalid user name or password\n"
    terminal = Terminal("shell", "--server", gateway.uri, env=wrong)
    assert terminal.exit_code() == 1  # before any prompt
    assert "error: [Meshgate] invalid user name or password" in terminal.seen and PROMPT not in terminal.seen


def test_tls_on_one_side_only(gateway: GatewayProcess, env: dict[str, str], mesh: Path, tmp_path: Path) -> None:
    address = gateway.uri.removeprefix("grpc://")
    tls_client = meshgate("query", "--server", f"grpc+tls://{address}", "SELECT 1", env=env)
    assert tls_client.returncode == 1
    assert tls_client.stderr == (
        f"error: cannot connect to grpc+tls://{address}: the server does not speak TLS;"
        f" connect to grpc://{address} instead\n"
    )
    ca = CertificateAuthority()
    cert, key = ca.server().write(tmp_path, "server")
    secure = GatewayProcess(mesh, extra=("--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        tls_address = secure.uri.removeprefix("grpc+tls://")
        plain_client = meshgate("query", "--server", f"grpc://{tls_address}", "SELECT 1", env=env)
        assert plain_client.returncode == 1
        assert plain_client.stderr == (
            f"error: cannot connect to grpc://{tls_address}: the server closed the connection; it probably requires"
            f" TLS: connect to grpc+tls://{tls_address} (with --tls-ca FILE if a private CA signed its certificate)\n"
        )
        (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
        # HOST:PORT with a TLS option means grpc+tls://.
        trusted = meshgate(
            "query", "--server", tls_address, "--tls-ca", str(tmp_path / "ca.crt"), "SELECT 1 AS n", env=env
        )
        assert trusted.returncode == 0, trusted.stderr
    finally:
        secure.stop()


def test_serve_on_a_port_in_use(gateway: GatewayProcess, mesh: Path, env: dict[str, str]) -> None:
    port = gateway.uri.rsplit(":", 1)[1]
    result = meshgate("serve", "--config", str(mesh), "--port", port, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is already in use (another meshgate?): choose another with --port"
    )
    assert "Server did not start properly" not in result.stderr and "Traceback" not in result.stderr


# -- the pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1; SELECT 2", [("SELECT 1", 1), ("SELECT 2", 1)]),
        ("SELECT 'a;b', \"c;\" FROM t; -- done;\n", [("SELECT 'a;b', \"c;\" FROM t", 1)]),
        ("/* one; */\nSELECT 1\n;\n\n  SELECT $$x;y$$;", [("SELECT 1", 2), ("SELECT $$x;y$$", 5)]),
        (";;\n;", []),
        ("SELECT 'open", [("SELECT 'open", 1)]),  # the server says what is wrong
        ("\\timing on\nSELECT 1; \\format csv\n", [("\\timing on", 1), ("SELECT 1", 2), ("\\format csv", 2)]),
    ],
)
def test_split_statements(text: str, expected: list[tuple[str, int]]) -> None:
    assert [(s.text, s.line) for s in split_statements(text)] == expected


def test_statement_numbers_count_sql_only() -> None:
    assert split_statements("\\timing\nSELECT 1;\nSELECT 2;") == [
        Statement("\\timing", 1, 0, command=True),
        Statement("SELECT 1", 2, 1),
        Statement("SELECT 2", 3, 2),
    ]


@pytest.mark.parametrize(
    ("driver", "server"),
    [
        (
            "UNKNOWN: [FlightSQL] unknown data product 'sales.nope' (domain 'sales' has: customers). Detail: Failed"
            " (Unknown; Prepare)",
            "unknown data product 'sales.nope' (domain 'sales' has: customers)",
        ),
        (
            "UNAUTHENTICATED: [FlightSQL] [Meshgate] invalid user name or password. Detail: Unauthenticated"
            " (Unauthenticated; AuthenticateBasicToken)",
            "[Meshgate] invalid user name or password",
        ),
        (
            "[FlightSQL] Arrow error: Divide by zero error. Detail: Failed (Unknown; DoGet: endpoint 0: [])",
            "Arrow error: Divide by zero error",
        ),
        ("UNKNOWN: [FlightSQL] a (b) c (d; e) (Unknown; Prepare)", "a (b) c (d; e)"),
        ("INVALID_ARGUMENT: no such option", "no such option"),
        (  # no server answered: the transport's words and gRPC status are all there is
            "IO: [FlightSQL] write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe (Unavailable;"
            " AuthenticateBasicToken). Vendor code: 14",
            "write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe (Unavailable; AuthenticateBasicToken)",
        ),
    ],
)
def test_server_message(driver: str, server: str) -> None:
    assert server_message(Exception(driver)) == server


def test_caret_lines_keep_tabs_and_wide_characters() -> None:
    assert caret_lines("SELECT\t'日本', x y", "error at line 1, column 16: ...") == [
        "LINE 1: SELECT\t'日本', x y",
        " " * len("LINE 1: SELECT") + "\t" + " " * len("'日本', x ") + "  " + "^",  # 日本: two columns each
    ]
    assert caret_lines("SELECT 1", "at line 3, column 1") == []


def test_server_uri() -> None:
    assert server_uri("gw.example.com:32010") == "grpc://gw.example.com:32010"
    assert server_uri("gw.example.com:32010", tls=True) == "grpc+tls://gw.example.com:32010"
    assert server_uri("grpc+tls://gw:1") == "grpc+tls://gw:1"
