"""How good the probabilities are against true outcomes: one copy of each metric, numpy only.

Training evaluates the held-out split with these (training/evaluate.py) and the service the labelled predictions of
its log (bento/quality/windows.py), so the two sets of figures are computed the same way. Each metric equals
scikit-learn's (`roc_auc_score`, `average_precision_score`, `brier_score_loss`, `precision_score`) to rounding;
tests compare them. A metric that cannot be computed (one class only, nothing flagged) is None.
"""

from __future__ import annotations

import numpy as np

from bento.quality import delong

BOOTSTRAP_SAMPLES = 500
CALIBRATION_BINS = 10
PASS_CELLS = 2_000_000  # bootstrap replicates computed together hold at most this many weights (16 MB each matrix)
METRICS = ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "pr_auc", "brier", "ece", "flagged_rate", "precision")


def roc_auc(outcome: np.ndarray, probability: np.ndarray) -> float | None:
    """Area under the ROC curve from ranks (ties count one half, as the trapezoids of scikit-learn)."""
    positives = int(np.count_nonzero(outcome))
    negatives = len(outcome) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = delong.average_ranks(np.asarray(probability, dtype=np.float64))
    return float((ranks[outcome == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_auc_interval(
    outcome: np.ndarray,
    probability: np.ndarray,
    groups: np.ndarray | None = None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the ROC-AUC; None where no resample holds both classes.

    Resamples rows, or whole `groups` (e.g. patient ids: a patient's encounters are drawn together) where given.
    Vectorised: the scores are sorted once; each resample is a vector of weights (how many times each row was
    drawn), and its AUC a weighted sum over the groups of tied scores, as many resamples per numpy pass as
    PASS_CELLS allows (the draws, hence the interval, do not depend on how many).
    """
    outcome = np.asarray(outcome)
    if len(outcome) == 0 or outcome.min() == outcome.max():
        return None
    order = np.argsort(np.asarray(probability, dtype=np.float64), kind="mergesort")
    ordered = np.asarray(probability, dtype=np.float64)[order]
    tie_starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    positive = outcome[order] == 1
    if groups is None:
        units, unit_of_row = len(outcome), np.arange(len(outcome))[order]
    else:
        _, unit_of_row = np.unique(np.asarray(groups), return_inverse=True)
        units, unit_of_row = int(unit_of_row.max()) + 1, unit_of_row[order]
    rng = np.random.default_rng(seed)
    per_pass = max(1, PASS_CELLS // max(units, len(outcome)))
    aucs = []
    for done in range(0, samples, per_pass):
        count = min(per_pass, samples - done)
        drawn = rng.integers(0, units, (count, units)) + units * np.arange(count)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=count * units).reshape(count, units)[:, unit_of_row]
        aucs.append(_weighted_auc(weights, positive, tie_starts))
    scores = np.concatenate(aucs)
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        return None
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def _weighted_auc(weights: np.ndarray, positive: np.ndarray, tie_starts: np.ndarray) -> np.ndarray:
    """The AUC of each row of `weights` (resampling counts of the rows sorted by score); NaN for one class."""
    tied_positives = np.add.reduceat(np.where(positive, weights, 0), tie_starts, axis=1).astype(np.float64)
    tied_negatives = np.add.reduceat(np.where(positive, 0, weights), tie_starts, axis=1).astype(np.float64)
    below = np.cumsum(tied_negatives, axis=1) - tied_negatives  # negatives scored lower than each tie group
    pairs = tied_positives.sum(axis=1) * tied_negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tied_positives * (below + tied_negatives / 2)).sum(axis=1) / pairs


def average_precision(outcome: np.ndarray, probability: np.ndarray) -> float | None:
    """Area under the precision-recall curve as a step sum (scikit-learn's `average_precision_score`)."""
    positives = int(np.count_nonzero(outcome))
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(probability, dtype=np.float64), kind="mergesort")
    ordered = np.asarray(probability, dtype=np.float64)[order]
    last_of_ties = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
    true_positives = np.cumsum(outcome[order] == 1)[last_of_ties]
    precision = true_positives / (last_of_ties + 1)
    recall_steps = np.diff(true_positives, prepend=0) / positives
    return float(np.sum(recall_steps * precision))


def brier(outcome: np.ndarray, probability: np.ndarray) -> float | None:
    """Mean squared difference between probability and outcome."""
    if len(outcome) == 0:
        return None
    return float(np.mean((np.asarray(probability, dtype=np.float64) - outcome) ** 2))


def expected_calibration_error(
    outcome: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS
) -> float | None:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by bin size."""
    if len(outcome) == 0:
        return None
    probability = np.asarray(probability, dtype=np.float64)
    index = np.clip(np.digitize(probability, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    rows = np.bincount(index, minlength=bins)
    observed = np.bincount(index, weights=outcome, minlength=bins)
    predicted = np.bincount(index, weights=probability, minlength=bins)
    filled = rows > 0
    return float(np.sum(np.abs(observed[filled] - predicted[filled])) / len(outcome))


def flagged_rate(flagged: np.ndarray) -> float | None:
    """Share of rows flagged (probability at or above the operating threshold)."""
    return float(np.mean(flagged)) if len(flagged) else None


def precision(outcome: np.ndarray, flagged: np.ndarray) -> float | None:
    """Share of the flagged rows that were readmitted; None where nothing was flagged."""
    chosen = np.asarray(flagged, dtype=bool)
    return float(np.mean(outcome[chosen])) if chosen.any() else None


def summary(
    outcome: np.ndarray, probability: np.ndarray, flagged: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, float]:
    """The METRICS of one labelled set; those that cannot be computed are left out.

    The ROC-AUC interval: where `groups` are given (training's patients), the bootstrap of whole groups; else
    (rows resampled: the live figures) DeLong's analytic interval (bento/quality/delong.py).
    """
    if groups is None:
        interval = delong.roc_auc_interval(outcome, probability)
    else:
        interval = roc_auc_interval(outcome, probability, groups)
    figures = {
        "roc_auc": roc_auc(outcome, probability),
        "roc_auc_ci_low": interval[0] if interval else None,
        "roc_auc_ci_high": interval[1] if interval else None,
        "pr_auc": average_precision(outcome, probability),
        "brier": brier(outcome, probability),
        "ece": expected_calibration_error(outcome, probability),
        "flagged_rate": flagged_rate(flagged),
        "precision": precision(outcome, flagged),
    }
    return {name: value for name, value in figures.items() if value is not None}
