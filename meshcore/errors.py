"""The one error hierarchy of Meshgate: every failure that can reach a client is a :class:`MeshgateError`.

Its message names what went wrong and where (file and field, SQL position, domain and
source). The connectors raise these; the gateway maps each kind to a Flight status once
(``gateway/errors.py``).
"""

from __future__ import annotations


class MeshgateError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(MeshgateError):
    """A mesh configuration is invalid (names the file, domain and field)."""


class PlanningError(MeshgateError):
    """The SQL cannot be parsed or planned (names the position or the object)."""


class NotFoundError(PlanningError):
    """A catalog, domain or data product does not exist."""


class ContractError(PlanningError):
    """A data product is blocked: its source no longer matches its declared contract."""


class NotSupportedError(MeshgateError):
    """The request is valid but the gateway or a source cannot do it."""


class InvalidRequestError(MeshgateError):
    """A protocol request is malformed: bytes that do not decode, the wrong message, bad parameters."""


class SourceError(MeshgateError):
    """A source rejected a query or failed while it ran (names domain and source)."""

    def __init__(self, domain: str, source: str, message: str) -> None:
        super().__init__(f"[{domain}/{source}] {message}")
        self.domain = domain
        self.source = source


class SourceUnavailableError(SourceError):
    """A source cannot be reached at all."""


class QueryCancelledError(MeshgateError):
    """The query was cancelled by the client or timed out."""


class QueryTimeoutError(QueryCancelledError):
    """The query ran longer than its statement timeout and was cancelled."""


class ResourceLimitError(MeshgateError):
    """The query went over one of the gateway's resource limits (the message names which)."""


class GatewayBusyError(ResourceLimitError):
    """No slot freed up for the query in time: retry shortly."""


class AuthenticationError(MeshgateError):
    """The caller could not be authenticated."""


class PermissionDeniedError(MeshgateError):
    """The caller is authenticated but may not do this."""
