"""Prometheus metrics: HTTP and gRPC traffic with bounded labels, predictions, scores, failures, model info.

HTTP traffic keeps BentoML's metric names (`bentoml_service_request_*`) so BentoML dashboards
work, but the `endpoint` label is the route template (or "other"), never the raw path, so an
unknown path or model name cannot create a series. Works with several workers through
prometheus-client's multiprocess mode (BentoML sets PROMETHEUS_MULTIPROC_DIR for its workers).

What moves with each patient (predictions by label, the probability histogram, the served fields' buckets) is
held back per worker and published in steps of at least PUBLISH_ROWS rows, so no difference of two scrapes
isolates one patient. The exposition is served on its own port (bento/monitoring/metrics_port.py) and cached
(`Exposition`): a scrape costs the worker a cache look-up, not a walk over every worker's files.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import os
import threading
import time
from collections.abc import Iterator, Sequence
from functools import cache

import numpy as np
import psutil
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported for /metrics)
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bento.core.scoring import ScoredBatch
from bento.errors import Reason
from bento.model import risk_bands
from bento.model.predictor import BACKENDS, ModelInfo
from bento.predictionlog import shadow
from bento.quality import drift, unusual
from bento.quality.privacy import PUBLISH_ROWS  # pending rows wait for the next step of it

# the served fields' buckets are published at most this often while rows keep coming: at 10 flushes a second of the
# prediction log, a publication each (a few hundred counter increments) cost about 1% of a single-row request's CPU
# (two variants at once, as bench/pair.py measures: publication on against off)
FEATURE_PUBLISH_SECONDS = 1.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "bentoml_service_request", "HTTP requests by route template and status", ["endpoint", "http_response_code"]
)
DURATION = Histogram(
    "bentoml_service_request_duration_seconds",
    "HTTP request duration in seconds",
    ["endpoint", "http_response_code"],
    buckets=LATENCY_BUCKETS,
)
IN_PROGRESS = Gauge(
    "bentoml_service_request_in_progress", "HTTP requests being served", ["endpoint"], multiprocess_mode="livesum"
)
PREDICTIONS = Counter("readmission_predictions", "Predictions by label and model version", ["label", "model_version"])
PROBABILITY = Histogram(
    "readmission_predicted_probability",
    "Predicted probability of readmission within 30 days",
    ["model_version"],
    buckets=risk_bands.SCORE_BUCKETS,
)
FAILURES = Counter("readmission_validation_failures", "Refused requests by reason", ["endpoint", "reason"])
MODEL_INFO = Gauge(
    "readmission_model_info",
    "The served model (value 1)",
    ["model_name", "model_version", "bento_tag", "spec_hash"],
    multiprocess_mode="livemax",
)
MODEL_READY = Gauge(
    "readmission_model_ready", "1 when the model is loaded in every worker", multiprocess_mode="livemin"
)
SCORE_REFERENCE = Gauge(
    "readmission_training_score_share",
    "Share of the training test-split scores at or below `le` (the reference for drift)",
    ["le"],
    multiprocess_mode="livemax",
)
MODEL_BACKEND = Gauge(
    "readmission_model_backend",
    "1 for the backend that computes the probabilities (branchless or tl2cgen: compiled trees; xgboost: the fallback)",
    ["backend"],
    multiprocess_mode="livemax",
)
MODEL_CALL_ROWS = Histogram(
    "readmission_model_call_rows",
    "Rows scored by one call of the model (requests in flight together are scored in one call)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384),
)
GRPC_REQUESTS = Counter("readmission_grpc_requests", "gRPC calls by method and status code", ["method", "code"])
GRPC_DURATION = Histogram(
    "readmission_grpc_request_duration_seconds", "gRPC call duration in seconds", ["method"], buckets=LATENCY_BUCKETS
)
PREDICTION_LOG_ROWS = Counter(
    "readmission_prediction_log_rows",
    "Rows of the prediction log: written to the store, lost (the store failed), dropped (the queue was full)",
    ["outcome"],
)
PREDICTION_LOG_QUEUE = Gauge(
    "readmission_prediction_log_queue_rows",
    "Rows the prediction log's writer found waiting at its last flush (every 0.1 s)",
    multiprocess_mode="livesum",
)
SHADOW_ROWS = Counter(
    "readmission_shadow_rows",
    "Served rows the challenger in shadow scored, or not: failed (it raised) or skipped (slower than its budget, "
    "still busy, or the prediction log's queue past half its bound)",
    ["outcome"],
)
LIVE_COMPUTE_FAILURES = Counter(
    "readmission_live_compute_failures",
    "Computations of the live figures whose process failed or outlived its timeout (killed); the stored figures stayed",
)
FEEDBACK = Counter(
    "readmission_feedback_outcomes",
    "True outcomes received by POST /feedback: recorded (new) or unchanged (sent again)",
    ["result"],
)
FEATURE_ROWS = Counter(
    "readmission_feature_rows",
    "Served rows per clinical field and bucket: the served side of feature drift",
    ["field", "bucket"],
)
FEATURE_REFERENCE = Gauge(
    "readmission_training_feature_share",
    "Share of the training rows per clinical field and bucket (the reference for feature drift)",
    ["field", "bucket"],
    multiprocess_mode="livemax",
)
UNUSUAL_ROWS = Counter(
    "readmission_unusual_rows",
    "Scored rows unlike the training data, by reason (a row counts once per reason it has)",
    ["reason"],
)
ALL_REASONS = tuple(Reason)


def model_loaded(info: ModelInfo, backend: str) -> None:
    """Publish the model's identity, its scoring backend and its reference score distribution."""
    MODEL_INFO.labels(info.name, info.version, info.tag, info.spec_hash).set(1)
    MODEL_READY.set(1)
    for name in BACKENDS:
        MODEL_BACKEND.labels(name).set(1 if name == backend else 0)
    for bound, share in zip(risk_bands.SCORE_BUCKETS, info.score_reference, strict=True):
        SCORE_REFERENCE.labels(_le(bound)).set(share)
    for label in ("0", "1"):
        PREDICTIONS.labels(label, info.version)  # start at zero so rate() sees the first predictions
    for outcome in ("written", "lost", "dropped"):
        PREDICTION_LOG_ROWS.labels(outcome)
    for outcome in shadow.OUTCOMES:
        SHADOW_ROWS.labels(outcome)
    for result in ("recorded", "unchanged"):
        FEEDBACK.labels(result)
    for reason in unusual.Reason:
        UNUSUAL_ROWS.labels(reason.value)


