"""A remote Flight SQL server as a domain, through the ADBC Flight SQL driver (``adbc_driver_flightsql``).

``uri`` is ``grpc://host:port`` or ``grpc+tls://host:port``. Options:

- ``username`` / ``password``: the Flight handshake's basic credentials (answered with a bearer
  token). Write the password as a reference (``${INNER_PASSWORD}``): it is expanded when the config
  loads, handed to the driver only, and never part of a message, a log line or ``EXPLAIN``.
- ``tls_root_certs``: a PEM file of the CA(s) a ``grpc+tls`` server's certificate must chain to
  (default: the system's); ``tls_override_hostname``: the name to check the certificate against.
- ``timeout``: seconds a source query may take at most when the query has no deadline of its own.
- ``pool_size``: idle connections kept (default 4).

The server is asked who it is (GetSqlInfo through ``adbc_get_info``: vendor name and version) on the
first connection. A server known to run Apache DataFusion (a Meshgate gateway, roapi) computes as the
gateway's own engine does, so filters with functions, LIMIT and whole queries are pushed to it in
DataFusion's SQL (written in sqlglot's ``postgres`` dialect: double-quoted identifiers, ``''`` in
strings, ``CAST(... AS DATE)``). Any other server is only sent projections, comparisons and
``AND``/``OR``/``IN``/``IS NULL`` over columns and constants, and LIMIT; the rest stays in the gateway.

Products come from the server's catalog (``adbc_get_objects``: GetCatalogs, GetDbSchemas, GetTables),
named by the remote table (``schema_table`` when the remote has several schemas) and read by their
fully qualified remote name; columns from ``adbc_get_table_schema`` (a product's ``sql:`` through
``adbc_execute_schema``). Primary keys and NOT NULL columns are the ones the server reports.

Each scan runs on a pooled connection with the driver's RPC timeouts set to the time left before its
deadline, and a cancel or the deadline stops it with ``adbc_cancel``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi
import pyarrow as pa
from adbc_driver_manager.dbapi import Connection, Cursor
from cachetools import TTLCache
from sqlglot import exp

from connectors.adbc import AdbcConnector
from connectors.base import STATS_SECONDS, DiscoveredProduct, SourceObject, SqlCapabilities
from connectors.deadline import before, remaining
from connectors.naming import identifier, unique
from connectors.postgres import FUNCTIONS as POSTGRES_FUNCTIONS
from connectors.sqlbase import SourceColumn
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, MeshgateError, QueryTimeoutError, SourceError, SourceUnavailableError
from meshcore.sql import ENGINE

log = logging.getLogger(__name__)

_Db = adbc_driver_flightsql.DatabaseOptions

# DataFusion's own functions, written through sqlglot's postgres dialect and parsed back by the remote's
# DataFusion: the lists of the PostgreSQL connector (all DataFusion names) plus what only differs
# between DataFusion and other engines (upper/lower, ends_with), since the remote is DataFusion too.
DATAFUSION_FUNCTIONS = POSTGRES_FUNCTIONS | frozenset({"upper", "lower", "ends_with"})

DATAFUSION = SqlCapabilities(
    dialect="postgres", functions=DATAFUSION_FUNCTIONS, supports_ilike=True, distinct_windows=True
)
"""A remote that runs Apache DataFusion computes exactly as the gateway does."""

OTHER = SqlCapabilities(
    dialect="postgres",
    supports_like=False,
    binary_string_order=False,
    supports_full_query=False,
    temporal_literals="none",
    exact_decimals=False,
)
"""An unknown server: plain comparisons of columns and constants, no text ordering, nothing whole."""

# Servers known to be DataFusion inside, by GetSqlInfo's server name (FLIGHT_SQL_SERVER_NAME).
_DATAFUSION_SERVERS = re.compile(r"meshgate|roapi|datafusion|ballista|spice|influx", re.IGNORECASE)
_CONNECT_TIMEOUT = 10.0
ACCEPT_WAIT = 2.0
"""Seconds the remote may take to prepare a query the planner would send it (:meth:`FlightSqlConnector.accepts`)."""
_STATUS = re.compile(r"^[A-Z_]+: ")
_DECORATION = re.compile(r"\. Detail: | \([A-Z][a-z]+; |\. Vendor code: ")
_VIEW_TYPES = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}


@dataclass(frozen=True)
class Server:
    """What a remote says of itself (GetSqlInfo)."""

    name: str
    version: str

    @property
    def datafusion(self) -> bool:
        return bool(_DATAFUSION_SERVERS.search(self.name))

    @property
    def plans_as_this_gateway(self) -> bool:
        """A Meshgate gateway planning with this one's engine (its version ends ``(DataFusion 55.0.0)``)."""
        return self.name == "Meshgate" and self.version.endswith(f"({ENGINE})")


