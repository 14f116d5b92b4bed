"""Live model performance: the labelled predictions of the log, per model version and window, beside training's.

Every READMISSION_MONITOR_SECONDS, one worker of the deployment (all pods that share the log included) computes,
per model version and window (30 and 90 days), the figures of bento/quality/windows.py from the predictions of
the last 90 days that have a true outcome (`POST /feedback`): ROC-AUC with DeLong's analytic interval, PR-AUC,
Brier, expected calibration error, the share flagged and the precision of the flagged, and the number of labelled
rows; where a challenger scored the same predictions in shadow, the comparison of champion and challenger on
those same patients per window and pair of versions (bento/quality/comparison.py); and from every logged
probability of the last 90 days, outcome or not, the estimates of bento/quality/estimates.py (estimated ROC-AUC,
estimated precision of the flagged, the share flagged: performance before any outcome arrives), each version and
window over its oldest multiple of PUBLISH_ROWS rows, so a single prediction moves no estimate. That worker holds the
store's lease (bento/predictionlog/store.py: taken in one upsert, renewed each
interval, lapsing LEASE_INTERVALS intervals after its holder stops renewing it, released at once on a clean stop),
and it has them computed only when the change markers of the labelled or the scored rows moved (or SLIDE_SECONDS
passed: the windows slide), and not again before it has rested 100 times the CPU time the last computation took
(CPU_SHARE). The computation runs in a child process (bento/monitoring/live_compute.py: lowest priority, pinned to
READMISSION_MONITOR_CPUS where set), which reads the rows and writes the figures to the store; the holder's thread
only waits for it, holding no GIL, renewing the lease meanwhile. Every worker serves the stored figures as
`GET /performance` and as the Prometheus gauges `readmission_live_metric{model_version, window, metric}` and
`readmission_live_comparison{champion_version, challenger_version, window, metric}`, beside the held-out test figures of
the model it serves, `readmission_training_metric{model_version, metric}`; so whichever worker answers a scrape
reports the same figures. A figure that cannot be computed (one class only, nothing flagged) is absent. A store
that cannot be read, or a child that fails or outlives TIMEOUT_SECONDS (killed), is logged (and the child counted,
`readmission_live_compute_failures_total`) and tried again once rested; serving never sees it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from bento.model.predictor import ModelInfo
from bento.monitoring import live_compute, metrics
from bento.predictionlog.store import LogStore, StoredFigures, StoreError
from bento.quality import estimates, figures
from bento.quality.windows import LABELLED_ROWS, WINDOWS, Figures, Memo

logger = logging.getLogger("readmission")
LEASE_INTERVALS = 3  # a lease runs this many intervals: a holder that stopped without releasing it is replaced then
SLIDE_SECONDS = 3600.0  # unchanged labelled rows are measured again after this long: rows leave the windows with time
CPU_SHARE = 0.01  # after a child that took c CPU seconds the holder rests c / CPU_SHARE: at most 1% of a core
# A child still computing after this is killed (at 1,000,000 labelled rows it takes about 5 s of CPU, but at the
# lowest priority it waits for whatever else the cores run)
TIMEOUT_SECONDS = 900.0
WAIT_SECONDS = 0.5  # at most this between a waiting holder's checks (stopping, the lease); it holds no GIL between
# Past this many logged rows a version's estimates were computed over, new predictions alone no longer make the
# holder's child read every logged probability again (seconds of CPU at millions of rows): the figures are
# then computed again when outcomes are recorded or erased, a version is new, or SLIDE_SECONDS passed.
LARGE_LOG_ROWS = 100_000


def training_figures(info: ModelInfo) -> Figures:
    """The held-out test figures of a model, as its metadata holds them."""
    return {name: float(info.test_metrics[name]) for name in figures.METRICS if name in info.test_metrics}


@dataclass(frozen=True)
class Performance:
    """The latest live figures and the training figures of the served model."""

    computed_at: float | None = None  # seconds since the epoch; None before the first computation
    live: dict[str, dict[str, Figures]] = field(default_factory=dict)  # version -> window -> figures
    estimated: dict[str, dict[str, Figures]] = field(default_factory=dict)  # version -> window -> estimates
    training: dict[str, Figures] = field(default_factory=dict)  # version -> figures
    comparison: list[dict[str, Any]] = field(default_factory=list)  # bento/quality/comparison.py's measure

    def as_json(self) -> dict[str, Any]:
        """The body of `GET /performance`."""
        return {
            "computed_at": self.computed_at,
            "windows_days": WINDOWS,
            "live": self.live,
            "estimated": self.estimated,
            "training": self.training,
            "comparison": self.comparison,
        }


class LivePerformance:
    """The thread that computes the live figures when it holds the lease, serves the stored ones, and their
    Prometheus collector."""

    def __init__(
        self, store: LogStore, served: Callable[[], ModelInfo | None], seconds: float, place: live_compute.Place
    ) -> None:
        self.store = store
        self.place = place  # where the child computing the figures finds the log, and its cores
        self.served = served
        self.seconds = seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.refreshes = 0  # how many refreshes this worker finished
        self.computations = 0  # how many of them read the labelled rows and computed the figures
        self._latest = Performance()
        self._memo: Memo = {}  # figures of rows that did not change are not redone
        self._rested_at = 0.0  # time.monotonic() before which this holder does not compute again
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-performance", daemon=True)

    def start(self) -> None:
        """Refresh now and then every `seconds`."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread (a computation under way is waited for at most `timeout` seconds), give the lease up."""
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        try:
            self.store.release_lease(self.holder)
        except StoreError as error:
            logger.warning("live performance: the lease cannot be released (it lapses by itself): %s", error)

    def latest(self) -> Performance:
        """The figures as last read from the store."""
        return self._latest

    def _run(self) -> None:
        while True:
            self.refresh()
            self.refreshes += 1
            if self._stopping.wait(self.seconds):
                return

    def refresh(self) -> None:
        """Compute if this worker holds the lease and the labelled rows changed, then read the stored figures;
        a failure is logged and the previous figures stay."""
        now = time.time()
        info = self.served()
        versions = [info.version] if info is not None else []
        training = {info.version: training_figures(info)} if info is not None else {}
        try:
            if self.store.take_lease(self.holder, now, LEASE_INTERVALS * self.seconds):
                stored = self._compute(now, versions)
            else:
                stored = self.store.stored_figures()
        except StoreError as error:
            logger.warning("live performance: the prediction log cannot be read: %s", error)
            self._latest = replace(self._latest, training=training)
            return
        except Exception as error:  # a bug here must not stop the monitor nor reach serving
            logger.error("live performance failed: %s: %s", type(error).__name__, error)
            self._latest = replace(self._latest, training=training)
            return
        if stored is None:
            self._latest = Performance(training=training)
            return
        live, estimated = json.loads(stored.figures), json.loads(stored.estimated)
        for version in versions:  # served here, perhaps not by the holder (a rollout): no rows yet
            live.setdefault(version, {window: {LABELLED_ROWS: 0} for window in WINDOWS})
            estimated.setdefault(version, {window: {estimates.SCORED_ROWS: 0} for window in WINDOWS})
        self._latest = Performance(
            stored.computed_at, live, estimated, training, comparison=json.loads(stored.comparison)
        )

    def _compute(self, now: float, versions: list[str]) -> StoredFigures | None:
        """Have a child process (bento/monitoring/live_compute.py) measure and store the figures and estimates,
        unless the stored ones are of the same rows, recent, and show every version served here, or this holder is
        resting after its last computation (CPU_SHARE of the child's CPU time: at 1,000,000 labelled rows per
        window, figures some minutes behind the outcomes, which arrive a month late anyway). The markers are read
        before the rows: rows recorded in between are measured now and again next time, never missed. A child that
        fails or outlives TIMEOUT_SECONDS is logged and counted; the stored figures stay. Returns the stored
        figures."""
        if time.monotonic() < self._rested_at:
            return self.store.stored_figures()
        labelled, scored = self.store.labelled_marker(), self.store.scored_marker()
        previous = self.store.stored_figures()
        if previous is not None and not _due(previous, labelled, scored, now, versions):
            return previous
        job = live_compute.Job(now, versions, f"{labelled} {scored}", self._memo)
        outcome = live_compute.run(self.place, job, TIMEOUT_SECONDS, self._waiting(), min(self.seconds, WAIT_SECONDS))
        self._rested_at = time.monotonic() + outcome.cpu_seconds / CPU_SHARE
        if outcome.memo is None:
            if not self._stopping.is_set():
                logger.warning("live performance: its computation failed (%s); tried again once rested (%.0f s)",
                               outcome.problem, outcome.cpu_seconds / CPU_SHARE)  # fmt: skip
                metrics.live_compute_failed()
            return previous
        self._memo = outcome.memo
        self.computations += 1
        return self.store.stored_figures()

    def _waiting(self) -> Callable[[], bool]:
        """Whether the child is still wanted: this worker is not stopping and still holds the lease (renewed every
        `seconds` while the child computes, so no other worker starts a second computation meanwhile)."""
        renewed = [time.monotonic()]

        def wanted() -> bool:
            if self._stopping.is_set():
                return False
            if time.monotonic() - renewed[0] < self.seconds:
                return True
            renewed[0] = time.monotonic()
            return self.store.take_lease(self.holder, time.time(), LEASE_INTERVALS * self.seconds)

        return wanted

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The latest figures as `readmission_live_metric`, `readmission_estimated_metric`,
        `readmission_live_comparison` and `readmission_training_metric`."""
        latest = self._latest
        live = _per_window(
            "readmission_live_metric",
            "Performance on the labelled predictions of the log, per model version and window (days), over the oldest "
            "multiple of 20 rows of each by the time their outcome was recorded",
            latest.live,
        )
        estimated = _per_window(
            "readmission_estimated_metric",
            "Performance estimated from the logged probabilities alone, before outcomes arrive (CBPE), per model "
            "version and window (days), over the oldest multiple of 20 rows of each",
            latest.estimated,
        )
        compared = GaugeMetricFamily(
            "readmission_live_comparison",
            "Challenger - champion on the same labelled predictions, per pair of versions and window (days), over the "
            "oldest multiple of 20 rows of each by the time their outcome was recorded",
            labels=["champion_version", "challenger_version", "window", "metric"],
        )
        for pair in latest.comparison:
            for window, values in pair["windows"].items():
                for metric, value in values.items():
                    compared.add_metric([pair["champion_version"], pair["challenger_version"], window, metric], value)
        training = GaugeMetricFamily(
            "readmission_training_metric",
            "Performance of the model on its held-out test split at training",
            labels=["model_version", "metric"],
        )
        for version, values in latest.training.items():
            for metric, value in values.items():
                training.add_metric([version, metric], value)
        yield live
        yield estimated
        yield compared
        yield training


def _due(previous: StoredFigures, labelled: str, scored: str, now: float, versions: list[str]) -> bool:
    """Whether the stored figures are to be computed again: SLIDE_SECONDS passed, a version served here is missing,
    outcomes were recorded or erased (the labelled rows' marker), or predictions were added or erased (the scored
    rows' marker) in a log small enough to read again for each (LARGE_LOG_ROWS)."""
    if now - previous.computed_at >= SLIDE_SECONDS or not set(versions) <= set(json.loads(previous.figures)):
        return True
    was_labelled, _, was_scored = previous.marker.partition(" ")  # a labelled marker holds no space
    if was_labelled != labelled:
        return True
    if was_scored == scored:
        return False
    windows = json.loads(previous.estimated).values()
    return max((values.get(estimates.SCORED_ROWS, 0) for of in windows for values in of.values()), default=0) < (
        LARGE_LOG_ROWS
    )


def _per_window(name: str, documentation: str, values: dict[str, dict[str, Figures]]) -> GaugeMetricFamily:
    """A gauge family of figures per model version, window and metric."""
    family = GaugeMetricFamily(name, documentation, labels=["model_version", "window", "metric"])
    for version, windows in values.items():
        for window, figures_of in windows.items():
            for metric, value in figures_of.items():
                family.add_metric([version, window, metric], float(value))
    return family
