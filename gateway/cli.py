"""The ``meshgate`` command: thin flag parsing over config, engine and server.

Every flag can also be given as an environment variable (``MESHGATE_CONFIG``,
``MESHGATE_HOST``, ``MESHGATE_PORT``, ``MESHGATE_SERVER``, ``MESHGATE_USER``,
``MESHGATE_PASSWORD``, ``MESHGATE_TLS_*``; README "Connecting" lists them).

Security policy lives here, not in the server class: ``serve --config`` refuses to start
without users, ``--no-auth`` is accepted only with ``--demo`` (and says so loudly), and
``--tls-cert``/``--tls-key`` switch the endpoint to ``grpc+tls://``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.errors import MeshgateError

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.auth import Authenticator
    from gateway.config import MeshConfig
    from gateway.engine import Engine
    from gateway.telemetry.setup import Telemetry
    from gateway.web.app import WebState
    from gateway.web.server import HttpServer

log = logging.getLogger("meshgate")

DEFAULT_PORT = 32010
DEFAULT_HTTP_PORT = 8080


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from gateway.telemetry.logs import configure

    configure(os.environ.get("MESHGATE_LOG_LEVEL", "INFO").upper(), getattr(args, "log_format", "text"))
    try:
        code: int = args.run(args)
        return code
    except MeshgateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``default: X`` to a flag's help: the value in force, an environment variable's when set.

    Left out where the help already names its default, where there is none (None, a switch),
    and for passwords, whose value is never printed.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or action.default in (None, False, argparse.SUPPRESS)
            or "password" in action.dest
        ):
            return text
        if text.endswith(")") and "(env " in text:  # "... (env NAME)" -> "... (env NAME; default: X)"
            return f"{text[:-1]}; default: %(default)s)"
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every ``meshgate`` parser (sub-commands too) shows its defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="meshgate", description="A federated SQL gateway for a data mesh.")
    parser.add_argument("--version", action="version", version=f"meshgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a mesh over Arrow Flight SQL")
    source = serve.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        default=_env_path("MESHGATE_CONFIG"),
        help="the mesh config: a YAML file, or a directory of them (env MESHGATE_CONFIG)",
    )
    source.add_argument("--demo", action="store_true", help="serve a generated demo mesh (no external server)")
    serve.add_argument("--demo-dir", type=Path, default=None, help="where --demo writes its mesh (default: a temp dir)")
    serve.add_argument(
        "--host",
        default=os.environ.get("MESHGATE_HOST", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for every interface (use TLS then) (env MESHGATE_HOST)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("MESHGATE_PORT", DEFAULT_PORT)),
        help="port to listen on; 0 picks a free one (env MESHGATE_PORT)",
    )
    serve.add_argument(
        "--http-port",
        type=int,
        default=_env_int("MESHGATE_HTTP_PORT"),
        help="also serve the catalog in the browser, /healthz and /readyz over HTTP (HTTPS with --tls-cert) on this"
        f" port; 0 picks a free one (default: off; {DEFAULT_HTTP_PORT} with --demo) (env MESHGATE_HTTP_PORT)",
    )
    serve.add_argument(
        "--http-host",
        default=os.environ.get("MESHGATE_HTTP_HOST"),
        help="address the HTTP listener binds (default: the same as --host) (env MESHGATE_HTTP_HOST)",
    )
    serve.add_argument(
        "--statement-timeout",
        type=_timeout_seconds,
        default=os.environ.get("MESHGATE_STATEMENT_TIMEOUT", "0"),  # a string default goes through `type`
        metavar="SECONDS",
        help="cancel a query (and its source queries) that runs longer; 0 for no limit (the default)."
        " A session can override it with the statement_timeout session option (env MESHGATE_STATEMENT_TIMEOUT)",
    )
    serve.add_argument(
        "--client-timeout",
        type=_timeout_seconds,
        default=os.environ.get("MESHGATE_CLIENT_TIMEOUT", "300"),
        metavar="SECONDS",
        help="cancel a query whose client has read nothing of its result for this long (default 300), releasing"
        " its slot and its source queries; 0 for no limit (env MESHGATE_CLIENT_TIMEOUT)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=_grace_seconds,
        default=os.environ.get("MESHGATE_SHUTDOWN_GRACE", "20"),
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, let the queries in progress finish for this long (default 20), then cancel"
        " them; a second signal stops at once (env MESHGATE_SHUTDOWN_GRACE)",
    )
    serve.add_argument(
        "--no-auth", action="store_true", help="with --demo only: serve without authentication (development)"
    )
    serve.add_argument(
        "--watch-interval",
        type=float,
        default=float(os.environ.get("MESHGATE_WATCH_INTERVAL", 2.0)),
        help="seconds between checks of the config for changed domain files, 0 to not watch"
        " (env MESHGATE_WATCH_INTERVAL)",
    )
    serve.add_argument(
        "--audit-log",
        type=Path,
        default=_env_path("MESHGATE_AUDIT_LOG"),
        help="also append every query's and security event's audit record to this JSON-lines file; without it,"
        " they are kept in memory only (system.query_log, system.events) (env MESHGATE_AUDIT_LOG)",
    )
    serve.add_argument(
        "--checks-every",
        type=_duration,
        default=os.environ.get("MESHGATE_CHECKS_EVERY", "0"),  # a string default goes through `type`
        metavar="DURATION",
        help="run every product's quality checks (and contract checks) at start and then this often,"
        " e.g. 10m or 1h; 0 for never (the default) (env MESHGATE_CHECKS_EVERY)",
    )
    serve.add_argument(
        "--quality-log",
        type=Path,
        default=_env_path("MESHGATE_QUALITY_LOG"),
        help="also append every quality check result to this JSON-lines file; without it, results are in"
        " system.quality only (env MESHGATE_QUALITY_LOG)",
    )
    limits = serve.add_argument_group("resource limits (see README: Operating Meshgate)")
    limits.add_argument(
        "--query-memory",
        type=_size,
        default=os.environ.get("MESHGATE_QUERY_MEMORY", "1GiB"),
        metavar="SIZE",
        help="memory one query's sorts, joins and aggregates may hold before they spill to disk"
        " (env MESHGATE_QUERY_MEMORY)",
    )
    limits.add_argument(
        "--gateway-memory",
        type=_size,
        default=os.environ.get("MESHGATE_GATEWAY_MEMORY", "8GiB"),
        metavar="SIZE",
        help="memory all running queries may hold together: at most this / --query-memory run at once"
        " (env MESHGATE_GATEWAY_MEMORY)",
    )
    limits.add_argument(
        "--max-running",
        type=int,
        default=int(os.environ.get("MESHGATE_MAX_RUNNING", 16)),
        metavar="N",
        help="queries running at once, at most; one user may run half of them (env MESHGATE_MAX_RUNNING)",
    )
    limits.add_argument(
        "--queue-timeout",
        type=float,
        default=float(os.environ.get("MESHGATE_QUEUE_TIMEOUT", 10.0)),
        metavar="SECONDS",
        help="how long a query waits for a slot before it is refused as busy (env MESHGATE_QUEUE_TIMEOUT)",
    )
    limits.add_argument(
        "--max-result",
        type=_size,
        default=os.environ.get("MESHGATE_MAX_RESULT", "8GiB"),
        metavar="SIZE",
        help="Arrow data one query may return (env MESHGATE_MAX_RESULT)",
    )
    limits.add_argument(
        "--spill-dir",
        type=Path,
        default=_env_path("MESHGATE_SPILL_DIR"),
        help="where queries spill to disk (default: the system's temporary directory) (env MESHGATE_SPILL_DIR)",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=_env_path("MESHGATE_TLS_CERT"),
        help="serve grpc+tls:// with this server certificate (PEM); without it, plain grpc:// (env MESHGATE_TLS_CERT)",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=_env_path("MESHGATE_TLS_KEY"),
        help="the server certificate's private key (PEM, unencrypted) (env MESHGATE_TLS_KEY)",
    )
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_env_path("MESHGATE_TLS_CLIENT_CA"),
        help="mutual TLS: accept only clients with a certificate signed by this CA (PEM); without it, any"
        " client that logs in (env MESHGATE_TLS_CLIENT_CA)",
    )
    _telemetry_flags(serve)
    serve.set_defaults(run=_serve)

    query = commands.add_parser(
        "query",
        help="run SQL through a Meshgate (or any Flight SQL) server",
        description="Runs the SQL given, or the statements of a script (-f FILE, or standard input) in order,"
        " stopping at the first error; with neither, on a terminal, starts the shell. --server also takes"
        " HOST:PORT (grpc://, or grpc+tls:// with TLS options).",
    )
    query.add_argument("sql", nargs="?", default=None, help="the SQL to run (statements end with ';')")
    query.add_argument("-f", "--file", type=Path, default=None, help="run the statements of this file ('-': stdin)")
    query.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="how to print the result (json: one object per line; parquet needs --output)",
    )
    query.add_argument("--output", type=Path, default=None, help="write to this file (default: standard output)")
    _client_flags(query)
    query.set_defaults(run=_query)

    shell = commands.add_parser(
        "shell",
        help="an interactive SQL shell: history, statements over several lines, \\d and other backslash commands",
        description="Statements end with ';'; \\? lists the backslash commands; Ctrl-C cancels a running query."
        " With -f FILE, or standard input not a terminal, runs the statements as a script. --server also takes"
        " HOST:PORT.",
    )
    shell.add_argument("-f", "--file", type=Path, default=None, help="run the statements of this file ('-': stdin)")
    shell.add_argument("--format", choices=["table", "csv", "json"], default="table", help="how to print results")
    _client_flags(shell)
    shell.set_defaults(run=_query, sql=None, output=None)

    domain = commands.add_parser("domain", help="change a domain of a running gateway")
    domain_commands = domain.add_subparsers(dest="domain_command", required=True)
    apply = domain_commands.add_parser(
        "apply",
        help="send a domain file to a running gateway, which applies it (owners and admins only)",
        description="The gateway validates the file, connects to its source and installs it, or answers"
        " why not; the file is kept in its config directory.",
    )
    apply.add_argument("file", type=Path, help="the domain's YAML file")
    _client_flags(apply)
    apply.set_defaults(run=_domain_apply)
    remove = domain_commands.add_parser(
        "remove",
        help="remove a domain from a running gateway (admins only)",
        description="Deletes the file that holds the domain alone in the gateway's config directory.",
    )
    remove.add_argument("name", help="the domain's name")
    _client_flags(remove)
    remove.set_defaults(run=_domain_remove)

    contract = commands.add_parser("contract", help="data contracts in the Open Data Contract Standard (ODCS v3)")
    contract_commands = contract.add_subparsers(dest="contract_command", required=True)
    publish = contract_commands.add_parser(
        "import",
        help="publish an ODCS v3 contract for products of a domain (owners and admins only)",
        description="The gateway maps the contract onto the products its 'domain' and schema objects name,"
        " and applies the domain's file as 'domain apply' would; it refuses what it cannot keep.",
    )
    publish.add_argument("file", type=Path, help="the ODCS YAML document")
    _client_flags(publish)
    publish.set_defaults(run=_contract_import)
    export = contract_commands.add_parser(
        "export",
        help="print a product's contract as ODCS v3 YAML, as you may see the product",
    )
    export.add_argument("product", help="DOMAIN.PRODUCT")
    export.add_argument("-o", "--output", type=Path, default=None, help="write the document to this file")
    _client_flags(export)
    export.set_defaults(run=_contract_export)

    check = commands.add_parser("check", help="validate a config and connect to every source")
    check.add_argument(
        "--config",
        type=Path,
        default=_env_path("MESHGATE_CONFIG"),
        help="the mesh config: a YAML file, or a directory of them (env MESHGATE_CONFIG)",
    )
    check.set_defaults(run=_check)

    checks = commands.add_parser("checks", help="data product quality checks")
    checks_commands = checks.add_subparsers(dest="checks_command", required=True)
    run_checks = checks_commands.add_parser(
        "run",
        help="check every product's contract and run its quality checks against the sources",
        description="Prints one line per check; exits 1 when any check fails or cannot run.",
    )
    run_checks.add_argument(
        "--config",
        type=Path,
        default=_env_path("MESHGATE_CONFIG"),
        help="the mesh config: a YAML file, or a directory of them (env MESHGATE_CONFIG)",
    )
    run_checks.add_argument("--domain", default=None, help="only this domain's products (default: every domain)")
    run_checks.add_argument(
        "--quality-log",
        type=Path,
        default=_env_path("MESHGATE_QUALITY_LOG"),
        help="also append the results to this JSON-lines file (env MESHGATE_QUALITY_LOG)",
    )
    run_checks.set_defaults(run=_checks_run)

    user = commands.add_parser("user", help="manage users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    hash_user = user_commands.add_parser(
        "hash",
        help="print a users entry (name and argon2id password hash) for the config",
        description="Reads the password from the terminal (twice), or one line from standard input.",
    )
    hash_user.add_argument("name", help="the user name")
    hash_user.set_defaults(run=_user_hash)
    return parser


def _timeout_seconds(text: str) -> float | None:
    """``--statement-timeout``, ``--client-timeout``: seconds, 0 for none (None)."""
    return _seconds(text, "no limit") or None


def _grace_seconds(text: str) -> float:
    """``--shutdown-grace``: seconds, 0 to cancel the queries in progress at once."""
    return _seconds(text, "at once")


def _seconds(text: str, zero: str) -> float:
    """A flag's seconds: 0 (meaning ``zero``) or more, finite."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 ({zero}) or a positive number of seconds, not {text!r}")
    return seconds


