"""The HTTP application of a worker: the simple API's, the V2 protocol's and the documentation's routes over the
scoring core, with the bearer token, the traffic metrics, the JSON errors, and the worker's lifespan (the
monitoring, the gRPC server and the metrics port).

Mounted into the BentoML service at "/" with full paths (a mount at /v2 would turn GET /v2 into a
307). Every client error becomes a JSON `{"error": ...}` with a 4xx status; nothing of the request
body is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bento.api import routes as api_routes
from bento.core.scoring import InFlight, ScoringCore
from bento.errors import Reason, RequestError
from bento.http import auth
from bento.http.responses import FastJSONResponse
from bento.monitoring import metrics
from bento.monitoring.lifecycle import Monitoring
from bento.monitoring.metrics_port import MetricsServer
from bento.openapi import routes as docs_routes
from bento.v2 import grpc_server, rest

logger = logging.getLogger("readmission")
ROUTES = [*api_routes.ROUTES, *rest.ROUTES, *docs_routes.ROUTES]


def _behind_token(route: Route) -> Route:
    """The route behind the bearer token where bento/http/auth.py protects its path (checked before the body is
    read)."""
    if not auth.protects(route.path):
        return route
    handler = route.endpoint

    async def checked(request: Request) -> Response:
        core: ScoringCore = request.app.state.core
        auth.check(request.headers.get("authorization"), core.settings.api_token)
        return await handler(request)

    return Route(route.path, checked, methods=route.methods, name=route.name)


def endpoint_of(scope: Scope) -> str:
    """The route template a request matches ("other" for none): a bounded metrics label."""
    route = _route_of_path(scope["path"])
    return "other" if route is None else route.path


@lru_cache(maxsize=4096)  # the route depends on the path alone; bounded whatever paths clients invent
def _route_of_path(path: str) -> Route | None:
    scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
    return next((route for route in ROUTES if route.matches(scope)[0] is not Match.NONE), None)


@lru_cache(maxsize=4096)
def _infer_route(path: str) -> tuple[dict[str, str], bool] | None:
    """For a V2 infer path (the route Starlette's router would pick): its path parameters and whether the bearer
    token guards it; None for any other path."""
    route = _route_of_path(path)
    if route is None or route.endpoint is not rest.infer:
        return None
    _, child = route.matches({"type": "http", "path": path, "root_path": "", "method": "POST"})
    return child["path_params"], auth.protects(route.path)


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestError)
    metrics.FAILURES.labels(endpoint_of(request.scope), error.reason.value).inc()
    # the rest of a body that was too large or too slow is never read: the connection cannot be reused
    unread = error.reason in (Reason.BODY_TOO_LARGE, Reason.BODY_TIMEOUT)
    headers = {"Connection": "close"} if unread else {}
    if error.reason is Reason.UNAUTHORIZED:
        headers |= auth.CHALLENGE
    return FastJSONResponse({"error": error.message}, status_code=error.status, headers=headers or None)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    reason = Reason.NOT_FOUND if error.status_code == 404 else Reason.INVALID_VALUE
    metrics.FAILURES.labels(endpoint_of(request.scope), reason.value).inc()
    message = "no such endpoint" if error.status_code == 404 else str(error.detail)
    return FastJSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


async def _unexpected(request: Request, error: Exception) -> Response:
    """A bug, never a client's mistake. The connection closes with the answer: uvicorn drops it once the error
    propagates, so a request pipelined behind this one would be served and never answered."""
    logger.error("unexpected %s on %s", type(error).__name__, endpoint_of(request.scope))
    return FastJSONResponse(
        {"error": "internal error; see the service log"}, status_code=500, headers={"Connection": "close"}
    )


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """The worker's prediction log, gRPC server and metrics port, from start-up (the model is loaded by then) to
    after the drain; the log is written out last, the metrics port closes after it."""
    core: ScoringCore = app.state.core
    prometheus = MetricsServer(core.settings) if core.settings.metrics_port else None
    if prometheus is not None:
        await prometheus.start()
    monitoring = app.state.monitoring = Monitoring(core)
    monitoring.start()
    server = await grpc_server.start(core) if core.settings.grpc_port else None
    try:
        yield
    finally:
        if server is not None:
            await grpc_server.stop(server)
        await monitoring.stop()
        if prometheus is not None:
            await prometheus.stop()


class TrafficMiddleware:
    """Pure ASGI middleware counting requests, their duration and those in flight, per route template.

    The requests in flight count in the scoring core (the drain waits on them) and in the metrics.
    """

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and record its endpoint, status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope)
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.http_request_started(endpoint)
        self.in_flight.begin()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.in_flight.end()
            metrics.http_request_finished(endpoint, status, time.perf_counter() - started)


class ServiceApp(Starlette):
    """The Starlette application, with a lean path for `POST` V2 infer (the single-row hot path).

    Starlette's middleware stack and router (a dozen calls and send wrappers a request) are skipped by an infer
    request, which keeps all they do for it: the traffic metrics (TrafficMiddleware), the bearer token before the
    body is read, the same handler (bento/v2/rest.py `infer`), refusals answered by the same exception handlers, and
    a bug answered 500 and then raised, as Starlette's ServerErrorMiddleware does, so that uvicorn logs it and closes
    the connection.
    Every other request, and a mounted app's (a `root_path`), goes through Starlette.
    """

    def __init__(self, core: ScoringCore, **options: Any) -> None:
        super().__init__(**options)
        self._core = core
        self._infer = TrafficMiddleware(self._serve_infer, core.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an infer request on the lean path, anything else through Starlette."""
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            infer = _infer_route(scope["path"])
            if infer is not None:
                scope["app"], scope["path_params"] = self, dict(infer[0])
                await self._infer(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve_infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        _, protected = _infer_route(scope["path"])  # type: ignore[misc]  # __call__ found it
        try:
            if protected:
                auth.check(request.headers.get("authorization"), self._core.settings.api_token)
            response = await rest.infer(request)
        except RequestError as error:
            response = await _refused(request, error)
        except Exception as error:
            await (await _unexpected(request, error))(scope, receive, send)
            raise
        await response(scope, receive, send)


def create_app(core: ScoringCore) -> Starlette:
    """The HTTP application over `core` (`app.state.core`), which the service loads the model into."""
    app = ServiceApp(
        core,
        routes=[_behind_token(route) for route in ROUTES],
        lifespan=_lifespan,
        middleware=[Middleware(TrafficMiddleware, in_flight=core.in_flight)],
        exception_handlers={RequestError: _refused, HTTPException: _http_error, Exception: _unexpected},
    )
    # no redirect from `/path/` to `/path`: Starlette's would be an absolute URL on the client's Host header
    app.router.redirect_slashes = False
    app.state.core = core
    return app
