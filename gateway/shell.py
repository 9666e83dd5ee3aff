"""The SQL shell: ``meshgate shell``, and ``meshgate query`` with SQL, a script or nothing.

One runner for every way SQL arrives: an interactive prompt (prompt_toolkit: history kept
across sessions, statements over several lines ending in ``;``, psql-style backslash
commands), a script (``-f FILE`` or standard input: statements run in order, the first
error stops it), or the SQL of a command line. Around each query::

    meshgate> SELECT country, count(*) AS n FROM sales.customers
          ->   GROUP BY country ORDER BY n DESC LIMIT 3;

- a live line on standard error shows rows and bytes received and the time spent, from
  half a second on, and only when standard output and error are terminals (rich);
- Ctrl-C cancels the query on the server (ADBC ``adbc_cancel``), which stops the source
  queries, and returns to the prompt;
- errors show the server's whole message, without the driver's wrapping, and a caret
  under the place a message names (``at line L, column C``);
- on a terminal, tables are drawn with rich to fit its width; EXPLAIN prints as headings
  and whole plans (gateway/output.py).

Statements are split on ``;`` by sqlglot's tokenizer, so semicolons in strings, quoted
names and comments do not split.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlparse

import pyarrow as pa
from rich.console import Console
from rich.text import Text

from gateway import __version__
from gateway.output import (
    char_width,
    explain_sections,
    head_of,
    is_explain,
    rich_table,
    write_result,
)

if TYPE_CHECKING:
    import adbc_driver_flightsql.dbapi as flightsql
    from rich.live import Live
    from rich.spinner import Spinner

SHELL_FORMATS = ("table", "csv", "json")
PROGRESS_DELAY_SECONDS = 0.5
TABLE_ROWS = 100  # rows a table shows; the footer counts the rest
CANCEL_WAIT_SECONDS = 10.0
PROMPT = "meshgate> "
HISTORY_FILE = "history"


# --- where the server is -------------------------------------------------------------


def server_uri(text: str, *, tls: bool = False) -> str:
    """``--server`` as a URI: ``HOST:PORT`` gets ``grpc://`` (``grpc+tls://`` with TLS options).

    >>> server_uri("127.0.0.1:32010"), server_uri("gw:32010", tls=True), server_uri("grpc://gw:1")
    ('grpc://127.0.0.1:32010', 'grpc+tls://gw:32010', 'grpc://gw:1')
    """
    text = text.strip()
    if "://" in text:
        return text
    return f"{'grpc+tls' if tls else 'grpc'}://{text}"


# --- statements ----------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One SQL statement (without its ``;``) or one backslash command, and where it starts."""

    text: str
    line: int  # 1-based line of the source where it starts
    number: int  # 1-based among the source's SQL statements (0 for a command)
    command: bool = False