def _size(text: str) -> int:
    """A size flag: ``512MiB``, ``1GiB`` or bytes."""
    from gateway.limits import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _duration(text: str) -> float | None:
    """``--checks-every``: a duration such as ``10m``, or 0 for never (None); in seconds."""
    from gateway.config import parse_duration

    if text.strip() in {"", "0"}:
        return None
    try:
        return parse_duration(text).total_seconds()
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _client_flags(parser: argparse.ArgumentParser) -> None:
    """Where the server is and how to log in to it (``query`` and ``domain apply``)."""
    parser.add_argument(
        "--server",
        default=os.environ.get("MESHGATE_SERVER", f"grpc://127.0.0.1:{DEFAULT_PORT}"),
        help="the gateway: grpc://HOST:PORT, or grpc+tls://HOST:PORT (env MESHGATE_SERVER)",
    )
    parser.add_argument(
        "--user",
        default=os.environ.get("MESHGATE_USER"),
        help="user name to log in with (env MESHGATE_USER); without one, no log-in",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("MESHGATE_PASSWORD"),
        help="password (default: MESHGATE_PASSWORD, else a prompt on a terminal; prefer either: arguments are"
        " visible to other local users)",
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=_env_path("MESHGATE_TLS_CA"),
        help="trust this CA (PEM) for a grpc+tls:// server (default: the system's trust store) (env MESHGATE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=_env_path("MESHGATE_CLIENT_TLS_CERT"),
        help="client certificate for mutual TLS (PEM) (env MESHGATE_CLIENT_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=_env_path("MESHGATE_CLIENT_TLS_KEY"),
        help="the client certificate's private key (PEM) (env MESHGATE_CLIENT_TLS_KEY)",
    )


