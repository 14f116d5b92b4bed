"""bento/model/explain.py with the tiny model: each patient's factors are clinical fields, largest absolute TreeSHAP
contribution first, as many as asked, shown as a clinician reads them; the per-field contributions of
bento/model/predictor.py add up to the model's margin, each field the sum of its own columns."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from bento import features
from bento.model import explain
from tests.helpers import records

PATIENTS = [features.validate(p) for p in records(8, seed=81)]
MATRIX = features.encode(PATIENTS)


@pytest.mark.parametrize("top", [1, 3, 7])
def test_factors_are_the_top_fields_by_absolute_contribution(tiny, top):
    every = tiny.field_contributions(MATRIX)
    for row, patient, factors in zip(every, PATIENTS, explain.factors(tiny, MATRIX, PATIENTS, top), strict=True):
        assert len(factors) == top
        names = [factor["field"] for factor in factors]
        assert len(set(names)) == top and set(names) <= set(features.FIELDS_BY_NAME)
        sizes = [abs(factor["contribution"]) for factor in factors]
        assert sizes == sorted(sizes, reverse=True)
        largest = np.sort(np.abs(row))[::-1][:top]
        np.testing.assert_allclose(sizes, largest, atol=1e-5)  # no field left out was larger
        for factor in factors:
            f = features.FIELDS_BY_NAME[factor["field"]]
            assert factor["label"] == f.label and factor["value"] == f.display(patient[f.name])
            assert factor["effect"] == ("raises risk" if factor["contribution"] > 0 else "lowers risk")


def test_asking_for_more_factors_than_fields_gives_every_field_once(tiny):
    (factors,) = explain.factors(tiny, MATRIX[:1], PATIENTS[:1], len(features.FIELDS) + 10)
    assert sorted(factor["field"] for factor in factors) == sorted(features.FIELDS_BY_NAME)


def test_top_factors_of_known_contributions():
    contributions = np.zeros(len(features.FIELDS))
    index = {f.name: i for i, f in enumerate(features.FIELDS)}
    contributions[index["number_inpatient"]] = 0.812345678
    contributions[index["age"]] = -1.5
    contributions[index["race"]] = 0.25
    record = {"number_inpatient": 3.0, "age": "[70-80)"}
    factors = explain.top_factors(contributions, record, 3)
    assert [(f["field"], f["contribution"], f["effect"]) for f in factors] == [
        ("age", -1.5, "lowers risk"),
        ("number_inpatient", 0.81235, "raises risk"),
        ("race", 0.25, "raises risk"),
    ]
    assert factors[1]["value"] == "3" and factors[2]["value"] == "not recorded"


def test_field_contributions_add_up_to_the_margin_each_field_the_sum_of_its_columns(tiny):
    every = tiny.booster.predict(xgb.DMatrix(MATRIX), pred_contribs=True)
    columns, bias = every[:, :-1], every[:, -1]
    per_field = tiny.field_contributions(MATRIX)
    margin = tiny.booster.predict(xgb.DMatrix(MATRIX), output_margin=True)
    np.testing.assert_allclose(per_field.sum(axis=1) + bias, margin, atol=1e-4)
    owner = np.array(features.COLUMN_FIELD)
    for i, f in enumerate(features.FIELDS):
        np.testing.assert_allclose(per_field[:, i], columns[:, owner == f.name].sum(axis=1), atol=1e-5)