class _Splitter:
    """Cuts text fed line by line into statements and backslash commands.

    A line starting with ``\\`` between statements is a command; SQL ends at a ``;`` that
    sqlglot's tokenizer finds outside strings, quoted names and comments.
    """

    def __init__(self) -> None:
        self.pending = ""  # SQL read but not yet ended by ';'
        self.pending_line = 1
        self.line = 0
        self.count = 0

    def feed(self, line: str) -> list[Statement]:
        self.line += 1
        if line.lstrip().startswith("\\") and not self._in_statement():
            self.pending = ""
            return [Statement(line.strip(), self.line, 0, command=True)]
        if not self.pending.strip():
            self.pending, self.pending_line = "", self.line
        self.pending += line
        return self._cut(final=False) if ";" in line else []

    def _in_statement(self) -> bool:
        """Whether SQL has begun (comments and blank lines are not a beginning)."""
        from sqlglot.errors import TokenError

        try:
            return bool(_tokens(self.pending))
        except TokenError:  # an open string or comment
            return True

    def finish(self) -> list[Statement]:
        """The SQL left at the end of the text (a last statement without ``;``)."""
        return self._cut(final=True)

    def _cut(self, *, final: bool) -> list[Statement]:
        from sqlglot.errors import TokenError

        text = self.pending
        try:
            tokens = _tokens(text)
        except TokenError:  # an unterminated string or comment: more text to come
            if not final:
                return []
            tokens = None
        if tokens is None:  # the server says what is wrong with it
            stripped = text.strip()
            self.pending = ""
            return [self._statement(text, text.index(stripped[0]), len(text))] if stripped else []
        found: list[Statement] = []
        start = 0
        body: list[Any] = []
        command_end = -1  # a backslash command after a statement runs to the end of its line
        for token in tokens:
            if token.start < command_end:
                continue
            if token.token_type.name == "SEMICOLON":
                if body:
                    found.append(self._statement(text, body[0].start, token.start))
                start, body = token.end + 1, []
            elif not body and token.token_type.name == "BACKSLASH":
                command_end = _line_end(text, token.start)
                line = self.pending_line + text.count("\n", 0, token.start)
                found.append(Statement(text[token.start : command_end].strip(), line, 0, command=True))
                start = command_end
            else:
                body.append(token)
        if final and body:
            found.append(self._statement(text, body[0].start, len(text)))
            start = len(text)
        self.pending_line += text.count("\n", 0, start)
        self.pending = "" if final else text[start:]
        return found

    def _statement(self, text: str, begin: int, end: int) -> Statement:
        self.count += 1
        return Statement(text[begin:end].rstrip(), self.pending_line + text.count("\n", 0, begin), self.count)


def _line_end(text: str, offset: int) -> int:
    end = text.find("\n", offset)
    return len(text) if end < 0 else end


def _tokens(text: str) -> list[Any]:
    """sqlglot's tokens of ``text`` (PostgreSQL's rules: DataFusion's SQL is close to it)."""
    if not text.strip():
        return []
    from sqlglot.dialects.dialect import Dialect

    tokens: list[Any] = Dialect.get_or_raise("postgres").tokenize(text)
    return tokens


def split_statements(text: str) -> list[Statement]:
    """The statements and backslash commands of a script, in order.

    >>> [(s.text, s.line) for s in split_statements("SELECT ';' AS a; -- one\\n\\nSELECT 2\\n")]
    [("SELECT ';' AS a", 1), ('SELECT 2', 3)]
    """
    splitter = _Splitter()
    found: list[Statement] = []
    for line in text.splitlines(keepends=True):
        found += splitter.feed(line)
    return found + splitter.finish()


def is_complete(text: str) -> bool:
    """Whether the prompt's text can run on Enter: empty, a backslash command, or SQL ending in ``;``."""
    from sqlglot.errors import TokenError

    stripped = text.strip()
    if not stripped or stripped.startswith("\\"):
        return True
    try:
        tokens = _tokens(text)
    except TokenError:
        return False
    ended = True  # nothing but whole statements so far
    for token in tokens:
        if ended and token.token_type.name == "BACKSLASH" and "\n" not in text[token.start :].rstrip():
            return True  # `SELECT 1; \\d`: a command ends the line
        ended = token.token_type.name == "SEMICOLON"
    return ended


# --- errors --------------------------------------------------------------------------

_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_DETAIL = re.compile(r"\. Detail: \w+(?: \(\w+; [^()]*\))?$")
_CALL = re.compile(r" \(\w+; [^()]*\)$")
_VENDOR = re.compile(r"\. Vendor code: -?\d+$")
_TRANSPORT = re.compile(r'connection error: desc = "(?P<desc>.*)"', re.DOTALL)
_UNAVAILABLE = re.compile(r" \(Unavailable; [^()]*\)$")  # gRPC's status: no server answered
_SQL_POSITION = re.compile(r"\bat line (\d+), column (\d+)")


