"""BentoML's HTTP middleware stack as the service runs it: BentoML's request timeout replaced by
bento/server/timeout.py's, which answers the same for less, and its OpenTelemetry middleware left out where tracing
is off (READMISSION_TRACING): it then only excludes every URL from tracing, which costs each request.

BentoML offers no setting for either: `install` wraps `ServiceAppFactory.middlewares` (pinned BentoML), from which
each worker builds the stack after importing the service module, which calls `install`. Everything else in the
stack (the access log, the application's ApplicationFirst) keeps its place and order.
"""

from __future__ import annotations

from _bentoml_impl.server.app import ServiceAppFactory  # noqa: PLC2701  (pinned BentoML: no setting for this)
from bentoml._internal.server.http.traffic import TimeoutMiddleware  # noqa: PLC2701
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.middleware import Middleware

from bento.server.timeout import RequestTimeout

_BENTOML_MIDDLEWARES = ServiceAppFactory.middlewares


def trimmed(middlewares: list[Middleware], tracing: bool) -> list[Middleware]:
    """BentoML's middlewares with RequestTimeout in the place of its TimeoutMiddleware (same timeout), and without
    its OpenTelemetry middleware unless `tracing`."""
    kept = [m for m in middlewares if tracing or m.cls is not OpenTelemetryMiddleware]
    return [Middleware(RequestTimeout, **m.kwargs) if m.cls is TimeoutMiddleware else m for m in kept]  # type: ignore[arg-type]


def install(tracing: bool) -> None:
    """Have BentoML build its stack `trimmed` (idempotent)."""
    ServiceAppFactory.middlewares = property(  # type: ignore[method-assign,assignment]
        lambda factory: trimmed(_BENTOML_MIDDLEWARES.fget(factory), tracing)  # type: ignore[attr-defined]
    )