def _domain_apply(args: argparse.Namespace) -> int:
    from gateway.reload import APPLY_ACTION

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        print(f"error: {args.file}: cannot read: {reason or error}", file=sys.stderr)
        return 2
    if _is_odcs(text):  # an ODCS contract for the domain's products: published as `contract import` would
        return _contract_send(args, text)
    return _domain_action(args, APPLY_ACTION, {"yaml": text})


def _domain_remove(args: argparse.Namespace) -> int:
    from gateway.reload import REMOVE_ACTION

    return _domain_action(args, REMOVE_ACTION, {"domain": args.name})


def _domain_action(args: argparse.Namespace, action: str, request: dict[str, str]) -> int:
    """Send one domain action to the gateway and print what changed."""
    import json

    body = _send_action(args, action, request)
    if body is None:
        return 1
    answer = json.loads(body)
    changed = ", ".join(answer["changed"]) or "none"
    removed = ", ".join(answer["removed"]) or "none"
    print(f"{answer['file']}: domains changed: {changed}; removed: {removed}")
    return 0


def _send_action(args: argparse.Namespace, action: str, request: dict[str, str]) -> bytes | None:
    """One gateway action as the logged-in user: its answer, or None once the error is printed."""
    import json

    import pyarrow.flight as flight

    options = _client_options(args)
    tls: dict[str, Any] = {}
    if args.tls_ca is not None:
        tls["tls_root_certs"] = args.tls_ca.read_bytes()
    if args.tls_cert is not None and args.tls_key is not None:
        tls["cert_chain"], tls["private_key"] = args.tls_cert.read_bytes(), args.tls_key.read_bytes()
    client = flight.FlightClient(args.server, **tls)
    try:
        headers = []
        if "username" in options:
            headers.append(client.authenticate_basic_token(options["username"], options["password"]))
        body = json.dumps(request).encode()
        results = list(client.do_action(flight.Action(action, body), flight.FlightCallOptions(headers=headers)))
    except flight.FlightError as error:
        print(f"error: {str(error).split('. Detail:')[0]}", file=sys.stderr)
        return None
    finally:
        client.close()
    answer: bytes = results[0].body.to_pybytes()
    return answer


