"""DeLong's analytic variance of the ROC-AUC, for one model and for the paired difference of two on the same rows.

The fast algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21(11)): the structural components of
DeLong, DeLong & Clarke-Pearson (1988) from three midrankings (all rows, the positives, the negatives), so a
variance costs a few sorts, O(N log N), instead of 500 bootstrap resamples. The live figures
(bento/quality/windows.py) take their ROC-AUC interval from here; training keeps the bootstrap of whole patients
(bento/quality/figures.py). A model whose rows hold fewer than two of either class has no variance: None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)  # 1.959963984540054


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


@dataclass(frozen=True)
class Components:
    """The AUC of each model (rows of `scores`) and the covariance matrix of those AUCs."""

    auc: np.ndarray  # float64 [k]
    covariance: np.ndarray  # float64 [k, k]


@dataclass(frozen=True)
class Difference:
    """Model b - model a in ROC-AUC on the same rows, its 95% interval and the two-sided p-value of no difference."""

    difference: float
    low: float
    high: float
    p_value: float
    variance: float


def components(outcome: np.ndarray, scores: np.ndarray) -> Components | None:
    """DeLong's AUCs and their covariance for the k models of `scores` ([k, N] or [N]); ties count one half."""
    outcome = np.asarray(outcome)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = outcome == 1
    m = int(np.count_nonzero(positive))
    n = len(outcome) - m
    if m < 2 or n < 2:
        return None
    aucs, v10, v01 = [], [], []
    for row in scores:
        x, y = row[positive], row[~positive]
        ranked = average_ranks(row)
        tz_x, tz_y = ranked[positive], ranked[~positive]
        aucs.append((tz_x.sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz_x - average_ranks(x)) / n)  # per positive: the share of negatives it outranks
        v01.append(1.0 - (tz_y - average_ranks(y)) / m)  # per negative: the share of positives that outrank it
    covariance = np.atleast_2d(np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n)
    return Components(np.array(aucs), covariance)


def roc_auc_interval(outcome: np.ndarray, probability: np.ndarray) -> tuple[float, float] | None:
    """The 95% interval AUC ± z·SE of DeLong's variance, clipped to [0, 1]."""
    found = components(outcome, probability)
    if found is None:
        return None
    auc, half = float(found.auc[0]), Z * math.sqrt(max(float(found.covariance[0, 0]), 0.0))
    return max(auc - half, 0.0), min(auc + half, 1.0)


def paired_difference(outcome: np.ndarray, a: np.ndarray, b: np.ndarray) -> Difference | None:
    """DeLong's test of b - a on the same rows (correlated ROC curves): the interval and the two-sided p-value.

    A zero variance (both models separate the classes the same way every time) gives p = 1 when the AUCs are
    equal, 0 otherwise.
    """
    found = components(outcome, np.vstack([a, b]))
    if found is None:
        return None
    difference = float(found.auc[1] - found.auc[0])
    c = found.covariance
    variance = max(float(c[0, 0] + c[1, 1] - 2 * c[0, 1]), 0.0)
    if variance == 0.0:
        p_value = 1.0 if difference == 0.0 else 0.0
    else:
        p_value = math.erfc(abs(difference) / math.sqrt(2 * variance))
    half = Z * math.sqrt(variance)
    return Difference(difference, difference - half, difference + half, p_value, variance)