class FlightSqlConnector(AdbcConnector):
    """A Flight SQL server. Options: see the module doc."""

    kind = "flightsql"
    config_keys = frozenset(
        {"uri", "username", "password", "pool_size", "timeout", "tls_root_certs", "tls_override_hostname"}
    )
    admin_keys = frozenset({"username", "password", "tls_root_certs", "tls_override_hostname"})
    path_keys = frozenset({"tls_root_certs"})
    capabilities = OTHER  # replaced per instance once the server said who it is (see ``capabilities_of``)
    # No reuse of prepared statements: the driver copies the connection's RPC timeouts into a statement
    # when it is created, so a kept one would run later scans with an earlier scan's deadline; and the
    # remote may forget a handle (a Meshgate gateway drops one after 5 minutes unused, or when it holds
    # too many), which fails at execution with an error no different from the query's own.
    reuses_statements = False
    # Not every server binds a prepared statement's parameters (roapi 0.12: "do_put_prepared_statement_query
    # not implemented", and a prepared statement with parameters failed when it went to it whole): each
    # execution plans with its values written into the query instead.
    binds_parameters = False

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if not config.uri:
            raise ConfigError(f"domain {domain!r}: a flightsql connector needs a uri (grpc://host:port)")
        if not config.uri.startswith(("grpc://", "grpc+tls://", "grpc+tcp://")):
            raise ConfigError(
                f"domain {domain!r}: a flightsql uri starts with grpc:// or grpc+tls:// (got {config.location})"
            )
        options = dict(config.options)
        self._database: dict[str, str] = {}
        for key in ("username", "password"):
            value = options.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"domain {domain!r}: connector option {key} must be text")
        if (options.get("username") is None) != (options.get("password") is None):
            raise ConfigError(f"domain {domain!r}: a flightsql connector takes username and password together")
        if options.get("username") is not None:
            self._database["username"] = str(options["username"])
            self._database["password"] = str(options["password"])
        certs = options.get("tls_root_certs")
        if certs is not None:
            path = Path(str(certs))
            if not path.is_file():
                raise ConfigError(f"domain {domain!r}: connector option tls_root_certs: no file {path}")
            self._database[_Db.TLS_ROOT_CERTS.value] = path.read_text()
        hostname = options.get("tls_override_hostname")
        if hostname is not None:
            self._database[_Db.TLS_OVERRIDE_HOSTNAME.value] = str(hostname)
        timeout = options.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigError(f"domain {domain!r}: connector option timeout must be a number of seconds > 0")
        self._timeout: float | None = float(timeout) if timeout is not None else None
        super().__init__(domain, config)
        self.uri = config.uri
        self._server: Server | None = None
        self._server_lock = threading.Lock()
        self._not_null: dict[SourceObject, tuple[str, ...]] = {}
        self._accepted: TTLCache[str, bool] = TTLCache(maxsize=1024, ttl=STATS_SECONDS)
        self._accepted_lock = threading.Lock()

    # -- connections ------------------------------------------------------------------
    def connect(self, deadline: float | None = None) -> Connection:
        left = remaining(deadline)
        seconds = _CONNECT_TIMEOUT if left is None else min(_CONNECT_TIMEOUT, max(0.5, left))
        options = {**self._database, _Db.TIMEOUT_QUERY.value: str(seconds)}
        connection = adbc_driver_flightsql.dbapi.connect(self.uri, db_kwargs=options, autocommit=True)
        try:
            self._bound_rpcs(connection, self._timeout)
            if self._server is None:
                self._learn(connection)
        except Exception:
            with suppress(Exception):
                connection.close()
            raise
        return connection

    def _learn(self, connection: Connection) -> None:
        info = {str(key): value for key, value in connection.adbc_get_info().items()}
        server = Server(str(info.get("vendor_name") or ""), str(info.get("vendor_version") or ""))
        with self._server_lock:
            self._server = server
            # Instance attribute shadowing the class default: the planner reads connector.capabilities.
            self.capabilities = DATAFUSION if server.datafusion else OTHER  # type: ignore[misc]

    @property
    def server(self) -> Server | None:
        """The remote's name and version (GetSqlInfo), once a connection asked; None before."""
        return self._server

    def _bound_rpcs(self, connection: Connection, seconds: float | None) -> None:
        value = "0" if seconds is None else f"{max(seconds, 0.001):.3f}"
        connection.adbc_connection.set_options(**{_Db.TIMEOUT_QUERY.value: value, _Db.TIMEOUT_FETCH.value: value})

    def bound(self, connection: Connection, deadline: float) -> None:
        """The driver's query and fetch RPCs end by ``deadline`` (the remote sees its call cancelled)."""
        left = remaining(deadline) or 0.001
        self._bound_rpcs(connection, left if self._timeout is None else min(left, self._timeout))

    def unbound(self, connection: Connection) -> None:
        self._bound_rpcs(connection, self._timeout)

    def lost_connection(self, exc: BaseException) -> bool:
        """The server is gone, or no longer accepts the connection's log-in (its bearer token expired:
        a Meshgate gateway's after 8 h by default): a pooled connection is replaced by a new one."""
        text = str(exc)
        signs = ("(Unavailable;", "connection error", "transport is closing", "(Unauthenticated;")
        return any(sign in text for sign in signs)

    def message(self, exc: BaseException) -> str:
        """The server's message without the driver's decorations (status, RPC, ``Detail:``, vendor code).

        >>> FlightSqlConnector.message(None, Exception(  # type: ignore[arg-type]
        ...     "IO: [FlightSQL] error reading from server: EOF (Unavailable; DoGet: endpoint 0: []; possible"
        ...     " causes: server crashed). Detail: Unavailable (Unavailable; DoGet)"))
        'error reading from server: EOF'
        """
        text = _STATUS.sub("", str(exc)).replace("[FlightSQL] ", "")
        text = _DECORATION.split(text, maxsplit=1)[0]
        return " ".join(text.split()).rstrip(".") or type(exc).__name__

    def error(self, exc: BaseException) -> SourceError:
        if isinstance(exc, SourceError):
            return exc
        if "(Unauthenticated;" in str(exc):
            user = self._database.get("username")
            who = f"as {user!r}" if user else "without credentials"
            return SourceUnavailableError(self.domain, self.label, f"the server refused the log-in {who}")
        return super().error(exc)

    def _open(self, deadline: float | None) -> Connection:
        try:
            return super()._open(deadline)
        except SourceUnavailableError as error:
            if "(Unauthenticated;" in str(error.__cause__):
                raise self.error(error.__cause__) from None  # type: ignore[arg-type]
            raise

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        """As every source's, and no ``NOT IN`` of a subquery to a DataFusion of another version:
        roapi 0.12 runs it as an anti join that is not aware of NULLs, and answered ``i NOT IN
        (SELECT j ...)`` with the rows whose ``i`` is NULL, and all rows where a ``j`` is NULL
        (DataFusion 55: none)."""
        same_engine = self._server is not None and self._server.plans_as_this_gateway
        if not same_engine and any(_not_in_subquery(node) for node in query.find_all(exp.In)):
            return None
        return super().whole_query(query, schemas, output)

    def accepts(self, sql: str) -> bool:
        """Whether the remote prepares ``sql`` (CreatePreparedStatement: planned, not run); a
        refusal is kept for :data:`STATS_SECONDS`, like the acceptance.

        A DataFusion server is given the gateway's own DataFusion's capabilities, but one of another
        version does not know all of its SQL: roapi 0.12 cannot add an integer to a date and does not
        parse ``FILTER`` on a window aggregate, and such a query, sent whole, failed where the
        federated route answers. A remote that does not answer within :data:`ACCEPT_WAIT` seconds,
        or cannot be reached, is not sent the query either (and asked again next time). A Meshgate
        gateway that plans with this one's engine is not asked: preparing would plan the query there
        twice (its run-time filters compute their build inputs while planning).
        """
        if self._server is not None and self._server.plans_as_this_gateway:
            return True  # the same engine parses and plans what this one writes: no second planning there
        with self._accepted_lock:
            known = self._accepted.get(sql)
        if known is not None:
            return known

        def prepare(cursor: Cursor) -> None:
            cursor.adbc_prepare(sql)

        try:
            deadline = time.monotonic() + ACCEPT_WAIT
            before(deadline, lambda: self.run(prepare), abandon=lambda _: None, source=self.source)
        except (SourceUnavailableError, QueryTimeoutError) as error:
            log.info("[%s/%s] not sending a query it cannot answer now: %s", self.domain, self.kind, error)
            return False
        except MeshgateError as error:
            log.info("[%s/%s] the remote cannot plan a query the gateway wrote: %s", self.domain, self.kind, error)
            verdict = False
        else:
            verdict = True
        with self._accepted_lock:
            self._accepted[sql] = verdict
        return verdict

    # -- catalog ----------------------------------------------------------------------
    def ensure_known(self) -> None:
        """Connect once so the server's identity (and so the capabilities) is known; errors raise."""
        if self._server is None:
            self.run(lambda cursor: None)

    def discover(self) -> list[DiscoveredProduct]:
        def objects(cursor: Cursor) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = cursor.connection.adbc_get_objects(depth="tables").read_all().to_pylist()
            return rows

        try:
            catalogs = self.run(objects)
        except SourceUnavailableError:
            raise
        except SourceError as error:
            detail = str(error).removeprefix(f"[{self.domain}/{self.label}] ")
            raise SourceError(
                self.domain,
                self.label,
                f"the server's catalog cannot be listed ({detail}): declare the domain's products"
                " with `source:` (the remote table's name) or `sql:`",
            ) from error
        found: list[tuple[str | None, str | None, str]] = []
        for catalog in catalogs:
            for schema in catalog.get("catalog_db_schemas") or []:
                if schema.get("db_schema_name") in ("information_schema", "system", "pg_catalog"):
                    continue
                for table in schema.get("db_schema_tables") or []:
                    found.append((catalog.get("catalog_name"), schema.get("db_schema_name"), table["table_name"]))
        several = len({(c, s) for c, s, _ in found}) > 1
        names = unique(identifier(f"{s}_{t}" if several and s else t) for _, s, t in found)
        return [
            DiscoveredProduct(name, SourceObject(table=_qualified(c, s, t)))
            for name, (c, s, t) in zip(names, found, strict=True)
        ]

    def describe(self, source: SourceObject) -> list[SourceColumn]:
        if source.table is not None:
            table = exp.to_table(source.table, dialect="postgres")

            def ask(cursor: Cursor) -> pa.Schema:
                schema: pa.Schema = cursor.connection.adbc_get_table_schema(
                    table.name, catalog_filter=table.catalog or None, db_schema_filter=table.db or None
                )
                return schema

            schema = self.run(ask)
        else:
            query = self.render(exp.select("*").from_(self.raw_relation(source, "t")))
            schema = self.run(lambda cursor: cursor.adbc_execute_schema(query))
        if len(schema) == 0:
            raise SourceError(self.domain, self.label, f"{source.describe()} has no columns")
        self._not_null[source] = tuple(f.name for f in schema if _not_null(f))
        return [SourceColumn(f.name, _VIEW_TYPES.get(f.type, f.type)) for f in schema]

    def not_null(self, source: SourceObject) -> tuple[str, ...]:
        if source.sql is not None:
            return ()
        if source not in self._not_null:
            self.columns(source)
        return self._not_null.get(source, ())

    def primary_key(self, source: SourceObject) -> tuple[str, ...]:
        """The key the server reports with the table (GetTables' constraints), if any."""
        if source.table is None:
            return ()
        table = exp.to_table(source.table, dialect="postgres")

        def ask(cursor: Cursor) -> list[dict[str, Any]]:
            reader = cursor.connection.adbc_get_objects(
                depth="all",
                catalog_filter=table.catalog or None,
                db_schema_filter=table.db or None,
                table_name_filter=table.name,
            )
            rows: list[dict[str, Any]] = reader.read_all().to_pylist()
            return rows

        for catalog in self.run(ask):
            for schema in catalog.get("catalog_db_schemas") or []:
                for found in schema.get("db_schema_tables") or []:
                    if found["table_name"] != table.name:
                        continue
                    for constraint in found.get("table_constraints") or []:
                        if constraint.get("constraint_type") == "PRIMARY KEY":
                            return tuple(constraint.get("constraint_column_names") or ())
        return ()

    def close(self) -> None:
        super().close()


def _not_in_subquery(node: exp.In) -> bool:
    """Whether ``node`` is an ``IN`` of a subquery that a ``NOT`` negates."""
    parent = node.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return node.args.get("query") is not None and isinstance(parent, exp.Not)


def _not_null(field: pa.Field) -> bool:
    metadata = field.metadata or {}
    return not field.nullable or metadata.get(b"XDBC_NULLABLE") == b"0"


def _qualified(catalog: str | None, schema: str | None, table: str) -> str:
    parts = [p for p in (catalog, schema) if p] + [table]
    return ".".join(exp.to_identifier(p, quoted=True).sql("postgres") for p in parts)


__all__ = ["DATAFUSION", "OTHER", "FlightSqlConnector", "Server"]
