"""The simple JSON API's routes: predictions, feedback, live performance and health."""

from __future__ import annotations

from starlette.routing import Route

from bento.api import feedback, predict, status

ROUTES = [
    Route("/predict", predict.predict, methods=["POST"]),
    Route("/predict/batch", predict.predict_batch, methods=["POST"]),
    Route("/feedback", feedback.feedback, methods=["POST"]),
    Route("/performance", status.performance, methods=["GET"]),
    Route("/health", status.health, methods=["GET"]),
]
