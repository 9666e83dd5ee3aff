"""The HTTP listener: uvicorn serving the web app in a thread of the ``serve`` process."""

from __future__ import annotations

import errno
import logging
import socket
import threading

import uvicorn
from starlette.types import ASGIApp

from gateway.errors import MeshgateError

log = logging.getLogger("meshgate.web")


class HttpServer:
    """Binds ``host:port`` at once (0 picks a free port) and serves ``app`` from :meth:`start` to :meth:`stop`.

    Raises:
        MeshgateError: the port is in use, or the address cannot be bound.
    """

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._socket = _bind(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # the gateway's logging stays as it is; uvicorn's loggers propagate to it
            log_level="warning",
            access_log=False,  # paths and queries are user input: never logged as they come
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="meshgate-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
