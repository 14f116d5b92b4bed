"""Held-out evaluation: discrimination with intervals, calibration, threshold metrics, subgroups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

SUBGROUP_FIELDS = ("race", "gender", "age")
BOOTSTRAP_SAMPLES = 500
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one labelled set."""

    metrics: dict[str, float]
    subgroups: pd.DataFrame


def choose_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
    """The operating threshold that maximises F1 on the given (validation) set."""
    precision, recall, thresholds = precision_recall_curve(y_true, probability)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[np.argmax(f1[:-1])])


def bootstrap_auc(y_true: np.ndarray, probability: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the ROC-AUC."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(BOOTSTRAP_SAMPLES):
        sample = rng.integers(0, len(y_true), len(y_true))
        if y_true[sample].min() != y_true[sample].max():
            scores.append(roc_auc_score(y_true[sample], probability[sample]))
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def expected_calibration_error(y_true: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.mean() * abs(y_true[mask].mean() - probability[mask].mean())
    return float(error)


def evaluate(y_true: np.ndarray, probability: np.ndarray, threshold: float, frame: pd.DataFrame) -> Evaluation:
    """All held-out metrics of one model; `frame` supplies the subgroup fields."""
    predicted = probability >= threshold
    low, high = bootstrap_auc(y_true, probability)
    metrics = {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "roc_auc_ci_low": low,
        "roc_auc_ci_high": high,
        "pr_auc": float(average_precision_score(y_true, probability)),
        "brier": float(brier_score_loss(y_true, probability)),
        "ece": expected_calibration_error(y_true, probability),
        "threshold": threshold,
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "positive_rate": float(y_true.mean()),
        "flagged_rate": float(predicted.mean()),
    }
    return Evaluation(metrics=metrics, subgroups=subgroup_table(y_true, probability, predicted, frame))


def subgroup_table(
    y_true: np.ndarray, probability: np.ndarray, predicted: np.ndarray, frame: pd.DataFrame
) -> pd.DataFrame:
    """ROC-AUC, observed and flagged rate per race, sex and age band."""
    rows = []
    for name in SUBGROUP_FIELDS:
        values = frame[name].fillna("missing").to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            both = y_true[mask].min() != y_true[mask].max()
            rows.append(
                {
                    "field": name,
                    "group": value,
                    "encounters": int(mask.sum()),
                    "roc_auc": float(roc_auc_score(y_true[mask], probability[mask])) if both else float("nan"),
                    "readmitted_rate": float(y_true[mask].mean()),
                    "flagged_rate": float(predicted[mask].mean()),
                }
            )
    return pd.DataFrame(rows)


def plot_curves(y_true: np.ndarray, curves: dict[str, np.ndarray], path: Path) -> Path:
    """ROC and precision-recall curves of each named model, side by side."""
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, probability in curves.items():
        fpr, tpr, _ = roc_curve(y_true, probability)
        roc_axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y_true, probability):.3f})")
        precision, recall, _ = precision_recall_curve(y_true, probability)
        pr_axis.plot(recall, precision, label=f"{name} (AP {average_precision_score(y_true, probability):.3f})")
    roc_axis.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    roc_axis.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (test)")
    pr_axis.axhline(y_true.mean(), color="k", linestyle="--", linewidth=0.8)
    pr_axis.set(xlabel="Recall", ylabel="Precision", title="Precision-recall (test)")
    roc_axis.legend(loc="lower right")
    pr_axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_reliability(y_true: np.ndarray, probability: np.ndarray, path: Path) -> Path:
    """Reliability diagram: observed readmission rate against predicted probability."""
    observed, predicted = calibration_curve(y_true, probability, n_bins=CALIBRATION_BINS, strategy="quantile")
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
    axis.plot(predicted, observed, "o-", label="XGBoost")
    limit = max(predicted.max(), observed.max()) * 1.1
    axis.set(xlim=(0, limit), ylim=(0, limit), xlabel="Mean predicted probability", ylabel="Observed rate")
    axis.set_title("Reliability (test, deciles)")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
