"""Champion and challenger on the same patients: the paired difference of their figures, per window.

The challenger scores every served prediction in shadow (the prediction log's `shadow_batches`), so each
labelled prediction holds both models' probabilities for one patient and one outcome. Per window (30 and 90 days,
as the live figures: bento/quality/windows.py) and (champion, challenger) pair of versions, over those same rows:
each model's ROC-AUC and Brier score, the ROC-AUC difference challenger - champion with DeLong's paired 95%
interval and p-value (bento/quality/delong.py: correlated ROC curves), and the Brier difference with its interval
(the Brier difference is exactly the mean of the per-row differences of squared errors, so its interval is a
mean's: normal, from their standard error). A figure that cannot be computed (one class only, fewer than two rows)
is absent. Each pair and window is compared over its oldest multiple of PUBLISH_ROWS rows by the time the outcome
was recorded (bento/quality/privacy.py's `published`, as the live figures), so one outcome moves no published
figure until it completes a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bento.quality import delong, figures
from bento.quality.privacy import published
from bento.quality.windows import DAY, WINDOWS, Figures, version_order

ROWS = "rows"
METRICS = (
    ROWS,
    "champion_roc_auc",
    "challenger_roc_auc",
    "champion_brier",
    "challenger_brier",
    "roc_auc_difference",
    "roc_auc_difference_low",
    "roc_auc_difference_high",
    "p_value",
    "brier_difference",
    "brier_difference_low",
    "brier_difference_high",
)


@dataclass(frozen=True)
class Paired:
    """Labelled predictions scored by the served model and by a challenger in shadow, in the order of their ids."""

    champion_version: np.ndarray  # str [N], the version that served the prediction
    challenger_version: np.ndarray  # str [N], the version that scored it in shadow
    time: np.ndarray  # float64 [N], when the prediction was made
    champion: np.ndarray  # float64 [N], the served probability
    challenger: np.ndarray  # float64 [N], the challenger's probability
    outcome: np.ndarray  # int64 [N], 1 = readmitted within 30 days
    recorded: np.ndarray  # float64 [N], when the outcome was recorded: the order the comparison publishes rows in


def brier_difference(outcome: np.ndarray, a: np.ndarray, b: np.ndarray) -> delong.Difference | None:
    """Brier score of b - a on the same rows: the mean per-row difference of squared errors, its 95% normal
    interval and two-sided p-value from their standard error; None under two rows."""
    outcome = np.asarray(outcome, dtype=np.float64)
    if len(outcome) < 2:
        return None
    rows = (np.asarray(b, dtype=np.float64) - outcome) ** 2 - (np.asarray(a, dtype=np.float64) - outcome) ** 2
    difference = float(rows.mean())
    variance = float(rows.var(ddof=1)) / len(rows)
    if variance == 0.0:
        p_value = 1.0 if difference == 0.0 else 0.0
    else:
        p_value = math.erfc(abs(difference) / math.sqrt(2 * variance))
    half = delong.Z * math.sqrt(variance)
    return delong.Difference(difference, difference - half, difference + half, p_value, variance)


def compare(outcome: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> Figures:
    """The METRICS of one set of paired rows; those that cannot be computed are left out."""
    roc = delong.paired_difference(outcome, champion, challenger)
    brier = brier_difference(outcome, champion, challenger)
    found: dict[str, float | None] = {
        ROWS: len(outcome),
        "champion_roc_auc": figures.roc_auc(outcome, champion),
        "challenger_roc_auc": figures.roc_auc(outcome, challenger),
        "champion_brier": figures.brier(outcome, champion),
        "challenger_brier": figures.brier(outcome, challenger),
    }
    if roc is not None:
        found |= {
            "roc_auc_difference": roc.difference,
            "roc_auc_difference_low": roc.low,
            "roc_auc_difference_high": roc.high,
            "p_value": roc.p_value,
        }
    if brier is not None:
        found |= {"brier_difference": brier.difference, "brier_difference_low": brier.low,
                  "brier_difference_high": brier.high}  # fmt: skip
    return {name: value for name, value in found.items() if value is not None}


def measure(paired: Paired, now: float) -> list[dict[str, Any]]:
    """Per (champion, challenger) pair of versions: {"champion_version", "challenger_version", "windows": window ->
    METRICS}, the pairs in version order; each pair and window over its oldest multiple of PUBLISH_ROWS rows by
    outcome time (ROWS is that count), so one more outcome moves nothing until it completes a step."""
    pairs = sorted(
        set(zip(paired.champion_version.tolist(), paired.challenger_version.tolist(), strict=True)),
        key=lambda pair: (version_order(pair[0]), version_order(pair[1])),
    )
    result = []
    for champion, challenger in pairs:
        of_pair = (paired.champion_version == champion) & (paired.challenger_version == challenger)
        windows = {}
        for window, days in WINDOWS.items():
            in_window = np.flatnonzero(of_pair & (paired.time >= now - days * DAY))
            rows = published(in_window, paired.recorded[in_window])
            windows[window] = compare(paired.outcome[rows], paired.champion[rows], paired.challenger[rows])
        result.append({"champion_version": champion, "challenger_version": challenger, "windows": windows})
    return result
