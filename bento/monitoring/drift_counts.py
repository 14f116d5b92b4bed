"""The served side of feature drift: a prediction-log consumer counting the scored rows per field and bucket.

It runs in the log's writer thread, off the request path. The rows of each flush (a sample, below) wait with those
pending publication and are bucketed together (bento/quality/drift.py, vectorised) when they are published: counter
increments (`readmission_feature_rows_total`, one per non-empty bucket) once they are metrics.PUBLISH_ROWS rows or more,
so a scrape never shows the fields of fewer rows than that. While rows keep coming they are published at most once
every metrics.FEATURE_PUBLISH_SECONDS; a flush of the log that finds nothing queued publishes what waited. A flush of
more than SAMPLE_ROWS rows is counted on an evenly spaced sample of SAMPLE_ROWS of them (the log's queue keeps only an
evenly spaced sample of the stream already: bento/predictionlog/writer.py): the shares PSI compares stay unbiased, and
the writer thread's cost stays small and bounded (it shares the worker's core)."""

from __future__ import annotations

import logging

import numpy as np

from bento.monitoring import metrics
from bento.predictionlog.store import LoggedBatch
from bento.predictionlog.writer import CONSUMER_ROWS, Consumer
from bento.quality import drift

logger = logging.getLogger("readmission")
SAMPLE_ROWS = CONSUMER_ROWS  # rows of one flush of the log (0.1 s of predictions) that are counted, at most


def consumers(reference: drift.Reference | None) -> list[Consumer]:
    """The drift consumer of the served model's reference; none (and a log line) where the model has none."""
    if reference is None:
        logger.warning("feature drift is off: the model carries no drift reference (retrain it)")
        return []
    metrics.feature_reference(reference)
    buckets = reference.buckets
    pending = metrics.PendingFeatureRows(buckets)

    def count_served_features(batches: list[LoggedBatch]) -> None:
        if not batches:  # the stream paused: publish what waited for its turn
            pending.publish()
            return
        rows = sum(len(batch.matrix) for batch in batches)
        step = -(-rows // SAMPLE_ROWS)  # ceil: every row while a flush holds at most SAMPLE_ROWS
        offset, sample = 0, []
        for batch in batches:  # every step-th row of the flush, without concatenating the whole flush first
            sample.append(batch.matrix[(-offset) % step :: step])
            offset += len(batch.matrix)
        pending.add(np.concatenate(sample))  # a copy: a view would keep the whole batch alive until published

    return [count_served_features]
