"""Watching the model in production, started and stopped with a worker: the prediction metrics, the prediction log
and what reads it.

Started in the HTTP application's lifespan (bento/server/app.py), after the model is loaded and before the first
request: it subscribes the metrics and the log to the scoring core's batches. Stopped after the drain, so the
queue is written before the worker exits.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from bento.core.scoring import ScoringCore
from bento.model.predictor import ModelInfo
from bento.monitoring import drift_counts, live_compute, metrics
from bento.monitoring.live_performance import LivePerformance
from bento.predictionlog.factory import open_store
from bento.predictionlog.shadow import Shadow
from bento.predictionlog.writer import PredictionLog

logger = logging.getLogger("readmission")
CLOSE_SECONDS = 10.0  # at most this long to write the queue at shutdown


def shadow_of(core: ScoringCore) -> Shadow | None:
    """The core's challenger as the prediction log's writer calls it; None where there is none."""
    challenger = core.challenger
    if challenger is None:
        return None

    def score(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = challenger.probabilities(matrix)
        return probabilities, challenger.labels(probabilities)

    return Shadow(challenger.info.version, score, metrics)


class Monitoring:
    """The worker's prediction log and live performance (None where READMISSION_PREDICTION_LOG is "off")."""

    def __init__(self, core: ScoringCore) -> None:
        self.core = core
        settings = core.settings
        store = open_store(settings.prediction_log, settings.home)
        reference = None if core.predictor is None else core.predictor.info.drift_reference
        self.log = (
            None
            if store is None
            else PredictionLog(
                store,
                settings.prediction_log_queue_rows,
                settings.prediction_log_features,
                settings.prediction_log_retention_days,
                settings.prediction_log_keep_days,
                metrics,
                drift_counts.consumers(reference),
                shadow=shadow_of(core),
            )
        )
        place = live_compute.Place(settings.prediction_log, settings.home, settings.monitor_cpus)
        self.live = None if store is None else LivePerformance(store, self._served, settings.monitor_seconds, place)

    def shadow(self) -> dict[str, object]:
        """Which challenger is scored in shadow, or why none is (the `shadow` block of /health)."""
        challenger = self.core.challenger
        if challenger is None:
            return {"status": "off", "reason": self.core.no_challenger}
        if self.log is None:
            return {"status": "off", "reason": "the prediction log is off (READMISSION_PREDICTION_LOG=off)"}
        return {"status": "on", "model": challenger.info.summary()}

    def _served(self) -> ModelInfo | None:
        predictor = self.core.predictor
        return None if predictor is None else predictor.info

    def start(self) -> None:
        """Count every prediction, and log it, from now on."""
        self.core.subscribe(metrics.predictions)
        if self.log is None:
            logger.info("the prediction log is off")
            return
        self.log.start()
        self.core.subscribe(self.log.append)
        if self.live is not None:
            self.live.start()
            metrics.add_collector(self.live)

    async def stop(self) -> None:
        """Stop logging and write what is queued."""
        self.core.unsubscribe(metrics.predictions)
        if self.log is not None:
            self.core.unsubscribe(self.log.append)
        if self.live is not None:
            metrics.remove_collector(self.live)
            await asyncio.to_thread(self.live.stop, CLOSE_SECONDS)
        if self.log is not None:
            await asyncio.to_thread(self.log.close, CLOSE_SECONDS)
