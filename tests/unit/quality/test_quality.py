"""bento/quality/figures.py against scikit-learn and against the bootstrap written out one resample at a time."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, precision_score, roc_auc_score

from bento.quality import figures


def _scores(rows: int, seed: int, decimals: int | None = 2) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and probabilities that carry some signal; rounded, so many scores tie."""
    rng = np.random.default_rng(seed)
    outcome = (rng.random(rows) < 0.2).astype(np.int64)
    probability = np.clip(0.15 + 0.1 * outcome + rng.normal(0, 0.1, rows), 0, 1)
    return outcome, probability if decimals is None else np.round(probability, decimals)


@pytest.mark.parametrize(("rows", "seed", "decimals"), [(2000, 1, 2), (500, 2, 1), (3000, 3, None), (7, 4, 1)])
def test_metrics_equal_scikit_learn_with_and_without_ties(rows, seed, decimals):
    outcome, probability = _scores(rows, seed, decimals)
    outcome[:2] = [0, 1]  # both classes, whatever the draw
    flagged = probability >= 0.2
    assert figures.roc_auc(outcome, probability) == pytest.approx(roc_auc_score(outcome, probability), abs=1e-12)
    assert figures.average_precision(outcome, probability) == pytest.approx(
        average_precision_score(outcome, probability), abs=1e-12
    )
    assert figures.brier(outcome, probability) == pytest.approx(brier_score_loss(outcome, probability), abs=1e-12)
    assert figures.precision(outcome, flagged) == pytest.approx(precision_score(outcome, flagged), abs=1e-12)
    assert figures.flagged_rate(flagged) == pytest.approx(flagged.mean(), abs=1e-15)


def test_expected_calibration_error_is_the_weighted_gap_per_bin():
    outcome, probability = _scores(3000, 5)
    expected = 0.0
    bins = np.clip(np.digitize(probability, np.linspace(0, 1, 11)[1:-1]), 0, 9)
    for b in range(10):
        rows = bins == b
        if rows.any():
            expected += rows.mean() * abs(outcome[rows].mean() - probability[rows].mean())
    assert figures.expected_calibration_error(outcome, probability) == pytest.approx(expected, abs=1e-12)


def test_what_cannot_be_computed_is_none_and_left_out_of_the_summary():
    outcome = np.zeros(50, dtype=np.int64)
    probability = np.linspace(0, 1, 50)
    assert figures.roc_auc(outcome, probability) is None
    assert figures.roc_auc_interval(outcome, probability) is None
    assert figures.average_precision(outcome, probability) is None
    assert figures.precision(outcome, np.zeros(50, dtype=bool)) is None
    summary = figures.summary(outcome, probability, np.zeros(50, dtype=bool))
    assert set(summary) == {"brier", "ece", "flagged_rate"}
    assert figures.summary(outcome[:0], probability[:0], np.zeros(0, dtype=bool)) == {}


def _reference_interval(outcome, probability, groups, samples, seed) -> tuple[float, float]:
    """The interval one resample at a time with scikit-learn, drawing the same units as quality does."""
    names, unit_of_row = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(unit_of_row == unit) for unit in range(len(names))]
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(samples):
        rows = np.concatenate([members[unit] for unit in rng.integers(0, len(names), len(names))])
        if outcome[rows].min() != outcome[rows].max():
            aucs.append(roc_auc_score(outcome[rows], probability[rows]))
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("pass_cells", [400, 7_000, figures.PASS_CELLS])  # 1, 17 and all resamples per pass
def test_bootstrap_interval_equals_the_resamples_done_one_by_one(grouped, pass_cells, monkeypatch):
    monkeypatch.setattr(figures, "PASS_CELLS", pass_cells)
    outcome, probability = _scores(400, 6)
    groups = np.random.default_rng(7).integers(0, 150, 400) if grouped else np.arange(400)
    expected = _reference_interval(outcome, probability, groups, samples=120, seed=3)
    interval = figures.roc_auc_interval(outcome, probability, groups if grouped else None, samples=120, seed=3)
    assert interval == pytest.approx(expected, abs=1e-12)


def test_resampling_patients_widens_the_interval_when_their_encounters_agree():
    outcome, probability = _scores(1500, 8)
    repeated = np.repeat(np.arange(1500), 4)  # four identical encounters per patient
    by_encounter = figures.roc_auc_interval(outcome[repeated], probability[repeated])
    by_patient = figures.roc_auc_interval(outcome[repeated], probability[repeated], groups=repeated)
    assert by_encounter is not None and by_patient is not None
    assert by_patient[1] - by_patient[0] > 1.5 * (by_encounter[1] - by_encounter[0])
    assert by_patient[0] < figures.roc_auc(outcome, probability) < by_patient[1]
