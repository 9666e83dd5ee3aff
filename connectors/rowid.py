"""Parallel reads of one SQLite table in ``rowid`` ranges, all in one state of the file.

A big table is read faster on several connections than on one: SQLite and ADBC's SQLite driver
turn rows into Arrow on the reading thread (800,000 rows of 5 columns: 291 ms on one
connection, 177 ms in two ranges, on 2 cores). A scan is split into ranges of the rowid
between the table's ``min(rowid)`` and ``max(rowid)``, ANDed into the WHERE of the query that
reads the table (SQLite seeks the range in the table's b-tree); the first range is open below
and the last above, so rows added since the split was made are read too.

SQLite cannot hand one snapshot to another connection (``sqlite3_snapshot_open`` is not
reachable through ADBC), so each range's connection opens a read transaction and reads once
(``BEGIN`` and ``SELECT count(*) FROM sqlite_master``), which fixes the state it sees, before
any range runs, and the ranges only run once every connection has done so. In a rollback
journal (the default ``DELETE``, ``TRUNCATE``, ``PERSIST`` modes) the first connection's shared
lock keeps any writer from committing until the last has begun, so all see the same commit. A
writer already waiting to commit keeps new readers out: a connection that cannot begin
("database is locked") gives the split up.

A database in WAL mode is not split (:mod:`connectors.sqlite` reads it on one connection): its
readers never hold writers back, so nothing makes the connections begin at the same commit. Its
WAL index (``-shm``) must not be looked at from outside SQLite either: closing any file
descriptor of it drops the process's POSIX locks on it, SQLite's own included, and a writer then
reinitialises the mapped file under the readers (a crash: "Bus error", seen here).

The ranges' connections must also have opened the same file: one replaced by another at its path
(a product published by renaming a new file over the old) gives the split up too.

A split given up (:class:`Unshared`) reads the table on one connection, as without partitions.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from adbc_driver_manager.dbapi import Connection, Cursor
from sqlglot import exp

from connectors import split
from connectors.split import Part

if TYPE_CHECKING:
    from connectors.adbc import AdbcConnector

ALIASES = ("rowid", "_rowid_", "oid")
"""SQLite's names for a table's rowid; a column of that name hides it."""
BUSY = "database is locked"


class Unshared(Exception):
    """The ranges could not be made to see one state of the file: read the table on one connection."""


def rowid_alias(columns: Iterable[str]) -> str | None:
    """The first of SQLite's names for the rowid that no column of the table takes (None: all are taken).

    >>> rowid_alias(["id", "Rowid"])
    '_rowid_'
    """
    taken = {name.lower() for name in columns}
    return next((alias for alias in ALIASES if alias not in taken), None)


def restrict(query: exp.Expr, alias: str, low: int | None, high: int | None, table: str | None = None) -> exp.Expr:
    """``query`` with the rowid range ``[low, high)`` ANDed into the WHERE of the SELECT that reads its one
    table, or, given ``table`` (a name as ``SourceObject.table`` writes it), that table, which it reads once.

    >>> q = exp.select("a").from_(exp.to_table("t").as_("x"))
    >>> print(restrict(q, "rowid", 10, 20).sql("sqlite"))
    SELECT a FROM t AS x WHERE "x".rowid >= 10 AND "x".rowid < 20
    """

    def conditions(table: str) -> list[str]:
        found = [] if low is None else [f"{table}.{alias} >= {low}"]
        return found if high is None else [*found, f"{table}.{alias} < {high}"]

    return split.restrict(query, conditions, "sqlite", table)


def ranged_tables(query: exp.Expr, split_on: str) -> dict[str, exp.Table]:
    """The tables a derived query (``SourceObject.split`` names ``split_on``) may be read in ranges of, by alias.

    The planner vouches that ranges of ``split_on`` give the query's rows (it reads the table once,
    inner-joined, and nothing groups or limits the rows). So does every other table of the SELECT
    that reads it when that SELECT only inner-joins: each row it makes holds one row of each table.
    Tables of subqueries are not among them, nor any whose name or alias the query uses twice.

    >>> q = exp.maybe_parse("SELECT a.x FROM a JOIN b AS c ON a.k = c.k WHERE a.x IN (SELECT y FROM d)")
    >>> sorted(ranged_tables(q, "a"))
    ['a', 'c']
    >>> ranged_tables(exp.maybe_parse("SELECT a.x FROM a LEFT JOIN b ON a.k = b.k"), "a")
    {}
    """
    wanted = exp.to_table(split_on, dialect="sqlite")
    tables = list(query.find_all(exp.Table))
    named = [t for t in tables if (t.name, t.db) == (wanted.name, wanted.db)]
    select = named[0].find_ancestor(exp.Select) if len(named) == 1 else None
    if select is None or any(
        join.side or join.kind not in ("", "INNER", "CROSS") for join in select.args.get("joins") or []
    ):
        return {}
    names = Counter((t.name, t.db) for t in tables)
    aliases = Counter(t.alias_or_name for t in tables)
    return {
        t.alias_or_name: t
        for t in tables
        if t.find_ancestor(exp.Select) is select and names[(t.name, t.db)] == 1 and aliases[t.alias_or_name] == 1
    }


def begin(cursor: Cursor) -> None:
    """Open a read transaction on ``cursor``'s connection and read once: its state of the file is fixed."""
    cursor.execute("BEGIN")
    cursor.execute("SELECT count(*) FROM sqlite_master")
    cursor.fetchall()


def open_parts(
    connector: AdbcConnector,
    first: tuple[Connection, Cursor],
    sqls: list[str],
    lock_wait_ms: int,
) -> list[Part]:
    """One :class:`Part` per query in ``sqls``, all seeing one state of the file (``first`` runs ``sqls[0]``).

    ``first`` is a checked-out connection (bound to the scan's deadline, if any); further ones come
    from the connector's pool, and each begins at once or fails ("database is locked"), so that none
    waits on a writer that waits on ``first``; their lock wait is then set back to ``lock_wait_ms``.
    The database is in a rollback journal (see the module doc). Raises
    :class:`Unshared` when the connections may see different states (every connection closed);
    any other failure closes them too and raises the connector's error.
    """
    connection, cursor = first
    parts: list[Part] = []
    try:
        begin(cursor)
        parts.append(Part(connection, cursor, sqls[0], threading.Lock()))

        def begin_at_once(cursor: Cursor) -> None:
            cursor.execute("PRAGMA busy_timeout = 0")
            cursor.fetchall()
            begin(cursor)
            cursor.execute(f"PRAGMA busy_timeout = {lock_wait_ms}")
            cursor.fetchall()

        for sql in sqls[1:]:
            other_connection, other_cursor, _ = connector.checkout(begin_at_once)
            parts.append(Part(other_connection, other_cursor, sql, threading.Lock()))
        if not all(connector.current(part.connection) for part in parts):
            raise Unshared("the file was replaced while the ranges began")
        for part in parts:
            part.cursor.adbc_prepare(part.sql)
    except Exception as exc:
        split.close_parts(first, parts)
        if isinstance(exc, Unshared):
            raise
        if BUSY in str(exc):
            raise Unshared(BUSY) from exc
        raise connector.error(exc) from exc
    return parts


__all__ = ["Unshared", "open_parts", "restrict", "rowid_alias"]
