"""Unusual patients in the answers, in-process over the tiny model: `/predict` and `/predict/batch` say why a record
lies outside the training data, the probability is the same with the check as without it (a model trained before
it: no `unusual` in the answers, `/health` says the check is off), and the metric counts flagged rows by reason,
held back like every series that moves with a patient."""

from __future__ import annotations

from prometheus_client import REGISTRY

from bento.monitoring import metrics
from bento.openapi import schemas
from bento.quality import unusual
from tests.helpers import RECORD, matrix_of, records

BEYOND = {**RECORD, "number_emergency": 100}  # the tiny model's training rows have at most 30


def flagged_total(reason: unusual.Reason) -> float:
    return REGISTRY.get_sample_value("readmission_unusual_rows_total", {"reason": reason.value}) or 0.0


def test_predict_says_which_field_lies_beyond_the_training_range(app):
    body = app.post("/predict", json=BEYOND).json()
    assert {"field": "number_emergency", "reason": "above_training_range"} in body["unusual"]


def test_each_answer_of_a_batch_holds_its_own_rows_findings(app, tiny):
    patients = [*records(12, seed=8), BEYOND]
    answers = app.post("/predict/batch", json=patients).json()["predictions"]
    expected = [[f.as_json() for f in row] for row in tiny.unusual.findings(matrix_of(patients))]
    assert [a["unusual"] for a in answers] == expected
    assert [] in expected and any(expected)  # the batch holds both kinds


def test_the_probability_is_the_same_with_the_check_and_without_it(serve, old_model):
    patients = [*records(12, seed=9), BEYOND]
    checked = serve().post("/predict/batch", json=patients).json()["predictions"]
    old = serve(model=old_model)
    unchecked = old.post("/predict/batch", json=patients).json()["predictions"]
    assert [a["probability"] for a in checked] == [a["probability"] for a in unchecked]
    assert all("unusual" in a for a in checked) and not any("unusual" in a for a in unchecked)
    assert old.get("/health").json()["unusual_check"] == "off"


def test_flagged_rows_are_counted_by_reason_in_steps_of_publish_rows(tiny):
    pending = metrics.PendingPredictions()  # the flagged rows are held back with the predictions they belong to
    matrix = matrix_of([BEYOND])
    probabilities, flagged = tiny.probabilities(matrix), tiny.unusual.findings(matrix)
    labels = tiny.labels(probabilities)
    before = flagged_total(unusual.Reason.ABOVE_RANGE)
    for _ in range(metrics.PUBLISH_ROWS - 1):
        pending.add("held-back-test", probabilities, labels, flagged)
    assert flagged_total(unusual.Reason.ABOVE_RANGE) == before  # held back: 19 rows could isolate a patient
    pending.add("held-back-test", probabilities, labels, flagged)
    assert flagged_total(unusual.Reason.ABOVE_RANGE) == before + metrics.PUBLISH_ROWS


def test_the_scoring_cores_batches_reach_the_metric(app):
    before = flagged_total(unusual.Reason.ABOVE_RANGE)
    rows = 2 * metrics.PUBLISH_ROWS  # publishes whatever earlier tests left pending with these
    assert app.post("/predict/batch", json=[BEYOND] * rows).status_code == 200
    assert before + rows <= flagged_total(unusual.Reason.ABOVE_RANGE) < before + rows + metrics.PUBLISH_ROWS


def test_the_document_declares_the_findings_and_the_answers_fit_it(app):
    components = app.get("/openapi.json").json()["components"]["schemas"]
    assert components["Prediction"]["properties"]["unusual"]["items"] == {"$ref": "#/components/schemas/UnusualFinding"}
    assert components["UnusualFinding"]["properties"]["reason"]["enum"] == [r.value for r in unusual.Reason]
    assert components["Health"]["properties"]["unusual_check"]
    answer = schemas.PredictionAnswer.model_validate(app.post("/predict", json=BEYOND).json())
    assert ("number_emergency", "above_training_range") in [(f.field, f.reason) for f in answer.unusual]
