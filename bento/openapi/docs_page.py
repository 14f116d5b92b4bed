"""The interactive documentation at /docs: Swagger UI over /openapi.json, from files carried in the Bento.

Nothing is loaded from outside the service (a hospital network must not call out): the scripts and styles are in
bento/openapi/static/, and the Content-Security-Policy lets the browser fetch from this origin only. `/` leads here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bento.errors import Reason, RequestError

STATIC = Path(__file__).parent / "static"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (STATIC / "swagger-ui" / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (STATIC / "swagger-ui" / "swagger-ui.css", "text/css"),
    "favicon-32x32.png": (STATIC / "swagger-ui" / "favicon-32x32.png", "image/png"),
    "docs.js": (STATIC / "docs.js", "text/javascript"),
}
# Swagger UI sets inline styles and draws its icons from data: URLs; everything else comes from this origin.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff"}
# Relative links: right wherever the service is mounted (a path prefix in front of it included).
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Readmission risk service: API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/docs.js"></script>
</body>
</html>
"""


@cache
def _asset(name: str) -> bytes:
    return ASSETS[name][0].read_bytes()


async def page(_: Request) -> Response:
    """`GET /docs`."""
    return HTMLResponse(PAGE, headers=HEADERS)


async def asset(request: Request) -> Response:
    """`GET /docs/{asset}`: one of the page's files (cached by the browser for a day)."""
    name = request.path_params["asset"]
    if name not in ASSETS:
        raise RequestError(Reason.NOT_FOUND, f"no such file of the documentation page: {name}")
    headers = HEADERS | {"Cache-Control": "public, max-age=86400"}
    return Response(_asset(name), media_type=ASSETS[name][1], headers=headers)


async def home(_: Request) -> Response:
    """`GET /`: to the documentation."""
    return RedirectResponse("docs", status_code=307)
