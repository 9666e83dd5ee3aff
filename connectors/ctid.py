"""Parallel reads of one PostgreSQL table in ``ctid`` page ranges, all under one snapshot.

A big table is read faster on several connections than on one (1.5 M rows, 4 columns:
758 ms on one connection, 559 ms on two ranges, on 2 cores). As DuckDB's postgres scanner
does, a scan is split into page ranges, ``ctid >= '(a,0)'::tid AND ctid < '(b,0)'::tid``,
ANDed into the WHERE of the query that reads the table (PostgreSQL runs each as a TID
Range Scan). The first range has no lower bound and the last no upper bound, so rows
stored beyond the page count the split was made from are read too.

Every range must see the same rows: the first connection opens ``BEGIN ISOLATION LEVEL
REPEATABLE READ, READ ONLY`` and exports its snapshot (``pg_export_snapshot()``), every
other opens the same kind of transaction and imports it (``SET TRANSACTION SNAPSHOT``)
before any range runs, so the exporting transaction is still open when they do. The ranges
are then read by :class:`connectors.split.PartitionedScan`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from adbc_driver_manager.dbapi import Connection, Cursor
from sqlglot import exp

from connectors import split
from connectors.split import Part

if TYPE_CHECKING:
    from connectors.adbc import AdbcConnector

BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
PART_BATCH_BYTES_MIN = 1 << 20  # the smallest batch a range is asked for (the driver's hint, in bytes)


def ranges(pages: int, parts: int) -> list[tuple[int | None, int | None]]:
    """``parts`` page ranges ``[low, high)`` covering a table of ``pages`` pages; open at both ends.

    >>> ranges(100, 3)
    [(None, 33), (33, 66), (66, None)]
    """
    return split.ranges(0, pages, parts)


def restrict(query: exp.Expr, low: int | None, high: int | None, table: str | None = None) -> exp.Expr:
    """``query`` with the page range ANDed into the WHERE of the SELECT that reads its one table
    (or ``table``, see :func:`connectors.split.restrict`).

    >>> q = exp.select("a").from_(exp.to_table("s.t").as_("x"))
    >>> print(restrict(q, 10, None).sql("postgres"))
    SELECT a FROM s.t AS x WHERE "x".ctid >= CAST('(10,0)' AS tid)
    """

    def conditions(alias: str) -> list[str]:
        found = [] if low is None else [f"{alias}.ctid >= '({low},0)'::tid"]
        return found if high is None else [*found, f"{alias}.ctid < '({high},0)'::tid"]

    return split.restrict(query, conditions, "postgres", table)


def open_parts(
    connector: AdbcConnector,
    first: tuple[Connection, Cursor],
    sqls: list[str],
    deadline: float | None,
    batch_bytes: int,
) -> list[Part]:
    """One :class:`Part` per query in ``sqls``, all in the snapshot ``first`` exports (``first`` runs ``sqls[0]``).

    ``first`` is a checked-out connection (bound to ``deadline``, if any); further ones come
    from the connector's pool. ``batch_bytes`` is what one connection's read asks the driver for.
    On failure every connection is closed and the error raised.
    """
    connection, cursor = first
    parts: list[Part] = []
    try:
        cursor.execute(BEGIN)
        cursor.execute("SELECT pg_export_snapshot()")
        row = cursor.fetchone()
        assert row is not None
        snapshot = str(row[0])
        parts.append(Part(connection, cursor, sqls[0], threading.Lock()))

        def join(other: Cursor) -> None:
            other.execute(BEGIN)
            other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")

        for sql in sqls[1:]:
            other_connection, other_cursor, _ = connector.checkout(join, deadline)
            parts.append(Part(other_connection, other_cursor, sql, threading.Lock()))
        for part in parts:
            # The ranges' batches are in flight at once: each range reads smaller ones, so that
            # a split read holds about as much as one connection's read (tests/e2e/test_streaming.py).
            hint = max(PART_BATCH_BYTES_MIN, batch_bytes // len(parts))
            part.cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(hint)})
            part.cursor.adbc_prepare(part.sql)
    except Exception as exc:
        split.close_parts(first, parts)
        raise connector.error(exc) from exc
    return parts


__all__ = ["open_parts", "ranges", "restrict"]