def server_message(error: BaseException) -> str:
    """The server's own words in a driver error: the status prefix (``UNKNOWN: [FlightSQL] ``)
    and the driver's suffixes (``. Detail: Failed (Unknown; Prepare)``, ``. Vendor code: 14``)
    go; the message stays whole.

    >>> server_message(Exception("UNKNOWN: [FlightSQL] no table 'x' (try y). Detail: Failed (Unknown; Prepare)"))
    "no table 'x' (try y)"
    """
    text = _VENDOR.sub("", str(error).strip())
    text = text.split("[FlightSQL] ", 1)[1] if "[FlightSQL] " in text else _STATUS_PREFIX.sub("", text)
    detail = _DETAIL.search(text)
    if detail is not None:
        return text[: detail.start()]
    if _UNAVAILABLE.search(text):  # no server spoke: the transport's words and status are all there is
        return text
    return _CALL.sub("", text)


def describe_error(error: BaseException, server: str) -> str:
    """What to tell the user about ``error``: the server's message, or what went wrong in reaching it.

    Connection failures are named plainly (nothing listening, TLS on one side only, an
    untrusted certificate); the rest is :func:`server_message`.
    """
    text = server_message(error)
    if not _UNAVAILABLE.search(text):
        return text
    transport = _TRANSPORT.search(text)
    desc = transport.group("desc") if transport is not None else text
    address = urlparse(server)
    where = address.netloc or server
    tls = address.scheme == "grpc+tls"
    if "connection refused" in desc:
        return f"cannot connect to {where}: connection refused (is a gateway running there, on this port?)"
    if "no such host" in desc or "name resolution" in desc:
        return f"cannot connect to {where}: unknown host {address.hostname}"
    if "first record does not look like a TLS handshake" in desc:
        return f"cannot connect to {server}: the server does not speak TLS; connect to grpc://{where} instead"
    if "error reading server preface: EOF" in desc and not tls:
        return (
            f"cannot connect to {server}: the server closed the connection; it probably requires TLS:"
            f" connect to grpc+tls://{where} (with --tls-ca FILE if a private CA signed its certificate)"
        )
    if "certificate signed by unknown authority" in desc:
        reason = desc.rsplit("tls: ", 1)[-1]
        return f"cannot connect to {server}: its certificate is not trusted ({reason}): name its CA with --tls-ca FILE"
    if tls and any(end in desc for end in ("error reading server preface: EOF", "broken pipe", "connection reset")):
        # The server ended the TLS handshake: a client certificate is the likely reason,
        # but the client cannot know; keep the transport's words.
        return (
            f"{text}\nhint: the server ended the TLS handshake; if it requires a client certificate,"
            " give yours with --tls-cert and --tls-key"
        )
    return text


def caret_lines(sql: str, message: str) -> list[str]:
    """psql's pointer at the position a message names (``at line L, column C``): the line
    and a caret under the column, or nothing when the message names no position in ``sql``.

    >>> caret_lines("SELECT 1\\nFROM t WHER x", "SQL syntax error at line 2, column 13: ...")
    ['LINE 2: FROM t WHER x', '                    ^']
    """
    found = _SQL_POSITION.search(message)
    if found is None:
        return []
    line, column = int(found.group(1)), int(found.group(2))
    lines = sql.splitlines()
    if not 1 <= line <= len(lines) or column < 1:
        return []
    source = lines[line - 1]
    prefix = f"LINE {line}: "
    # Keep tabs where the SQL has them: both lines then expand them to the same stops.
    pad = "".join("\t" if char == "\t" else " " * char_width(char) for char in source[: column - 1])
    return [prefix + source, " " * len(prefix) + pad + "^"]


# --- the terminal --------------------------------------------------------------------


class Screen:
    """Where the shell writes: results to standard output, everything else to standard error.

    Colours, rich tables and the live progress line only when the stream is a terminal;
    piped or redirected output is plain text.
    """

    def __init__(self) -> None:
        self.out_tty = sys.stdout.isatty()
        self.err_tty = sys.stderr.isatty()
        self.out = Console(soft_wrap=True, highlight=False)
        self.err = Console(stderr=True, soft_wrap=True, highlight=False)

    @property
    def live(self) -> bool:
        """Whether a progress line may show: both standard output and error are terminals."""
        return self.out_tty and self.err_tty

    def error(self, message: str) -> None:
        self._say(message, "bold red")

    def note(self, message: str) -> None:
        self._say(message, "dim")

    def _say(self, message: str, style: str) -> None:
        if self.err_tty:
            self.err.print(Text(message, style=style))
        else:
            print(message, file=sys.stderr, flush=True)


