"""Performance estimated from the probabilities alone, before any outcome arrives: confidence-based performance
estimation (CBPE, as NannyML defines it), numpy only.

Outcomes come back at least 30 days after discharge, so the realised figures (figures.py) always describe last
month. If the probabilities are calibrated, a row scored p is readmitted with probability p, so the expected
confusion matrix at any threshold follows from the probabilities: expected true positives are the sum of p over
the rows at or above it, expected false positives the sum of 1 - p. The expected ROC curve joins those expected
rates at every threshold, the expected precision is their ratio at the operating threshold, and the share flagged
needs no outcome at all.

What it assumes: calibration *on the live population*, which training checked only on the held-out split (ECE
0.004). What it cannot see: anything that changes how outcomes relate to the features while leaving the features,
hence the probabilities, as they were (concept shift: a new discharge protocol, a subgroup whose risk changed, a
coding change in the outcome). Then the estimate stays where it was while the realised ROC-AUC falls; only outcomes
(figures.py, once they arrive) show it. Shifts of the population itself (covariate shift) move the estimate, as they
should, and drift.py sees them too.
"""

from __future__ import annotations

import numpy as np

from bento.quality import figures

ESTIMATES = ("estimated_roc_auc", "estimated_precision", "flagged_rate")


def expected_roc_auc(probability: np.ndarray) -> float | None:
    """Area under the expected ROC curve; None where it has no area (no row, or every probability 0 or every one 1).

    NannyML's `estimate_roc_auc`: rows by probability, highest first; after each row the expected true positives
    (cumulative sum of p) and false positives (of 1 - p), over their totals, are a point of the curve, and the area
    is the trapezoid sum. Tied probabilities add the same step each, so their points lie on one line and the area
    does not depend on their order (as scikit-learn's trapezoids over tie groups). The trapezoid of row i is
    (1 - p_i) * (C_i - p_i / 2) / (P * N), C_i the cumulative sum: one sort and one pass.
    """
    ordered = np.sort(np.asarray(probability, dtype=np.float64))[::-1]
    positives = float(ordered.sum())
    negatives = len(ordered) - positives
    if len(ordered) == 0 or positives <= 0.0 or negatives <= 0.0:
        return None
    below = np.cumsum(ordered) - ordered / 2  # expected positives scored above row i, and half of its own
    return float(np.dot(1.0 - ordered, below) / (positives * negatives))


def expected_precision(probability: np.ndarray, threshold: float) -> float | None:
    """Expected share of the flagged rows (probability at or above `threshold`) readmitted; None if none flagged."""
    probability = np.asarray(probability, dtype=np.float64)
    flagged = probability[probability >= threshold]
    return float(flagged.mean()) if len(flagged) else None


def summary(probability: np.ndarray, threshold: float) -> dict[str, float]:
    """The ESTIMATES of one set of logged probabilities; those that cannot be computed are left out."""
    probability = np.asarray(probability, dtype=np.float64)
    estimates = {
        "estimated_roc_auc": expected_roc_auc(probability),
        "estimated_precision": expected_precision(probability, threshold),
        "flagged_rate": figures.flagged_rate(probability >= threshold),
    }
    return {name: value for name, value in estimates.items() if value is not None}
