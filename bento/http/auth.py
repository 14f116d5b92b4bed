"""The optional bearer token of the prediction routes (READMISSION_API_TOKEN; unset: no check).

Protected: `/predict`, `/predict/batch`, `/feedback`, `/performance` and everything under `/v2/models/` except the
model readiness routes. Open: health and readiness (probes), `/v2`, `/openapi.json`, `/docs` and `/`. `/metrics`
is on a port of its own for Prometheus (bento/monitoring/metrics_port.py). The token is compared in constant time
and never logged nor echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr

from bento.errors import Reason, RequestError

SCHEME = "Bearer"
CHALLENGE = {"WWW-Authenticate": SCHEME}
_PREDICT = frozenset({"/predict", "/predict/batch", "/feedback", "/performance"})
_MODEL_READY = re.compile(r"/v2/models/[^/]+(/versions/[^/]+)?/ready")
MISSING = "a bearer token is required: send the header 'Authorization: Bearer <token>'"
WRONG = "the bearer token is wrong"


def protects(path: str) -> bool:
    """Whether a request path (or a route template) needs the token when one is configured."""
    if path in _PREDICT:
        return True
    under_models = path == "/v2/models" or path.startswith("/v2/models/")
    return under_models and _MODEL_READY.fullmatch(path) is None


def _digest(value: bytes) -> bytes:
    # equal-length digests: compare_digest then takes the same time whatever the length of what was sent
    return hashlib.sha256(value).digest()


def check(authorization: str | None, token: SecretStr | None) -> None:
    """Refuse (401, reason `unauthorized`) unless `authorization` is `Bearer <token>`; no-op without a token."""
    if token is None:
        return
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != SCHEME.lower() or not credentials:
        raise RequestError(Reason.UNAUTHORIZED, MISSING)
    # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent
    sent = credentials.encode("latin-1", errors="replace")
    if not hmac.compare_digest(_digest(sent), _digest(token.get_secret_value().encode("utf-8"))):
        raise RequestError(Reason.UNAUTHORIZED, WRONG)
