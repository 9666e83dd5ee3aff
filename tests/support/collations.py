"""PostgreSQL collations for tests: one that orders text differently from bytes, one that equates
distinct strings. Servers differ (ICU or not, which libc locales the host has), so both are found
by trying them on the server, and a test skips, saying why, only when the server has none."""

from __future__ import annotations

import adbc_driver_postgresql.dbapi as pg

PREFERRED = ("en-x-icu", "und-x-icu", "unicode", "en_US.utf8", "en_US")


NO_LOCALE = "this PostgreSQL has no usable collation that orders 'a' before 'B' (no ICU, no libc locale but C)"


def locale_collation(uri: str) -> str | None:
    """A usable collation of the server under which ``'a' < 'B'`` (bytes say otherwise); None if none
    (then tests skip with :data:`NO_LOCALE`)."""
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT collname FROM pg_collation WHERE collisdeterministic AND collencoding IN (-1, 6)"
            " AND collprovider IN ('i', 'c') AND collname NOT IN ('C', 'POSIX', 'default') ORDER BY collname"
        )
        names = [str(name) for (name,) in cursor.fetchall()]
        for name in sorted(names, key=lambda n: (n not in PREFERRED, PREFERRED.index(n) if n in PREFERRED else 0, n)):
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                cursor.execute(f"SELECT 'a' COLLATE {quoted} < 'B' COLLATE {quoted}")
                row = cursor.fetchone()
            except pg.Error:  # listed but unusable (an ICU collation on a server built without ICU)
                continue
            if row is not None and row[0] is True:
                return name
    return None


def nondeterministic_collation(uri: str, schema: str) -> str | None:
    """A case-insensitive collation created in ``schema`` (quoted, qualified); None without ICU."""
    name = f'"{schema}".ci'
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        try:
            cursor.execute(
                f"CREATE COLLATION {name} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
            )
        except pg.Error:  # no ICU in this build
            return None
    return name
