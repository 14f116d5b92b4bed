"""Estimates before outcomes arrive, on the real champion: from its probabilities on the held-out test split (seed 42,
the champion's split, as the service scores them) alone, the estimated ROC-AUC lies inside the realised ROC-AUC's 95%
interval (patients resampled) and agrees with NannyML's CBPE (fitted on the validation split) within 0.01; on the same
stream with one age band's outcomes flipped, the estimate does not move while the realised ROC-AUC falls below that
interval: what the estimate misses (README, "Estimates before outcomes arrive", has the numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from bento.quality import estimates, figures
from tests.reference import nannyml_cbpe
from training import data

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

# The subgroup whose outcomes are flipped: the patients aged 80-90 (about a sixth of the encounters)
SUBGROUP = ("age", "[80-90)")


@pytest.fixture(scope="module")
def split(uci_zip) -> data.Split:
    return data.split(data.clean(data.load(uci_zip)), seed=42)


@pytest.fixture(scope="module")
def held_out(split, local) -> dict:
    """The test split's outcomes, patients, probabilities (the served model's) and the realised ROC-AUC interval."""
    matrix, outcome = data.design_matrix(split.test)
    probability = local.probabilities(matrix).astype(np.float64)
    patients = split.test["patient_nbr"].to_numpy()
    interval = figures.roc_auc_interval(outcome, probability, groups=patients)
    return {"outcome": outcome, "probability": probability, "patients": patients, "interval": interval}


def test_the_estimate_lies_inside_the_realised_interval(held_out):
    estimate = estimates.expected_roc_auc(held_out["probability"])
    low, high = held_out["interval"]
    assert low <= estimate <= high, (estimate, low, high)


def test_the_estimates_agree_with_nannyml_cbpe(held_out, split, local, tmp_path):
    """CBPE as run recalibrates the probabilities on the validation split (isotonic): its ROC-AUC within 0.01 of
    ours. Told to keep them, it computes our definition: ROC-AUC and precision to rounding. (Its recalibrated
    precision is about 0.012 below ours: README.)"""
    matrix, reference_outcome = data.design_matrix(split.validation)
    reference = local.probabilities(matrix).astype(np.float64)
    threshold = local.info.threshold
    found = nannyml_cbpe(tmp_path, reference, reference_outcome, held_out["probability"], threshold)
    ours = estimates.summary(held_out["probability"], held_out["probability"] >= threshold)
    assert ours["estimated_roc_auc"] == pytest.approx(found["as_run"]["roc_auc"], abs=0.01)
    assert ours["estimated_roc_auc"] == pytest.approx(found["uncalibrated"]["roc_auc"], abs=1e-6)
    assert ours["estimated_precision"] == pytest.approx(found["uncalibrated"]["precision"], abs=1e-6)


def test_outcomes_flipped_for_a_subgroup_lower_the_realised_roc_auc_but_not_the_estimate(held_out, split, local):
    """The stream's logged rows are the model's probabilities: a change in how outcomes relate to the features (here
    one age band's outcomes flipped) does not reach them, so the estimate cannot move; the realised ROC-AUC, once the
    outcomes arrive, falls below the interval of the stream as it was."""
    column, value = SUBGROUP
    chosen = (split.test[column] == value).to_numpy()
    flipped = held_out["outcome"].copy()
    flipped[chosen] = 1 - flipped[chosen]
    probability, (low, high) = held_out["probability"], held_out["interval"]
    stream = estimates.summary(probability, probability >= local.info.threshold)  # all it sees, flipped or not
    realised = figures.roc_auc(held_out["outcome"], probability)
    realised_flipped = figures.roc_auc(flipped, probability)
    # what it shows: the stream as it was, its estimate inside the realised interval
    assert low <= stream["estimated_roc_auc"] <= high
    # what it misses: the flipped stream's realised ROC-AUC falls below that interval, the estimate stays
    assert realised_flipped < low <= realised