class Progress:
    """The live line while a query runs: rows and bytes received so far, and the time spent.

    It shows after ``delay`` seconds (quick queries never flash it), on standard error, and
    leaves nothing behind when it stops.
    """

    def __init__(self, console: Console, delay: float = PROGRESS_DELAY_SECONDS) -> None:
        from rich.spinner import Spinner

        self.rows = 0
        self.bytes = 0
        self._console = console
        self._started = time.monotonic()
        self._spinner: Spinner = Spinner("dots", style="cyan")
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._stopped = False
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True
        self._timer.start()

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self.bytes += batch.nbytes

    def text(self) -> str:
        from rich.filesize import decimal

        elapsed = time.monotonic() - self._started
        rows = "1 row" if self.rows == 1 else f"{self.rows:,} rows"
        return f"{rows} · {decimal(self.bytes)} · {elapsed:.1f} s · Ctrl-C cancels"

    def __rich__(self) -> Spinner:
        self._spinner.update(text=Text(self.text(), style="dim"))
        return self._spinner

    def _show(self) -> None:
        from rich.live import Live

        with self._lock:
            if self._stopped:
                return
            # Output goes to the real streams: the line is stopped before anything is written.
            self._live = Live(
                self,
                console=self._console,
                transient=True,
                refresh_per_second=8,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            live, self._live = self._live, None
        if live is not None:
            live.stop()


class _Counted:
    """A result's batches, counted into the progress line as they arrive."""

    def __init__(self, reader: pa.RecordBatchReader, progress: Progress | None, *, stop_first: bool) -> None:
        self.schema = reader.schema
        self._reader = reader
        self._progress = progress
        self._stop_first = stop_first  # output streams to the terminal: the line must go first

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._reader:
            if self._progress is not None:
                self._progress.add(batch)
                if self._stop_first:
                    self._progress.stop()
            yield batch

    def done(self) -> None:
        """Every batch has arrived: the progress line goes."""
        if self._progress is not None:
            self._progress.stop()


# --- running SQL ---------------------------------------------------------------------


class Cancelled(Exception):
    """The user pressed Ctrl-C: the query was cancelled."""


class CommandError(Exception):
    """A backslash command that cannot run as written; the message says why."""


QUIT, DONE, FAILED = "quit", "done", "failed"  # what a backslash command did


@dataclass
class Shell:
    """A connection to the server and how results are printed; runs statements and commands."""

    connection: flightsql.Connection
    server: str
    user: str | None
    screen: Screen
    fmt: str = "table"
    output: Path | None = None  # parquet only: text formats go to ``stream``
    stream: TextIO | None = None  # where text results go (None: standard output)
    timing: bool = False
    interactive: bool = False
    results: int = field(default=0, init=False)

    # -- SQL --

    def execute(self, statement: Statement, where: str = "") -> bool:
        """Run one SQL statement and print its result or error; True when it succeeded.

        Raises:
            Cancelled: the user pressed Ctrl-C (the query is cancelled on the server).
        """
        started = time.monotonic()
        try:
            self._query(statement.text)
        except (OSError, ValueError, pa.ArrowException, _adbc_error()) as error:
            if isinstance(error, BrokenPipeError):
                raise
            message = describe_error(error, self.server)
            self.screen.error(f"error: {where}{message}")
            for line in caret_lines(statement.text, message):
                self.screen.error(line)
            return False
        finally:
            if self.timing:
                self.screen.note(f"Time: {time.monotonic() - started:.3f} s")
        return True

    def _query(self, sql: str) -> None:
        """Run ``sql`` in a worker thread, so that Ctrl-C reaches this (the main) thread and cancels it."""
        cursor = self.connection.cursor()
        progress = Progress(self.screen.err) if self.screen.live else None
        failure: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                cursor.execute(sql)
                self._print(_Counted(cursor.fetch_record_batch(), progress, stop_first=self._streams_to_terminal()))
            except BaseException as error:
                failure.append(error)
            finally:
                if progress is not None:
                    progress.stop()
                done.set()

        worker = threading.Thread(target=work, name="meshgate-query", daemon=True)
        worker.start()
        try:
            _wait(done)
        except KeyboardInterrupt:
            if progress is not None:
                progress.stop()
            with suppress(_adbc_error()):  # a query that has just ended has nothing to cancel
                cursor.adbc_cancel()
            with suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
                _wait(done, CANCEL_WAIT_SECONDS)
            raise Cancelled from None
        finally:
            if done.is_set():
                cursor.close()
        if failure:
            raise failure[0]

    def _streams_to_terminal(self) -> bool:
        return self.fmt in ("csv", "json") and self.stream is None and self.output is None

    def _print(self, result: _Counted | pa.Table, *, separate: bool = True) -> None:
        """Print one result in the session's format (``separate``: after a blank line, if tables came before)."""
        if separate:
            self._separate()
        if self.fmt == "table" and self.stream is None and self.screen.out_tty:
            self._print_rich(result)
        else:
            write_result(result, self.fmt, self.output, self.stream)

    def _separate(self) -> None:
        """A blank line between the tables of a script (at the prompt, the prompt separates them)."""
        if self.fmt == "table" and self.results and not self.interactive:
            self._write("\n")
        self.results += 1

    def _print_rich(self, result: _Counted | pa.Table) -> None:
        schema = result.schema
        batches = iter(result.to_batches() if isinstance(result, pa.Table) else result)
        head, total = head_of(schema, batches, None if is_explain(schema) else TABLE_ROWS)
        if isinstance(result, _Counted):
            result.done()
        console = self.screen.out
        if is_explain(schema):
            for number, (kind, plan) in enumerate(explain_sections(head)):
                if number:
                    console.print()
                console.print(Text(kind, style="bold cyan"))
                console.print(Text(textwrap.indent(plan, "  ")))
        elif not head.num_columns:
            write_result(head, "table")
        else:
            console.print(rich_table(head, total, console.width))

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(text)

    # -- backslash commands --

    def command(self, text: str) -> str:
        """Run a backslash command: :data:`QUIT` for ``\\q``, else :data:`DONE` or :data:`FAILED`
        (the error printed)."""
        name, _, rest = text[1:].strip().partition(" ")
        handler = self._commands().get(name)
        try:
            if handler is None:
                raise CommandError(f"unknown command \\{name}: \\? lists the commands")
            return handler(rest.strip()) or DONE
        except CommandError as error:
            self.screen.error(f"error: {error}")
        except (OSError, ValueError, pa.ArrowException, _adbc_error()) as error:
            if isinstance(error, BrokenPipeError):
                raise
            self.screen.error(f"error: {describe_error(error, self.server)}")
        return FAILED

    def _commands(self) -> dict[str, Callable[[str], str | None]]:
        return {
            "q": lambda _: QUIT,
            "quit": lambda _: QUIT,
            "?": self._help,
            "d": self._describe,
            "dt": self._products,
            "dn": self._domains,
            "format": self._format,
            "timing": self._timing,
            "conninfo": self._conninfo,
        }

    def _help(self, _: str) -> None:
        self.screen.out.print(Text(HELP), soft_wrap=True)

    def _format(self, argument: str) -> None:
        if not argument:
            self.screen.note(f"output format is {self.fmt}")
        elif argument in SHELL_FORMATS:
            self.fmt = argument
            self.screen.note(f"output format is {self.fmt}")
        else:
            raise CommandError(f"unknown format {argument!r}: choose one of {', '.join(SHELL_FORMATS)}")

    def _timing(self, argument: str) -> None:
        if argument not in ("", "on", "off"):
            raise CommandError("\\timing takes on or off")
        self.timing = argument == "on" if argument else not self.timing
        self.screen.note(f"timing is {'on' if self.timing else 'off'}")

    def _conninfo(self, _: str) -> None:
        user = f" as {self.user}" if self.user else " without a log-in"
        self.screen.note(f"connected to {self.server}{user}")

    def _domains(self, pattern: str) -> None:
        """``\\dn [PATTERN]``: the domains and how many products each has."""
        objects = self.connection.adbc_get_objects(depth="tables", db_schema_filter=_like(pattern) if pattern else None)
        rows = []
        for catalog in objects.read_all().to_pylist():
            for schema in catalog["catalog_db_schemas"] or []:
                rows.append({"domain": schema["db_schema_name"], "products": len(schema["db_schema_tables"] or [])})
        self._print(pa.Table.from_pylist(rows, schema=pa.schema([("domain", pa.string()), ("products", pa.int64())])))

    def _products(self, pattern: str) -> None:
        """``\\dt [DOMAIN.PRODUCT pattern]``: the data products."""
        domain, _, product = pattern.partition(".") if "." in pattern else (pattern, "", "")
        objects = self.connection.adbc_get_objects(
            depth="tables",
            db_schema_filter=_like(domain) if domain else None,
            table_name_filter=_like(product) if product else None,
        )
        rows = []
        for catalog in objects.read_all().to_pylist():
            for schema in catalog["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    rows.append(
                        {
                            "domain": schema["db_schema_name"],
                            "product": table["table_name"],
                            "type": table["table_type"],
                        }
                    )
        self._print(pa.Table.from_pylist(rows, schema=pa.schema([(name, pa.string()) for name in _PRODUCT_COLUMNS])))

    def _describe(self, name: str) -> None:
        """``\\d``: the products; ``\\d DOMAIN``: a domain's; ``\\d DOMAIN.PRODUCT``: its columns."""
        if not name or "*" in name or "?" in name:
            self._products(name)
            return
        parts = name.split(".")
        if len(parts) == 1:
            self._products(f"{name}.*")
            return
        if len(parts) > 3 or not all(parts):
            raise CommandError(f"{name!r} is not a product name: \\d DOMAIN.PRODUCT (or CATALOG.DOMAIN.PRODUCT)")
        catalog = parts[0] if len(parts) == 3 else None
        domain, product = parts[-2], parts[-1]
        found = self.connection.adbc_get_objects(
            depth="tables",
            catalog_filter=catalog,
            db_schema_filter=_like(domain, exact=True),
            table_name_filter=_like(product, exact=True),
        ).read_all()
        schemas = [schema for catalog in found.to_pylist() for schema in catalog["catalog_db_schemas"] or []]
        if not any(schema["db_schema_tables"] for schema in schemas):
            raise CommandError(f"no data product named {name} (\\dt lists them)")
        schema = self.connection.adbc_get_table_schema(product, catalog_filter=catalog, db_schema_filter=domain)
        self._separate()
        if self.fmt == "table":
            self._product_heading(name, schema)
        rows = [
            {
                "column": column.name,
                "type": str(column.type),
                "nullable": column.nullable,
                "description": _text(column.metadata, b"meshgate.description"),
            }
            for column in schema
        ]
        table = pa.Table.from_pylist(rows, schema=_COLUMNS_SCHEMA)
        if not any(row["description"] for row in rows):  # no contract describes them
            table = table.drop_columns(["description"])
        self._print(table, separate=False)

    def _product_heading(self, name: str, schema: pa.Schema) -> None:
        description = _text(schema.metadata, b"meshgate.description")
        owner = _text(schema.metadata, b"meshgate.owner")
        heading = Text(name, style="bold")
        if description:
            heading.append(f": {description}")
        if owner:
            heading.append(f" (owner: {owner})", style="dim")
        if self.screen.out_tty and self.stream is None:
            self.screen.out.print(heading)
        else:
            self._write(heading.plain + "\n")


_PRODUCT_COLUMNS = ("domain", "product", "type")
_COLUMNS_SCHEMA = pa.schema(
    [("column", pa.string()), ("type", pa.string()), ("nullable", pa.bool_()), ("description", pa.string())]
)

HELP = """\
  \\d                  list the data products (domain, product, type)
  \\d DOMAIN           list a domain's products
  \\d DOMAIN.PRODUCT   describe a product: its columns, types, nullability, descriptions
  \\dt [PATTERN]       list products, e.g. \\dt sales.*  (* and ? are wildcards)
  \\dn [PATTERN]       list the domains
  \\format [FORMAT]    show or set the output format: table, csv or json
  \\timing [on|off]    show how long each statement takes
  \\conninfo           the server and user of this session
  \\q                  quit (or Ctrl-D)
  \\?                  this help
SQL statements end with ';' and may span lines. Ctrl-C cancels a running query."""


def _text(metadata: dict[bytes, bytes] | None, key: bytes) -> str | None:
    value = (metadata or {}).get(key)
    return value.decode("utf-8", "replace") if value else None


def _like(pattern: str, *, exact: bool = False) -> str:
    """A Flight SQL search pattern: ``*`` and ``?`` are wildcards (unless ``exact``), ``%`` and ``_`` literal."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped if exact else escaped.replace("*", "%").replace("?", "_")


def _adbc_error() -> type[Exception]:
    from adbc_driver_manager import Error

    error: type[Exception] = Error
    return error


def _wait(done: threading.Event, timeout: float | None = None) -> None:
    """Wait for ``done`` in short steps, so that Ctrl-C arrives as KeyboardInterrupt."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done.wait(0.1):
        if deadline is not None and time.monotonic() > deadline:
            return


# --- the ways in ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShellOptions:
    """What ``meshgate shell`` and ``meshgate query`` were asked to do."""

    server: str  # a grpc:// or grpc+tls:// URI (see server_uri)
    db_kwargs: dict[str, str]  # ADBC Flight SQL options: user, password, TLS
    sql: str | None = None  # SQL given on the command line
    file: Path | None = None  # a script; Path("-") is standard input
    fmt: str = "table"
    output: Path | None = None


def run(options: ShellOptions) -> int:
    """Run SQL from the command line, a script or standard input, or the interactive shell.

    Answers the exit code: 0, 1 when a statement (or the connection) failed (the rest do not
    run), 130 when Ctrl-C cancelled a script, 2 for a script or an output file that cannot be
    used.
    """
    import adbc_driver_flightsql.dbapi as flightsql

    screen = Screen()
    interactive = options.sql is None and options.file is None and sys.stdin.isatty()
    if interactive and options.fmt not in SHELL_FORMATS:
        screen.error(f"error: the shell prints {', '.join(SHELL_FORMATS)}: --format {options.fmt} needs SQL or -f FILE")
        return 2
    source, text = "", ""
    if not interactive:
        try:
            source, text = _script(options)
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            screen.error(f"error: {options.file}: cannot read: {reason or error}")
            return 2
    statements = split_statements(text) if not interactive else []
    if options.fmt == "parquet" and sum(not s.command for s in statements) > 1:
        screen.error("error: --format parquet writes one result: give one statement")
        return 2
    # Flight SQL has no transactions; the DB-API wrapper warns about it on every connect.
    warnings.filterwarnings("ignore", message="Cannot disable autocommit")
    with ExitStack() as stack:
        stream = None
        if options.output is not None and options.fmt != "parquet":
            try:
                stream = stack.enter_context(options.output.open("w", encoding="utf-8", newline=""))
            except OSError as error:
                screen.error(f"error: {options.output}: cannot write: {error.strerror or error}")
                return 2
        try:
            connection = stack.enter_context(flightsql.connect(options.server, db_kwargs=options.db_kwargs))
            if interactive:
                connection.adbc_get_info()  # log in now: a wrong password shows before the prompt
        except (_adbc_error(), OSError) as error:
            screen.error(f"error: {describe_error(error, options.server)}")
            return 1
        shell = Shell(
            connection,
            options.server,
            options.db_kwargs.get("username"),
            screen,
            fmt=options.fmt,
            output=options.output if options.fmt == "parquet" else None,
            stream=stream,
            interactive=interactive,
        )
        if interactive:
            return _interactive(shell)
        try:
            return _run_script(shell, statements, source, several=len(statements) > 1 or options.file is not None)
        except BrokenPipeError:  # `meshgate query ... | head`: the reader has gone
            _silence_stdout()
            return 1


def _script(options: ShellOptions) -> tuple[str, str]:
    """(where it comes from, text) of the SQL to run."""
    if options.sql is not None:
        return "", options.sql
    if options.file is None or str(options.file) == "-":
        return "standard input", sys.stdin.read()
    return str(options.file), options.file.read_text(encoding="utf-8")


def _run_script(shell: Shell, statements: list[Statement], source: str, *, several: bool) -> int:
    """Run statements in order; stop at the first that fails."""
    for statement in statements:
        if statement.command:
            done = shell.command(statement.text)
            if done != DONE:
                return 0 if done == QUIT else 1
            continue
        place = f"line {statement.line} of {source}" if source else f"line {statement.line}"
        where = f"statement {statement.number} ({place}): " if several else ""
        try:
            if not shell.execute(statement, where):
                return 1
        except Cancelled:
            shell.screen.error(f"{where}query cancelled")
            return 130
    return 0


def history_path() -> Path:
    """The shell's history file: ``$XDG_STATE_HOME/meshgate/history`` (``~/.local/state`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "meshgate" / HISTORY_FILE


def _history_file() -> Path | None:
    """The history file, created private (statements may hold values worth keeping to oneself)."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError:
        return None
    return path


def _interactive(shell: Shell) -> int:
    """The prompt loop: read statements and commands until ``\\q``, Ctrl-D or two Ctrl-C."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    # At a terminal Ctrl-C is the shell's own key, even when it was started with SIGINT ignored
    # (nohup, the children of a background job, a test runner's workers): psql does the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bindings = KeyBindings()

    @bindings.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        """Ctrl-C clears what was typed; at an empty prompt it asks to quit."""
        if event.app.current_buffer.text:
            event.app.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    path = _history_file()
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(path)) if path is not None else InMemoryHistory(),
        multiline=Condition(lambda: not is_complete(session.default_buffer.text)),
        prompt_continuation=lambda width, _line, _soft: "-> ".rjust(width),
        key_bindings=bindings,
    )
    screen = shell.screen
    user = f" as {shell.user}" if shell.user else ""
    screen.note(f"meshgate {__version__}: connected to {shell.server}{user}")
    screen.note("Statements end with ';'. \\? lists the commands, \\q quits.")
    interrupted = False  # the last key was a Ctrl-C: one more at the prompt quits
    while True:
        running = False
        try:
            text = session.prompt(PROMPT)
            interrupted, running = False, True
            if _run_input(shell, text) == QUIT:
                return 0
        except EOFError:  # Ctrl-D
            return 0
        except BrokenPipeError:
            return 1
        except (KeyboardInterrupt, Cancelled):
            if interrupted and not running:
                return 0
            interrupted = True
            with suppress(KeyboardInterrupt):  # one more, while this prints, is one too many
                if running:
                    screen.error("query cancelled")
                screen.note("(Ctrl-C again quits; so do \\q and Ctrl-D)")


def _run_input(shell: Shell, text: str) -> str | None:
    """Run what was typed at the prompt; :data:`QUIT` for ``\\q``. A failing statement skips the rest."""
    statements = split_statements(text)
    several = sum(not s.command for s in statements) > 1
    for statement in statements:
        if statement.command:
            done = shell.command(statement.text)
            if done != DONE:
                return QUIT if done == QUIT else None
            continue
        if not shell.execute(statement, f"statement {statement.number}: " if several else ""):
            return None
    return None


def _silence_stdout() -> None:
    """After a broken pipe: send what is left to /dev/null, so that exiting does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
