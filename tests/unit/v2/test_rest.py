"""V2 over REST in-process (bento/v2/rest.py through bento/server/app.py over the tiny model): server and model
metadata and readiness, infer in JSON and in the binary tensor data extension with the model's own outputs, 404 for
another model or version, 4xx bodies naming the input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bento.v2 import inference
from tests.helpers import (
    HEADER,
    INFER,
    MODEL,
    binary_matrix,
    decode_binary_response,
    field_request,
    matrix_of,
    matrix_request,
    records,
)

PATIENTS = records(5, seed=41)
MATRIX = matrix_of(PATIENTS)


def test_server_metadata_liveness_and_readiness(app):
    assert app.get("/v2").json() == inference.server_metadata()
    assert (app.get("/v2/health/live").status_code, app.get("/v2/health/live").json()) == (200, {"live": True})
    assert app.get("/v2/health/ready").json() == {"ready": True}
    assert app.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    app.app.state.core.draining = True
    assert app.get("/v2/health/ready").status_code == 503
    assert app.get(f"/v2/models/{MODEL}/versions/1/ready").json() == {"name": MODEL, "ready": False}


def test_model_metadata_by_name_and_version(app, tiny):
    core = app.app.state.core
    metadata = inference.model_metadata(core.settings, tiny)
    assert app.get(f"/v2/models/{MODEL}").json() == metadata
    assert app.get(f"/v2/models/{MODEL}/versions/1").json() == metadata


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/v2/models/other", "model 'other' is not served here; this server serves 'readmission'"),
        (f"/v2/models/{MODEL}/versions/2", "model 'readmission' has no version '2'; served: 1"),
        ("/v2/models/other/ready", "model 'other' is not served here"),
    ],
)
def test_another_model_or_version_is_404(app, path, says):
    answer = app.get(path)
    assert answer.status_code == 404 and answer.json()["error"].startswith(says)
    assert app.post("/v2/models/other/infer", json=matrix_request(MATRIX)).status_code == 404


@pytest.mark.parametrize("form", ["matrix", "fields"])
def test_infer_in_json_answers_the_models_outputs(app, tiny, form):
    request = matrix_request(MATRIX, id="req-7") if form == "matrix" else {**field_request(PATIENTS), "id": "req-7"}
    answer = app.post(f"/v2/models/{MODEL}/versions/1/infer", json=request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (MODEL, "1", "req-7")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert list(outputs) == ["probability", "label", "prediction_id"]
    probabilities = tiny.probabilities(MATRIX)
    assert outputs["probability"]["data"] == probabilities.tolist()  # float32, exactly
    assert outputs["label"]["data"] == tiny.labels(probabilities).tolist()
    assert all(o["shape"] == [5] for o in outputs.values())
    assert len(set(outputs["prediction_id"]["data"])) == 5


def test_infer_in_binary_answers_in_binary(app, tiny):
    raw, headers = binary_matrix(MATRIX, parameters={"binary_data_output": True})
    answer = app.post(INFER, content=raw, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    header, arrays = decode_binary_response(answer)
    assert int(answer.headers[HEADER]) < len(answer.content)
    probabilities = tiny.probabilities(MATRIX)
    np.testing.assert_array_equal(arrays["probability"], probabilities)
    np.testing.assert_array_equal(arrays["label"], tiny.labels(probabilities))
    assert len(set(arrays["prediction_id"].tolist())) == 5
    assert all("data" not in o for o in header["outputs"])


def test_outputs_asked_for_come_in_their_order_each_binary_where_it_asks(app, tiny):
    outputs = [{"name": "label", "parameters": {"binary_data": True}}, {"name": "probability"}]
    answer = app.post(INFER, json=matrix_request(MATRIX, outputs=outputs))
    header, arrays = decode_binary_response(answer)
    assert [o["name"] for o in header["outputs"]] == ["label", "probability"]
    probabilities = tiny.probabilities(MATRIX)
    np.testing.assert_array_equal(arrays["label"], tiny.labels(probabilities))
    assert header["outputs"][1]["data"] == probabilities.tolist()


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (matrix_request(MATRIX[:, :-1]), "input input-0: shape must be [N, "),
        (matrix_request(MATRIX, datatype="INT64"), "input input-0: "),
        (matrix_request(MATRIX, outputs=[{"name": "logit"}]), "output 'logit' does not exist"),
        (field_request([{**PATIENTS[0], "age": "[200-210)"}]), "input age row 0: "),
        (matrix_request(MATRIX[:3]) | {"inputs": []}, "inputs: must be a non-empty list"),
        (matrix_request(np.vstack([MATRIX] * 2)), "the request holds 10 rows; the limit is 8"),
    ],
)
def test_infer_refusals_are_400_naming_the_input(serve, request_, says):
    answer = serve(max_infer_rows=8).post(INFER, json=request_)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]


def test_a_binary_body_over_the_limit_is_413_and_a_bad_header_length_400(serve):
    client = serve(max_body_bytes=4096)
    raw, headers = binary_matrix(np.vstack([MATRIX] * 2))  # 10 rows of float32: over 4 KiB
    large = client.post(INFER, content=raw, headers=headers)
    assert large.status_code == 413 and large.headers["connection"] == "close"
    raw, headers = binary_matrix(MATRIX[:1])
    bad = client.post(INFER, content=raw, headers={**headers, HEADER: "x"})
    assert bad.status_code == 400 and "inference-header-content-length 'x'" in bad.json()["error"]


def test_the_unusual_output_comes_only_when_asked_for_as_predict_says_it(serve, old_model):
    app = serve()
    patients = [*PATIENTS, {**PATIENTS[0], "number_emergency": 100}]
    asked = app.post(INFER, json=field_request(patients) | {"outputs": [{"name": "unusual"}, {"name": "label"}]})
    assert asked.status_code == 200, asked.text
    outputs = {o["name"]: o for o in asked.json()["outputs"]}
    assert list(outputs) == ["unusual", "label"] and outputs["unusual"]["datatype"] == "BYTES"
    predicted = app.post("/predict/batch", json=patients).json()["predictions"]
    assert [json.loads(text) for text in outputs["unusual"]["data"]] == [p["unusual"] for p in predicted]
    assert any(p["unusual"] for p in predicted)
    names = [o["name"] for o in app.post(INFER, json=field_request(patients)).json()["outputs"]]
    assert names == list(inference.OUTPUTS) and "unusual" not in names  # clients naming no output see no change
    optional = app.get(f"/v2/models/{MODEL}").json()["parameters"]["optional_outputs"]
    assert optional == [{"name": "unusual", "datatype": "BYTES", "shape": [-1]}]
    old = serve(model=old_model)
    refused = old.post(INFER, json=matrix_request(MATRIX, outputs=[{"name": "unusual"}]))
    assert refused.status_code == 400 and "has no unusual-patient check" in refused.json()["error"]
    assert "optional_outputs" not in old.get(f"/v2/models/{MODEL}").json()["parameters"]
