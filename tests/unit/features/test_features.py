import math

import numpy as np
import pytest

from bento import features
from bento.features import icd9
from tests.helpers import RECORD, SEED_EXAMPLE


def test_every_raw_field_of_the_data_is_specified():
    names = {f.name for f in features.FIELDS}
    assert len(features.MEDICATIONS) == 23
    assert set(features.MEDICATIONS) <= names
    assert {"race", "gender", "age", "weight", "admission_type_id", "discharge_disposition_id", "admission_source_id",
            "time_in_hospital", "payer_code", "medical_specialty", "num_lab_procedures", "num_procedures",
            "num_medications", "number_outpatient", "number_emergency", "number_inpatient", "diag_1", "diag_2",
            "diag_3", "number_diagnoses", "max_glu_serum", "A1Cresult", "change", "diabetesMed"} <= names  # fmt: skip
    assert all(f.label for f in features.FIELDS)


def test_one_hot_columns_use_the_seed_naming():
    for column in (
        "race_Caucasian",
        "age_[50-60)",
        "A1Cresult_>8",
        "A1Cresult_Norm",
        "insulin_Up",
        "diag_1_circulatory",
    ):
        assert column in features.COLUMN_INDEX
    # the default value of a field with one is the all-zero encoding, so it has no column
    assert "insulin_No" not in features.COLUMN_INDEX
    assert "A1Cresult_None" not in features.COLUMN_INDEX
    assert len(set(features.COLUMNS)) == len(features.COLUMNS)


def test_seed_encoded_example_is_accepted_and_decodes_to_the_record_it_describes():
    row = features.vector_from_encoded(SEED_EXAMPLE)
    record = features.decode(row)
    assert record["race"] == "Caucasian"
    assert record["age"] == "[50-60)"
    assert record["A1Cresult"] == "Norm"
    assert record["admission_type_id"] == 2
    assert record["insulin"] == "No"  # not given: the default
    assert record["gender"] is None  # not given, no default: missing
    assert math.isnan(row[features.COLUMN_INDEX["diag_1_code"]])


def test_record_round_trips_through_the_encoding():
    parsed = features.validate(RECORD)
    row = features.encode([parsed])[0]
    decoded = features.decode(row)
    for name, value in parsed.items():
        if name == "diag_3":
            assert decoded[name] is None  # a V code has no numeric part to recover
        else:
            assert decoded[name] == value, name
    again = features.encode([features.validate(decoded | {"diag_3": "V45"})])
    assert np.array_equal(again, features.encode([parsed]), equal_nan=True)


def test_clinical_and_encoded_forms_give_the_same_vector():
    parsed = features.validate(RECORD)
    row = features.encode([parsed])[0]
    encoded = {c: float(v) for c, v in zip(features.COLUMNS, row, strict=True) if not math.isnan(v)}
    assert np.array_equal(features.vector_from_encoded(encoded), row, equal_nan=True)


def test_defaults_fill_medications_and_labs():
    parsed = features.validate({k: v for k, v in RECORD.items() if k not in ("insulin", "A1Cresult")})
    assert parsed["insulin"] == "No"
    assert parsed["A1Cresult"] == "None"
    assert parsed["weight"] is None


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"age": None}, "age", "required"),
        ({"race": "Martian"}, "race", "unknown value"),
        ({"number_inpatient": -1}, "number_inpatient", "outside the range"),
        ({"number_inpatient": float("nan")}, "number_inpatient", "finite"),
        ({"number_inpatient": float("inf")}, "number_inpatient", "finite"),
        ({"number_inpatient": 1.5}, "number_inpatient", "whole number"),
        ({"number_inpatient": "2"}, "number_inpatient", "must be a number"),
        ({"number_inpatient": True}, "number_inpatient", "must be a number"),
        ({"admission_type_id": 99}, "admission_type_id", "unknown code"),
        ({"diag_1": 428}, "diag_1", "ICD-9"),
        ({"diag_1": "X12"}, "diag_1", "ICD-9"),
        ({"discharge_disposition_id": 11}, "discharge_disposition_id", "death or hospice"),
        ({"favourite_colour": "blue"}, "favourite_colour", "unknown field"),
    ],
)
def test_invalid_values_name_the_field_and_the_reason(change, field, reason):
    with pytest.raises(features.FieldError) as caught:
        features.validate(RECORD | change)
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"race_Martian": 1.0}, "race_Martian"),
        ({"race_Asian": 1.0}, "race"),  # two one-hot columns of one field
        ({"age_[50-60)": 0.5}, "age_[50-60)"),
        ({"number_inpatient": -3.0}, "number_inpatient"),
        ({"discharge_disposition_id": 13.0}, "discharge_disposition_id"),
        ({"diag_1_code": 1200.0}, "diag_1_code"),
    ],
)
def test_invalid_encoded_rows_name_the_column(change, field):
    with pytest.raises(features.FieldError) as caught:
        features.vector_from_encoded(SEED_EXAMPLE | change)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("code", "group"),
    [("428", "circulatory"), ("250.83", "diabetes"), ("786", "respiratory"), ("V57", "supplementary"),
     ("E885", "supplementary"), ("38", "infectious"), ("820", "injury"), ("715", "musculoskeletal")],
)  # fmt: skip
def test_icd9_codes_fall_into_their_chapter(code, group):
    assert icd9.is_valid(code)
    assert icd9.group(code) == group


def test_spec_hash_is_stable_and_short():
    assert features.spec_hash() == features.spec_hash()
    assert len(features.spec_hash()) == 16
