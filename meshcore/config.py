"""A connector's settings, as the mesh config gives them (parsed and checked by ``gateway/config.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ConnectorConfig:
    """How a domain reaches its source.

    ``uri`` is used by network sources (postgres); ``path`` by file-based ones,
    already resolved against the directory of the config file. ``options`` holds the
    type-specific keys (for example CSV ``delimiter``).
    """

    type: str
    uri: str | None = None
    path: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    shown_uri: str | None = None  # a uri holding ${...} references: as written, passwords masked

    @property
    def location(self) -> str:
        """Where the source is, for messages: a uri as written when it holds references, passwords masked.

        A value expanded from a variable or a secrets file is never shown: ``${PG_URI}`` stays
        ``${PG_URI}``, ``postgresql://app:${PG_PASSWORD}@db/sales`` reads ``postgresql://app:***@db/sales``.
        """
        if self.uri is not None:
            return self.shown_uri or redact_password(self.uri)
        return str(self.path)


_SECRET_PARAMETERS = {"password", "sslpassword"}


def redact_password(uri: str) -> str:
    """``postgresql://u:secret@h/db?sslpassword=x`` -> ``postgresql://u:***@h/db?sslpassword=***``.

    The user information's password and the ``password``/``sslpassword`` query parameters are masked.
    """
    return _passwords(uri, "***")


def without_password(uri: str) -> str:
    """``postgresql://u:secret@h/db?password=x&sslmode=require`` -> ``postgresql://u@h/db?sslmode=require``.

    What self-serve allow-lists compare: the same source, whatever its password.
    """
    return _passwords(uri, None)


def _passwords(uri: str, mask: str | None) -> str:
    """``uri`` with its passwords replaced by ``mask``, or removed (``None``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        user = credentials.split(":", 1)[0]
        credentials = user if mask is None else f"{user}:{mask}"
    address, question, query = host.partition("?")
    if question:
        parameters = [part.partition("=") for part in query.split("&")]
        kept = []
        for key, equals, value in parameters:
            if equals and key.lower() in _SECRET_PARAMETERS:
                if mask is not None:
                    kept.append(f"{key}={mask}")
            else:
                kept.append(f"{key}{equals}{value}")
        query = "&".join(kept)
        question = question if kept else ""
    return f"{scheme}://{credentials}{at}{address}{question}{query}"
