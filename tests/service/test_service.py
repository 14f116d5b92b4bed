"""The BentoML service over real HTTP: /predict, batch, explanations, health, errors, metrics."""

import json
import math

import numpy as np
import pytest

from bento import features
from bento.monitoring.metrics import PUBLISH_ROWS
from tests.helpers import RECORD, SEED_EXAMPLE, poll, scrape


def test_seed_example_gets_a_probability_label_band_and_model(client, local):
    answer = client.post("/predict", json=SEED_EXAMPLE)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = float(local.probabilities(features.vector_from_encoded(SEED_EXAMPLE)[None, :])[0])
    assert body["probability"] == pytest.approx(expected, abs=1e-6)
    assert body["label"] == int(expected >= local.info.threshold)
    assert body["risk_band"] == local.band(expected).value
    assert body["model"]["version"] == local.info.version
    assert "factors" not in body


def test_clinical_record_equals_in_process_prediction(client, local):
    body = client.post("/predict", json=RECORD).json()
    expected = float(local.probabilities(features.encode([features.validate(RECORD)]))[0])
    assert body["probability"] == pytest.approx(expected, abs=1e-6)


def test_explanation_lists_the_largest_field_contributions(client, local):
    body = client.post("/predict", params={"explain": "true"}, json=RECORD).json()
    contributions = local.field_contributions(features.encode([features.validate(RECORD)]))[0]
    top = np.argsort(-np.abs(contributions))[:5]
    assert [f["field"] for f in body["factors"]] == [features.FIELDS[i].name for i in top]
    for factor in body["factors"]:
        assert factor["label"] == features.FIELDS_BY_NAME[factor["field"]].label
        assert factor["effect"] == ("raises risk" if factor["contribution"] > 0 else "lowers risk")
    # TreeSHAP is exact: contributions plus the bias add up to the log-odds of the prediction
    row = features.encode([features.validate(RECORD)])
    bias = local.booster.predict(__import__("xgboost").DMatrix(row), pred_contribs=True)[0, -1]
    assert contributions.sum() + bias == pytest.approx(
        math.log(body["probability"] / (1 - body["probability"])), abs=1e-4
    )


def test_batch_matches_single_predictions(client, local):
    patients = [RECORD, SEED_EXAMPLE, RECORD | {"number_inpatient": 6, "age": "[80-90)"}]
    body = client.post("/predict/batch", json=patients).json()
    assert len(body["predictions"]) == 3
    for patient, answer in zip(patients, body["predictions"], strict=True):
        assert answer["probability"] == pytest.approx(
            client.post("/predict", json=patient).json()["probability"], abs=1e-6
        )
    assert body["predictions"][2]["probability"] > body["predictions"][0]["probability"]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/predict", RECORD | {"race": 7}, 400, "race"),
        ("/predict", RECORD | {"number_inpatient": -2}, 400, "number_inpatient"),
        ("/predict", RECORD | {"race": "Martian"}, 400, "race: unknown value"),
        ("/predict", RECORD | {"shoe_size": 44}, 400, "shoe_size: unknown field"),
        ("/predict", {k: v for k, v in RECORD.items() if k != "age"}, 400, "age: is required"),
        ("/predict", SEED_EXAMPLE | {"race_Martian": 1}, 400, "race_Martian: unknown column"),
        ("/predict", [RECORD], 400, "JSON object"),
        ("/predict/batch", [], 400, "empty"),
        ("/predict/batch", [RECORD] * 1001, 400, "limit is 1000"),
        ("/predict/batch", [RECORD, RECORD | {"gender": "X"}], 400, "[1].gender"),
        ("/predict/batch", RECORD, 400, "list of patients"),
    ],
)
def test_bad_input_names_the_field_and_never_500s(client, path, body, status, needle):
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert needle in answer.json()["error"]