def _is_odcs(text: str) -> bool:
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(document, dict) and document.get("kind") == "DataContract" and "domains" not in document


def _contract_import(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        print(f"error: {args.file}: cannot read: {reason or error}", file=sys.stderr)
        return 2
    return _contract_send(args, text)


def _contract_send(args: argparse.Namespace, text: str) -> int:
    """Publish an ODCS document; print the products changed, what was not kept and any drift."""
    import json

    from gateway.contract_actions import IMPORT_ACTION

    body = _send_action(args, IMPORT_ACTION, {"odcs": text})
    if body is None:
        return 1
    answer = json.loads(body)
    products = ", ".join(f"{answer['domain']}.{name}" for name in answer["products"])
    print(f"{answer['file']}: contract applied to {products}")
    for note in answer["notes"]:
        print(f"  not kept: {note}")
    for drift in answer["drift"]:
        print(f"  drift: {drift}")
    return 0


def _contract_export(args: argparse.Namespace) -> int:
    from gateway.contract_actions import EXPORT_ACTION

    body = _send_action(args, EXPORT_ACTION, {"product": args.product})
    if body is None:
        return 1
    text = body.decode()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"error: {args.output}: cannot write: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise MeshgateError(f"{name}: not a port number: {value!r}") from None


def _telemetry_flags(serve: argparse.ArgumentParser) -> None:
    """``serve``'s flags for metrics, traces, JSON logs and lineage (README: Metrics, traces, logs and lineage)."""
    from gateway.telemetry.logs import LOG_FORMATS

    group = serve.add_argument_group("metrics, traces, logs and lineage (see README)")

    def log_format(value: str) -> str:
        if value not in LOG_FORMATS:
            raise argparse.ArgumentTypeError(f"{value!r} is not one of: {', '.join(LOG_FORMATS)}")
        return value

    group.add_argument(
        "--log-format",
        type=log_format,
        metavar="{text,json}",
        default=os.environ.get("MESHGATE_LOG_FORMAT", "text"),  # a string default goes through `type`
        help="text, or json: one JSON object a line (time, level, logger, message, query_id) (env MESHGATE_LOG_FORMAT)",
    )
    group.add_argument(
        "--metrics-token-file",
        type=Path,
        default=_env_path("MESHGATE_METRICS_TOKEN_FILE"),
        help="serve Prometheus metrics at /metrics of the HTTP listener to scrapers that send this file's token"
        " as 'Authorization: Bearer ...' (default: no /metrics) (env MESHGATE_METRICS_TOKEN_FILE)",
    )
    group.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("MESHGATE_OTLP_ENDPOINT"),
        metavar="URL",
        help="send OpenTelemetry spans of every query to this OTLP/HTTP collector (its base URL: /v1/traces is"
        " added); OTEL_EXPORTER_OTLP_ENDPOINT switches tracing on too (default: off) (env MESHGATE_OTLP_ENDPOINT)",
    )
    group.add_argument(
        "--lineage-file",
        type=Path,
        default=_env_path("MESHGATE_LINEAGE_FILE"),
        help="append an OpenLineage START and COMPLETE/FAIL event of every query to this JSON-lines file"
        " (env MESHGATE_LINEAGE_FILE)",
    )
    group.add_argument(
        "--lineage-url",
        default=os.environ.get("MESHGATE_LINEAGE_URL"),
        metavar="URL",
        help="post the OpenLineage events to this collector (Marquez, DataHub: /api/v1/lineage is added)"
        " (env MESHGATE_LINEAGE_URL)",
    )
    group.add_argument(
        "--lineage-api-key-file",
        type=Path,
        default=_env_path("MESHGATE_LINEAGE_API_KEY_FILE"),
        help="a file holding the collector's API key, sent as a bearer token (env MESHGATE_LINEAGE_API_KEY_FILE)",
    )
    group.add_argument(
        "--lineage-namespace",
        default=os.environ.get("MESHGATE_LINEAGE_NAMESPACE", "meshgate"),
        help="the OpenLineage namespace of the queries (jobs) and products (datasets) (env MESHGATE_LINEAGE_NAMESPACE)",
    )


def _telemetry(args: argparse.Namespace, engine: Engine) -> Telemetry:
    """Metrics, traces and lineage as the flags ask; the engine's catalog is closed if they are wrong."""
    from gateway.telemetry.setup import Telemetry, TelemetrySettings

    if args.metrics_token_file is not None and args.http_port is None and not args.demo:
        engine.catalog.close()
        raise MeshgateError("--metrics-token-file: metrics are served by the HTTP listener: give --http-port too")
    settings = TelemetrySettings(
        metrics_token_file=args.metrics_token_file,
        otlp_endpoint=args.otlp_endpoint,
        lineage_file=args.lineage_file,
        lineage_url=args.lineage_url,
        lineage_namespace=args.lineage_namespace,
        lineage_api_key_file=args.lineage_api_key_file,
    )
    try:
        return Telemetry.start(engine, settings)
    except MeshgateError:
        engine.catalog.close()
        raise


