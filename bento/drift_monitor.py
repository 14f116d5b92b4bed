"""The served side of feature drift: a prediction-log consumer counting every scored row per field and bucket.

It runs in the log's writer thread, off the request path: one vectorised bucketing of each flush's rows
(bento/drift.py), then one counter increment per non-empty bucket (`readmission_feature_rows_total`).
"""

from __future__ import annotations

import logging

import numpy as np

from bento import metrics
from bento.prediction_log import Consumer, ScoredBatch
from bento.predictor import Predictor

logger = logging.getLogger("readmission")


def consumers(predictor: Predictor | None) -> list[Consumer]:
    """The drift consumer of the served model; none (and a log line) where the model has no drift reference."""
    reference = None if predictor is None else predictor.info.drift_reference
    if reference is None:
        logger.warning("feature drift is off: the model carries no drift reference (retrain it)")
        return []
    metrics.feature_reference(reference)
    buckets = reference.buckets

    def count_served_features(batches: list[ScoredBatch]) -> None:
        matrix = batches[0].matrix if len(batches) == 1 else np.concatenate([batch.matrix for batch in batches])
        metrics.feature_rows(buckets, buckets.counts(matrix))

    return [count_served_features]
