"""The ``meshgate`` command: thin flag parsing over config, engine and server.

Every flag can also be given as an environment variable (``MESHGATE_CONFIG``,
``MESHGATE_HOST``, ``MESHGATE_PORT``, ``MESHGATE_SERVER``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gateway import __version__
from gateway.errors import MeshgateError

log = logging.getLogger("meshgate")

DEFAULT_PORT = 32010


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("MESHGATE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.run(args)
        return code
    except MeshgateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshgate", description="A federated SQL gateway for a data mesh.")
    parser.add_argument("--version", action="version", version=f"meshgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a mesh over Arrow Flight SQL")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, default=_env_path("MESHGATE_CONFIG"), help="YAML file or directory")
    source.add_argument("--demo", action="store_true", help="serve a generated demo mesh (no external server)")
    serve.add_argument("--demo-dir", type=Path, default=None, help="where --demo writes its mesh (default: a temp dir)")
    serve.add_argument("--host", default=os.environ.get("MESHGATE_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("MESHGATE_PORT", DEFAULT_PORT)))
    serve.set_defaults(run=_serve)

    query = commands.add_parser("query", help="run SQL through a Meshgate (or any Flight SQL) server")
    query.add_argument("sql", help="the SQL to run")
    query.add_argument(
        "--server", default=os.environ.get("MESHGATE_SERVER", f"grpc://127.0.0.1:{DEFAULT_PORT}"), help="grpc://HOST:PORT"
    )
    query.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    query.add_argument("--output", type=Path, default=None, help="write to this file instead of standard output")
    query.set_defaults(run=_query)

    check = commands.add_parser("check", help="validate a config and connect to every source")
    check.add_argument("--config", type=Path, default=_env_path("MESHGATE_CONFIG"), required=False)
    check.set_defaults(run=_check)
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _serve(args: argparse.Namespace) -> int:
    from gateway.catalog import MeshCatalog
    from gateway.config import load_config
    from gateway.engine import Engine
    from gateway.flightsql.server import FlightSqlServer

    if args.demo:
        from gateway.demo import write_demo_mesh

        directory = args.demo_dir or Path(tempfile.mkdtemp(prefix="meshgate-demo-"))
        config_path = write_demo_mesh(directory)
        log.info("demo mesh written to %s", directory)
    elif args.config is not None:
        config_path = args.config
    else:
        raise MeshgateError("serve needs --config PATH (or MESHGATE_CONFIG), or --demo")
    catalog = MeshCatalog(load_config(config_path))
    _log_catalog(catalog)
    location = f"grpc://{args.host}:{args.port}"
    server = FlightSqlServer(Engine(catalog), location)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d)", signum)
        server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("Meshgate %s serving catalog '%s' at grpc://%s:%d", __version__, catalog.name, args.host, server.port)
    if args.demo:
        log.info(
            'try: meshgate query --server grpc://%s:%d "SELECT * FROM sales.customers LIMIT 5"', args.host, server.port
        )
    server.serve()
    catalog.close()
    return 0


def _log_catalog(catalog: object) -> None:
    from gateway.catalog import MeshCatalog

    assert isinstance(catalog, MeshCatalog)
    for domain in catalog.domains():
        if domain.error is not None:
            log.error("domain %s: OFFLINE: %s", domain.name, domain.error)
        else:
            log.info("domain %s: %d products (%s)", domain.name, len(domain.products), ", ".join(domain.products))


def _query(args: argparse.Namespace) -> int:
    import warnings

    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_manager import Error as AdbcError

    from gateway.output import write_result

    if args.format == "parquet" and args.output is None:
        print("error: --format parquet writes a binary file: add --output FILE", file=sys.stderr)
        return 2
    # Flight SQL has no transactions; the DB-API wrapper warns about it on every connect.
    warnings.filterwarnings("ignore", message="Cannot disable autocommit")
    try:
        with flightsql.connect(args.server) as connection, connection.cursor() as cursor:
            cursor.execute(args.sql)
            reader = cursor.fetch_record_batch()
            write_result(reader, args.format, args.output)
    except AdbcError as error:
        print(f"error: {_adbc_message(error)}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _adbc_message(error: Exception) -> str:
    """ADBC prefixes messages with driver noise; keep the server's own words."""
    text = str(error)
    for marker in ("[FlightSQL] ", "Flight SQL "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.split(" (", 1)[0] if text.endswith(")") and "(" in text else text


def _check(args: argparse.Namespace) -> int:
    from gateway.catalog import MeshCatalog
    from gateway.config import load_config

    if args.config is None:
        raise MeshgateError("check needs --config PATH (or MESHGATE_CONFIG)")
    config = load_config(args.config)
    print(f"config {args.config}: catalog '{config.catalog}', {len(config.domains)} domains")
    catalog = MeshCatalog(config)
    failed = 0
    try:
        for domain in catalog.domains():
            connector = domain.config.connector
            where = f"{connector.type} {connector.location}"
            if domain.error is not None:
                failed += 1
                print(f"  FAIL {domain.name} ({where}, {domain.config.file}): {domain.error}")
                continue
            print(f"  ok   {domain.name} ({where}): {len(domain.products)} products")
            for product in domain.products.values():
                description = f" - {product.description}" if product.description else ""
                print(f"         {domain.name}.{product.name}: {len(product.schema)} columns{description}")
    finally:
        catalog.close()
    if failed:
        print(f"{failed} of {len(catalog.domains())} domains failed")
        return 1
    print("all sources reachable")
    return 0
