"""The prediction log's stores and its writer, without a service.

One contract for both stores (bento/predictionlog/sqlite.py's SQLiteStore and bento/predictionlog/postgres.py's
PostgresStore, on a real PostgreSQL server): what is appended is read back, feedback is all or nothing, the
retention purge erases only old encoded rows, concurrent feedback about the same predictions never records two outcomes.
Then PredictionLog (bento/predictionlog/writer.py) over a store that can be made to fail: a full queue drops without
waiting, a store locked for less than the writer's tries loses nothing, a failing store loses the batch and the
next one is written, close() writes what is queued.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing

import numpy as np
import psycopg
import pytest
from prometheus_client import REGISTRY

from bento import features
from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.monitoring import metrics
from bento.predictionlog.postgres import PostgresStore
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import ConflictingOutcomeError, LogStore, Recorded, StoreError, UnknownPredictionError
from bento.predictionlog.writer import PredictionLog
from tests.helpers import poll

DAY = 86_400.0
CONTESTED = 3000  # ids several calls give opposite outcomes for at once: enough for their lookups to overlap
WIDTH = len(features.COLUMNS)
IDS = PredictionIds()


def batch(rows: int, when: float | None = None, version: str = "3", seed: int = 0) -> ScoredBatch:
    """`rows` scored rows stamped `when` (now by default), with random encoded rows and probabilities."""
    when = time.time() if when is None else when
    rng = np.random.default_rng(seed)
    probabilities = rng.random(rows, dtype=np.float32)
    return ScoredBatch(
        ids=IDS.take(rows, when),
        time=when,
        model_version=version,
        probabilities=probabilities,
        labels=(probabilities > 0.5).astype(np.int64),
        matrix=rng.random((rows, WIDTH), dtype=np.float32),
    )


Query = Callable[[str], list[tuple]]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> tuple[LogStore, Query]:
    """A fresh store of each kind and a way to read it behind its back (its own connection)."""
    if request.param == "sqlite":
        path = tmp_path / "predictions.db"
        opened: LogStore = SQLiteStore(path)

        def query(sql: str) -> list[tuple]:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return db.execute(sql).fetchall()
    else:
        url = request.getfixturevalue("postgres").database()
        opened = PostgresStore(url)

        def query(sql: str) -> list[tuple]:
            with psycopg.connect(url) as db:
                return db.execute(sql).fetchall()

    yield opened, query
    opened.close()


def test_appended_rows_come_back_labelled_once_they_have_an_outcome(store):
    log, _ = store
    scored = batch(4, version="7")
    log.append([scored], keep_features=False)
    first, _, third, _ = scored.ids
    assert log.record_outcomes({first: 1, third: 0}, time.time()) == Recorded(recorded=2, unchanged=0)
    labelled = log.labelled(since=scored.time - 1)
    assert labelled.outcome.tolist() == [1, 0]
    assert labelled.label.tolist() == [scored.labels[0], scored.labels[2]]
    assert labelled.probability.tolist() == scored.probabilities[[0, 2]].astype(np.float64).tolist()  # exact
    assert labelled.model_version.tolist() == ["7", "7"]
    assert labelled.time.tolist() == [scored.time, scored.time]
    assert len(log.labelled(since=scored.time + 1).outcome) == 0


def test_an_unknown_id_records_nothing(store):
    log, query = store
    scored = batch(2)
    log.append([scored], keep_features=False)
    unknown = IDS.take(1, time.time() - DAY)[0]
    with pytest.raises(UnknownPredictionError) as raised:
        log.record_outcomes({scored.ids[0]: 1, unknown: 0}, time.time())
    assert raised.value.ids == [unknown]
    assert query("SELECT COUNT(*) FROM outcomes") == [(0,)]


def test_a_conflicting_outcome_records_nothing_and_the_same_outcome_again_changes_nothing(store):
    log, query = store
    scored = batch(3)
    log.append([scored], keep_features=False)
    a, b, c = scored.ids
    log.record_outcomes({a: 1}, time.time())
    with pytest.raises(ConflictingOutcomeError) as raised:
        log.record_outcomes({a: 0, b: 1}, time.time())
    assert raised.value.ids == [a]
    assert sorted(query("SELECT prediction_id, readmitted FROM outcomes")) == [(a, 1)]
    assert log.record_outcomes({a: 1, c: 0}, time.time()) == Recorded(recorded=1, unchanged=1)
    assert sorted(query("SELECT prediction_id, readmitted FROM outcomes")) == sorted([(a, 1), (c, 0)])


def test_encoded_rows_round_trip_as_float32_bytes_only_where_opted_in(store):
    log, query = store
    kept, not_kept = batch(3, seed=1), batch(2, seed=2)
    log.append([kept], keep_features=True)
    log.append([not_kept], keep_features=False)
    stored = dict(query("SELECT id, features FROM predictions"))
    for prediction_id, row in zip(kept.ids, kept.matrix, strict=True):
        np.testing.assert_array_equal(np.frombuffer(bytes(stored[prediction_id]), dtype=np.float32), row)
    assert all(stored[prediction_id] is None for prediction_id in not_kept.ids)


def test_the_purge_erases_only_encoded_rows_older_than_the_cut_off(store):
    """The writer runs the purge every PURGE_SECONDS (bento/predictionlog/writer.py) with the cut-off
    READMISSION_PREDICTION_LOG_RETENTION_DAYS before now; here the store method is called directly."""
    log, query = store
    now = time.time()
    old, recent = batch(3, when=now - 31 * DAY, seed=3), batch(2, when=now - 29 * DAY, seed=4)
    log.append([old, recent], keep_features=True)
    assert log.purge_features(before=now - 30 * DAY) == 3
    stored = dict(query("SELECT id, features FROM predictions"))
    assert len(stored) == 5, "the predictions themselves are kept"
    assert all(stored[prediction_id] is None for prediction_id in old.ids)
    assert all(stored[prediction_id] is not None for prediction_id in recent.ids)
    assert log.purge_features(before=now - 30 * DAY) == 0


def test_concurrent_feedback_about_the_same_predictions_records_one_outcome_each_and_counts_it_once(store):
    """Calls racing over overlapping ids (each in its own order): with the same outcomes all succeed and the
    new outcomes are counted once in all; with opposite outcomes one call wins and the others record nothing."""
    log, query = store
    rounds, callers = 3, 4
    for round_ in range(rounds):
        scored, contested = batch(600, seed=round_), batch(CONTESTED, seed=round_)
        log.append([scored, contested], keep_features=False)
        rng = random.Random(round_)
        subsets = [rng.sample(scored.ids, 400) for _ in range(callers)]  # overlapping, each in its own order
        same = race(log, [{i: 1 for i in subset} for subset in subsets])
        assert all(isinstance(result, Recorded) for result in same), same
        assert sum(result.recorded for result in same) == len(set().union(*subsets))
        opposite = race(log, [{i: caller % 2 for i in contested.ids} for caller in range(callers)])
        listed = ",".join(f"'{i}'" for i in contested.ids)
        (kept,) = {
            outcome for (outcome,) in query(f"SELECT readmitted FROM outcomes WHERE prediction_id IN ({listed})")
        }
        for caller, result in enumerate(opposite):
            assert isinstance(result, Recorded if caller % 2 == kept else ConflictingOutcomeError), opposite
        assert sum(result.recorded for result in opposite if isinstance(result, Recorded)) == CONTESTED


def race(log: LogStore, calls: list[dict[str, int]]) -> list[Recorded | Exception]:
    """The calls' results (or errors), each in its own thread, released together."""
    start = threading.Barrier(len(calls))
    results: list[Recorded | Exception] = [RuntimeError("no result")] * len(calls)

    def call(n: int) -> None:
        start.wait()
        try:
            results[n] = log.record_outcomes(calls[n], time.time())
        except Exception as error:  # the result the test compares
            results[n] = error

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_postgres_fails_while_the_server_is_down_and_writes_again_once_it_is_back(postgres):
    """No restart of the store: the next write after the server is back connects again. The password in the
    URL is in no error."""
    password = "not-in-any-message"  # pragma: allowlist secret (trust authentication ignores it)
    store = PostgresStore(postgres.database().replace("postgres@", f"postgres:{password}@", 1))
    before, during, after = batch(2), batch(2, seed=1), batch(2, seed=2)
    store.append([before], keep_features=False)
    postgres.stop()
    try:
        started = time.monotonic()
        for _ in range(2):  # the lost connection, then a refused new one
            with pytest.raises(StoreError) as raised:
                store.append([during], keep_features=False)
            assert password not in str(raised.value) and f":{postgres.port}/" in str(raised.value)
        assert time.monotonic() - started < 10, "a write waited on the stopped server"
    finally:
        postgres.start()
    store.append([after], keep_features=False)
    assert store.record_outcomes({before.ids[0]: 1, after.ids[0]: 0}, time.time()) == Recorded(2, 0)
    with pytest.raises(UnknownPredictionError):
        store.record_outcomes({during.ids[0]: 1}, time.time())
    store.close()


