"""The estimates before outcomes arrive (bento/quality/estimates.py) on synthetic rows whose outcomes are drawn from
their probabilities: the expected ROC curve written out, the estimate against the realised figures over many draws
(close, and unbiased within a tolerance computed from the draws), what it cannot see, the degenerate inputs, and
NannyML's CBPE on the same rows (its own venv, tests/reference; skips without it)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc

from bento.quality import delong, estimates, figures
from bento.quality.privacy import PUBLISH_ROWS
from bento.quality.windows import DAY, Scored
from tests.reference import nannyml_cbpe

THRESHOLD = 0.149  # the champion's operating threshold (README)


def _probabilities(rows: int, seed: int, decimals: int | None = None) -> np.ndarray:
    """Readmission-like probabilities: mean about 0.14, most below 0.3; rounded, many tie."""
    probability = np.random.default_rng(seed).beta(2.0, 12.0, rows)
    return probability if decimals is None else np.round(probability, decimals)


def _draws(probability: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` outcome vectors, each row readmitted with its probability: calibrated by construction."""
    return (np.random.default_rng(seed).random((count, len(probability))) < probability).astype(np.int64)


def _realised_aucs(outcomes: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """figures.roc_auc of every draw at once (the ranks are the probabilities', shared by every draw)."""
    ranks = delong.average_ranks(probability)
    positives = outcomes.sum(axis=1)
    negatives = outcomes.shape[1] - positives
    return (outcomes @ ranks - positives * (positives + 1) / 2) / (positives * negatives)


@pytest.mark.parametrize(("rows", "seed", "decimals"), [(3000, 1, None), (3000, 2, 2), (50, 3, 1)])
def test_the_estimate_is_the_area_under_the_expected_roc_curve(rows, seed, decimals):
    probability = _probabilities(rows, seed, decimals)
    ordered = np.sort(probability)[::-1]  # written out: a point after every row, highest probability first
    true_positives = np.r_[0.0, np.cumsum(ordered)]
    false_positives = np.r_[0.0, np.cumsum(1.0 - ordered)]
    curve = auc(false_positives / false_positives[-1], true_positives / true_positives[-1])
    assert estimates.expected_roc_auc(probability) == pytest.approx(curve, abs=1e-12)
    shuffled = np.random.default_rng(seed).permutation(probability)  # order in, and order among ties: no effect
    assert estimates.expected_roc_auc(shuffled) == pytest.approx(curve, abs=1e-12)


def test_the_estimate_is_close_to_the_realised_roc_auc_of_each_draw():
    """Outcomes drawn from the probabilities: the realised ROC-AUC's 95% interval holds the estimate about 95% of
    the time (at least 85% of 40 draws), and the realised AUC lies within 0.05 of it every time."""
    probability = _probabilities(2000, 4)
    estimate = estimates.expected_roc_auc(probability)
    outcomes = _draws(probability, 40, seed=5)
    covered = []
    for outcome in outcomes:
        low, high = figures.roc_auc_interval(outcome, probability)
        covered.append(low <= estimate <= high)
        assert figures.roc_auc(outcome, probability) == pytest.approx(estimate, abs=0.05)
    assert np.mean(covered) >= 0.85, np.mean(covered)


def test_the_estimates_are_unbiased_within_the_tolerance_of_the_draws():
    """The mean realised ROC-AUC and precision over 1000 draws equal the estimates within four standard errors of
    that mean (plus 1/rows for the ROC-AUC: a ratio of expectations, biased by O(1/rows))."""
    probability, draws = _probabilities(4000, 6), 1000
    outcomes = _draws(probability, draws, seed=7)
    realised = _realised_aucs(outcomes, probability)
    assert realised[0] == pytest.approx(figures.roc_auc(outcomes[0], probability), abs=1e-12)
    tolerance = 4 * realised.std(ddof=1) / np.sqrt(draws) + 1 / len(probability)
    assert abs(realised.mean() - estimates.expected_roc_auc(probability)) <= tolerance
    flagged = probability >= THRESHOLD
    precisions = outcomes[:, flagged].mean(axis=1)
    tolerance = 4 * precisions.std(ddof=1) / np.sqrt(draws)
    assert abs(precisions.mean() - estimates.expected_precision(probability, flagged)) <= tolerance


def test_outcomes_unrelated_to_the_probabilities_leave_the_estimate_where_it_was():
    """What it cannot see: the same probabilities, outcomes now drawn from another patient's probability (the
    relation between features and outcome gone), the realised ROC-AUC falls to about 0.5; the estimate cannot move."""
    probability = _probabilities(5000, 8)
    outcome = _draws(np.random.default_rng(9).permutation(probability), 1, seed=10)[0]
    assert figures.roc_auc(outcome, probability) < 0.55
    assert estimates.expected_roc_auc(probability) > 0.65


def test_precision_and_share_flagged_from_the_probabilities():
    probability = np.array([0.05, 0.1, 0.149, 0.2, 0.6])
    found = estimates.summary(probability, probability >= THRESHOLD)
    assert found == {
        "estimated_roc_auc": pytest.approx(estimates.expected_roc_auc(probability)),
        "estimated_precision": pytest.approx((0.149 + 0.2 + 0.6) / 3),
        "flagged_rate": pytest.approx(3 / 5),
    }
    assert set(found) == set(estimates.ESTIMATES)


@pytest.mark.parametrize(
    ("probability", "expected"),
    [
        ([], {}),  # nothing logged: nothing to estimate
        ([0.3] * 7, {"estimated_roc_auc": 0.5, "estimated_precision": 0.3, "flagged_rate": 1.0}),  # all equal
        ([0.1] * 4, {"estimated_roc_auc": 0.5, "flagged_rate": 0.0}),  # nothing flagged: no precision
        ([0.2], {"estimated_roc_auc": 0.5, "estimated_precision": 0.2, "flagged_rate": 1.0}),  # one row: a diagonal
        ([0.0, 0.0], {"flagged_rate": 0.0}),  # no expected positive: no curve
        ([1.0, 1.0, 1.0], {"estimated_precision": 1.0, "flagged_rate": 1.0}),  # no expected negative: no curve
    ],
)
def test_degenerate_inputs(probability, expected):
    probability = np.array(probability)
    assert estimates.summary(probability, probability >= THRESHOLD) == pytest.approx(expected)


def test_the_estimates_agree_with_nannyml_cbpe_on_the_same_rows(tmp_path):
    """NannyML fitted on labelled reference rows, estimating other rows: its CBPE as run (recalibrating where its test
    says that helps) within 0.01; told to keep the probabilities, the same definition to rounding (NannyML rounds the
    expected counts to 1e-5)."""
    reference = _probabilities(20_000, 11)
    probability = _probabilities(15_000, 12, decimals=3)
    found = nannyml_cbpe(tmp_path, reference, _draws(reference, 1, seed=13)[0], probability, THRESHOLD)
    ours = {
        "roc_auc": estimates.expected_roc_auc(probability),
        "precision": estimates.expected_precision(probability, probability >= THRESHOLD),
    }
    assert ours == pytest.approx(found["uncalibrated"], abs=1e-6)
    assert ours == pytest.approx(found["as_run"], abs=0.01)


def _scored(rows: int, now: float, version: str = "3", days_ago: float = 1.0, seed: int = 20) -> Scored:
    """`rows` single-row batches, as the log holds them (float32 probabilities, uint8 labels)."""
    probability = _probabilities(rows, seed).astype(np.float32)
    return Scored(
        np.full(rows, version),
        np.full(rows, now - days_ago * DAY),
        np.ones(rows, dtype=np.int64),
        probability,
        (probability >= THRESHOLD).astype(np.uint8),
    )


def _joined(*parts: Scored) -> Scored:
    return Scored(*(np.concatenate([getattr(p, name) for p in parts]) for name in Scored.__dataclass_fields__))


def test_the_estimates_of_a_window_are_published_in_steps_of_its_oldest_rows():
    """One new prediction moves nothing; the PUBLISH_ROWS-th moves the estimates with the rows before it."""
    now = 1e9
    scored = _scored(3 * PUBLISH_ROWS + PUBLISH_ROWS - 1, now)
    found = estimates.measure(scored, now, versions=["4"])
    oldest = scored.probability[: 3 * PUBLISH_ROWS]
    assert found["3"]["30d"] == {**estimates.summary(oldest, oldest >= THRESHOLD), "scored_rows": 3 * PUBLISH_ROWS}
    assert found["3"]["90d"] is found["3"]["30d"]  # the same rows: computed once
    assert found["4"] == {"30d": {"scored_rows": 0}, "90d": {"scored_rows": 0}}  # served, nothing logged yet
    one_more = _joined(scored, _scored(1, now, seed=21))
    moved = estimates.measure(one_more, now)
    assert moved["3"]["30d"] != found["3"]["30d"]
    assert moved["3"]["30d"]["scored_rows"] == 4 * PUBLISH_ROWS
    other = estimates.measure(_joined(scored, _scored(PUBLISH_ROWS - 1, now, version="5")), now)
    assert other["3"] == found["3"], "another version's rows move nothing of this one"
    assert other["5"]["30d"] == {"scored_rows": 0}


def test_each_window_is_estimated_over_its_own_rows():
    now = 1e9
    old, recent = _scored(2 * PUBLISH_ROWS, now, days_ago=60, seed=22), _scored(PUBLISH_ROWS + 5, now, seed=23)
    found = estimates.measure(_joined(old, recent), now)["3"]
    assert found["30d"]["scored_rows"] == PUBLISH_ROWS
    assert found["90d"]["scored_rows"] == 3 * PUBLISH_ROWS
    oldest = np.concatenate([old.probability, recent.probability[:PUBLISH_ROWS]])
    assert found["90d"]["estimated_roc_auc"] == pytest.approx(estimates.expected_roc_auc(oldest), abs=1e-12)
    assert found["30d"]["estimated_roc_auc"] == pytest.approx(
        estimates.expected_roc_auc(recent.probability[:PUBLISH_ROWS]), abs=1e-12
    )
