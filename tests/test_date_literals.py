"""gateway/date_literals.py: which string constants compared with dates keep a whole query federated."""

from __future__ import annotations

import pytest
from sqlglot import parse_one
from sqlglot.schema import MappingSchema

from connectors.mysql import MysqlConnector
from connectors.postgres import PostgresConnector
from connectors.sqlite import SqliteConnector
from gateway.bytewise import TypedQuery
from gateway.date_literals import canonical_date, dates_read_as_datafusion

SCHEMA = MappingSchema({"s": {"t": {"d": "DATE", "ts": "TIMESTAMP", "name": "TEXT"}}}, dialect="postgres")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("2024-02-29", True), ("2023-02-29", False), ("2024-2-29", False), ("2024-02-29 00:00:00", False), ("abc", False)],
)
def test_canonical_dates(text: str, canonical: bool) -> None:
    assert canonical_date(text) is canonical


# SQL in; whether it may go whole to SQLite, MySQL and PostgreSQL.
CASES = {
    "SELECT d FROM s.t WHERE d < '2024-02-29'": (True, True, True),
    "SELECT d FROM s.t WHERE d BETWEEN '2024-01-01' AND '2024-02-29'": (True, True, True),
    "SELECT d FROM s.t WHERE d < '2024-02-29 00:00:01'": (False, False, True),
    "SELECT d FROM s.t WHERE d IN ('2024-02-29', '2024-2-1')": (False, False, True),
    "SELECT d FROM s.t WHERE d = CAST('2024-2-29' AS DATE)": (False, False, True),
    "SELECT d FROM s.t WHERE name = '2024-2-29'": (True, True, True),  # text compared with text
    "SELECT d FROM s.t WHERE ts = '2024-02-29'": (False, True, True),  # SQLite holds timestamps as text
    "SELECT d FROM s.t WHERE ts > CAST('2024-02-29 10:00:00' AS TIMESTAMP)": (True, True, True),
    "SELECT d FROM s.t WHERE ts = CAST('2024-02-29' AS DATE)": (False, True, True),  # text apart at midnight
    "SELECT d FROM s.t WHERE ts = '2024-02-29 12:30:00+02'": (False, False, False),  # the offset dropped
    "SELECT d FROM s.t WHERE name = '2024-02-29 12:30:00+02'": (True, True, True),
}


@pytest.mark.parametrize("sql", list(CASES))
def test_whole_only_where_the_source_reads_the_constant_as_datafusion(sql: str) -> None:
    query = TypedQuery(parse_one(sql, read="postgres"), SCHEMA)
    kinds = (SqliteConnector, MysqlConnector, PostgresConnector)
    got = tuple(dates_read_as_datafusion(query, kind.capabilities, temporals=True) for kind in kinds)
    assert got == CASES[sql]
