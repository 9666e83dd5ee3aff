"""The HTTP listener: uvicorn serving the web app (HTTPS with a certificate) in a thread of the ``serve`` process."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from gateway.errors import MeshgateError

log = logging.getLogger("meshgate.web")


@dataclass(frozen=True)
class HttpTls:
    """The server certificate (PEM, its chain) and its unencrypted private key: the Flight endpoint's."""

    cert: Path
    key: Path


class HttpServer:
    """Binds ``host:port`` at once (0 picks a free port) and serves ``app`` from :meth:`start` to :meth:`stop`.

    With ``tls`` it speaks HTTPS only (TLS 1.2 or later, Python's default ciphers); a plain HTTP
    request to the port fails its handshake.

    Raises:
        MeshgateError: the port is in use, the address cannot be bound, or the certificate and key
            cannot be loaded.
    """

    def __init__(self, app: ASGIApp, host: str, port: int, tls: HttpTls | None = None) -> None:
        self._socket = _bind(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.tls = tls
        config = uvicorn.Config(
            app,
            log_config=None,  # the gateway's logging stays as it is; uvicorn's loggers propagate to it
            log_level="warning",
            access_log=False,  # paths and queries are user input: never logged as they come
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
            ssl_certfile=tls.cert if tls is not None else None,
            ssl_keyfile=tls.key if tls is not None else None,
        )
        try:
            config.load()  # now, so that a bad certificate stops the start instead of the listener's thread
        except (ssl.SSLError, OSError) as error:
            self._socket.close()
            assert tls is not None  # without TLS, load() reads no file
            raise MeshgateError(
                f"HTTPS listener: cannot load --tls-cert {tls.cert} and --tls-key {tls.key}: {error}"
            ) from None
        if config.ssl is not None:
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2  # Python's default: said here, not assumed
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="meshgate-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls is not None else 'http'}://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the listener (127.0.0.0/8, ::1, ``localhost``)."""
        return is_loopback(self.host)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except Exception:  # never let the listener's failure pass silently
            log.exception("the HTTP listener stopped")

    def stop(self) -> None:
        """Stop accepting, finish requests in flight (at most 5 s), close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as error:
        raise MeshgateError(f"--http-host {host!r}: not an address to listen on: {error}") from None
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise MeshgateError(
                f"HTTP port {port} on {host} is already in use: choose another with --http-port"
            ) from None
        raise MeshgateError(f"cannot listen for HTTP on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address; any other name or address (``0.0.0.0``, ``::``) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
