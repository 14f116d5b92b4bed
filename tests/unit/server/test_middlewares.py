"""bento/server/middlewares.py: BentoML's stack keeps its order, with RequestTimeout in the place of BentoML's
timeout (same setting) and its OpenTelemetry middleware only where tracing is on; the access log stays where on."""

from __future__ import annotations

import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.server.http.access import AccessLogMiddleware
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.middleware import Middleware

from bento.server import middlewares
from bento.server.timeout import RequestTimeout


class Application:
    """Stands for the service's own middleware (ApplicationFirst), last in the stack."""


BENTOML_STACK = [
    Middleware(OpenTelemetryMiddleware, excluded_urls="/"),
    Middleware(AccessLogMiddleware, skip_paths=["/livez"]),
    Middleware(TimeoutMiddleware, timeout=30),
    Middleware(Application),
]


@pytest.mark.parametrize(
    ("tracing", "expected"),
    [
        (False, [AccessLogMiddleware, RequestTimeout, Application]),
        (True, [OpenTelemetryMiddleware, AccessLogMiddleware, RequestTimeout, Application]),
    ],
    ids=["tracing off", "tracing on"],
)
def test_install_trims_bentomls_stack_keeping_its_order_and_settings(monkeypatch, tracing, expected):
    monkeypatch.setattr(ServiceAppFactory, "middlewares", ServiceAppFactory.middlewares)  # restored after the test
    monkeypatch.setattr(middlewares, "_BENTOML_MIDDLEWARES", property(lambda factory: BENTOML_STACK))
    middlewares.install(tracing)
    built = ServiceAppFactory.middlewares.fget(object())
    assert [m.cls for m in built] == expected
    assert built[-2].kwargs == {"timeout": 30}
    assert built[-3].kwargs == {"skip_paths": ["/livez"]}
