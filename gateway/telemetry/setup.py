"""Switching telemetry on for ``meshgate serve``: which listeners run, from its flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.engine import Engine
    from gateway.telemetry.lineage import Lineage
    from gateway.telemetry.metrics import Metrics
    from gateway.telemetry.tracing import Tracing

MIN_TOKEN_CHARACTERS = 16
"""The shortest metrics token accepted: it is a password that a guesser may try over HTTP."""


@dataclass(frozen=True)
class TelemetrySettings:
    """What ``serve``'s telemetry flags ask for; all off by default."""

    metrics_token_file: Path | None = None
    otlp_endpoint: str | None = None
    lineage_file: Path | None = None
    lineage_url: str | None = None
    lineage_namespace: str = "meshgate"
    lineage_api_key_file: Path | None = None


@dataclass
class Telemetry:
    """The listeners running for one gateway (None: off)."""

    metrics: Metrics | None = None
    metrics_token: str | None = None
    tracing: Tracing | None = None
    lineage: Lineage | None = None

    @classmethod
    def start(cls, engine: Engine, settings: TelemetrySettings) -> Telemetry:
        """Check ``settings`` and attach what they switch on to ``engine``'s audit log.

        Raises:
            ConfigError: a token or key file cannot be read or is too short, a URL is not http(s).
        """
        telemetry = cls()
        if settings.metrics_token_file is not None:
            from gateway.telemetry.metrics import Metrics

            token = _secret(settings.metrics_token_file, "--metrics-token-file")
            if len(token) < MIN_TOKEN_CHARACTERS:
                raise ConfigError(
                    f"--metrics-token-file {settings.metrics_token_file}: the token has {len(token)} characters,"
                    f" at least {MIN_TOKEN_CHARACTERS} are needed (for example: openssl rand -hex 32)"
                )
            telemetry.metrics, telemetry.metrics_token = Metrics(engine), token
        from gateway.telemetry.tracing import Tracing

        telemetry.tracing = Tracing.otlp(settings.otlp_endpoint)
        if telemetry.tracing is not None:
            engine.audit.listen(telemetry.tracing)
        telemetry.lineage = _lineage(engine, settings)
        if telemetry.lineage is not None:
            engine.audit.listen(telemetry.lineage)
        return telemetry

    def close(self) -> None:
        """Send what traces and lineage events are still buffered."""
        if self.tracing is not None:
            self.tracing.shutdown()
        if self.lineage is not None:
            self.lineage.close()


def _lineage(engine: Engine, settings: TelemetrySettings) -> Lineage | None:
    if settings.lineage_file is not None and settings.lineage_url is not None:
        raise ConfigError("--lineage-file and --lineage-url: give one of them, not both")
    if settings.lineage_file is None and settings.lineage_url is None:
        if settings.lineage_api_key_file is not None:
            raise ConfigError("--lineage-api-key-file is for --lineage-url, which is not given")
        return None
    from gateway.telemetry.lineage import Lineage

    if settings.lineage_file is not None:
        directory = settings.lineage_file.parent
        if not directory.is_dir():
            raise ConfigError(f"--lineage-file {settings.lineage_file}: no such directory: {directory}")
        try:
            with settings.lineage_file.open("a", encoding="utf-8"):
                pass
        except OSError as error:
            raise ConfigError(f"--lineage-file {settings.lineage_file}: cannot be written: {error.strerror}") from None
        return Lineage.to_file(engine, str(settings.lineage_file), settings.lineage_namespace)
    assert settings.lineage_url is not None
    key = None
    if settings.lineage_api_key_file is not None:
        key = _secret(settings.lineage_api_key_file, "--lineage-api-key-file")
    return Lineage.to_url(engine, settings.lineage_url, settings.lineage_namespace, key)


def _secret(path: Path, flag: str) -> str:
    """The secret held in ``path`` (its first line, stripped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{flag} {path}: cannot be read: {getattr(error, 'strerror', None) or error}") from None
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ConfigError(f"{flag} {path}: the file is empty")
    return secret
