"""The prediction log: every scored row, written to a store off the request path.

The scoring core hands each scored batch to `PredictionLog.append`, which only puts it on a bounded queue
(counted as dropped, never waiting, when the queue is full). A writer thread takes what has queued, passes it to
the consumers that watch the served data (bento/drift_monitor.py) and appends the rows to the store (bento/log_store.py)
in one transaction. A store that fails (locked, disk full, database down) is tried again with a growing pause
for RETRY_SECONDS, while new rows queue (up to the queue's bound); a store that still fails then loses that
batch, counted, so `lost` means the store failed, not that it was busy a moment. The next batch tries again,
so logging resumes by itself when the store is back. `close` flushes the queue (SIGTERM).

Prediction ids are UUIDv7 strings (RFC 9562): the time of the prediction in milliseconds, then 26 random bits
per process and a 48-bit counter, so ids are unique across workers and restarts, sort by time, and cost a
string format each. `issued_at` is the one check of that format (any case of hex digits, as RFC 9562 allows).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from bento import metrics
from bento.log_store import LogStore, StoreError

logger = logging.getLogger("readmission")
_COUNTER_BITS = 48
PURGE_SECONDS = 3600  # how often encoded rows older than the retention period are erased
RETRY_SECONDS = 5.0  # how long a failing store is tried again before the batch is counted lost
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0  # seconds between tries, doubling
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class ScoredBatch:
    """Rows scored by one call of the model, as the log keeps them."""

    ids: list[str]
    time: float  # seconds since the epoch
    model_version: str
    probabilities: np.ndarray  # float32 [N]
    labels: np.ndarray  # int64 [N]
    matrix: np.ndarray  # the encoded rows, float32 [N, COLUMNS]; kept in the store only where opted in


class PredictionIds:
    """UUIDv7 prediction ids: time-ordered, unique across processes."""

    def __init__(self) -> None:
        random_bits = secrets.randbits(26)
        self._rand_a = random_bits >> 14  # 12 bits after the version nibble
        self._rand_b_high = (0b10 << 14) | (random_bits & 0x3FFF)  # variant, then 14 random bits
        self._next = 0
        self._lock = threading.Lock()  # the gRPC and HTTP handlers share one event loop; tests call from threads

    def take(self, count: int, now: float) -> list[str]:
        """`count` new ids stamped with `now` (seconds since the epoch)."""
        with self._lock:
            first, self._next = self._next, self._next + count
        millis = int(now * 1000)
        prefix = f"{millis >> 16:08x}-{millis & 0xFFFF:04x}-7{self._rand_a:03x}-{self._rand_b_high:04x}-"
        return [f"{prefix}{n & ((1 << _COUNTER_BITS) - 1):012x}" for n in range(first, first + count)]


def issued_at(prediction_id: str) -> float | None:
    """When a prediction id was issued (seconds since the epoch), or None for what is not one of ours: a UUIDv7
    with the RFC 9562 variant in the canonical 8-4-4-4-12 layout."""
    if _ID.fullmatch(prediction_id) is None:
        return None
    return int(prediction_id[:8] + prediction_id[9:13], 16) / 1000


Consumer = Callable[[list[ScoredBatch]], None]


class PredictionLog:
    """A bounded queue of scored batches and the thread that writes them to the store."""

    def __init__(
        self,
        store: LogStore,
        queue_rows: int,
        keep_features: bool,
        retention_days: int,
        consumers: Iterable[Consumer] = (),
        flush_seconds: float = 0.5,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.queue_rows = queue_rows
        self.keep_features = keep_features
        self.retention_days = retention_days
        self.consumers = list(consumers)
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self._queue: deque[ScoredBatch] = deque()
        self._queued_rows = 0
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
                metrics.prediction_log_rows("dropped", rows)
                return
            self._queue.append(batch)
            self._queued_rows += rows

    @property
    def settle_seconds(self) -> float:
        """A row is in the store (or counted lost) this long after it was scored, in any worker, while the
        store answers within its tries."""
        return 2 * self.flush_seconds + 1 + self.retry_seconds

    def close(self, timeout: float) -> None:
        """Write what is queued (at most `timeout` seconds), then stop the writer."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        self.store.close()

    def _run(self) -> None:
        last_purge = 0.0
        while True:
            with self._wake:
                if not self._closing:  # one transaction per flush interval, not one per request
                    self._wake.wait(self.flush_seconds)
                taken_at = time.time()
                batches = list(self._queue)
                waiting, self._queued_rows = self._queued_rows, 0
                self._queue.clear()
                closing = self._closing
            metrics.prediction_log_queue(waiting)  # here, not per append: a metrics write off the request path
            if batches:
                self._write(batches)
            if taken_at - last_purge >= PURGE_SECONDS:
                last_purge = taken_at
                self._purge(taken_at)
            if closing:
                return

    def _purge(self, now: float) -> None:
        try:
            self.store.purge_features(now - self.retention_days * 86400)
        except StoreError as error:
            logger.warning("prediction log: the retention purge failed: %s", error)

    def _write(self, batches: list[ScoredBatch]) -> None:
        rows = sum(len(batch.ids) for batch in batches)
        for consumer in self.consumers:
            try:
                consumer(batches)
            except Exception as error:  # a consumer's bug must not stop the log
                logger.error("prediction log consumer %s failed: %s", getattr(consumer, "__name__", consumer), error)
        deadline, pause = time.monotonic() + self.retry_seconds, FIRST_PAUSE
        while True:
            try:
                self.store.append(batches, self.keep_features)
                break
            except StoreError as error:
                if time.monotonic() + pause > deadline:
                    metrics.prediction_log_rows("lost", rows)
                    logger.warning("prediction log: %d rows lost: %s", rows, error)
                    return
                logger.info("prediction log: the store failed (%s); trying again in %g s", error, pause)
                time.sleep(pause)  # the backoff itself: new rows queue meanwhile
                pause = min(2 * pause, LONGEST_PAUSE)
        metrics.prediction_log_rows("written", rows)
