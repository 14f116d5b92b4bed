"""What live performance (bento/monitoring/live_performance.py) keeps with several workers on one log, whichever
store holds it: a test module subclasses `LeaseContract` with a `location` fixture, the log's
READMISSION_PREDICTION_LOG, where each worker (or pod, for PostgreSQL) opens a store of its own and its computations'
processes theirs: tests/unit/monitoring/test_live.py (SQLite), tests/postgres/test_live_lease.py.

Two workers refresh every few hundredths of a second: exactly one reads the rows and computes, only when predictions
or outcomes arrived; the other serves the same figures; when the holder stops, the lease moves and the other computes.
Outcomes arrive PUBLISH_ROWS at a time: the figures are published in steps of that many (bento/quality/privacy.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.model.predictor import ModelInfo
from bento.monitoring import live_performance
from bento.monitoring.live_compute import Place
from bento.monitoring.live_performance import LivePerformance
from bento.predictionlog.factory import open_store
from bento.predictionlog.store import LogStore
from bento.quality.privacy import PUBLISH_ROWS
from tests.helpers import poll, queued

INFO = ModelInfo(
    name="readmission", version="5", run_id="", tag="readmission:t", threshold=0.3, prevalence=0.1, spec_hash="x",
    test_metrics={"roc_auc": 0.7, "brier": 0.1, "threshold": 0.3, "recall": 0.4}, score_reference=[],
)  # fmt: skip
SECONDS = 0.05
IDS = PredictionIds()

STEP = [n % 2 for n in range(PUBLISH_ROWS)]  # one step of outcomes


def worker(location: str) -> LivePerformance:
    """A worker's live performance on the log at `location`, with a store of its own."""
    store = open_store(location, Path())
    assert store is not None
    return LivePerformance(store, lambda: INFO, SECONDS, Place(location, Path()))


def labelled(store: LogStore, outcomes: list[int]) -> None:
    """Predictions of version 5 made now, with these outcomes."""
    now = time.time()
    probabilities = np.linspace(0.1, 0.9, len(outcomes), dtype=np.float32)
    batch = ScoredBatch(IDS.take(len(outcomes), now), now, "5", probabilities, (probabilities > 0.3).astype(np.int64),
                        np.zeros((len(outcomes), 1), dtype=np.float32))  # fmt: skip
    store.append(queued(batch), keep_features=False)
    store.record_outcomes(dict(zip(batch.ids, outcomes, strict=True)), now)


def rows_served(live: LivePerformance) -> int:
    figures = live.latest().live.get("5", {}).get("90d", {})
    return int(figures.get("labelled_rows", -1))


def settled(first: LivePerformance, second: LivePerformance) -> bool:
    """Whether `first` computed nothing while both refreshed 5 more times."""
    computed, done = first.computations, (first.refreshes, second.refreshes)
    poll(lambda: first.refreshes > done[0] + 5 and second.refreshes > done[1] + 5, 10, "5 more refreshes", 0.01)
    return first.computations == computed


class LeaseContract:
    """The tests; a subclass named Test<Store> provides `location`."""

    def test_one_worker_computes_when_rows_change_the_other_serves_the_same_and_takes_over(
        self, location: str, monkeypatch: pytest.MonkeyPatch
    ):
        # a lease of 10 s, not 3 intervals: a busy machine may stall the holder's thread longer than that; the
        # holder releases it when it stops (a lease that lapses: the next test)
        monkeypatch.setattr(live_performance, "LEASE_INTERVALS", 10 / SECONDS)
        monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest: each child's start-up alone takes 0.1 s
        first, second = worker(location), worker(location)
        first_store, second_store = first.store, second.store
        first.start()
        poll(lambda: first.latest().computed_at, 10, "the first worker's computation", interval=0.01)
        second.start()
        poll(lambda: second.latest().computed_at == first.latest().computed_at, 10, "the stored figures", 0.01)
        assert rows_served(second) == 0

        labelled(first_store, STEP)
        poll(lambda: rows_served(first) == rows_served(second) == PUBLISH_ROWS, 10, "a step in both", 0.01)
        # the predictions and their outcomes are two changes, each perhaps measured twice (the markers are read
        # before the rows): then nothing changes, and nothing is computed over 5 refreshes of both
        poll(lambda: settled(first, second), 10, "no computation over 5 refreshes", interval=0)
        assert 2 <= first.computations <= 5 and second.computations == 0, "computed when rows changed, by the holder"
        assert first.latest() == second.latest()
        probabilities = np.linspace(0.1, 0.9, PUBLISH_ROWS, dtype=np.float32)
        assert second.latest().live["5"]["90d"]["roc_auc"] == pytest.approx(roc_auc_score(STEP, probabilities), 1e-9)

        first.stop(5)
        labelled(second_store, STEP)
        poll(lambda: rows_served(second) == 2 * PUBLISH_ROWS, 10, "the other worker computing", interval=0.01)
        assert second.computations >= 1
        second.stop(5)
        first_store.close()
        second_store.close()

    def test_a_holder_that_never_releases_loses_the_lease_once_it_lapses(
        self, location: str, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest: each child's start-up alone takes 0.1 s
        first = worker(location)
        first_store = first.store
        first.refresh()  # computes and holds the lease, then is gone without releasing it
        assert first.computations == 1
        labelled(first_store, STEP)
        second = worker(location)
        second_store = second.store
        second.refresh()
        assert second.computations == 0, "the lease still runs"
        second.start()
        poll(lambda: rows_served(second) == PUBLISH_ROWS, 10, "the lapsed lease taken over", interval=0.01)
        assert second.computations == 1
        second.stop(5)
        first_store.close()
        second_store.close()
