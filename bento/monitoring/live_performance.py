"""Live model performance: the labelled predictions of the log, per model version and window, beside training's.

A thread of each worker reads the predictions of the last 90 days that have a true outcome (`POST /feedback`)
every READMISSION_MONITOR_SECONDS and computes, per model version and window (30 and 90 days), the figures of
bento/quality/windows.py: ROC-AUC with DeLong's analytic interval, PR-AUC, Brier, expected
calibration error, the share flagged and the precision of the flagged, and the number of labelled rows. They are
served as `GET /performance` and as the Prometheus gauges `readmission_live_metric{model_version, window,
metric}`, beside the held-out test figures of the served model, `readmission_training_metric{model_version,
metric}`.

Every worker computes the same figures from the same store, so whichever worker
answers a scrape reports them; a figure that cannot be computed (one class only, nothing flagged) is absent. A
store that cannot be read is logged and tried again at the next interval; serving never sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from bento.model.predictor import ModelInfo
from bento.predictionlog.store import LogStore, StoreError
from bento.quality import figures
from bento.quality.windows import DAY, WINDOWS, Figures, Memo, measure

logger = logging.getLogger("readmission")


def training_figures(info: ModelInfo) -> Figures:
    """The held-out test figures of a model, as its metadata holds them."""
    return {name: float(info.test_metrics[name]) for name in figures.METRICS if name in info.test_metrics}


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
        self._memo: Memo = {}  # figures of rows that did not change are not redone
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
            for window, values in windows.items():
                for metric, value in values.items():
                    live.add_metric([version, window, metric], float(value))
        training = GaugeMetricFamily(
            "readmission_training_metric",
            "Performance of the model on its held-out test split at training",
            labels=["model_version", "metric"],
        )
        for version, values in latest.training.items():
            for metric, value in values.items():
                training.add_metric([version, metric], value)
        yield live
        yield training