# --- PredictionLog -------------------------------------------------------------------------------------------


class Switchable:
    """A real SQLite store that fails every call while `failing` is set, and can hold appends at a gate."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.failing = False
        self.entered = threading.Event()  # the writer has called append
        self.gate = threading.Event()  # append goes on only while set
        self.gate.set()

    def append(self, batches, keep_features):
        self.entered.set()
        self.gate.wait()
        if self.failing:
            raise StoreError("made to fail")
        self.inner.append(batches, keep_features)

    def purge_features(self, before):
        return self.inner.purge_features(before)

    def close(self):
        self.inner.close()


def rows_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("readmission_prediction_log_rows_total", {"outcome": outcome}) or 0.0


def stored_ids(path) -> set[str]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {prediction_id for (prediction_id,) in db.execute("SELECT id FROM predictions")}


@pytest.fixture
def switchable(tmp_path):
    store = Switchable(SQLiteStore(tmp_path / "predictions.db"))
    yield store
    store.gate.set()


def writer(store, queue_rows: int = 1000, retry_seconds: float = 0.2) -> PredictionLog:
    log = PredictionLog(
        store,
        queue_rows,
        keep_features=False,
        retention_days=30,
        counts=metrics,
        flush_seconds=0.05,
        retry_seconds=retry_seconds,
    )
    log.start()
    return log


def test_a_full_queue_drops_rows_counted_and_append_never_waits(switchable, tmp_path):
    switchable.gate.clear()  # the writer is stuck in the store: nothing leaves the queue
    log = writer(switchable, queue_rows=10)
    dropped_before = rows_counted("dropped")
    held = batch(4)
    log.append(held)
    assert switchable.entered.wait(5), "the writer never took the first batch"
    queued = [batch(5, seed=i) for i in range(3)]  # 15 rows for a queue of 10: the third is dropped
    started = time.monotonic()
    for scored in queued:
        log.append(scored)
    assert time.monotonic() - started < 0.5, "append waited"
    assert rows_counted("dropped") - dropped_before == 5
    switchable.gate.set()
    log.close(timeout=10)
    assert stored_ids(tmp_path / "predictions.db") == {*held.ids, *queued[0].ids, *queued[1].ids}


def test_a_failing_store_loses_the_batch_counted_and_the_next_is_written(switchable, tmp_path):
    lost_before, written_before = rows_counted("lost"), rows_counted("written")
    switchable.failing = True
    log = writer(switchable)
    failed = batch(6)
    log.append(failed)
    poll(lambda: rows_counted("lost") - lost_before == 6, 5, "6 rows counted lost")
    switchable.failing = False
    later = batch(4, seed=1)
    log.append(later)
    poll(lambda: rows_counted("written") - written_before == 4, 5, "4 rows counted written")
    log.close(timeout=10)
    assert stored_ids(tmp_path / "predictions.db") == set(later.ids)


@pytest.fixture
def locked(tmp_path):
    """A real SQLite store and another connection that can hold `BEGIN EXCLUSIVE` on its file."""
    path = tmp_path / "predictions.db"
    store = SQLiteStore(path)
    store.append([batch(1)], keep_features=False)  # the file and its tables exist
    other = sqlite3.connect(path, isolation_level=None)
    yield store, other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def test_a_store_locked_for_less_than_the_writers_tries_loses_nothing(locked, caplog):
    """Locked past one write's busy timeout (BUSY_MILLISECONDS) but released within RETRY_SECONDS."""
    store, other = locked
    caplog.set_level(logging.INFO, logger="readmission")
    lost_before, written_before = rows_counted("lost"), rows_counted("written")
    log = writer(store, retry_seconds=30)
    other.execute("BEGIN EXCLUSIVE")
    held = batch(7)
    log.append(held)
    poll(lambda: "trying again" in caplog.text, 10, "the writer's first failed try")
    other.execute("ROLLBACK")
    poll(lambda: rows_counted("written") - written_before == 7, 30, "7 rows counted written")
    log.close(timeout=10)
    assert rows_counted("lost") == lost_before
    assert set(held.ids) <= stored_ids(store.path)


def test_a_store_locked_for_longer_than_the_writers_tries_loses_the_batch_counted(locked):
    store, other = locked
    lost_before = rows_counted("lost")
    log = writer(store, retry_seconds=0.5)
    other.execute("BEGIN EXCLUSIVE")
    held = batch(5)
    log.append(held)
    poll(lambda: rows_counted("lost") - lost_before == 5, 30, "5 rows counted lost")
    other.execute("ROLLBACK")
    later = batch(3, seed=1)
    log.append(later)
    log.close(timeout=10)
    stored = stored_ids(store.path)
    assert set(later.ids) <= stored and not set(held.ids) & stored


def test_close_writes_everything_queued(switchable, tmp_path):
    switchable.gate.clear()
    log = writer(switchable)
    first = batch(3)
    log.append(first)
    assert switchable.entered.wait(5), "the writer never took the first batch"
    queued = [batch(50, seed=i) for i in range(5)]
    for scored in queued:
        log.append(scored)
    closing = threading.Thread(target=log.close, args=(10,))
    closing.start()
    switchable.gate.set()
    closing.join(15)
    assert not closing.is_alive()
    expected = {*first.ids, *(i for scored in queued for i in scored.ids)}
    assert stored_ids(tmp_path / "predictions.db") == expected
