"""The Prometheus port of a worker: `GET /metrics` alone, apart from the ports clients use.

Every BentoML worker serves it in its event loop from start-up to after the drain (the lifespan of bento/server/app.py)
on READMISSION_METRICS_HOST:READMISSION_METRICS_PORT (8082; 0: none), as Knative's queue-proxy keeps its metrics
on a port of their own: the HTTP and gRPC ports answer clients, this one Prometheus (kserve/base/networkpolicy.yaml
admits Prometheus of namespace observability alone). The workers share the port (SO_REUSEPORT, as gRPC's); any worker's
answer covers every worker (prometheus-client's multiprocess files). The server is uvicorn's, over a socket bound
here, started without `serve()` so that it leaves the signals to BentoML's own uvicorn (SIGTERM begins the drain).
Each worker computes its answer at most once per CACHE_SECONDS, in a thread (metrics.Exposition), and answers
one scrape at a time, at most one per SCRAPE_INTERVAL_SECONDS (the others wait their turn, at no cost) to at most
MAX_CONNECTIONS connections (503 beyond): scrapers hammering the port cannot take the worker from its requests.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bento.monitoring import metrics
from bento.settings import ServiceSettings

logger = logging.getLogger("readmission")
CACHE_SECONDS = 1.0  # a scrape shows figures at most this old (Prometheus scrapes every 15 s; tests every second)
SCRAPE_INTERVAL_SECONDS = 0.05  # 20 scrapes a second per worker at most: Prometheus's replicas need far fewer
MAX_CONNECTIONS = 16
STOP_GRACE_SECONDS = 5
COMPUTED_HEADER = "X-Exposition-Time"  # when the answer's figures were read (seconds since the epoch)


def application(exposition: metrics.Exposition) -> Starlette:
    """`GET /metrics`: the text exposition of every worker, one scrape per SCRAPE_INTERVAL_SECONDS, with the time
    its figures were read (COMPUTED_HEADER); other paths are 404."""
    turn = asyncio.Lock()
    next_turn = 0.0

    async def scrape(_: Request) -> Response:
        nonlocal next_turn
        async with turn:
            await asyncio.sleep(max(0.0, next_turn - time.monotonic()))
            next_turn = time.monotonic() + SCRAPE_INTERVAL_SECONDS
            body, computed = await exposition.latest()
        return Response(body, media_type=metrics.CONTENT_TYPE, headers={COMPUTED_HEADER: f"{computed:.6f}"})

    return Starlette(routes=[Route("/metrics", scrape, methods=["GET"])])


class MetricsServer:
    """uvicorn serving `application` on a socket the workers share; `start` then `stop`."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.address = (settings.metrics_host, settings.metrics_port)
        config = uvicorn.Config(
            application(metrics.Exposition(CACHE_SECONDS)),
            lifespan="off",
            log_config=None,  # the worker's logging stays as BentoML set it
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=STOP_GRACE_SECONDS,
            limit_concurrency=MAX_CONNECTIONS,
        )
        config.load()
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)  # as Server.serve() would, without its signal handlers
        self.socket: socket.socket | None = None

    async def start(self) -> None:
        """Listen on the configured address (shared with the other workers) and serve."""
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, reuse_port=True)
        await self.server.startup(sockets=[self.socket])
        logger.info("Prometheus metrics on http://%s:%d/metrics", host, port)

    async def stop(self) -> None:
        """Stop listening; let the scrapes being answered finish within STOP_GRACE_SECONDS."""
        if self.socket is not None:
            await self.server.shutdown(sockets=[self.socket])
