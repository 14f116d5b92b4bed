"""Unusual patients on the real data: the champion as `readmission import` stores it carries the reference fitted on
its training split, and flags the held-out test rows (seed 42, the champion's split) only at the small shares the
README documents ("Unusual patients"); a crafted record triggers each reason on the real reference."""

from __future__ import annotations

import numpy as np
import pytest

from bento.quality import unusual
from bento.quality.unusual import Finding, Reason
from tests.helpers import RECORD, matrix_of
from training import data

# Share of the held-out rows flagged, per reason and in total: the band each must lie in. Measured on the seed-42
# test split (14,964 rows; README): outlier 1.08%, rare category 1.85%, rare code 0.49%, above range 0.05%,
# below range 0, any 3.37%. The outlier's band is around its construction (1% of the training rows).
BANDS = {
    Reason.OUTLIER: (0.005, 0.02),
    Reason.RARE_CATEGORY: (0.005, 0.03),
    Reason.RARE_CODE: (0.001, 0.015),
    Reason.ABOVE_RANGE: (0.0, 0.005),
    Reason.BELOW_RANGE: (0.0, 0.005),
}
ANY = (0.01, 0.05)


@pytest.fixture(scope="module")
def split(uci_zip) -> data.Split:
    return data.split(data.clean(data.load(uci_zip)), seed=42)


@pytest.fixture(scope="module")
def champion_check(uci_zip, local) -> unusual.Check:
    """The check of the champion trained on the real data, as the service loads it."""
    assert local.unusual is not None, "the champion's metadata has no unusual_reference"
    return local.unusual


def test_the_stored_reference_is_the_training_splits(champion_check, split):
    fitted = unusual.Reference.from_training(data.design_matrix(split.train)[0])
    stored = champion_check.reference
    assert stored.ranges == fitted.ranges and stored.rare == fitted.rare
    assert stored.threshold == pytest.approx(fitted.threshold, rel=1e-9)


def test_the_held_out_rows_are_flagged_only_at_the_documented_shares(champion_check, split):
    findings = champion_check.findings(data.design_matrix(split.test)[0])
    shares = {reason: np.mean([any(f.reason is reason for f in row) for row in findings]) for reason in Reason}
    for reason, (low, high) in BANDS.items():
        assert low <= shares[reason] <= high, (reason, shares)
    assert ANY[0] <= np.mean([bool(row) for row in findings]) <= ANY[1]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"number_emergency": 60}, Finding("number_emergency", Reason.ABOVE_RANGE)),
        ({"admission_source_id": 8}, Finding("admission_source_id", Reason.RARE_CODE)),  # court / law enforcement
        ({"medical_specialty": "Dentistry"}, Finding("medical_specialty", Reason.RARE_CATEGORY)),
        ({"number_outpatient": 30, "number_inpatient": 15, "time_in_hospital": 1}, unusual.OUTLIER_FINDING),
    ],
)
def test_a_crafted_record_triggers_each_reason_on_the_real_reference(champion_check, change, expected):
    assert champion_check.findings(matrix_of([RECORD]))[0] == []  # the worked example is a typical patient
    assert expected in champion_check.findings(matrix_of([{**RECORD, **change}]))[0]
