"""Bounds on a worker's HTTP connections: a header timeout, an idle timeout and a cap with a clean refusal.

BentoML runs uvicorn in every worker and builds its Config itself. Uvicorn alone closes a keep-alive connection
idle for `timeout_keep_alive` after an answer, but never a new connection that sends nothing; any byte restarts
that timer (a client sending one a second holds the connection for ever); and its `limit_concurrency`, once
reached, answers 503 on every connection, the established ones too. `BoundedProtocol` is uvicorn's httptools
protocol with four changes:

- idle: the keep-alive timer (READMISSION_IDLE_TIMEOUT_SECONDS) also runs on a new connection;
- headers: each request's headers must be complete within READMISSION_HEADER_TIMEOUT_SECONDS of the connection
  opening or of the previous answer, whatever trickles in meanwhile; the connection is closed after;
- header size: headers beyond MAX_HEADER_BYTES are answered 431 and the connection closed (httptools alone
  keeps whatever comes: 200 MiB of headers grew a worker by 200 MiB);
- cap: a connection opened while READMISSION_MAX_CONNECTIONS are open is answered 503 with `Connection: close`
  and `Retry-After: 1`, then closed (a client, or Kubernetes' proxy, retries, on another replica if any); the
  connections below the cap are served on. 503 rather than 429: the client did nothing wrong, the worker is full.

Shutdown: during the drain (bento/server/drain.py) every answer carries `Connection: close`, so a keep-alive client
opens a new connection for its next request (one Kubernetes sends to another replica once this one is out of
its endpoints) instead of sending it on a connection uvicorn closes when the drain ends, racing the request.

`install` puts the protocol and the idle timeout on the running uvicorn server's Config during the lifespan
(ReadmissionService.__init__), before uvicorn creates its first connection's protocol from that Config.
The gRPC server applies the same settings with grpcio's own options (bento/v2/grpc_server.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bento.core.scoring import ScoringCore
from bento.http.responses import FastJSONResponse

logger = logging.getLogger("readmission")
MAX_HEADER_BYTES = 64 * 1024  # nginx takes 32 KiB, h11 16 KiB; a bearer token and a browser's cookies fit
_TOO_LARGE = b'{"error": "the request headers exceed 64 KiB"}'
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_TOO_LARGE)}\r\nconnection: close\r\n\r\n".encode()
    + _TOO_LARGE
)
REFUSAL = FastJSONResponse(
    {"error": "this worker has as many connections as it takes (READMISSION_MAX_CONNECTIONS): retry shortly"},
    status_code=503,
    headers={"Connection": "close", "Retry-After": "1"},
)


class BoundedProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with a header deadline and size limit, an idle timer from the start, a
    connection cap, and `Connection: close` from the drain on."""

    def __init__(self, *args: Any, core: ScoringCore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn builds its own access line's arguments for every answer when its logger has a handler anywhere up
        # the tree (BentoML's, at the root), before the logger drops it below WARNING: only build it where it is kept
        self.access_log = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
        self.core = core
        self.header_seconds = core.settings.header_timeout_seconds
        self.max_connections = core.settings.max_connections
        self.header_deadline: asyncio.TimerHandle | None = None
        self.header_bytes = 0  # received since the connection began waiting for a request's headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection (refused above the cap) and start both timers."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.app = REFUSAL
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        """Parse; where the headers are still not complete, count what they have taken (431 beyond the limit)."""
        super().data_received(data)
        if self.header_deadline is None or self.transport.is_closing():
            return
        self.header_bytes += len(data)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.transport.write(HEADERS_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        """The request's headers are in: no deadline for them any more; its answer closes the connection from the
        drain on."""
        self._stop_header_deadline()
        super().on_headers_complete()
        if self.core.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        """After an answer: where uvicorn waits for a next request (its idle timer runs), a deadline for its headers."""
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed: no deadline left behind."""
        self._stop_header_deadline()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._stop_header_deadline()
        self.header_bytes = 0
        self.header_deadline = self.loop.call_later(self.header_seconds, self.timeout_keep_alive_handler)

    def _stop_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None


def install(core: ScoringCore) -> None:
    """Bound the connections of the uvicorn server running this worker; call in its lifespan (main thread).

    The server is found through its SIGTERM handler (uvicorn's `Server.handle_exit`, installed before the
    lifespan starts): BentoML keeps no other reference to it. Outside uvicorn nothing changes.
    """
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if not isinstance(server, uvicorn.Server):
        logger.warning("not under uvicorn: connections are not bounded")
        return
    server.config.timeout_keep_alive = core.settings.idle_timeout_seconds
    server.config.http_protocol_class = functools.partial(BoundedProtocol, core=core)  # type: ignore[assignment]
