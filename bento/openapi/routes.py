"""The documentation's routes: the OpenAPI document, the interactive page over it, and `/` leading there."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bento.core.scoring import ScoringCore
from bento.http.responses import FastJSONResponse
from bento.openapi import docs_page, document


async def openapi_document(request: Request) -> Response:
    """`GET /openapi.json`."""
    core: ScoringCore = request.app.state.core
    return FastJSONResponse(document.document(core.settings))


ROUTES = [
    Route("/openapi.json", openapi_document, methods=["GET"]),
    Route("/docs", docs_page.page, methods=["GET"]),
    Route("/docs/{asset}", docs_page.asset, methods=["GET"]),
    Route("/", docs_page.home, methods=["GET"]),
]
