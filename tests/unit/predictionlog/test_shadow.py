"""Shadow scoring in the prediction log's writer (bento/predictionlog/shadow.py, writer.py), without a service.

A real SQLite store and a real writer; the challenger is a function of the encoded rows. The served rows are written
whatever the challenger does: its rows go in with them when it scores them in one call per flush, and a challenger
that raises, hangs, or meets a backlog leaves the served rows alone, its misses counted and logged once per kind.
The service's test of the same with real models: tests/service/test_shadow.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bento.monitoring import metrics
from bento.predictionlog.shadow import Shadow
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.writer import PredictionLog
from tests.helpers import LOGGED, SHADOW_LOGGED, logged, poll, shadow_logged
from tests.unit.predictionlog.store_contract import batch

WAIT = 30  # seconds: generous, for a busy machine


def shadow_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("readmission_shadow_rows_total", {"outcome": outcome}) or 0.0


def challenger_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A challenger: the mean of each encoded row, flagged at 0.5."""
    probabilities = matrix.mean(axis=1, dtype=np.float32)
    return probabilities, (probabilities >= 0.5).astype(np.int64)


class Calls:
    """A challenger's calls: the rows of each; `score` may raise or wait at `gate` first."""

    def __init__(self, raises: bool = False) -> None:
        self.rows: list[int] = []
        self.raises = raises
        self.gate = threading.Event()
        self.gate.set()

    def score(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.rows.append(len(matrix))
        self.gate.wait()
        if self.raises:
            raise RuntimeError("the challenger's booster failed")
        return challenger_scores(matrix)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "predictions.db"


def writer(path, calls: Calls, queue_rows: int = 1000, budget: float = 5.0) -> PredictionLog:
    """A writer of a fresh store (its tables created) whose challenger (version "9") is `calls`; not started."""
    store = SQLiteStore(path)
    store.labelled_marker()
    return PredictionLog(
        store,
        queue_rows,
        keep_features=False,
        retention_days=30,
        keep_days=120,
        counts=metrics,
        flush_seconds=0.05,
        shadow=Shadow("9", calls.score, metrics, budget_seconds=budget),
    )


def stored(path, table: str) -> list[tuple]:
    """The served rows (id, version) or the challenger's (id, version, probability, label), in the order of the ids."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        if table == "predictions":
            return sorted((i, row[1]) for i, row in logged(db.execute(LOGGED).fetchall()).items())
        return sorted(shadow_logged(db.execute(SHADOW_LOGGED).fetchall()))


def test_the_challengers_rows_go_in_with_the_served_rows_scored_in_one_call_per_flush(path):
    calls = Calls()
    log = writer(path, calls)
    scored_before = shadow_counted("scored")
    flushed = [batch(3, seed=1), batch(1, seed=2), batch(5, seed=3)]
    for scored in flushed:  # queued before the writer starts: its first flush takes them together
        log.append(scored)
    log.start()
    log.close(timeout=WAIT)
    assert calls.rows == [9], "one call for the flush's rows"
    matrix = np.concatenate([scored.matrix for scored in flushed])
    probabilities, labels = challenger_scores(matrix)
    ids = [i for scored in flushed for i in scored.ids]
    expected = sorted(zip(ids, ["9"] * 9, probabilities.astype(np.float64).tolist(), labels.tolist(), strict=True))
    assert stored(path, "shadow_predictions") == expected, "exact probabilities, the challenger's labels"
    assert stored(path, "predictions") == sorted((i, "3") for i in ids), "the served rows under the served version"
    assert shadow_counted("scored") - scored_before == 9


def test_a_challenger_that_raises_misses_its_rows_counted_logged_once_and_the_served_rows_are_written(path, caplog):
    caplog.set_level(logging.WARNING, logger="readmission")
    calls = Calls(raises=True)
    log = writer(path, calls)
    failed_before = shadow_counted("failed")
    log.start()
    first, second = batch(4, seed=1), batch(2, seed=2)
    log.append(first)
    poll(lambda: len(stored(path, "predictions")) == 4, WAIT, "the first batch written")
    log.append(second)
    log.close(timeout=WAIT)
    assert len(calls.rows) == 2
    assert {i for i, _ in stored(path, "predictions")} == {*first.ids, *second.ids}
    assert stored(path, "shadow_predictions") == []
    assert shadow_counted("failed") - failed_before == 6
    assert caplog.text.count("the challenger failed: RuntimeError") == 1, "logged once per worker"


def test_a_challenger_slower_than_its_budget_or_still_busy_is_skipped_and_the_served_rows_are_written(path, caplog):
    caplog.set_level(logging.WARNING, logger="readmission")
    calls = Calls()
    calls.gate.clear()  # the challenger hangs until the test lets it go
    log = writer(path, calls, budget=0.05)
    skipped_before, scored_before = shadow_counted("skipped"), shadow_counted("scored")
    log.start()
    try:
        slow, busy = batch(3, seed=1), batch(2, seed=2)
        log.append(slow)
        poll(lambda: len(stored(path, "predictions")) == 3, WAIT, "the batch written while the challenger hangs")
        log.append(busy)
        poll(lambda: len(stored(path, "predictions")) == 5, WAIT, "the next batch written while it still hangs")
        assert calls.rows == [3], "no second call while the first runs"
        assert shadow_counted("skipped") - skipped_before == 5
        assert "took longer than 0.05 s" in caplog.text and "still scoring an earlier flush" in caplog.text
    finally:
        calls.gate.set()
    poll(lambda: not log.shadow.busy, WAIT, "the slow call's end")
    later = batch(4, seed=3)
    log.append(later)
    log.close(timeout=WAIT)
    assert {i for i, *_ in stored(path, "shadow_predictions")} == set(later.ids), "scored again once free"
    assert shadow_counted("scored") - scored_before == 4
    assert stored(path, "shadow_predictions")[0][1] == "9"


def test_a_backlog_in_the_writers_queue_skips_the_challenger(path, caplog):
    caplog.set_level(logging.WARNING, logger="readmission")
    calls = Calls()
    log = writer(path, calls, queue_rows=10)
    skipped_before = shadow_counted("skipped")
    backlog = [batch(3, seed=1), batch(3, seed=2)]  # 6 rows waiting for a queue of 10: past half its bound
    for scored in backlog:
        log.append(scored)
    log.start()
    log.close(timeout=WAIT)
    assert calls.rows == []
    assert len(stored(path, "predictions")) == 6 and stored(path, "shadow_predictions") == []
    assert shadow_counted("skipped") - skipped_before == 6
    assert "queue is past half its bound" in caplog.text
