"""The HTTP application: routes of the simple API, the V2 protocol, health, metrics and OpenAPI.

Mounted into the BentoML service at "/" with full paths (a mount at /v2 would turn GET /v2 into a
307). Every client error becomes a JSON `{"error": ...}` with a 4xx status; nothing of the request
body is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from bento import auth, drain, metrics, openapi, predict_api, v2_api
from bento.errors import Reason, RequestError
from bento.http_body import FastJSONResponse
from bento.predictor import Predictor
from bento.settings import ServiceSettings

logger = logging.getLogger("readmission")
Handler = Callable[[Request], Awaitable[Response]]


def _predictor(request: Request) -> Predictor:
    predictor: Predictor | None = request.app.state.predictor
    if predictor is None:
        raise RequestError(Reason.NOT_READY, "the model is not loaded; see /readyz and the service log")
    return predictor


def _settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def _predict(request: Request) -> Response:
    return await predict_api.predict(request, _predictor(request), _settings(request))


async def _predict_batch(request: Request) -> Response:
    return await predict_api.predict_batch(request, _predictor(request), _settings(request))


def is_ready(request: Request) -> bool:
    """A model is loaded and the worker is not draining for shutdown (bento/drain.py)."""
    return request.app.state.predictor is not None and not request.app.state.draining


async def _health(request: Request) -> Response:
    """The original design's health check: status and the served model."""
    predictor: Predictor | None = request.app.state.predictor
    if predictor is None:
        return FastJSONResponse({"status": "not ready", "model_loaded": False}, status_code=503)
    if request.app.state.draining:
        return FastJSONResponse({"status": "draining", "model_loaded": True}, status_code=503)
    return FastJSONResponse({"status": "ok", "model_loaded": True, "model": predictor.info.summary()})


async def _v2_server(_: Request) -> Response:
    return FastJSONResponse(v2_api.server_metadata())


async def _v2_live(_: Request) -> Response:
    return v2_api.health_response("live", True)


async def _v2_ready(request: Request) -> Response:
    return v2_api.health_response("ready", is_ready(request))


async def _v2_model(request: Request) -> Response:
    predictor = _predictor(request)
    v2_api.check_model(request.path_params["model"], request.path_params.get("version"), _settings(request), predictor)
    return v2_api.metadata_response(_settings(request), predictor)


async def _v2_model_ready(request: Request) -> Response:
    predictor: Predictor | None = request.app.state.predictor
    name = request.path_params["model"]
    v2_api.check_model(name, request.path_params.get("version"), _settings(request), predictor)
    return v2_api.health_response("ready", is_ready(request), name=name)


async def _v2_infer(request: Request) -> Response:
    params = request.path_params
    return await v2_api.infer(request, _predictor(request), _settings(request), params["model"], params.get("version"))


async def _prometheus(_: Request) -> Response:
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


async def _openapi_document(request: Request) -> Response:
    return FastJSONResponse(openapi.document(_settings(request)))


ROUTES = [
    Route("/predict", _predict, methods=["POST"]),
    Route("/predict/batch", _predict_batch, methods=["POST"]),
    Route("/health", _health, methods=["GET"]),
    Route("/v2", _v2_server, methods=["GET"]),
    Route("/v2/health/live", _v2_live, methods=["GET"]),
    Route("/v2/health/ready", _v2_ready, methods=["GET"]),
    Route("/v2/models/{model}", _v2_model, methods=["GET"]),
    Route("/v2/models/{model}/ready", _v2_model_ready, methods=["GET"]),
    Route("/v2/models/{model}/infer", _v2_infer, methods=["POST"]),
    Route("/v2/models/{model}/versions/{version}", _v2_model, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/ready", _v2_model_ready, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/infer", _v2_infer, methods=["POST"]),
    Route("/metrics", _prometheus, methods=["GET"]),
    Route("/openapi.json", _openapi_document, methods=["GET"]),
]


def _guarded(route: Route) -> Route:
    """The route behind the bearer token where bento/auth.py protects its path (checked before the body is read)."""
    if not auth.protects(route.path):
        return route
    handler = route.endpoint

    async def guarded(request: Request) -> Response:
        auth.check(request.headers.get("authorization"), _settings(request).api_token)
        return await handler(request)

    return Route(route.path, guarded, methods=route.methods, name=route.name)


def endpoint_of(scope: Scope) -> str:
    """The route template a request matches ("other" for none): a bounded metrics label."""
    for route in ROUTES:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return route.path
    return "other"


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
    logger.error("unexpected %s on %s", type(error).__name__, endpoint_of(request.scope))
    return FastJSONResponse({"error": "internal error; see the service log"}, status_code=500)


def create_app(settings: ServiceSettings) -> Starlette:
    """The application; `app.state.predictor` is set once the service has loaded the model."""
    app = Starlette(
        routes=[_guarded(route) for route in ROUTES],
        # outermost first: the drain's request clock sees every request (bento/drain.py)
        middleware=[Middleware(drain.RequestClock), Middleware(metrics.TrafficMiddleware, endpoint_of=endpoint_of)],
        exception_handlers={RequestError: _refused, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.settings = settings
    app.state.predictor = None
    app.state.draining = False  # set by bento/drain.py on SIGTERM
    return app