def model_missing() -> None:
    """Publish that this worker has no model."""
    MODEL_READY.set(0)


@cache
def _child(metric: Counter | Gauge | Histogram, *labels: str) -> Counter | Gauge | Histogram:
    """`metric.labels(*labels)`, looked up once: every label value here comes from a closed set."""
    return metric.labels(*labels)


def predictions(batch: ScoredBatch) -> None:
    """Count predictions by label and their probabilities (published per PUBLISH_ROWS rows), and the size of the
    model call: a subscriber of the scoring core."""
    MODEL_CALL_ROWS.observe(len(batch.labels))
    _pending_predictions.add(batch.model_version, batch.probabilities, batch.labels, batch.unusual)


class PendingPredictions:
    """This worker's predictions not yet published, per model version: rows per label, per probability bucket,
    the probabilities' sum and the rows per unusual-patient reason; published once they cover PUBLISH_ROWS rows.
    Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bounds = list(PROBABILITY._upper_bounds)
        self._array_bounds = np.asarray(self._bounds)
        self._pending: dict[str, list[float]] = {}  # version -> [label 0, label 1, per bucket..., sum]
        self._unusual: dict[str, collections.Counter[unusual.Reason]] = {}  # version -> flagged rows per reason

    def add(
        self,
        version: str,
        probabilities: np.ndarray,
        labels: np.ndarray,
        findings: list[list[unusual.Finding]] | None = None,
    ) -> None:
        """Hold back one model call's rows; publish what is pending once it covers PUBLISH_ROWS rows."""
        flagged = collections.Counter(
            reason for row in findings or () for reason in {finding.reason for finding in row}
        )
        rows = len(labels)
        if rows == 1:  # most calls: Python scalars cost less than numpy's calls
            total = float(probabilities[0])
            positives = int(labels[0])
            buckets = {bisect.bisect_left(self._bounds, total): 1}
        else:
            total = float(np.sum(probabilities, dtype=np.float64))
            positives = int(np.count_nonzero(labels))
            buckets = dict(enumerate(bucket_counts(self._array_bounds, probabilities).tolist()))
        with self._lock:
            pending = self._pending.setdefault(version, [0.0] * (3 + len(self._bounds)))
            pending[0] += rows - positives
            pending[1] += positives
            for bucket, count in buckets.items():
                pending[2 + bucket] += count
            pending[-1] += total
            reasons = self._unusual.setdefault(version, collections.Counter())
            reasons.update(flagged)
            if pending[0] + pending[1] < PUBLISH_ROWS:
                return
            del self._pending[version], self._unusual[version]
        for label, count in (("0", pending[0]), ("1", pending[1])):
            if count:
                _child(PREDICTIONS, label, version).inc(count)
        add_to_histogram(_child(PROBABILITY, version), pending[2:-1], pending[-1])
        for reason, count in reasons.items():
            _child(UNUSUAL_ROWS, reason.value).inc(count)


