"""Live model performance: the labelled predictions of the log, per model version and window, beside training's.

A thread of each worker reads the predictions of the last 90 days that have a true outcome (`POST /feedback`)
every READMISSION_MONITOR_SECONDS and computes, per model version and window (30 and 90 days), the figures of
bento/quality.py: ROC-AUC with a bootstrap interval (encounters resampled), PR-AUC, Brier, expected calibration
error, the share flagged and the precision of the flagged, and the number of labelled rows. They are served as
`GET /performance` and as the Prometheus gauges `readmission_live_metric{model_version, window, metric}`, beside
the held-out test figures of the served model, `readmission_training_metric{model_version, metric}`.

Every worker computes the same figures from the same store (the bootstrap has a fixed seed), so whichever worker
answers a scrape reports them; a figure that cannot be computed (one class only, nothing flagged) is absent. A
store that cannot be read is logged and tried again at the next interval; serving never sees it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from bento import quality
from bento.log_store import Labelled, LogStore, StoreError
from bento.predictor import ModelInfo

logger = logging.getLogger("readmission")
DAY = 86400.0
WINDOWS = {"30d": 30, "90d": 90}  # window label -> days
LABELLED_ROWS = "labelled_rows"

Figures = dict[str, float]  # metric -> value (quality.METRICS and labelled_rows)
Memo = dict[tuple[str, str], tuple[bytes, Figures]]  # (version, window) -> digest of its rows, figures


def measure(
    labelled: Labelled, now: float, versions: Iterable[str] = (), memo: Memo | None = None
) -> dict[str, dict[str, Figures]]:
    """The figures per model version and window (the `versions` given appear even without labelled rows).

    With a `memo` of the last call, a version and window whose rows are the same as then are not computed again.
    """
    result: dict[str, dict[str, Figures]] = {}
    for version in sorted(set(labelled.model_version.tolist()) | set(versions), key=_version_order):
        of_version = labelled.model_version == version
        result[version] = {}
        for window, days in WINDOWS.items():
            rows = of_version & (labelled.time >= now - days * DAY)
            outcome, probability, label = labelled.outcome[rows], labelled.probability[rows], labelled.label[rows]
            digest = hashlib.blake2b(outcome.tobytes() + probability.tobytes() + label.tobytes()).digest()
            known = memo.get((version, window)) if memo is not None else None
            if known is not None and known[0] == digest:
                result[version][window] = known[1]
                continue
            figures = {**quality.summary(outcome, probability, label), LABELLED_ROWS: int(rows.sum())}
            result[version][window] = figures
            if memo is not None:
                memo[(version, window)] = (digest, figures)
    return result


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def training_figures(info: ModelInfo) -> Figures:
    """The held-out test figures of a model, as its metadata holds them."""
    return {name: float(info.test_metrics[name]) for name in quality.METRICS if name in info.test_metrics}


@dataclass(frozen=True)
class Performance:
    """The latest live figures and the training figures of the served model."""

    computed_at: float | None = None  # seconds since the epoch; None before the first computation
    live: dict[str, dict[str, Figures]] = field(default_factory=dict)  # version -> window -> figures
    training: dict[str, Figures] = field(default_factory=dict)  # version -> figures

    def as_json(self) -> dict[str, Any]:
        """The body of `GET /performance`."""
        return {
            "computed_at": self.computed_at,
            "windows_days": WINDOWS,
            "live": self.live,
            "training": self.training,
        }


class LivePerformance:
    """The thread that recomputes the live figures, and their Prometheus collector."""

    def __init__(self, store: LogStore, served: Callable[[], ModelInfo | None], seconds: float) -> None:
        self.store = store
        self.served = served
        self.seconds = seconds
        self._latest = Performance()
        self._memo: Memo = {}  # the bootstrap is the costly part: not redone for rows that did not change
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-performance", daemon=True)

    def start(self) -> None:
        """Compute now and then every `seconds`."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread (a computation under way is waited for at most `timeout` seconds)."""
        self._stopping.set()
        self._thread.join(timeout)

    def latest(self) -> Performance:
        """The figures of the last computation."""
        return self._latest

    def _run(self) -> None:
        while True:
            self.refresh()
            if self._stopping.wait(self.seconds):
                return

    def refresh(self) -> None:
        """Recompute from the store; a failure is logged and the previous figures stay."""
        now = time.time()
        info = self.served()
        training = {info.version: training_figures(info)} if info is not None else {}
        try:
            labelled = self.store.labelled(now - max(WINDOWS.values()) * DAY)
            live = measure(labelled, now, [info.version] if info is not None else [], self._memo)
        except StoreError as error:
            logger.warning("live performance: the prediction log cannot be read: %s", error)
            self._latest = replace(self._latest, training=training)
            return
        except Exception as error:  # a bug here must not stop the monitor nor reach serving
            logger.error("live performance failed: %s: %s", type(error).__name__, error)
            self._latest = replace(self._latest, training=training)
            return
        self._latest = Performance(computed_at=now, live=live, training=training)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The latest figures as `readmission_live_metric` and `readmission_training_metric`."""
        latest = self._latest
        live = GaugeMetricFamily(
            "readmission_live_metric",
            "Performance on the labelled predictions of the log, per model version and window (days)",
            labels=["model_version", "window", "metric"],
        )
        for version, windows in latest.live.items():
            for window, figures in windows.items():
                for metric, value in figures.items():
                    live.add_metric([version, window, metric], float(value))
        training = GaugeMetricFamily(
            "readmission_training_metric",
            "Performance of the model on its held-out test split at training",
            labels=["model_version", "metric"],
        )
        for version, figures in latest.training.items():
            for metric, value in figures.items():
                training.add_metric([version, metric], value)
        yield live
        yield training
