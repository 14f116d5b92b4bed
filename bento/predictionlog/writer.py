"""The prediction log: every scored row, written to a store off the request path.

The scoring core hands each scored batch to `PredictionLog.append` (registered with the core by
bento/monitoring/lifecycle.py), which only puts it on a bounded queue as the log keeps it (a `LoggedBatch`: its first
id, not every id; counted as dropped, never waiting, when the queue is full): what a worker holds for the log between
flushes is a few small arrays a call of the model, not the scored batches whole (ids, findings, encoded rows), which the
allocator of a busy worker feels (bench/pair.py: log on against off). A writer thread takes what has queued, passes it
to the consumers that watch the served data (bento/monitoring/drift_counts.py; an empty flush too: the stream paused),
has the challenger score it where one is in shadow (bento/predictionlog/shadow.py) and appends the served rows and the
challenger's to the store (bento/predictionlog/store.py) in one transaction. A store that fails (locked, disk full,
database down) is tried again with a growing pause for RETRY_SECONDS, while new rows queue (up to the queue's bound); a
store that still fails then loses that batch, counted, so `lost` means the store failed, not that it was busy a moment.
The next batch tries again, so logging resumes by itself when the store is back. Every PURGE_SECONDS the writer erases
the encoded rows past their retention and then the predictions past READMISSION_PREDICTION_LOG_KEEP_DAYS, one batch of
the store's ERASE_ROWS per flush between writes, so an erasure of any size never holds the queue back. Where neither the
store (READMISSION_PREDICTION_LOG_FEATURES) nor a challenger needs every encoded row, the queue keeps only the
consumers' sample of them, every k-th row of the stream (k from the last flush, so a flush holds about CONSUMER_ROWS),
copied out of the scored batch: a full queue holds megabytes, not the 100 MB of its rows' features. `close` flushes the
queue (SIGTERM). What it counts (rows written, lost, dropped; the queue) goes to the `LogCounts` it is given: the log
itself knows no metrics library."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from bento.core.scoring import ScoredBatch
from bento.predictionlog.shadow import BUDGET_SECONDS, Shadow
from bento.predictionlog.store import ERASE_ROWS, LoggedBatch, LogStore, StoreError
from bento.quality.windows import DAY

logger = logging.getLogger("readmission")
PURGE_SECONDS = 3600  # how often encoded rows past their retention, then predictions past keeping, are erased
RETRY_SECONDS = 5.0  # how long a failing store is tried again before the batch is counted lost
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0  # seconds between tries, doubling
# The writer's interval: short, so that each flush's work (the consumers', the store's) on a core it may share with
# the event loop is short too: at 0.5 s (with CONSUMER_ROWS 2,048) single-row V2's p99 at 8 connections was 3.11
# times its p50, at 0.1 s 2.35 times (bench/run.py; README, Performance).
FLUSH_SECONDS = 0.1
CONSUMER_ROWS = 256  # encoded rows of one flush the consumers need, at most: 2,560 a second (drift_counts.py)


class LogCounts(Protocol):
    """Where the log reports what became of its rows (bento/monitoring/metrics.py)."""

    def prediction_log_rows(self, outcome: str, rows: int) -> None:
        """`rows` rows were written, lost (the store failed) or dropped (the queue was full)."""

    def prediction_log_queue(self, rows: int) -> None:
        """The writer found `rows` rows waiting at its last flush."""


Consumer = Callable[[list[LoggedBatch]], None]  # called every flush: with no batch where nothing was queued


class PredictionLog:
    """A bounded queue of scored batches and the thread that writes them to the store."""

    def __init__(
        self,
        store: LogStore,
        queue_rows: int,
        keep_features: bool,
        retention_days: int,
        keep_days: int,
        counts: LogCounts,
        consumers: Iterable[Consumer] = (),
        flush_seconds: float = FLUSH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        shadow: Shadow | None = None,
    ) -> None:
        self.store = store
        self.queue_rows = queue_rows
        self.keep_features = keep_features
        self.retention_days = retention_days
        self.keep_days = keep_days
        self.counts = counts
        self.consumers = list(consumers)
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.shadow = shadow
        self._queue: deque[LoggedBatch] = deque()
        self._queued_rows = 0
        self._stride, self._streamed = 1, 0  # every _stride-th encoded row of the stream is kept; rows queued so far
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def append(self, batch: ScoredBatch) -> None:
        """Queue a batch for the store; never waits. A full queue drops the batch, counted."""
        rows = len(batch.ids)
        with self._wake:
            if self._queued_rows + rows > self.queue_rows or self._closing:
                self.counts.prediction_log_rows("dropped", rows)
                return
            if rows:
                self._queue.append(LoggedBatch.of(batch, self._kept(batch.matrix)))
                self._queued_rows += rows

    def _kept(self, matrix: np.ndarray) -> np.ndarray:
        """The encoded rows the queue keeps: all where the store or the challenger needs them or every row is in the
        consumers' sample, else that sample's rows, copied (the scored batch's are freed with it)."""
        start, self._streamed = -self._streamed % self._stride, self._streamed + len(matrix)
        if self._stride == 1 or self.keep_features or self.shadow is not None:
            return matrix
        return matrix[start :: self._stride].copy()

    @property
    def settle_seconds(self) -> float:
        """A row is in the store (or counted lost) this long after it was scored, in any worker, while the
        store answers within its tries (a worker scoring in shadow waits for its challenger at most BUDGET_SECONDS
        per flush)."""
        return 2 * self.flush_seconds + 1 + BUDGET_SECONDS + self.retry_seconds

    def close(self, timeout: float) -> None:
        """Write what is queued (at most `timeout` seconds), then stop the writer."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        self.store.close()

    def _run(self) -> None:
        last_purge = 0.0
        erase_before: float | None = None  # the cut-off of an erasure under way
        while True:
            with self._wake:
                if not self._closing:  # one transaction per flush interval, not one per request
                    self._wake.wait(self.flush_seconds)
                taken_at = time.time()
                batches = list(self._queue)
                waiting, self._queued_rows = self._queued_rows, 0
                self._stride = max(1, -(-waiting // CONSUMER_ROWS))
                self._queue.clear()
                closing = self._closing
            self.counts.prediction_log_queue(waiting)  # here, not per append: a metrics write off the request path
            if batches:
                self._write(batches, backlog=waiting > self.queue_rows / 2)
            else:
                self._consume(batches)
            if closing:
                return
            if taken_at - last_purge >= PURGE_SECONDS:
                last_purge = taken_at
                self._purge(taken_at)
                erase_before = taken_at - self.keep_days * DAY
            if erase_before is not None and not self._erase_batch(erase_before):
                erase_before = None

    def _purge(self, now: float) -> None:
        try:
            self.store.purge_features(now - self.retention_days * DAY)
        except StoreError as error:
            logger.warning("prediction log: the retention purge failed: %s", error)

    def _erase_batch(self, before: float) -> bool:
        """Erase one batch of predictions made before `before`; whether more may be left (a failure stops this
        erasure: the next purge tries again)."""
        try:
            erased = self.store.erase_predictions(before, ERASE_ROWS)
        except StoreError as error:
            logger.warning("prediction log: erasing predictions past the keeping period failed: %s", error)
            return False
        if erased:
            logger.info("prediction log: %d predictions past the keeping period erased", erased)
        return erased > 0

    def _consume(self, batches: list[LoggedBatch]) -> None:
        """Pass a flush's batches to the consumers (none: the queue was empty, the stream paused)."""
        for consumer in self.consumers:
            try:
                consumer(batches)
            except Exception as error:  # a consumer's bug must not stop the log
                logger.error("prediction log consumer %s failed: %s", getattr(consumer, "__name__", consumer), error)

    def _write(self, batches: list[LoggedBatch], backlog: bool) -> None:
        """Write the served rows, and the challenger's where it scored them (none when the queue is a `backlog`)."""
        rows = sum(batch.rows for batch in batches)
        self._consume(batches)
        shadow = [] if self.shadow is None else self.shadow.rows(batches, backlog)
        deadline, pause = time.monotonic() + self.retry_seconds, FIRST_PAUSE
        while True:
            try:
                self.store.append(batches, self.keep_features, shadow)
                break
            except StoreError as error:
                if time.monotonic() + pause > deadline:
                    self.counts.prediction_log_rows("lost", rows)
                    logger.warning("prediction log: %d rows lost: %s", rows, error)
                    return
                logger.info("prediction log: the store failed (%s); trying again in %g s", error, pause)
                time.sleep(pause)  # the backoff itself: new rows queue meanwhile
                pause = min(2 * pause, LONGEST_PAUSE)
        self.counts.prediction_log_rows("written", rows)