def test_nan_and_infinity_are_refused(client):
    for token in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = json.dumps(RECORD)[:-1] + f', "time_in_hospital": {token}}}'
        raw = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert raw.status_code == 400 and "time_in_hospital" in raw.json()["error"]


def test_malformed_json_wrong_type_and_oversized_bodies(client):
    assert client.post("/predict", content=b"{bad", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/predict", content=b"", headers={"content-type": "application/json"}).status_code == 400
    assert (
        client.post(
            "/predict", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}
        ).status_code
        == 415
    )
    nested = b"[" * 100_000 + b"]" * 100_000
    assert client.post("/predict", content=nested, headers={"content-type": "application/json"}).status_code == 400
    big = b'{"x": "' + b"a" * (17 * 1024 * 1024) + b'"}'
    answer = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    digits = b'{"number_inpatient": ' + b"9" * 5000 + b"}"
    assert client.post("/predict", content=digits, headers={"content-type": "application/json"}).status_code == 400


def test_explain_flag_is_validated(client):
    assert client.post("/predict", params={"explain": "maybe"}, json=RECORD).status_code == 400


@pytest.mark.parametrize("path", ["/health", "/livez", "/readyz", "/healthz", "/v2/health/live", "/v2/health/ready"])
def test_health_endpoints_answer_200_when_the_model_is_loaded(client, path):
    assert client.get(path).status_code == 200


def test_health_names_the_model(client, local):
    assert client.get("/health").json()["model"]["version"] == local.info.version


def _series(text: str, name: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
    }


def test_metrics_count_predictions_and_refusals_with_bounded_labels(client, service):
    before = sum(_series(scrape(service), "readmission_predictions_total").values())
    client.post("/predict/batch", json=[RECORD] * PUBLISH_ROWS)  # published with the rows pending before (< 20)
    client.get("/some/random/path/12345")
    client.post("/v2/models/no-such-model-xyz/infer", json={"inputs": []})
    client.post("/predict", json=RECORD | {"race": "Martian"})

    def published() -> str | None:
        text = scrape(service)
        counted = sum(_series(text, "readmission_predictions_total").values()) - before
        assert counted < 2 * PUBLISH_ROWS
        return text if counted >= PUBLISH_ROWS and "unknown_model" in text else None

    text = poll(published, 10, "the predictions and refusals counted")
    assert "12345" not in text and "no-such-model-xyz" not in text
    assert 'endpoint="/v2/models/{model}/infer"' in text
    failures = _series(text, "readmission_validation_failures_total")
    assert failures['readmission_validation_failures_total{endpoint="/predict",reason="invalid_value"}'] >= 1
    assert (
        failures['readmission_validation_failures_total{endpoint="/v2/models/{model}/infer",reason="unknown_model"}']
        >= 1
    )
    assert "readmission_predicted_probability_bucket" in text
    assert "readmission_model_info{" in text
    assert 'readmission_training_score_share{le="1.0"} 1.0' in text
    processes = _series(text, "readmission_process_")
    assert processes["readmission_process_count"] >= 2  # BentoML's supervisor and its worker
    assert processes["readmission_process_resident_memory_bytes"] > 50e6
    assert processes["readmission_process_cpu_seconds_total"] > 0


def test_openapi_document_covers_every_route(client):
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert {"/predict", "/predict/batch", "/v2/models/{model}/infer", "/v2/health/ready"} <= set(paths)
    record = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    assert record == {"$ref": "#/components/schemas/PatientRecord"}
    race = document["components"]["schemas"]["PatientRecord"]["properties"]["race"]
    assert "Caucasian" in race["anyOf"][0]["enum"]


def test_no_access_log_unless_asked_for(client, service):
    """BentoML's access log is off by default (READMISSION_ACCESS_LOG; tests/service/test_auth.py turns it on)."""
    assert client.post("/predict", json=SEED_EXAMPLE).status_code == 200
    assert client.get("/no/such/path").status_code == 404
    assert "scheme=http" not in service.log_text() and "path=/predict" not in service.log_text()
