"""The status routes of the simple API: `GET /health` (the original design's check) and `GET /performance` (the model's
live figures)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bento.core.scoring import ScoringCore
from bento.errors import Reason, RequestError
from bento.http.responses import FastJSONResponse
from bento.monitoring.lifecycle import Monitoring


async def health(request: Request) -> Response:
    """Status, the served model, and its challenger in shadow (or why none); 503 while the model is not loaded or
    the worker drains."""
    core: ScoringCore = request.app.state.core
    monitoring: Monitoring = request.app.state.monitoring
    if core.predictor is None:
        return FastJSONResponse({"status": "not ready", "model_loaded": False}, status_code=503)
    if core.draining:
        return FastJSONResponse({"status": "draining", "model_loaded": True}, status_code=503)
    return FastJSONResponse(
        {
            "status": "ok",
            "model_loaded": True,
            "model": core.predictor.info.summary(),
            "unusual_check": "off" if core.predictor.unusual is None else "on",
            "shadow": monitoring.shadow(),
        }
    )


async def performance(request: Request) -> Response:
    """Live performance and its estimates per model version and window beside the training figures
    (bento/monitoring/live_performance.py)."""
    monitoring: Monitoring = request.app.state.monitoring
    if monitoring.live is None:
        raise RequestError(Reason.STORE_UNAVAILABLE, "the prediction log is off (READMISSION_PREDICTION_LOG=off)")
    return FastJSONResponse(monitoring.live.latest().as_json())
