"""The MariaDB (or MySQL) server for tests: ``MESHGATE_TEST_MYSQL_URI``, default root on 127.0.0.1:3306.

Tests that need it take the ``mysql_uri`` fixture, which skips them, saying why, when no
server answers; each test module gets a database of its own (:func:`temporary_database`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

LOCAL_URI = "mysql://root@127.0.0.1:3306/test"
URI_ENV = "MESHGATE_TEST_MYSQL_URI"


def mysql_test_uri() -> str:
    return os.environ.get(URI_ENV, LOCAL_URI)


def connect(uri: str, database: str | None = None, **options: Any) -> pymysql.connections.Connection:
    """A pymysql connection (autocommit, utf8mb4, session time zone UTC) to the server of ``uri``."""
    parts = urlsplit(uri)
    connection = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database if database is not None else (parts.path.lstrip("/") or None),
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=2,
        **options,
    )
    with connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
    return connection


def why_not(uri: str) -> str | None:
    """None when a server answers at ``uri``, else the reason it does not."""
    try:
        connect(uri).close()
    except Exception as error:
        return f"no MariaDB/MySQL server answers at {uri} ({error}); set {URI_ENV} to use another"
    return None


def with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return parts._replace(path=f"/{database}").geturl()


@contextmanager
def temporary_database(uri: str, prefix: str) -> Iterator[str]:
    """A fresh database named ``<prefix>_<random>``, dropped with everything in it afterwards."""
    name = f"{re.sub(r'[^a-z0-9_]+', '_', prefix.lower())[:40]}_{uuid.uuid4().hex[:8]}"
    with connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    try:
        yield name
    finally:
        with connect(uri) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
