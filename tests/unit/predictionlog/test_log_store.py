"""The prediction log's SQLite store and its writer, without a service.

SQLiteStore (bento/predictionlog/sqlite.py) keeps the store contract of store_contract.py beside this module (the
PostgreSQL store keeps it in tests/postgres/test_store_contract.py). Then PredictionLog
(bento/predictionlog/writer.py) over a store that can be made to fail: a full queue drops without waiting, a store
locked for less than the writer's tries loses nothing, a failing store loses the batch and the next one is written,
close() writes what is queued.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
import weakref
from contextlib import closing

import pytest
from prometheus_client import REGISTRY

from bento.monitoring import metrics
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import LogStore, StoredFigures, StoreError, stored_of
from bento.predictionlog.writer import CONSUMER_ROWS, PredictionLog
from tests.helpers import poll, queued, sqlite_ids
from tests.unit.predictionlog.store_contract import Query, StoreContract, batch


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path) -> tuple[LogStore, Query]:
        """A fresh SQLite store and a way to read it behind its back (its own read-only connection)."""
        path = tmp_path / "predictions.db"
        opened = SQLiteStore(path)

        def query(sql: str) -> list[tuple]:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return db.execute(sql).fetchall()

        yield opened, query
        opened.close()

    @pytest.fixture
    def earlier(self, tmp_path):
        """An earlier release's SQLite log, then a store opening it."""
        path, opened = tmp_path / "earlier.db", []

        def open_after(statements: list[tuple[str, list[tuple]]]) -> tuple[LogStore, Query]:
            with closing(sqlite3.connect(path)) as db, db:
                for statement, rows in statements:
                    db.executemany(statement, rows) if rows else db.execute(statement)
            opened.append(SQLiteStore(path))

            def query(sql: str) -> list[tuple]:
                with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                    return db.execute(sql).fetchall()

            return opened[0], query

        yield open_after
        for store in opened:
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

    def append(self, batches, keep_features, shadow=()):
        self.entered.set()
        self.gate.wait()
        if self.failing:
            raise StoreError("made to fail")
        self.inner.append(batches, keep_features, shadow)

    def purge_features(self, before):
        return self.inner.purge_features(before)

    def erase_predictions(self, before, rows):
        return self.inner.erase_predictions(before, rows)

    def close(self):
        self.inner.close()


def rows_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("readmission_prediction_log_rows_total", {"outcome": outcome}) or 0.0


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
        keep_days=120,
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
    assert sqlite_ids(tmp_path / "predictions.db") == {*held.ids, *queued[0].ids, *queued[1].ids}


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
    assert sqlite_ids(tmp_path / "predictions.db") == set(later.ids)


@pytest.fixture
def locked(tmp_path):
    """A real SQLite store and another connection that can hold `BEGIN EXCLUSIVE` on its file."""
    path = tmp_path / "predictions.db"
    store = SQLiteStore(path)
    store.append(queued(batch(1)), keep_features=False)  # the file and its tables exist
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
    assert set(held.ids) <= sqlite_ids(store.path)


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
    stored = sqlite_ids(store.path)
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
    assert sqlite_ids(tmp_path / "predictions.db") == expected


def test_figures_written_by_an_older_release_are_served_without_an_earlier_comparison_or_estimates():
    """A holder of an older release replaces the `monitor` row only: the comparison and estimates rows beside it,
    of an earlier computation, are not served with its figures."""
    current = [("monitor", 2.0, "m", '{"6": {}}'), ("comparison", 2.0, "m", "[1]"), ("estimated", 2.0, "m", '{"6": 1}')]
    assert stored_of(current) == StoredFigures(2.0, "m", '{"6": {}}', "[1]", '{"6": 1}')
    older = [("monitor", 3.0, "n", '{"5": {}}'), *current[1:]]
    assert stored_of(older) == StoredFigures(3.0, "n", '{"5": {}}', "[]", "{}")
    assert stored_of(current[1:]) is None


def test_the_queue_keeps_only_the_consumers_sample_of_encoded_rows_after_a_large_flush(tmp_path):
    """A flush of 5,000 rows sets the stride to ceil(5,000 / CONSUMER_ROWS): the next 6,000 rows are queued with
    every stride-th encoded row only, and all of them are still written."""
    seen: list[int] = []
    store = SQLiteStore(tmp_path / "predictions.db")
    log = PredictionLog(store, 100_000, keep_features=False, retention_days=30, keep_days=120, counts=metrics,
                        consumers=[lambda batches: seen.append(sum(len(b.matrix) for b in batches))],
                        flush_seconds=2.0)  # fmt: skip
    first, second = batch(5000, seed=1), batch(6000, seed=2)
    log.append(first)
    log.start()
    poll(lambda: seen, 10, "the first flush", interval=0.01)
    log.append(second)  # queued before the next flush: thinned with the first flush's stride
    log.close(timeout=10)
    stride = math.ceil(5000 / CONSUMER_ROWS)  # every stride-th row of the stream, counted from the first
    assert stride > 1 and seen == [5000, len(range(-5000 % stride, 6000, stride))]
    assert set(first.ids) | set(second.ids) <= sqlite_ids(tmp_path / "predictions.db")


def test_the_queue_keeps_what_the_store_needs_of_a_scored_batch_not_the_batch(tmp_path):
    """Between flushes a worker holds a few small arrays a call of the model for the log, not the scored batch (its
    ids, its findings) nor, once the stream is sampled, its encoded rows (the sample's are copied); what is written
    is the same."""
    seen: list[int] = []
    store = SQLiteStore(tmp_path / "predictions.db")
    log = PredictionLog(store, 100_000, keep_features=False, retention_days=30, keep_days=120, counts=metrics,
                        consumers=[lambda batches: seen.append(sum(len(b.matrix) for b in batches))],
                        flush_seconds=2.0)  # fmt: skip
    large, early, unsampled, sampled = batch(5000, seed=1), batch(3, seed=2), batch(3, seed=3), batch(30, seed=4)
    written = {*large.ids, *early.ids, *unsampled.ids, *sampled.ids}
    kept = weakref.ref(early)
    log.append(large)
    log.append(early)  # no flush yet: every row is the consumers' sample, the encoded rows are kept as they are
    del early
    assert kept() is None, "the queue holds the scored batch"
    log.start()
    poll(lambda: seen, 10, "the first flush", interval=0.01)  # the stride is now ceil(5,003 / CONSUMER_ROWS)
    kept = [weakref.ref(b) for b in (unsampled, unsampled.matrix, sampled, sampled.matrix)]
    log.append(unsampled)  # no row of it in the sample
    log.append(sampled)  # a row or two of it in the sample
    del unsampled, sampled
    assert [ref() is None for ref in kept] == [True] * 4, "the queue holds a scored batch or all its encoded rows"
    log.close(timeout=10)
    assert seen[-1] > 0 and sqlite_ids(tmp_path / "predictions.db") == written
