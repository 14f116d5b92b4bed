"""bento/quality/comparison.py against scikit-learn's ROC-AUC and Brier score, and its intervals against a second
implementation: a paired bootstrap (the same resampled rows for both models) over 2,000 resamples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import brier_score_loss, roc_auc_score

from bento.quality import comparison, delong
from bento.quality.comparison import Paired

DAY = 86400.0


def _pair(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes and two correlated models' probabilities; the challenger separates the classes better."""
    rng = np.random.default_rng(seed)
    outcome = (rng.random(rows) < 0.3).astype(np.int64)
    shared = rng.normal(0, 1, rows)
    champion = 1 / (1 + np.exp(-(-1.0 + 0.7 * outcome + shared + rng.normal(0, 0.8, rows))))
    challenger = 1 / (1 + np.exp(-(-1.0 + 1.0 * outcome + shared + rng.normal(0, 0.8, rows))))
    return outcome, np.round(champion, 3), np.round(challenger, 3)  # rounded: ties, as float32 probabilities tie


def _auc(outcome: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney's U over the positives' midranks (scipy's ranks: not the module's)."""
    m = int(outcome.sum())
    return (rankdata(score)[outcome == 1].sum() - m * (m + 1) / 2) / (m * (len(outcome) - m))


def _bootstrap(outcome, champion, challenger, samples: int = 2000, seed: int = 1) -> tuple[float, float]:
    """Standard errors of the ROC-AUC and Brier differences over paired resamples of rows (both models on the same
    drawn rows)."""
    rng = np.random.default_rng(seed)
    roc, brier = [], []
    for _ in range(samples):
        drawn = rng.integers(0, len(outcome), len(outcome))
        y, a, b = outcome[drawn], champion[drawn], challenger[drawn]
        roc.append(_auc(y, b) - _auc(y, a))
        brier.append(np.mean((b - y) ** 2) - np.mean((a - y) ** 2))
    return float(np.std(roc, ddof=1)), float(np.std(brier, ddof=1))


def test_each_models_figures_equal_scikit_learns_and_the_differences_follow():
    outcome, champion, challenger = _pair(3000, 2)
    found = comparison.compare(outcome, champion, challenger)
    assert set(found) == set(comparison.METRICS) and found["rows"] == 3000
    assert found["champion_roc_auc"] == pytest.approx(roc_auc_score(outcome, champion), abs=1e-12)
    assert found["challenger_roc_auc"] == pytest.approx(roc_auc_score(outcome, challenger), abs=1e-12)
    assert found["champion_brier"] == pytest.approx(brier_score_loss(outcome, champion), abs=1e-12)
    assert found["challenger_brier"] == pytest.approx(brier_score_loss(outcome, challenger), abs=1e-12)
    assert found["roc_auc_difference"] == pytest.approx(
        roc_auc_score(outcome, challenger) - roc_auc_score(outcome, champion), abs=1e-12
    )
    assert found["brier_difference"] == pytest.approx(
        brier_score_loss(outcome, challenger) - brier_score_loss(outcome, champion), abs=1e-12
    )
    delong_difference = delong.paired_difference(outcome, champion, challenger)
    assert (found["roc_auc_difference_low"], found["roc_auc_difference_high"], found["p_value"]) == (
        delong_difference.low, delong_difference.high, delong_difference.p_value)  # fmt: skip
    assert found["roc_auc_difference_low"] > 0 and found["p_value"] < 0.05  # better by construction
    assert found["brier_difference_high"] < 0


@pytest.mark.parametrize(("rows", "seed"), [(1500, 3), (4000, 4)])
def test_the_intervals_are_as_wide_as_a_paired_bootstrap(rows, seed):
    outcome, champion, challenger = _pair(rows, seed)
    found = comparison.compare(outcome, champion, challenger)
    roc_se, brier_se = _bootstrap(outcome, champion, challenger)
    analytic_roc = (found["roc_auc_difference_high"] - found["roc_auc_difference_low"]) / (2 * delong.Z)
    analytic_brier = (found["brier_difference_high"] - found["brier_difference_low"]) / (2 * delong.Z)
    assert analytic_roc == pytest.approx(roc_se, rel=0.10)
    assert analytic_brier == pytest.approx(brier_se, rel=0.10)


def test_the_brier_interval_is_the_mean_of_per_row_differences_with_its_standard_error():
    outcome = np.array([0, 1, 1, 0, 1])
    a, b = np.array([0.2, 0.6, 0.5, 0.4, 0.7]), np.array([0.1, 0.8, 0.4, 0.3, 0.9])
    rows = (b - outcome) ** 2 - (a - outcome) ** 2
    se = np.std(rows, ddof=1) / np.sqrt(5)
    found = comparison.brier_difference(outcome, a, b)
    assert (found.difference, found.low, found.high) == pytest.approx(
        (rows.mean(), rows.mean() - 1.959963984540054 * se, rows.mean() + 1.959963984540054 * se), abs=1e-15
    )


def test_what_cannot_be_computed_is_absent():
    one_class = comparison.compare(np.zeros(5, dtype=np.int64), np.linspace(0, 1, 5), np.linspace(0, 1, 5))
    assert set(one_class) == {"rows", "champion_brier", "challenger_brier", "brier_difference",
                              "brier_difference_low", "brier_difference_high"}  # fmt: skip
    assert comparison.compare(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)) == {"rows": 0}
    same = comparison.compare(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), np.array([0.1, 0.9, 0.2, 0.8]))
    assert (same["roc_auc_difference"], same["p_value"], same["brier_difference"]) == (0.0, 1.0, 0.0)


def test_per_pair_and_window_over_the_rows_of_each():
    now = 1_000_000_000.0
    outcome, champion, challenger = _pair(900, 5)
    days_ago = np.repeat([5.0, 60.0, 5.0], 300)
    versions = np.repeat(["3", "3", "2"], 300), np.repeat(["4", "4", "10"], 300)
    paired = Paired(versions[0], versions[1], now - days_ago * DAY, champion, challenger, outcome, np.full(900, now))
    measured = comparison.measure(paired, now)
    assert [(m["champion_version"], m["challenger_version"]) for m in measured] == [("2", "10"), ("3", "4")]
    assert measured[0]["windows"]["30d"] == comparison.compare(outcome[600:], champion[600:], challenger[600:])
    assert measured[1]["windows"]["30d"] == comparison.compare(outcome[:300], champion[:300], challenger[:300])
    assert measured[1]["windows"]["90d"] == comparison.compare(outcome[:600], champion[:600], challenger[:600])
    assert comparison.measure(Paired(*(np.zeros(0),) * 7), now) == []
