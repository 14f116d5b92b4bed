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
from sklearn.metrics import f1_score, precision_recall_curve, recall_score, roc_curve

from bento.quality import figures

SUBGROUP_FIELDS = ("race", "gender", "age")
PATIENT = "patient_nbr"


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


def evaluate(y_true: np.ndarray, probability: np.ndarray, threshold: float, frame: pd.DataFrame) -> Evaluation:
    """All held-out metrics of one model; `frame` supplies the subgroup fields and the patient of each row.

    The ROC-AUC interval resamples patients, not encounters: a patient's encounters are not independent.
    """
    predicted = probability >= threshold
    metrics = {
        "precision": 0.0,  # where nothing is flagged (scikit-learn's zero_division=0)
        **figures.summary(y_true, probability, predicted, groups=frame[PATIENT].to_numpy()),
        "threshold": threshold,
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "positive_rate": float(y_true.mean()),
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
            rows.append(
                {
                    "field": name,
                    "group": value,
                    "encounters": int(mask.sum()),
                    "roc_auc": figures.roc_auc(y_true[mask], probability[mask]) or float("nan"),
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
        roc_axis.plot(fpr, tpr, label=f"{name} (AUC {figures.roc_auc(y_true, probability):.3f})")
        precision, recall, _ = precision_recall_curve(y_true, probability)
        pr_axis.plot(recall, precision, label=f"{name} (AP {figures.average_precision(y_true, probability):.3f})")
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


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "Reliability (test, deciles)"
) -> Path:
    """Reliability diagram: observed readmission rate against predicted probability (deciles), one line per
    named (outcome, probability) pair."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
    limit = 0.0
    for name, (y_true, probability) in curves.items():
        observed, predicted = calibration_curve(
            y_true, probability, n_bins=figures.CALIBRATION_BINS, strategy="quantile"
        )
        axis.plot(predicted, observed, "o-", label=name)
        limit = max(limit, predicted.max(), observed.max())
    axis.set(xlim=(0, limit * 1.1 or 1), ylim=(0, limit * 1.1 or 1))
    axis.set(xlabel="Mean predicted probability", ylabel="Observed rate", title=title)
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