def prediction_log_rows(outcome: str, rows: int) -> None:
    """Count rows of the prediction log by outcome: written, lost or dropped."""
    _child(PREDICTION_LOG_ROWS, outcome).inc(rows)


def prediction_log_queue(rows: int) -> None:
    """The rows the writer took at its last flush."""
    PREDICTION_LOG_QUEUE.set(rows)


def shadow_rows(outcome: str, rows: int) -> None:
    """Count served rows by what the challenger in shadow made of them: scored, failed or skipped."""
    _child(SHADOW_ROWS, outcome).inc(rows)


def live_compute_failed() -> None:
    """Count a computation of the live figures that failed."""
    LIVE_COMPUTE_FAILURES.inc()


def feedback(recorded: int, unchanged: int) -> None:
    """Count the outcomes one feedback call recorded and those it had already."""
    _child(FEEDBACK, "recorded").inc(recorded)
    _child(FEEDBACK, "unchanged").inc(unchanged)


def feature_reference(reference: drift.Reference) -> None:
    """Publish the training share of every (field, bucket) and start its served count at zero."""
    for (name, bucket), share in zip(reference.buckets.series, reference.shares.tolist(), strict=True):
        FEATURE_REFERENCE.labels(name, bucket).set(share)
        FEATURE_ROWS.labels(name, bucket)


class PendingFeatureRows:
    """Served encoded rows not yet published: bucketed together (bento/quality/drift.py) and published once they are
    PUBLISH_ROWS rows or more, at most once every FEATURE_PUBLISH_SECONDS while rows keep coming (a publication is an
    increment per non-empty bucket, a few hundred), and at once when the stream pauses. One per prediction log (its
    writer thread alone adds to it)."""

    def __init__(self, buckets: drift.Buckets) -> None:
        self.buckets = buckets
        self.matrices: list[np.ndarray] = []
        self.rows = 0
        self._due = 0.0  # time.monotonic() from which rows coming in are published

    def add(self, matrix: np.ndarray) -> None:
        """Hold back these encoded rows (the caller's own copy); publish what is pending where it is due."""
        self.matrices.append(matrix)
        self.rows += len(matrix)
        if time.monotonic() >= self._due:
            self.publish()

    def publish(self) -> None:
        """Bucket and publish what is pending, where it is PUBLISH_ROWS rows or more."""
        if self.rows < PUBLISH_ROWS:
            return
        counts = self.buckets.counts(np.concatenate(self.matrices))
        for index in np.flatnonzero(counts).tolist():
            _child(FEATURE_ROWS, *self.buckets.series[index]).inc(int(counts[index]))
        self.matrices.clear()
        self.rows = 0
        self._due = time.monotonic() + FEATURE_PUBLISH_SECONDS


