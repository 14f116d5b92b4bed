"""bento/features/checks.py: the quick test of small matrices accepts only what the full check accepts, accepts the
valid matrices clients send (missing values included), and a refusal names the same row, column and reason."""

from __future__ import annotations

import numpy as np
import pytest

from bento import features
from bento.features import checks
from bento.features.spec import COLUMN_INDEX
from tests.helpers import matrix_of, records

RULES = checks._RULES
NAN_OK = [COLUMN_INDEX[f.name] for f in features.FIELDS if f.kind in (features.Kind.NUMBER, features.Kind.CODE)]
# values at the edges of every rule: bounds, infinities, signed zeros, fractions near 0 and 1, codes and non-codes
VALUES = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 0.5, 2.0, -1.0, 1e-30, 1 - 2**-24, 1 + 2**-23, 1e30, 3.4e38,
          5.0, 13.0, 18.0, 30.0, 31.0, 1.5, 999.99, 1000.0]  # fmt: skip


def full_error(matrix: np.ndarray) -> str | None:
    try:
        checks._check_in_full(matrix)
    except features.FieldError as error:
        return f"{error.field}: {error.reason}"
    return None


def test_valid_matrices_pass_the_quick_test_missing_values_included():
    rng = np.random.default_rng(3)
    for rows in (1, 2, 8, checks.QUICK_ROWS):
        matrix = matrix_of(records(rows, seed=rows))
        assert full_error(matrix) is None and checks._passes(matrix)
        missing = matrix.copy()
        missing[rng.integers(0, rows, 5), rng.choice(NAN_OK, 5)] = np.nan
        assert full_error(missing) is None and checks._passes(missing)


def test_the_quick_test_never_passes_what_the_full_check_refuses():
    rng = np.random.default_rng(7)
    base = matrix_of(records(8, seed=11))
    refused = 0
    for _ in range(3000):
        matrix = base[: rng.integers(1, 9)].copy()
        for _ in range(rng.integers(1, 4)):
            row, column = rng.integers(0, len(matrix)), rng.integers(0, matrix.shape[1])
            matrix[row, column] = VALUES[rng.integers(0, len(VALUES))]
        error = full_error(matrix)
        refused += error is not None
        if checks._passes(matrix):
            assert error is None, (error, matrix)
    assert refused > 1000  # the corruptions reach every rule


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("time_in_hospital", np.inf, "row 0 column time_in_hospital: inf is outside the column's range"),
        ("race_Asian", 1.0, "row 0 field race: more than one of its one-hot columns is 1"),
        ("race_Asian", 0.5, "row 0 column race_Asian: must be 0 or 1 (one-hot)"),
        ("race_Asian", np.nan, "row 0 column race_Asian: must be 0 or 1 (one-hot)"),
        ("admission_type_id", 2.5, "row 0 column admission_type_id: 2.5 is not an allowed code"),
        ("discharge_disposition_id", 13.0, "row 0 column discharge_disposition_id: 13 is outside the model's scope"),
    ],
)
def test_a_refusal_names_the_first_offence_as_the_full_check_does(column, value, says):
    matrix = matrix_of(records(1, seed=5))
    matrix[0, [i for name, i in COLUMN_INDEX.items() if name.startswith("race_")]] = 0.0
    matrix[0, COLUMN_INDEX["race_Caucasian"]] = 1.0
    matrix[0, COLUMN_INDEX[column]] = value
    with pytest.raises(features.FieldError) as caught:
        checks.check_matrix(matrix)
    assert f"{caught.value.field}: {caught.value.reason}" == says == full_error(matrix)
