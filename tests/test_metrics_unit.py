"""Metrics helpers that use prometheus-client internals agree with its public API."""

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bento import scores
from bento.metrics import observe_all


def test_observe_all_equals_one_observe_per_value():
    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    first = Histogram("p", "p", buckets=scores.SCORE_BUCKETS, registry=one_by_one)
    second = Histogram("p", "p", buckets=scores.SCORE_BUCKETS, registry=at_once)
    values = np.concatenate([np.random.default_rng(1).random(999), scores.SCORE_BUCKETS]).astype(np.float32)
    for value in values.tolist():
        first.observe(value)
    observe_all(second, values)

    def samples(registry):
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert samples(one_by_one) == samples(at_once)
    assert 'p_bucket{le="0.025"}' in "\n".join(samples(at_once))