def http_request_started(endpoint: str) -> None:
    """One more HTTP request in progress on `endpoint` (a route template)."""
    _child(IN_PROGRESS, endpoint).inc()


def http_request_finished(endpoint: str, status: int, seconds: float) -> None:
    """An HTTP request on `endpoint` answered `status` after `seconds`."""
    _child(IN_PROGRESS, endpoint).dec()
    code = str(status)
    _child(REQUESTS, endpoint, code).inc()
    _child(DURATION, endpoint, code).observe(seconds)


def grpc_call(method: str, code: str, seconds: float) -> None:
    """Count one gRPC call of the V2 service (method and status code are closed sets) and its duration."""
    _child(GRPC_REQUESTS, method, code).inc()
    _child(GRPC_DURATION, method).observe(seconds)


def bucket_counts(bounds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values per histogram bucket (not cumulative): a value goes to the first bound at or above it, as observe()."""
    return np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))


def add_to_histogram(histogram: Histogram, counts: Sequence[float], total: float) -> None:
    """Add `counts` observations per bucket (not cumulative, in the order of the histogram's bounds, +Inf last)
    summing to `total`: one increment per non-empty bucket instead of one call per value.

    Uses prometheus-client's bucket and sum values (pinned version; tests compare with observe()).
    """
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(total)


def _le(bound: float) -> str:
    return f"{bound:g}" if bound < 1 else "1.0"


class ServiceProcesses(Collector):
    """CPU time and resident memory of the whole service: the BentoML supervisor, its workers and their children.

    Multiprocess mode drops prometheus-client's per-process metrics, so these are read with psutil
    at scrape time from the process tree of the worker's parent (the supervisor).
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Sum over the live processes of the tree."""
        rss = cpu = 0.0
        count = 0
        try:
            root = psutil.Process(self.root_pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            processes = []
        for process in processes:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    # with the children it waited for: a process that ended (the live figures' computation)
                    # leaves its CPU time in the total, which only grows
                    cpu += times.user + times.system + times.children_user + times.children_system
                count += 1
            except psutil.Error:
                continue
        yield GaugeMetricFamily("readmission_process_resident_memory_bytes", "Resident memory (bytes)", value=rss)
        yield CounterMetricFamily("readmission_process_cpu_seconds", "CPU time (user + system)", value=cpu)
        yield GaugeMetricFamily("readmission_process_count", "Processes of the service", value=count)


def exposition() -> bytes:
    """The text exposition of every metric of every worker, and of the service's processes (tens of ms: see
    `Exposition`)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY) + generate_latest(_single_process)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    registry.register(ServiceProcesses(os.getppid()))
    for collector in _worker_collectors:
        registry.register(collector)
    return generate_latest(registry)


def add_collector(collector: Collector) -> None:
    """Report what `collector` yields at each scrape this worker answers (figures every worker computes alike)."""
    _worker_collectors.append(collector)
    _single_process.register(collector)


def remove_collector(collector: Collector) -> None:
    """Stop reporting `collector`."""
    _worker_collectors.remove(collector)
    _single_process.unregister(collector)


class Exposition:
    """`exposition()` computed at most once per `ttl_seconds` in this worker, in a thread off the event loop, and
    once for the scrapes that arrive together; the others get the cached bytes."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._body = b""
        self._computed = 0.0  # seconds since the epoch
        self._expires = -1.0
        self._lock = asyncio.Lock()

    async def latest(self) -> tuple[bytes, float]:
        """The exposition, at most `ttl_seconds` old, and when it was computed (seconds since the epoch)."""
        if time.monotonic() < self._expires:
            return self._body, self._computed
        async with self._lock:  # the first scrape computes it, those arriving meanwhile wait and reuse it
            if time.monotonic() >= self._expires:
                computed = time.time()
                self._body = await asyncio.to_thread(exposition)
                self._computed, self._expires = computed, time.monotonic() + self.ttl_seconds
        return self._body, self._computed


_pending_predictions = PendingPredictions()
_single_process = CollectorRegistry()
_single_process.register(ServiceProcesses(os.getpid()))
_worker_collectors: list[Collector] = []
