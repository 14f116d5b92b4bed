"""The BentoML service: the champion model, served over the simple API and the V2 protocol.

`bentoml serve bento.service:ReadmissionService` (or `bentoml serve` in the project root).
Routes live in bento/app.py; BentoML adds /livez, /readyz and /healthz.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from bento import metrics
from bento.app import create_app
from bento.predictor import ModelLoadError, Predictor
from bento.settings import ServiceSettings

logger = logging.getLogger("readmission")
SETTINGS = ServiceSettings.from_env()
app = create_app(SETTINGS)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="readmission",
    workers=SETTINGS.workers,
    traffic={"timeout": 30},
    # BentoML's traffic metrics label by raw path (unbounded); bento/metrics.py keeps its names, bounded.
    metrics={"enabled": False},
    endpoints={"livez": "/livez", "readyz": "/readyz"},
    # BentoML wraps every request in an OpenTelemetry span even with nothing exporting them: about a
    # quarter of a single-row request's time. Off unless READMISSION_TRACING is set.
    tracing={} if SETTINGS.tracing else {"excluded_urls": ["/"]},
)
class ReadmissionService:
    """Loads the model from the BentoML store (carried by the Bento) into every worker."""

    model = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        try:
            stored = self.model
            predictor = Predictor.load(Path(stored.path), str(stored.tag))
        except (NotFound, ModelLoadError) as error:
            logger.error("not ready: the model cannot be loaded: %s", error)
            metrics.model_missing()
            return
        app.state.predictor = predictor
        metrics.model_loaded(predictor.info)
        logger.info("serving %s version %s (%s)", predictor.info.name, predictor.info.version, predictor.info.tag)
        gc.freeze()  # start-up objects never die: keep them out of the collector's full passes (tail latency)

    def __is_ready__(self) -> bool:
        """Ready only with a model loaded."""
        return app.state.predictor is not None
