"""bento/monitoring/live_performance.py in-process: a store that cannot be read, the thread's start and stop, the
gauges it yields, and the lease contract (lease_contract.py) with two workers on one SQLite file."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.model.predictor import ModelInfo
from bento.monitoring import live_performance
from bento.monitoring.live_compute import Place
from bento.monitoring.live_performance import LivePerformance
from bento.predictionlog.sqlite import SQLiteStore
from bento.quality import estimates
from bento.quality.privacy import PUBLISH_ROWS
from bento.quality.windows import Labelled, measure
from tests.helpers import poll, queued
from tests.unit.monitoring.lease_contract import LeaseContract, labelled

INFO = ModelInfo(
    name="readmission", version="5", run_id="", tag="readmission:t", threshold=0.3, prevalence=0.1, spec_hash="x",
    test_metrics={"roc_auc": 0.7, "brier": 0.1, "threshold": 0.3, "recall": 0.4}, score_reference=[],
)  # fmt: skip


class TestSQLiteLease(LeaseContract):
    @pytest.fixture
    def location(self, tmp_path) -> str:
        return str(tmp_path / "log.db")


def live_of(store: SQLiteStore, seconds: float = 60) -> LivePerformance:
    """The live performance of a worker logging to `store`, its child computing from the same file."""
    return LivePerformance(store, lambda: INFO, seconds, Place(str(store.path), store.path.parent))


def _samples(live: LivePerformance) -> dict[tuple[str, ...], float]:
    return {(f.name, *s.labels.values()): s.value for f in live.collect() for s in f.samples}


def test_a_store_that_cannot_be_read_is_logged_and_the_training_figures_stay(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    live = live_of(SQLiteStore(blocker / "log.db"))  # its folder cannot be made
    with caplog.at_level(logging.WARNING, logger="readmission"):
        live.refresh()
    assert "live performance: the prediction log cannot be read" in caplog.text
    assert live.latest().computed_at is None and live.latest().live == {}
    assert _samples(live) == {
        ("readmission_training_metric", "5", "roc_auc"): 0.7,
        ("readmission_training_metric", "5", "brier"): 0.1,
    }


def test_the_thread_recomputes_until_stopped(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "log.db")
    live = live_of(store, 0.05)
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest: each child's start-up alone takes 0.1 s
    live.start()
    first = poll(lambda: live.latest().computed_at, 10, "the first computation", interval=0.02)
    assert _samples(live)[("readmission_live_metric", "5", "30d", "labelled_rows")] == 0
    assert ("readmission_live_metric", "5", "30d", "roc_auc") not in _samples(live)  # absent, not zero
    now, rows = time.time(), PUBLISH_ROWS  # four probabilities and outcomes, PUBLISH_ROWS / 4 times
    probability = np.tile(np.array([0.1, 0.2, 0.4, 0.8], np.float32), rows // 4)
    batch = ScoredBatch(PredictionIds().take(rows, now), now, "5", probability, np.tile([0, 0, 1, 1], rows // 4),
                        np.zeros((rows, 1), dtype=np.float32))  # fmt: skip
    store.append(queued(batch), keep_features=False)
    store.record_outcomes(dict(zip(batch.ids, np.tile([0, 1, 0, 1], rows // 4).tolist(), strict=True)), now)
    poll(lambda: live.latest().computed_at > first and live.latest().live["5"]["30d"]["labelled_rows"] == rows, 10,
         "the outcomes in the figures", interval=0.02)  # fmt: skip
    figures = _samples(live)
    assert figures[("readmission_live_metric", "5", "90d", "roc_auc")] == 0.75
    assert figures[("readmission_live_metric", "5", "90d", "precision")] == 0.5
    live.stop(5)
    assert not live._thread.is_alive()
    store.close()


def test_the_estimates_are_served_and_published_in_steps_of_twenty_predictions(tmp_path, monkeypatch):
    """Before any outcome: the estimates of the oldest multiple of PUBLISH_ROWS rows, on /performance's body and
    as gauges; a single new prediction moves nothing, the PUBLISH_ROWS-th moves them."""
    store = SQLiteStore(tmp_path / "log.db")
    live = live_of(store)
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest to speak of
    ids, now = PredictionIds(), time.time()

    def predicted(rows: int, seed: int) -> np.ndarray:
        probability = np.random.default_rng(seed).beta(2.0, 8.0, rows).astype(np.float32)
        batch = ScoredBatch(ids.take(rows, now), now, "5", probability, (probability >= 0.3).astype(np.int64),
                            np.zeros((rows, 1), dtype=np.float32))  # fmt: skip
        store.append(queued(batch), keep_features=False)
        live.refresh()
        return probability.astype(np.float64)

    first = predicted(PUBLISH_ROWS - 1, seed=1)
    assert live.latest().estimated["5"] == {"30d": {"scored_rows": 0}, "90d": {"scored_rows": 0}}
    step = np.r_[first, predicted(1, seed=2)]
    shown = live.latest().as_json()["estimated"]["5"]["30d"]
    assert shown == pytest.approx({**estimates.summary(step, step >= 0.3), "scored_rows": PUBLISH_ROWS}, abs=1e-12)
    predicted(1, seed=3)
    assert live.latest().estimated["5"]["30d"] == shown, "one more prediction moves nothing"
    gauges = _samples(live)
    assert gauges[("readmission_estimated_metric", "5", "30d", "estimated_roc_auc")] == shown["estimated_roc_auc"]
    assert gauges[("readmission_estimated_metric", "5", "90d", "scored_rows")] == PUBLISH_ROWS
    assert live.latest().live["5"]["30d"] == {"labelled_rows": 0}, "no outcome: no realised figure"
    store.close()


def test_a_large_log_is_read_again_for_outcomes_not_for_each_new_prediction(tmp_path, monkeypatch):
    """Past LARGE_LOG_ROWS estimated rows, new predictions alone do not make the holder read the log again; an
    outcome does (and so would SLIDE_SECONDS)."""
    store = SQLiteStore(tmp_path / "log.db")
    live = live_of(store)
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest to speak of
    monkeypatch.setattr(live_performance, "LARGE_LOG_ROWS", 2 * PUBLISH_ROWS)
    ids, now = PredictionIds(), time.time()

    def predicted(rows: int) -> ScoredBatch:
        probability = np.linspace(0.05, 0.95, rows, dtype=np.float32)
        batch = ScoredBatch(ids.take(rows, now), now, "5", probability, (probability >= 0.3).astype(np.int64),
                            np.zeros((rows, 1), dtype=np.float32))  # fmt: skip
        store.append(queued(batch), keep_features=False)
        live.refresh()
        return batch

    predicted(PUBLISH_ROWS)
    predicted(PUBLISH_ROWS)  # a small log: each new prediction is read
    assert (live.computations, live.latest().estimated["5"]["30d"]["scored_rows"]) == (2, 2 * PUBLISH_ROWS)
    batch = predicted(PUBLISH_ROWS)  # now large: not read again for predictions alone
    assert (live.computations, live.latest().estimated["5"]["30d"]["scored_rows"]) == (2, 2 * PUBLISH_ROWS)
    store.record_outcomes({batch.ids[0]: 1}, now)
    live.refresh()
    assert (live.computations, live.latest().estimated["5"]["30d"]["scored_rows"]) == (3, 3 * PUBLISH_ROWS)
    store.close()


def _labelled(rows: int, days_ago: float, now: float) -> Labelled:
    """`rows` labelled predictions of version 5 made `days_ago`, their outcomes recorded now."""
    probability = np.linspace(0.1, 0.6, rows)
    return Labelled(np.array(["5"] * rows), np.full(rows, now - days_ago * 86400.0), probability,
                    (probability >= 0.3).astype(np.int64), np.arange(rows) % 2, np.full(rows, now))  # fmt: skip


def test_figures_of_unchanged_rows_are_not_computed_again():
    now = time.time()
    rows = _labelled(PUBLISH_ROWS, 40, now)
    memo: dict = {}
    first = measure(rows, now, memo=memo)
    assert "30d" in first["5"] and first["5"]["30d"] == {"labelled_rows": 0}
    assert first["5"]["90d"]["roc_auc"] == pytest.approx(roc_auc_score(rows.outcome, rows.probability), abs=1e-9)
    again = measure(rows, now + 60, memo=memo)
    assert again["5"]["90d"] is first["5"]["90d"]  # the same rows: the memo's figures
    changed = replace(rows, outcome=1 - rows.outcome)
    assert measure(changed, now + 60, memo=memo)["5"]["90d"]["roc_auc"] == pytest.approx(
        roc_auc_score(changed.outcome, changed.probability), abs=1e-9
    )


def test_a_window_holding_the_same_rows_as_the_shorter_one_is_not_computed_again():
    now = time.time()
    rows = _labelled(2 * PUBLISH_ROWS, 1, now)
    measured = measure(rows, now)
    assert measured["5"]["90d"] is measured["5"]["30d"] and measured["5"]["30d"]["labelled_rows"] == 2 * PUBLISH_ROWS
    older = replace(rows, time=np.r_[rows.time[:-1], now - 40 * 86400.0])
    apart = measure(older, now)  # one row fewer in the last 30 days: one step fewer published
    assert (apart["5"]["30d"]["labelled_rows"], apart["5"]["90d"]["labelled_rows"]) == (PUBLISH_ROWS, 2 * PUBLISH_ROWS)


def test_the_holder_rests_a_hundred_times_its_last_computation_before_the_next(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "log.db")
    live = live_of(store)
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest to speak of
    live.refresh()
    step = [n % 2 for n in range(PUBLISH_ROWS)]
    labelled(store, step)
    live.refresh()
    assert (live.computations, live.latest().live["5"]["90d"]["labelled_rows"]) == (2, PUBLISH_ROWS)
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e-9)  # a rest of a billion times the CPU time
    labelled(store, step)
    live.refresh()
    assert (live.computations, live.latest().live["5"]["90d"]["labelled_rows"]) == (3, 2 * PUBLISH_ROWS)
    labelled(store, step)
    live.refresh()
    assert (live.computations, live.latest().live["5"]["90d"]["labelled_rows"]) == (3, 2 * PUBLISH_ROWS), (
        "computed while resting"
    )
    store.close()
