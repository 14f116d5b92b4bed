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

from collections.abc import Iterable

import numpy as np

from bento.quality import figures
from bento.quality.privacy import PUBLISH_ROWS
from bento.quality.windows import DAY, WINDOWS, Figures, Scored, version_order

ESTIMATES = ("estimated_roc_auc", "estimated_precision", "flagged_rate")
SCORED_ROWS = "scored_rows"  # the rows the estimates of a version and window were computed over
WIDENED_ROWS = 1 << 16  # probabilities widened to float64 at a time


def expected_roc_auc(probability: np.ndarray) -> float | None:
    """Area under the expected ROC curve; None where it has no area (no row, or every probability 0 or every one 1).

    NannyML's `estimate_roc_auc`: rows by probability, highest first; after each row the expected true positives
    (cumulative sum of p) and false positives (of 1 - p), over their totals, are a point of the curve, and the area
    is the trapezoid sum. Tied probabilities add the same step each, so their points lie on one line and the area
    does not depend on their order (as scikit-learn's trapezoids over tie groups). The trapezoid of row i is
    (1 - p_i) * (C_i - p_i / 2) / (P * N), C_i the cumulative sum: one sort (in the probabilities' own precision:
    float32 from the log) and one pass, widened to float64 WIDENED_ROWS rows at a time (a window may hold millions).
    """
    ordered = np.sort(np.asarray(probability))[::-1]
    positives = area = 0.0
    for start in range(0, len(ordered), WIDENED_ROWS):
        part = ordered[start : start + WIDENED_ROWS].astype(np.float64)
        cumulative = np.cumsum(np.r_[positives, part])[1:]  # carried on from the rows before, as one sum over all
        positives = float(cumulative[-1])
        area += float(np.dot(1.0 - part, cumulative - 0.5 * part))
    negatives = len(ordered) - positives
    if positives <= 0.0 or negatives <= 0.0:
        return None
    return area / (positives * negatives)


def expected_precision(probability: np.ndarray, flagged: np.ndarray) -> float | None:
    """Expected share of the `flagged` rows (probability at or above the version's threshold: the logged label)
    readmitted; None if none flagged."""
    chosen = np.asarray(probability)[np.asarray(flagged, dtype=bool)]
    return float(chosen.mean(dtype=np.float64)) if len(chosen) else None


def summary(probability: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """The ESTIMATES of one set of logged probabilities and whether each was flagged; those that cannot be
    computed are left out."""
    flagged = np.asarray(flagged, dtype=bool)
    estimates = {
        "estimated_roc_auc": expected_roc_auc(probability),
        "estimated_precision": expected_precision(probability, flagged),
        "flagged_rate": figures.flagged_rate(flagged),
    }
    return {name: value for name, value in estimates.items() if value is not None}


def measure(scored: Scored, now: float, versions: Iterable[str] = ()) -> dict[str, dict[str, Figures]]:
    """The ESTIMATES and SCORED_ROWS per model version and window (the `versions` given appear even without rows).

    Published in steps: each version and window is estimated over its oldest multiple of PUBLISH_ROWS rows, so a
    new prediction moves nothing and the PUBLISH_ROWS-th moves the estimates with the rows before it (no
    difference of two readings describes fewer than PUBLISH_ROWS patients). A window holding the same rows as the
    shorter one before it takes its estimates.
    """
    result: dict[str, dict[str, Figures]] = {}
    for version in sorted(set(np.unique(scored.model_version).tolist()) | set(versions), key=version_order):
        of_version = scored.model_version == version
        result[version] = {}
        previous: tuple[int, Figures] | None = None  # the last window's row count and estimates
        for window, days in sorted(WINDOWS.items(), key=lambda item: item[1]):
            batches = of_version & (scored.time >= now - days * DAY)
            rows = int(scored.rows[batches].sum())
            if previous is not None and previous[0] == rows:  # windows nest: as many rows are the same rows
                result[version][window] = previous[1]
                continue
            # in the order of the ids, the oldest first; every row (the usual case: one version, every row recent)
            # as a view, not a copy
            chosen = slice(None) if batches.all() else np.repeat(batches, scored.rows)
            published = rows // PUBLISH_ROWS * PUBLISH_ROWS
            probability, label = scored.probability[chosen][:published], scored.label[chosen][:published]
            found = {**summary(probability, label == 1), SCORED_ROWS: published}
            result[version][window], previous = found, (rows, found)
    return result
