"""Metrics helpers that use prometheus-client internals agree with its public API; what moves with patients is
published per PUBLISH_ROWS rows."""

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from bento.model import risk_bands
from bento.monitoring.metrics import PUBLISH_ROWS, PendingPredictions, add_to_histogram, bucket_counts


def test_bucket_counts_added_at_once_equal_one_observe_per_value():
    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    first = Histogram("p", "p", buckets=risk_bands.SCORE_BUCKETS, registry=one_by_one)
    second = Histogram("p", "p", buckets=risk_bands.SCORE_BUCKETS, registry=at_once)
    values = np.concatenate([np.random.default_rng(1).random(999), risk_bands.SCORE_BUCKETS]).astype(np.float32)
    for value in values.tolist():
        first.observe(value)
    counts = bucket_counts(np.asarray(second._upper_bounds), values).tolist()
    add_to_histogram(second, counts, float(values.sum(dtype=float)))

    def samples(registry):
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert samples(one_by_one) == samples(at_once)
    assert 'p_bucket{le="0.025"}' in "\n".join(samples(at_once))


def published(version: str) -> tuple[float, float, float]:
    """Predictions counted, probabilities observed and their sum for `version`, as this process publishes them."""

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"model_version": version, **labels}) or 0.0

    rows = value("readmission_predictions_total", label="0") + value("readmission_predictions_total", label="1")
    return rows, value("readmission_predicted_probability_count"), value("readmission_predicted_probability_sum")


def test_predictions_are_published_once_they_cover_publish_rows():
    pending, version = PendingPredictions(), "pending-test"
    probabilities = np.linspace(0.01, 0.9, PUBLISH_ROWS + 3, dtype=np.float32)
    for probability in probabilities[: PUBLISH_ROWS - 1]:  # one row per request
        pending.add(version, np.array([probability]), np.array([int(probability > 0.5)]))
    assert published(version) == (0.0, 0.0, 0.0)
    rest = probabilities[PUBLISH_ROWS - 1 :]
    pending.add(version, rest, (rest > 0.5).astype(np.int64))
    rows, count, total = published(version)
    assert rows == count == PUBLISH_ROWS + 3
    assert abs(total - float(probabilities.sum(dtype=np.float64))) < 1e-9