def _serve(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from gateway import heap
    from gateway.audit import AuditLog
    from gateway.config import load_config
    from gateway.engine import Engine, EngineSettings
    from gateway.flightsql.server import FlightSqlServer
    from gateway.limits import Limits
    from gateway.quality import CheckScheduler, QualityLog

    if args.no_auth and not args.demo:
        raise MeshgateError("--no-auth is only allowed with --demo: a mesh served from --config always requires users")
    if args.demo:
        from gateway.demo import write_demo_mesh

        directory = args.demo_dir or Path(tempfile.mkdtemp(prefix="meshgate-demo-"))
        config_path = write_demo_mesh(directory)
        log.info("demo mesh written to %s", directory)
    elif args.config is not None:
        config_path = args.config
    else:
        raise MeshgateError("serve needs --config PATH (or MESHGATE_CONFIG), or --demo")
    config = load_config(config_path)
    audit = AuditLog(args.audit_log)  # queries (the engine) and log-ins (the authenticator)
    authenticator, demo_password = (
        (None, None) if args.no_auth else _authenticator(config, config_path, demo=args.demo, audit=audit)
    )
    tls = _server_tls(args)
    limits = Limits(
        query_memory=args.query_memory,
        gateway_memory=args.gateway_memory,
        max_running=args.max_running,
        queue_seconds=args.queue_timeout,
        max_result_bytes=args.max_result,
        spill_path=args.spill_dir,
    )
    engine = Engine.from_config(
        config,
        EngineSettings(limits=limits),
        audit=audit,
        quality=QualityLog(args.quality_log),
        mask_key=_mask_key(config),
    )
    catalog = engine.catalog
    _log_catalog(catalog)
    scheme = "grpc+tls" if tls else "grpc"
    location = f"{scheme}://{args.host}:{args.port}"
    reloader = None
    from gateway.contract_actions import EXPORT_ACTION, IMPORT_ACTION, export_action, import_action

    actions = {EXPORT_ACTION: export_action(engine)}
    if not args.demo:
        from gateway.reload import APPLY_ACTION, REMOVE_ACTION, Reloader, apply_action, remove_action

        reloader = Reloader(engine, Path(config_path), interval=args.watch_interval, installed=heap.settle)
        actions[APPLY_ACTION] = apply_action(reloader)
        actions[REMOVE_ACTION] = remove_action(reloader)
        actions[IMPORT_ACTION] = import_action(reloader)
    telemetry = _telemetry(args, engine)
    web = _http_server(args, engine, authenticator, telemetry)
    http = web[0] if web is not None else None
    try:
        if _port_in_use(args.host, args.port):  # asked before gRPC, which would log lines of its own about it
            raise pa.ArrowException("port in use")
        server = FlightSqlServer(
            engine,
            location,
            authenticator=authenticator,
            statement_timeout=args.statement_timeout,
            client_timeout=args.client_timeout,
            actions=actions,
            **tls,
        )
    except pa.ArrowException as error:  # gRPC logs why (port in use, ...) and pyarrow says only this
        if http is not None:
            http.stop()
        catalog.close()
        if _port_in_use(args.host, args.port):
            raise MeshgateError(
                f"port {args.port} on {args.host} is already in use (another meshgate?): choose another with --port"
            ) from None
        raise MeshgateError(f"cannot serve at {location}: {error}") from error

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("stopping at once (signal %d again): the queries in progress are dropped", signum)
            logging.shutdown()
            os._exit(1)
        log.info("stopping (signal %d)", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    uri = f"{scheme}://{args.host}:{server.port}"
    _log_security(args, authenticator, uri)
    if web is not None:  # before the "serving" line, which tells scripts (and tests) that all is up
        http, state = web
        state.flight_uri = uri
        http.start()
        log.info("catalog in the browser at %s (health: %s/healthz, %s/readyz)", http.url, http.url, http.url)
        _log_http_security(args, http)
    log.info("Meshgate %s serving catalog '%s' at %s", __version__, catalog.name, uri)
    if args.demo:
        log.info("try: %s", _try_command(uri, demo_password))
        if web is not None:
            sign_in = f", signing in as '{_DEMO_USER}' with the password above" if demo_password else ""
            log.info("or browse the data products at %s%s", web[0].url, sign_in)
    if reloader is not None and args.watch_interval > 0:
        reloader.start()
        log.info("watching %s for changed domain files every %.1f s", config_path, args.watch_interval)
    scheduler = None
    if args.checks_every is not None:
        scheduler = CheckScheduler(engine, args.checks_every)
        scheduler.start()
        log.info("quality checks run now and every %s s", f"{args.checks_every:g}")
    heap.settle()  # start-up's objects out of full garbage collections (gateway/heap.py)
    # The server already serves (its threads are gRPC's): this thread waits for a signal,
    # in Python, where the handler above runs (server.serve() would wait in C++ instead).
    # In short waits: a signal the kernel hands to another thread runs the handler only once
    # this thread runs Python again, and a wait without a timeout would not return for it.
    while not stopping.wait(0.2):
        pass
    ended = server.shutdown(grace=args.shutdown_grace)
    if http is not None:
        http.stop()
    telemetry.close()
    if scheduler is not None:
        scheduler.stop()
    if reloader is not None:
        reloader.stop()
    catalog.close()
    if not ended:
        # gRPC cannot be told to drop those calls from Python, and the interpreter would wait
        # for their threads at exit: end the process here, everything else closed.
        log.warning("some calls still write to clients that read no more; stopping without them")
        logging.shutdown()
        os._exit(0)
    return 0


_DEMO_USER = "demo"


def _http_server(
    args: argparse.Namespace, engine: Engine, authenticator: Authenticator | None, telemetry: Telemetry | None = None
) -> tuple[HttpServer, WebState] | None:
    """The HTTP listener (catalog pages, health), bound now; None when it is off (``--http-port`` unset)."""
    port = args.http_port if args.http_port is not None else (DEFAULT_HTTP_PORT if args.demo else None)
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise MeshgateError(f"--http-port must be a port number from 0 to 65535, not {port}")
    from gateway.web.app import WebState, create_app
    from gateway.web.server import HttpServer, HttpTls

    # The Flight endpoint's certificate and key (checked by _server_tls already): HTTPS only, no plain HTTP.
    tls = HttpTls(args.tls_cert, args.tls_key) if args.tls_cert is not None and args.tls_key is not None else None
    state = WebState(engine, authenticator, flight_uri="", https=tls is not None)
    if telemetry is not None:
        state.metrics, state.metrics_token = telemetry.metrics, telemetry.metrics_token
    host = args.http_host or args.host
    try:
        try:
            http = HttpServer(create_app(state), host, port, tls)
        except MeshgateError as busy:
            if args.http_port is not None:
                raise
            # The demo's default port is taken: the demo still starts, on a free port it names.
            log.warning("%s; the demo's catalog listens on a free port instead", busy)
            http = HttpServer(create_app(state), host, 0, tls)
    except MeshgateError:
        engine.catalog.close()
        raise
    return http, state


def _log_http_security(args: argparse.Namespace, http: HttpServer) -> None:
    """Say when sign-in passwords would cross the network unencrypted, and that browsers need no client certificate."""
    if http.tls is None and not http.loopback:
        log.warning(
            "the HTTP listener on %s serves plain http://: passwords cross the network in clear text at sign-in;"
            " use --tls-cert and --tls-key",
            http.host,
        )
    elif http.tls is not None and args.tls_client_ca is not None:
        log.warning(
            "mutual TLS (--tls-client-ca) applies to Flight SQL only: the HTTPS listener asks browsers for no"
            " certificate, they sign in with a password"
        )


def _try_command(uri: str, password: str | None) -> str:
    """The demo's first query as a command line to copy. ``--password=`` with the ``=``: a random
    password may start with ``-`` (one in 64), which argparse would take for an option."""
    login = f" --user {_DEMO_USER} --password={password}" if password else ""
    return f'{_meshgate_command()} query --server {uri}{login} "SELECT * FROM sales.customers LIMIT 5"'


def _meshgate_command() -> str:
    """How to run this very ``meshgate`` from any shell: its resolved path (``python -m gateway`` otherwise)."""
    import shlex

    script = Path(sys.argv[0])
    if script.name == "meshgate" and script.is_file():
        return shlex.quote(str(script.resolve()))
    beside = Path(sys.executable).absolute().parent / "meshgate"
    if beside.is_file():
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m gateway"


def _authenticator(
    config: MeshConfig, config_path: Path, *, demo: bool, audit: AuditLog | None = None
) -> tuple[Authenticator, str | None]:
    """Who may connect: the config's users, or (``--demo`` without users) a demo user.

    Answers the authenticator and, for the demo user, its password (random at every start).
    Every log-in attempt is recorded in ``audit``.
    """
    import secrets

    from gateway.auth import Authenticator, User, hash_password

    if config.auth is None and demo:
        password = secrets.token_urlsafe(12)
        log.warning("demo login: user '%s', password '%s' (new at every start)", _DEMO_USER, password)
        return Authenticator([User(_DEMO_USER, hash_password(password))], audit=audit), password
    if config.auth is None:
        raise MeshgateError(
            f"{config_path}: no users configured, and authentication is required: add an 'auth:' section with"
            " users (`meshgate user hash NAME` prints an entry; README, 'Connecting'). --no-auth is only for --demo."
        )
    try:
        authenticator = Authenticator(
            config.auth.users, key=_token_key(config), token_ttl_seconds=config.auth.token_ttl_seconds, audit=audit
        )
    except ValueError as error:
        raise MeshgateError(f"{config.auth.file}: auth: {error}") from error
    return authenticator, None


def _token_key(config: MeshConfig) -> bytes | None:
    """The token signing key: ``MESHGATE_TOKEN_KEY``, else ``auth.token_key_file``, else generated."""
    from gateway.auth import MIN_TOKEN_KEY_BYTES

    assert config.auth is not None
    if os.environ.get("MESHGATE_TOKEN_KEY"):
        key, source = os.environ["MESHGATE_TOKEN_KEY"].encode("utf-8"), "MESHGATE_TOKEN_KEY"
    elif config.auth.token_key_file is not None:
        key, source = _read_file(config.auth.token_key_file, "auth.token_key_file").strip(), "auth.token_key_file"
    else:
        log.info(
            "tokens are signed with a key generated at start: they stop working when the gateway stops"
            " (set MESHGATE_TOKEN_KEY or auth.token_key_file to share a key across restarts and replicas)"
        )
        return None
    if len(key) < MIN_TOKEN_KEY_BYTES:
        raise MeshgateError(
            f"{source}: the token signing key must be at least {MIN_TOKEN_KEY_BYTES} bytes, got {len(key)}"
            " (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return key


def _mask_key(config: MeshConfig, *, warn: bool = True) -> bytes:
    """The ``hash`` mask's HMAC key: ``MESHGATE_MASK_KEY``, else ``auth.mask_key_file``, else generated.

    Read at start: a new key (a rotation) takes effect when the gateway restarts. ``warn``:
    say so when the key is generated (``checks run`` runs as the platform, masks do not apply).
    """
    from gateway.governance import decode_mask_key, generate_mask_key

    if os.environ.get("MESHGATE_MASK_KEY"):
        text, source = os.environ["MESHGATE_MASK_KEY"].encode("utf-8"), "MESHGATE_MASK_KEY"
    elif config.auth is not None and config.auth.mask_key_file is not None:
        path = config.auth.mask_key_file
        text, source = _read_file(path, "auth.mask_key_file"), f"{config.auth.file}: auth.mask_key_file ({path})"
    else:
        if warn:
            log.warning(
                "the hash mask uses a key generated at start: hashed values change at every restart and differ"
                " between replicas (set MESHGATE_MASK_KEY or auth.mask_key_file to keep them stable)"
            )
        return generate_mask_key()
    try:
        return decode_mask_key(text)
    except ValueError as error:
        raise MeshgateError(f"{source}: {error}") from None


def _server_tls(args: argparse.Namespace) -> dict[str, Any]:
    """``FlightServerBase`` TLS options from ``--tls-cert/--tls-key/--tls-client-ca``."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise MeshgateError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return {}
    if args.tls_cert is None or args.tls_key is None:
        raise MeshgateError("--tls-cert and --tls-key go together: the server certificate and its private key")
    cert, key = _read_pem(args.tls_cert, "--tls-cert"), _read_pem(args.tls_key, "--tls-key")
    _check_tls_files(args.tls_cert, args.tls_key, args.tls_client_ca)
    options: dict[str, Any] = {"tls_certificates": [(cert, key)]}
    if args.tls_client_ca is not None:
        options |= {"verify_client": True, "root_certificates": _read_pem(args.tls_client_ca, "--tls-client-ca")}
    return options


def _port_in_use(host: str, port: int) -> bool:
    """Whether another process listens on ``host:port`` (a bind as gRPC makes it, with SO_REUSEADDR)."""
    import errno
    import socket

    if port == 0:
        return False
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return True
    return False


def _check_tls_files(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Load the files with the stdlib ``ssl`` module: gRPC only says "did not start" otherwise."""
    import ssl

    def encrypted() -> bytes:
        raise MeshgateError(f"--tls-key: {key} is encrypted; give the gateway an unencrypted key (readable by it only)")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=encrypted)
    except ssl.SSLError as error:
        raise MeshgateError(f"--tls-cert/--tls-key: {cert}, {key}: not a certificate and its key: {error}") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as error:
            raise MeshgateError(f"--tls-client-ca: {client_ca} holds no CA certificate: {error}") from None


def _log_security(args: argparse.Namespace, authenticator: Authenticator | None, uri: str) -> None:
    if authenticator is None:
        banner = "*" * 78
        log.warning(banner)
        log.warning("AUTHENTICATION IS OFF (--no-auth): anyone who reaches %s can query every data product.", uri)
        log.warning("This development mode exists only for the demo; `serve --config` always requires users.")
        log.warning(banner)
    else:
        users, ttl = len(authenticator.users), authenticator.token_ttl_seconds
        log.info("authentication required: %s; tokens valid %d s", _plural(users, "user"), ttl)
    if args.tls_cert is None and args.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning(
            "serving without TLS on %s: passwords, tokens and results cross the network in clear text;"
            " use --tls-cert and --tls-key",
            args.host,
        )
    elif args.tls_client_ca is not None:
        log.info("mutual TLS: clients need a certificate signed by %s", args.tls_client_ca)


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MeshgateError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc


def _read_pem(path: Path, what: str) -> bytes:
    data = _read_file(path, what)
    if b"-----BEGIN " not in data:
        raise MeshgateError(f"{what}: {path} is not a PEM file (expected a '-----BEGIN ...' block)")
    return data


def _log_catalog(catalog: object) -> None:
    from gateway.catalog import MeshCatalog

    assert isinstance(catalog, MeshCatalog)
    for domain in catalog.domains():
        if domain.error is not None:
            log.error("domain %s: OFFLINE: %s", domain.name, domain.error)
        else:
            products = _plural(len(domain.products), "product")
            log.info("domain %s: %s (%s)", domain.name, products, ", ".join(domain.products))


def _query(args: argparse.Namespace) -> int:
    """``meshgate query`` and ``meshgate shell``: the flags onto :func:`gateway.shell.run`."""
    from gateway.shell import ShellOptions, run, server_uri

    if args.sql is not None and args.file is not None:
        print("error: give the SQL or a file (-f), not both", file=sys.stderr)
        return 2
    if args.format == "parquet" and args.output is None:
        print("error: --format parquet writes a binary file: add --output FILE", file=sys.stderr)
        return 2
    tls = args.tls_ca is not None or args.tls_cert is not None or args.tls_key is not None
    args.server = server_uri(args.server, tls=tls)
    try:
        options = _client_options(args)
    except MeshgateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(ShellOptions(args.server, options, sql=args.sql, file=args.file, fmt=args.format, output=args.output))


def _client_options(args: argparse.Namespace) -> dict[str, str]:
    """ADBC Flight SQL options for ``--user/--password`` and ``--tls-ca/--tls-cert/--tls-key``."""
    from adbc_driver_flightsql import DatabaseOptions

    options: dict[str, str] = {}
    if args.user is not None:
        password = args.password
        if password is None and sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"password for {args.user}: ")
        if password is None:
            raise MeshgateError("--user needs a password: set MESHGATE_PASSWORD, or pass --password")
        options |= {"username": args.user, "password": password}
    elif args.password is not None:
        raise MeshgateError("--password needs --user (or MESHGATE_USER)")
    tls = args.tls_ca is not None or args.tls_cert is not None or args.tls_key is not None
    if tls and not args.server.startswith("grpc+tls://"):
        raise MeshgateError(f"TLS options need a grpc+tls:// server, not {args.server}")
    if args.tls_ca is not None:
        options[DatabaseOptions.TLS_ROOT_CERTS.value] = _read_pem(args.tls_ca, "--tls-ca").decode()
    if (args.tls_cert is None) != (args.tls_key is None):
        raise MeshgateError("--tls-cert and --tls-key go together: the client certificate and its private key")
    if args.tls_cert is not None:
        options[DatabaseOptions.MTLS_CERT_CHAIN.value] = _read_pem(args.tls_cert, "--tls-cert").decode()
        options[DatabaseOptions.MTLS_PRIVATE_KEY.value] = _read_pem(args.tls_key, "--tls-key").decode()
    return options


def _user_hash(args: argparse.Namespace) -> int:
    """Print a ``users`` entry with an argon2id hash of a password read from the terminal or stdin."""
    import getpass

    import yaml

    from gateway.auth import USER_NAME_PATTERN, hash_password

    if not USER_NAME_PATTERN.match(args.name):
        raise MeshgateError(f"'{args.name}' is not a valid user name: use at most 128 letters, digits and _ . @ + -")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise MeshgateError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise MeshgateError("the password is empty")
    entry = [{"name": args.name, "password_hash": hash_password(password)}]
    print(yaml.safe_dump(entry, sort_keys=False, width=1000), end="")
    print("# add this entry under auth.users in the mesh config (or under users in the users file)", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    """``meshgate check``: the config, each domain and product, a summary; exit 1 when any is not served.

    A domain whose source cannot be reached (offline) or a product blocked by contract drift
    (``on_drift: block``) fails the check; a flagged product (drift, still served) does not.
    """
    from gateway.catalog import MeshCatalog
    from gateway.config import load_config

    if args.config is None:
        raise MeshgateError("check needs --config PATH (or MESHGATE_CONFIG)")
    config = load_config(args.config)
    print(f"config {args.config}: catalog '{config.catalog}', {_plural(len(config.domains), 'domain')}")
    if config.auth is None:
        print("auth: no users declared: `meshgate serve` refuses to serve this config")
    else:
        names = ", ".join(user.name for user in config.auth.users)
        print(
            f"auth: {_plural(len(config.auth.users), 'user')} ({names}); tokens valid {config.auth.token_ttl_seconds} s"
        )
    catalog = MeshCatalog(config)
    offline = 0
    statuses: dict[str, int] = {"ok": 0, "flagged": 0, "blocked": 0}
    try:
        for domain in catalog.domains():
            connector = domain.config.connector
            where = f"{connector.type} {connector.location}"
            if domain.error is not None:
                offline += 1
                print(f"  FAIL {domain.name} ({where}, {domain.config.file}): {domain.error}")
                continue
            print(f"  ok   {domain.name} ({where}): {_plural(len(domain.products), 'product')}")
            for product in domain.products.values():
                statuses[product.status] += 1
                description = f" - {product.description}" if product.description else ""
                print(f"         {domain.name}.{product.name}: {_plural(len(product.schema), 'column')}{description}")
                for drift in product.drift:
                    print(f"           {product.status.upper()}: {drift}")
    finally:
        catalog.close()
    domains = len(catalog.domains())
    products = sum(statuses.values())
    counts = ", ".join(f"{n} {status}" for status, n in statuses.items() if n or status == "ok")
    print(
        f"{_plural(domains, 'domain')}: {domains - offline} online, {offline} offline;"
        f" {_plural(products, 'product')}: {counts}"
    )
    return 1 if offline or statuses["blocked"] else 0


def _plural(count: int, noun: str) -> str:
    """``1 product``, ``2 products``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _checks_run(args: argparse.Namespace) -> int:
    """``meshgate checks run``: one line per check, a summary, exit 1 on any failure."""
    from gateway.config import load_config
    from gateway.engine import Engine
    from gateway.quality import QualityLog, run_checks

    if args.config is None:
        raise MeshgateError("checks run needs --config PATH (or MESHGATE_CONFIG)")
    config = load_config(args.config)
    engine = Engine.from_config(config, quality=QualityLog(args.quality_log), mask_key=_mask_key(config, warn=False))
    try:
        results = run_checks(engine, args.domain, refresh=False)  # the engine has just read every source
    finally:
        engine.close()
    width = max((len(f"{r.domain}.{r.product}") for r in results), default=0)
    check_width = max((len(r.check) for r in results), default=0)
    for r in results:
        observed = f" (observed {r.observed:g})" if r.observed is not None else ""
        product = f"{r.domain}.{r.product}"
        print(f"{r.outcome.upper():<5} {product:<{width}}  {r.check:<{check_width}}  {r.detail}{observed}")
    failed = sum(r.outcome == "fail" for r in results)
    errors = sum(r.outcome == "error" for r in results)
    print(f"{len(results)} checks: {len(results) - failed - errors} passed, {failed} failed, {errors} could not run")
    return 1 if failed or errors else 0
