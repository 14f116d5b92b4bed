"""bento/quality/delong.py against DeLong's definition written out pair by pair (O(n·m) placement values), and
against the bootstrap it replaces in the live figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bento.quality import delong, figures


def _scores(rows: int, seed: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes and two correlated models' probabilities; rounded, so many scores tie."""
    rng = np.random.default_rng(seed)
    outcome = (rng.random(rows) < 0.3).astype(np.int64)
    outcome[:4] = [0, 1, 0, 1]  # at least two of each class, whatever the draw
    shared = rng.normal(0, 1, rows)
    a = 0.8 * outcome + shared + rng.normal(0, 0.6, rows)
    b = 1.0 * outcome + shared + rng.normal(0, 0.6, rows)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    return outcome, a, b


def _definition(outcome: np.ndarray, models: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and covariance from DeLong et al. (1988): placement values of every (positive, negative) pair."""
    v10, v01, aucs = [], [], []
    for score in models:
        x, y = score[outcome == 1], score[outcome == 0]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])  # [m, n]
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = len(v10[0]), len(v01[0])
    k = len(models)
    s10 = np.array([[np.sum((v10[r] - aucs[r]) * (v10[s] - aucs[s])) / (m - 1) for s in range(k)] for r in range(k)])
    s01 = np.array([[np.sum((v01[r] - aucs[r]) * (v01[s] - aucs[s])) / (n - 1) for s in range(k)] for r in range(k)])
    return np.array(aucs), s10 / m + s01 / n


@pytest.mark.parametrize(("rows", "seed", "decimals"), [(400, 1, 1), (900, 2, None), (60, 3, 0), (5, 4, None)])
def test_the_fast_algorithm_equals_the_definition_with_and_without_ties(rows, seed, decimals):
    outcome, a, b = _scores(rows, seed, decimals)
    found = delong.components(outcome, np.vstack([a, b]))
    aucs, covariance = _definition(outcome, [a, b])
    assert found is not None
    np.testing.assert_allclose(found.auc, aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(found.covariance, covariance, rtol=0, atol=1e-12)
    assert found.auc[0] == pytest.approx(roc_auc_score(outcome, a), abs=1e-12)


def test_the_paired_difference_and_the_interval_follow_from_the_covariance():
    outcome, a, b = _scores(700, 5, 1)
    aucs, c = _definition(outcome, [a, b])
    variance = c[0, 0] + c[1, 1] - 2 * c[0, 1]
    z = (aucs[1] - aucs[0]) / math.sqrt(variance)
    result = delong.paired_difference(outcome, a, b)
    assert result is not None
    assert result.difference == pytest.approx(aucs[1] - aucs[0], abs=1e-12)
    assert result.variance == pytest.approx(variance, abs=1e-12)
    assert result.p_value == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2)))), abs=1e-9)
    assert (result.low, result.high) == pytest.approx(
        (
            aucs[1] - aucs[0] - 1.959963984540054 * math.sqrt(variance),
            aucs[1] - aucs[0] + 1.959963984540054 * math.sqrt(variance),
        ),
        abs=1e-12,
    )
    swapped = delong.paired_difference(outcome, b, a)
    assert swapped is not None and swapped.difference == -result.difference and swapped.p_value == result.p_value
    low, high = delong.roc_auc_interval(outcome, a)
    half = 1.959963984540054 * math.sqrt(c[0, 0])
    assert (low, high) == pytest.approx((aucs[0] - half, aucs[0] + half), abs=1e-12)


def test_a_model_compared_with_itself_differs_by_nothing_with_p_one_and_too_few_rows_give_none():
    outcome, a, _ = _scores(300, 6, 2)
    same = delong.paired_difference(outcome, a, a.copy())
    assert same is not None and (same.difference, same.variance, same.p_value) == (0.0, 0.0, 1.0)
    assert delong.paired_difference(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2]), np.array([0.8, 0.3, 0.1])) is None
    assert delong.roc_auc_interval(np.zeros(10, dtype=np.int64), np.linspace(0, 1, 10)) is None


def test_the_analytic_interval_is_as_wide_as_the_bootstrap_it_replaces():
    outcome, a, _ = _scores(4000, 7, None)
    analytic = delong.roc_auc_interval(outcome, a)
    resampled = figures.roc_auc_interval(outcome, a, samples=500, seed=1)
    assert analytic is not None and resampled is not None
    width, bootstrap_width = analytic[1] - analytic[0], resampled[1] - resampled[0]
    assert abs(width - bootstrap_width) < 0.1 * bootstrap_width
    assert analytic[0] < figures.roc_auc(outcome, a) < analytic[1]


def test_the_live_summary_takes_delong_and_the_grouped_summary_the_bootstrap():
    outcome, a, _ = _scores(600, 8, 2)
    flagged = a > 0.5
    assert figures.summary(outcome, a, flagged)["roc_auc_ci_low"] == delong.roc_auc_interval(outcome, a)[0]
    groups = np.arange(600) // 2
    grouped = figures.summary(outcome, a, flagged, groups=groups)
    assert grouped["roc_auc_ci_low"] == figures.roc_auc_interval(outcome, a, groups)[0]
