"""The unusual-patient check (bento/quality/unusual.py) on a crafted training population: each reason triggered by a
crafted record, nothing for a typical one, the outlier threshold at the training 99th percentile, the single-row
path equal to the batch path, and the reference surviving the model metadata."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from bento import features
from bento.quality import unusual
from bento.quality.unusual import Finding, Reason
from tests.helpers import RECORD, matrix_of, records

ROWS = 2000
# A record like the crafted training rows: its counts in the middle of theirs, medications about twice the days
TYPICAL = {**RECORD, "time_in_hospital": 5, "num_medications": 12, "A1Cresult": ">8"}


def training_records(seed: int = 3) -> list[dict[str, Any]]:
    """ROWS encounters like TYPICAL: days 2-12 with about twice as many medications, a few other counts; one Asian
    patient and one physician referral (admission source 1) among them (0.05% < RARE_SHARE each), no other race or
    source, and every HbA1c above 8 (its default "None" never seen)."""
    rng = random.Random(seed)
    rows = []
    for i in range(ROWS):
        days = rng.randint(2, 12)
        rows.append(
            {
                **TYPICAL,
                "time_in_hospital": days,
                "num_medications": 2 * days + rng.randint(0, 3),
                "num_lab_procedures": rng.randint(20, 60),
                "num_procedures": rng.randint(0, 3),
                "number_outpatient": rng.randint(0, 3),
                "number_emergency": rng.randint(0, 3),
                "number_inpatient": rng.randint(0, 3),
                "number_diagnoses": rng.randint(3, 10),
                "race": "Asian" if i == 0 else "Caucasian",
                "admission_source_id": 1 if i == 1 else 7,
            }
        )
    return rows


@pytest.fixture(scope="module")
def training() -> np.ndarray:
    return matrix_of(training_records())


@pytest.fixture(scope="module")
def check(training) -> unusual.Check:
    return unusual.Check(unusual.Reference.from_training(training))


def findings_of(check: unusual.Check, record: dict[str, Any]) -> list[Finding]:
    return check.findings(matrix_of([record]))[0]


def test_a_typical_record_is_not_unusual(check):
    assert findings_of(check, TYPICAL) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"number_inpatient": 5}, Finding("number_inpatient", Reason.ABOVE_RANGE)),
        ({"time_in_hospital": 1, "num_medications": 4}, Finding("time_in_hospital", Reason.BELOW_RANGE)),
        ({"race": "Asian"}, Finding("race", Reason.RARE_CATEGORY)),  # 1 training row in 2000
        ({"race": "Hispanic"}, Finding("race", Reason.RARE_CATEGORY)),  # never seen
        ({"A1Cresult": "None"}, Finding("A1Cresult", Reason.RARE_CATEGORY)),  # the default: an all-zero one-hot row
        ({"admission_source_id": 1}, Finding("admission_source_id", Reason.RARE_CODE)),
        ({"diag_1": "V45"}, Finding("diag_1", Reason.RARE_CODE)),  # a chapter (supplementary) never seen
    ],
)
def test_each_single_field_reason_is_triggered_by_a_crafted_record(check, change, expected):
    assert findings_of(check, {**TYPICAL, **change}) == [expected]


def test_a_combination_unlike_training_is_an_outlier_though_each_count_is_in_range(check):
    # 12 days with 4 medications: each within its training range, together far from every training row
    assert findings_of(check, {**TYPICAL, "time_in_hospital": 12, "num_medications": 4}) == [unusual.OUTLIER_FINDING]


def test_the_outlier_threshold_is_the_training_99th_percentile(check, training):
    flagged = [unusual.OUTLIER_FINDING in row for row in check.findings(training)]
    assert 0.008 <= np.mean(flagged) <= 0.0105  # 1% by construction (float32 scoring may move a tie)


def test_a_batch_and_its_rows_one_by_one_find_the_same(check):
    patients = [
        *records(30, seed=5),
        TYPICAL,
        {**TYPICAL, "race": "Asian", "number_inpatient": 9, "time_in_hospital": 1, "num_medications": 30},
    ]
    matrix = matrix_of(patients)
    batch = check.findings(matrix)
    assert batch == [check.findings(matrix[i : i + 1])[0] for i in range(len(matrix))]
    assert sum(map(bool, batch)) > 10 and batch[-2] == []  # random records are mostly unusual here, TYPICAL not
    assert set(batch[-1]) == {
        Finding("race", Reason.RARE_CATEGORY),
        Finding("number_inpatient", Reason.ABOVE_RANGE),
        Finding("time_in_hospital", Reason.BELOW_RANGE),
        Finding("num_medications", Reason.ABOVE_RANGE),
        unusual.OUTLIER_FINDING,
    }


def test_missing_values_of_a_v2_matrix_are_not_flagged(check):
    row = matrix_of([TYPICAL])
    row[0, features.COLUMN_INDEX["number_inpatient"]] = np.nan
    row[0, features.COLUMN_INDEX["admission_source_id"]] = np.nan
    assert check.findings(row) == [[]]


def test_the_reference_survives_the_model_metadata(check, training):
    stored = json.loads(json.dumps(check.reference.to_metadata()))
    assert stored["rare_share"] == unusual.RARE_SHARE and stored["outlier_quantile"] == unusual.OUTLIER_QUANTILE
    again = unusual.Check(unusual.Reference.from_metadata(stored))
    assert again.findings(training) == check.findings(training)
    with pytest.raises(ValueError, match="names buckets this spec does not have"):
        unusual.Reference.from_metadata({**stored, "rare": {"race": ["Martian"]}})
    with pytest.raises(ValueError, match="does not list the spec's counts"):
        unusual.Reference.from_metadata({**stored, "ranges": {"age": [0, 1]}})
