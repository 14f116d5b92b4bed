"""`readmission monitor`: live performance from the prediction log, beside the training figures of each version.

The figures are the service's (bento/quality/windows.py, the same code): per model version and window (30 and 90
days) of the predictions that have a true outcome, the oldest multiple of 20 by the time it was recorded; beside
them the service's estimates from every prediction's probability, before outcomes arrive (bento/quality/
estimates.py). The training figures of a version come from the MLflow registry, else from the model's metadata in
the BentoML model store. A reliability plot of the live predictions (all of them: it is not published) is written
too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bento.model.predictor import METADATA_FILE
from bento.predictionlog.factory import OFF, open_store
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import LogStore, StoreError
from bento.quality import estimates
from bento.quality.windows import DAY, LABELLED_ROWS, WINDOWS, Labelled, Scored, measure
from bento.settings import MODEL_NAME, ServiceSettings
from training import evaluate, registry
from training.settings import TrainingSettings

PLOT_FILE = "reliability.png"
INTERVAL_ROW = "ROC-AUC 95% interval (training: patients resampled; live: DeLong)"
ROWS = (
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("brier", "Brier score"),
    ("ece", "Expected calibration error"),
    ("flagged_rate", "Share flagged"),
    ("precision", "Precision of the flagged"),
)
ESTIMATE_ROWS = (
    ("estimated_roc_auc", "Estimated ROC-AUC (before outcomes)"),
    ("estimated_precision", "Estimated precision of the flagged"),
    ("flagged_rate", "Share flagged (every prediction)"),
)
TrainingLookup = Callable[[str], dict[str, float] | None]
T = TypeVar("T")


def read_log(read: Callable[[LogStore, float], T]) -> tuple[T, str]:
    """What `read` takes from the service's prediction log (READMISSION_PREDICTION_LOG and READMISSION_HOME, read
    as the service reads them) since 90 days ago, and where it was read."""
    service = ServiceSettings.from_env()
    location = service.prediction_log
    if location == OFF:
        raise StoreError("the prediction log is off (READMISSION_PREDICTION_LOG=off): nothing to read")
    store = open_store(location, service.home)
    assert store is not None
    if isinstance(store, SQLiteStore):
        if not store.path.exists():
            raise StoreError(f"no prediction log at {store.path} (set READMISSION_PREDICTION_LOG)")
        shown = str(store.path)
    else:
        shown = registry.shown(location)
    try:
        return read(store, time.time() - max(WINDOWS.values()) * DAY), shown
    finally:
        store.close()


def training_lookup(settings: TrainingSettings) -> TrainingLookup:
    """The test figures of a model version: from MLflow where its store exists, else from the BentoML store."""
    registered = settings.artifact_location is None or (settings.home / "mlflow.db").exists()
    if registered:
        try:
            registry.connect(settings)
        except registry.RegistryError:
            registered = False
    bentoml_models = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "models" / MODEL_NAME

    def lookup(version: str) -> dict[str, float] | None:
        if registered:
            try:
                _, metrics = registry.run_metrics(version)
                return {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
            except registry.RegistryError:
                pass
        for path in sorted(bentoml_models.glob(f"*/{METADATA_FILE}")):
            metadata = json.loads(path.read_text())
            if str(metadata.get("mlflow_version")) == version:
                return metadata.get("test_metrics", {})
        return None

    return lookup


def report(labelled: Labelled, scored: Scored, now: float, training: TrainingLookup) -> str:
    """The figures per model version, a markdown table each: training beside the windows, the estimates below."""
    estimated = estimates.measure(scored, now)
    measured = measure(labelled, now, estimated)
    if not measured:
        return "no predictions in the last 90 days"
    sections = []
    for version, windows in measured.items():
        trained = training(version)
        header = "| metric | training (test split) | " + " | ".join(f"last {w}" for w in WINDOWS) + " |"
        lines = [f"model version {version}", "", header, "|---" * (len(WINDOWS) + 2) + "|"]
        rows = [str(windows[w][LABELLED_ROWS]) for w in WINDOWS]
        lines.append(f"| labelled predictions (oldest multiple of 20 by outcome time) | - | {' | '.join(rows)} |")
        for key, label in ROWS:
            cells = [_cell(trained, key)] + [_cell(windows[w], key) for w in WINDOWS]
            lines.append(f"| {label} | {' | '.join(cells)} |")
            if key == "roc_auc":
                cells = [_interval(trained)] + [_interval(windows[w]) for w in WINDOWS]
                lines.append(f"| {INTERVAL_ROW} | {' | '.join(cells)} |")
        rows = [str(estimated[version][w][estimates.SCORED_ROWS]) for w in WINDOWS]
        lines.append(f"| predictions estimated (oldest multiple of 20) | - | {' | '.join(rows)} |")
        for key, label in ESTIMATE_ROWS:
            lines.append(f"| {label} | - | {' | '.join(_cell(estimated[version][w], key) for w in WINDOWS)} |")
        if trained is None:
            lines.append(f"\n(no training figures found for version {version} in MLflow nor the BentoML store)")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _cell(figures: dict[str, float] | None, key: str) -> str:
    return f"{figures[key]:.4f}" if figures is not None and key in figures else "-"


def _interval(figures: dict[str, float] | None) -> str:
    if figures is None or "roc_auc_ci_low" not in figures:
        return "-"
    return f"{figures['roc_auc_ci_low']:.4f} - {figures['roc_auc_ci_high']:.4f}"


def plot(labelled: Labelled, path: Path) -> Path | None:
    """Reliability of the labelled predictions of the last 90 days, one line per model version; None if none."""
    versions = sorted(set(labelled.model_version.tolist()))
    if not versions:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    curves = {}
    for version in versions:
        rows = labelled.model_version == version
        curves[f"version {version} ({int(rows.sum())} labelled)"] = (labelled.outcome[rows], labelled.probability[rows])
    return evaluate.plot_reliability(curves, path, title="Reliability (live, last 90 days, deciles)")


def run(settings: TrainingSettings, plot_path: Path | None) -> None:
    """Print the report and write the reliability plot."""
    (labelled, scored), where = read_log(lambda store, since: (store.labelled(since), store.scored(since)))
    now = time.time()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"prediction log {where}, {len(scored.probability):,} predictions in 90 days, {len(labelled.outcome):,} "
          f"labelled ({stamp})\n")  # fmt: skip
    print(report(labelled, scored, now, training_lookup(settings)))
    written = plot(labelled, plot_path or settings.home / "monitor" / PLOT_FILE)
    if written is not None:
        print(f"\nreliability plot: {written}")
