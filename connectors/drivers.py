"""Another build of an ADBC driver, named by the operator who starts the gateway.

The PyPI wheels of ADBC's PostgreSQL and SQLite drivers are compiled without optimisation
from 1.9.0 on (1.3.0, 1.5.0, 1.7.0 and 1.8.0 are optimised). The wheels' build script never passes
``CMAKE_BUILD_TYPE`` to CMake; until 1.8.0 the image the wheels were built in set it in the
environment (``release``), and the image used since sets nothing, so GCC compiles at ``-O0``.
Decoding the rows a source sends then costs the gateway 2-4 times the CPU of an optimised
build of the same driver: 1.5 million PostgreSQL rows of two columns, 216 ms of CPU
against 96 (1.8.0); of a ``numeric`` column, 660 against 170 ms; 800,000 SQLite rows of four
columns, 230-320 ms against 166-173 (built from apache/arrow-adbc with ``-O2``).

An environment variable names such a build (:data:`POSTGRES`, :data:`SQLITE`). It is the
operator's: a domain's configuration cannot name a library, for a library loaded is code
run in the gateway. The library is checked when the mesh loads: a missing file, one that
cannot be loaded, or another driver is a ConfigError naming the variable.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_manager.dbapi
from adbc_driver_manager.dbapi import Connection

from meshcore.errors import ConfigError


@dataclass(frozen=True)
class DriverBuild:
    """Which driver an environment variable may name another build of."""

    variable: str  # the environment variable
    entrypoint: str  # the driver's own entry point: another ADBC driver does not export it
    name: str  # for messages: "the ADBC PostgreSQL driver"

    def library(self, domain: str) -> Path | None:
        """The library :attr:`variable` names (None: the wheel's own); a ConfigError when it names
        no file, a file that cannot be loaded, or another library than this driver."""
        named = os.environ.get(self.variable, "").strip()
        if not named:
            return None
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"domain {domain!r}: {self.variable} names {named!r}, which is not a file")
        try:
            found = hasattr(ctypes.CDLL(str(path)), self.entrypoint)  # nothing is opened yet
        except OSError as error:
            raise ConfigError(
                f"domain {domain!r}: {self.variable} names {named!r}, which cannot be loaded: {error}"
            ) from None
        if not found:
            raise ConfigError(f"domain {domain!r}: {self.variable} names {named!r}, not {self.name}")
        return path

    def connect(self, library: Path, uri: str) -> Connection:
        """An autocommit connection to ``uri`` through ``library`` (see :meth:`library`)."""
        return adbc_driver_manager.dbapi.connect(
            driver=str(library), entrypoint=self.entrypoint, db_kwargs={"uri": uri}, autocommit=True
        )


POSTGRES = DriverBuild("MESHGATE_POSTGRES_DRIVER", "AdbcDriverPostgresqlInit", "the ADBC PostgreSQL driver")
SQLITE = DriverBuild("MESHGATE_SQLITE_DRIVER", "AdbcDriverSqliteInit", "the ADBC SQLite driver")
