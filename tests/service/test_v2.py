"""The Open Inference Protocol (KServe V2 REST) over real HTTP: metadata, health, inference, errors."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from bento import features
from bento.model.predictor import Predictor
from bento.settings import ServiceSettings
from tests.helpers import (
    FIELD_DATATYPES,
    HEADER,
    INFER,
    MODEL,
    RECORD,
    SEED_EXAMPLE,
    WIDTH,
    binary_body,
    binary_matrix,
    decode_binary_response,
    field_request,
    matrix_of,
    matrix_request,
    poll,
    records,
    scrape,
    workers_of,
)


def two_rows() -> np.ndarray:
    """The seed's encoded example and the clinical RECORD, as a [2, 263] float32 matrix."""
    return np.vstack([features.vector_from_encoded(SEED_EXAMPLE)[None, :], matrix_of([RECORD])])


def outputs_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


def assert_predictions(body: dict[str, Any], local: Predictor, matrix: np.ndarray) -> None:
    expected = local.probabilities(matrix)
    outputs = outputs_of(body)
    assert outputs["probability"]["datatype"] == "FP32"
    assert outputs["probability"]["shape"] == [len(matrix)]
    assert outputs["label"]["datatype"] == "INT64"
    np.testing.assert_allclose(outputs["probability"]["data"], expected, atol=1e-6)
    assert outputs["label"]["data"] == local.labels(expected).tolist()


# --- metadata and health -----------------------------------------------------------------------


def test_server_metadata_is_a_200_at_v2_without_a_redirect(client):
    answer = client.get("/v2", follow_redirects=False)
    assert answer.status_code == 200, (answer.status_code, answer.headers)
    body = answer.json()
    assert body["name"] and isinstance(body["version"], str)
    assert "binary_tensor_data" in body["extensions"]


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"])
def test_liveness_and_readiness_are_200(client, path):
    assert client.get(path, follow_redirects=False).status_code == 200


def test_model_metadata_lists_every_input_and_output(client, local):
    answer = client.get(f"/v2/models/{MODEL}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["name"] == MODEL
    assert local.info.version in body["versions"]
    assert body["platform"]
    for tensor in body["inputs"] + body["outputs"]:
        assert {"name", "datatype", "shape"} <= set(tensor)
        assert isinstance(tensor["shape"], list) and all(isinstance(d, int) for d in tensor["shape"])
    inputs = {t["name"]: t for t in body["inputs"]}
    assert inputs["input-0"]["shape"] == [-1, WIDTH]
    assert inputs["input-0"]["datatype"] == "FP32"
    for f in features.FIELDS:
        assert inputs[f.name]["datatype"] == FIELD_DATATYPES[f.kind]
    assert {t["name"]: t["datatype"] for t in body["outputs"]} == {
        "probability": "FP32",
        "label": "INT64",
        "prediction_id": "BYTES",
    }
    assert body["parameters"]["columns"] == list(features.COLUMNS)


def test_version_paths_answer_for_the_served_version_only(client, local):
    version = local.info.version
    base = f"/v2/models/{MODEL}/versions"
    assert client.get(f"{base}/{version}").json()["name"] == MODEL
    assert client.get(f"{base}/{version}/ready").status_code == 200
    answer = client.post(f"{base}/{version}/infer", json=matrix_request(two_rows()))
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    for path in (f"{base}/999999", f"{base}/999999/ready"):
        missing = client.get(path)
        assert missing.status_code == 404 and "999999" in missing.json()["error"]
    missing = client.post(f"{base}/999999/infer", json=matrix_request(two_rows()))
    assert missing.status_code == 404 and "999999" in missing.json()["error"]


# --- inference -----------------------------------------------------------------------------------


def test_fp32_flat_data_equals_in_process_predictions(client, local):
    matrix = two_rows()
    answer = client.post(INFER, json=matrix_request(matrix))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == MODEL and body["model_version"] == local.info.version
    assert_predictions(body, local, matrix)


def test_fp32_nested_data_is_accepted(client, local):
    matrix = two_rows()
    request = matrix_request(matrix)
    request["inputs"][0]["data"] = [[None if np.isnan(v) else float(v) for v in row] for row in matrix.tolist()]
    answer = client.post(INFER, json=request)
    assert answer.status_code == 200, answer.text
    assert_predictions(answer.json(), local, matrix)


def test_fp64_is_accepted(client, local):
    matrix = two_rows()
    answer = client.post(INFER, json=matrix_request(matrix, "FP64"))
    assert answer.status_code == 200, answer.text
    assert_predictions(answer.json(), local, matrix)


@pytest.mark.parametrize("shape_2d", [False, True])
def test_per_field_pd_form_with_bytes_equals_in_process_predictions(client, local, shape_2d):
    patients = [RECORD, RECORD | {"number_inpatient": 6, "age": "[80-90)", "race": None}, *records(3)]
    answer = client.post(INFER, json=field_request(patients, shape_2d))
    assert answer.status_code == 200, answer.text
    assert_predictions(answer.json(), local, matrix_of(patients))


def test_output_selection_returns_only_the_label(client, local):
    matrix = two_rows()
    answer = client.post(INFER, json=matrix_request(matrix, outputs=[{"name": "label"}]))
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert [o["name"] for o in outputs] == ["label"]
    assert outputs[0]["data"] == local.labels(local.probabilities(matrix)).tolist()


def test_request_id_is_echoed(client):
    answer = client.post(INFER, json=matrix_request(two_rows(), id="req-42/ä"))
    assert answer.json()["id"] == "req-42/ä"
    assert "id" not in client.post(INFER, json=matrix_request(two_rows())).json()


def test_a_thousand_rows_in_one_request(client, local):
    matrix = matrix_of(records(1000))
    answer = client.post(INFER, json=matrix_request(matrix))
    assert answer.status_code == 200, answer.text
    assert_predictions(answer.json(), local, matrix)


def complete_rows(count: int) -> np.ndarray:
    """`count` encoded rows with no missing value (JSON null sends a body to the strict parser)."""
    matrix = matrix_of(records(3 * count, seed=23))
    return matrix[~np.isnan(matrix).any(axis=1)][:count]


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_a_thousand_json_rows_score_exactly_as_their_binary_form(client, nested):
    """Large JSON bodies take simdjson's path (bento/v2/json_tensors.py): the same float32 rows as binary data."""
    matrix = complete_rows(1000)
    request = matrix_request(matrix)
    if nested:
        request["inputs"][0]["data"] = matrix.tolist()
    from_json = client.post(INFER, json=request)
    body, headers = binary_matrix(matrix)
    from_binary = client.post(INFER, content=body, headers=headers)
    assert from_json.status_code == from_binary.status_code == 200, from_json.text
    assert len(matrix) == len(outputs_of(from_json.json())["probability"]["data"]) == 1000
    assert outputs_of(from_json.json())["probability"] == outputs_of(from_binary.json())["probability"]


def minor_faults(pid: int) -> int:
    """Pages a process has touched for the first time since it started (minor faults, /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_a_thousand_json_rows_touch_few_fresh_pages_of_the_worker(client, service, figure):
    """The worker keeps freed memory for the next request (bento/server/allocator.py): with the C library's
    defaults each 1,000-row JSON request faulted about 2,000 fresh pages (sent one at a time; 3,000 at 8
    connections, 40% of the request's CPU)."""
    raw = json.dumps(matrix_request(complete_rows(1000))).encode()
    (worker,) = workers_of(service)
    for _ in range(3):  # the first requests grow the heap to what such a request needs
        assert client.post(INFER, content=raw, headers={"content-type": "application/json"}).status_code == 200
    before = minor_faults(worker)
    for _ in range(20):
        assert client.post(INFER, content=raw, headers={"content-type": "application/json"}).status_code == 200
    faults = (minor_faults(worker) - before) / 20
    figure("fresh pages a 1,000-row JSON request faults in the worker", round(faults))
    assert faults < 500, faults


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinity_in_a_thousand_json_rows_is_400_naming_the_cell(client, value):
    request = matrix_request(complete_rows(1000))
    request["inputs"][0]["data"][500 * WIDTH + features.COLUMN_INDEX["time_in_hospital"]] = value
    raw = json.dumps(request).encode()  # Infinity: what Python's json writes, and the strict parser reads
    answer = client.post(INFER, content=raw, headers={"content-type": "application/json"})
    refused(answer, 400, f"input input-0 row 500 column time_in_hospital: {value:g} is outside the column's range")


def test_binary_tensor_input_with_json_output(client, local):
    matrix = matrix_of(records(50, seed=3))
    body, headers = binary_matrix(matrix)
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert_predictions(answer.json(), local, matrix)


def test_binary_tensor_output_decodes_to_the_same_predictions(client, local):
    matrix = matrix_of(records(40, seed=5))
    body, headers = binary_matrix(
        matrix,
        outputs=[{"name": "probability", "parameters": {"binary_data": True}}, {"name": "label"}],
    )
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    header, arrays = decode_binary_response(answer)
    outputs = outputs_of(header)
    assert outputs["probability"]["parameters"]["binary_data_size"] == 4 * len(matrix)
    assert "data" not in outputs["probability"]
    expected = local.probabilities(matrix)
    np.testing.assert_allclose(arrays["probability"], expected, atol=1e-6)
    assert outputs["label"]["data"] == local.labels(expected).tolist()


def test_binary_data_output_parameter_makes_every_output_binary(client, local):
    matrix = two_rows()
    answer = client.post(INFER, json=matrix_request(matrix, parameters={"binary_data_output": True}))
    assert answer.status_code == 200, answer.text
    _, arrays = decode_binary_response(answer)
    expected = local.probabilities(matrix)
    np.testing.assert_allclose(arrays["probability"], expected, atol=1e-6)
    assert arrays["label"].tolist() == local.labels(expected).tolist()


def test_binary_bytes_tensors_in_the_pd_form(client, local):
    patients = [RECORD, *records(2, seed=9)]
    request = field_request(patients)
    chunks = []
    for tensor in request["inputs"]:
        if tensor["datatype"] == "BYTES":
            values = [(v or "").encode() for v in tensor.pop("data")]  # empty: missing
            chunk = b"".join(struct.pack("<I", len(v)) + v for v in values)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
    body, headers = binary_body(request, chunks)
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert_predictions(answer.json(), local, matrix_of(patients))


def test_nan_in_a_numeric_column_means_missing(client, local):
    matrix = two_rows()
    matrix[0, features.COLUMN_INDEX["num_lab_procedures"]] = np.nan
    body, headers = binary_matrix(matrix)
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert_predictions(answer.json(), local, matrix)


# --- errors: each a 4xx naming the input or field --------------------------------------------------


def refused(answer: httpx.Response, status: int, *needles: str) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text)
    message = answer.json()["error"]
    for needle in needles:
        assert needle in message, message
    return message


def test_unknown_model_is_404(client):
    refused(client.post("/v2/models/nope/infer", json=matrix_request(two_rows())), 404, "nope")
    refused(client.get("/v2/models/nope"), 404, "nope")
    refused(client.get("/v2/models/nope/ready"), 404, "nope")


def test_wrong_shape(client):
    request = matrix_request(two_rows())
    request["inputs"][0]["shape"] = [WIDTH, 2]
    refused(client.post(INFER, json=request), 400, "input-0", "shape")


def test_wrong_column_count(client):
    matrix = two_rows()[:, :-1]
    refused(client.post(INFER, json=matrix_request(matrix)), 400, "input-0", f"[N, {WIDTH}]")


@pytest.mark.parametrize("datatype", ["INT32", "BYTES"])
def test_wrong_datatype(client, datatype):
    request = matrix_request(np.zeros((1, WIDTH), dtype=np.float32), datatype)
    if datatype == "BYTES":
        request["inputs"][0]["data"] = ["0"] * WIDTH
    else:
        request["inputs"][0]["data"] = [0] * WIDTH
    refused(client.post(INFER, json=request), 400, "input-0", datatype)


def test_data_length_not_matching_the_shape(client):
    request = matrix_request(two_rows())
    request["inputs"][0]["data"] = request["inputs"][0]["data"][:-1]
    refused(client.post(INFER, json=request), 400, "input-0", str(2 * WIDTH))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinity_in_fp32_binary_data(client, value):
    matrix = two_rows()
    matrix[1, features.COLUMN_INDEX["time_in_hospital"]] = value
    body, headers = binary_matrix(matrix)
    refused(client.post(INFER, content=body, headers=headers), 400, "input-0", "row 1", "time_in_hospital", "inf")


def test_nan_in_a_one_hot_column_via_binary(client):
    matrix = two_rows()
    matrix[0, features.COLUMN_INDEX["race_Caucasian"]] = np.nan
    body, headers = binary_matrix(matrix)
    refused(client.post(INFER, content=body, headers=headers), 400, "input-0", "row 0", "race_Caucasian")


def test_one_hot_column_of_one_half(client):
    matrix = two_rows()
    matrix[1, features.COLUMN_INDEX["race_Caucasian"]] = 0.5
    refused(client.post(INFER, json=matrix_request(matrix)), 400, "input-0", "row 1", "race_Caucasian", "0 or 1")


def test_binary_header_longer_than_the_body(client):
    body, headers = binary_matrix(two_rows())
    headers[HEADER] = str(len(body) + 1)
    refused(client.post(INFER, content=body, headers=headers), 400, HEADER.lower())


@pytest.mark.parametrize("value", ["-5", "abc", "²", "1e3", ""])
def test_binary_header_that_is_not_a_length(client, value):
    body, headers = binary_matrix(two_rows())
    sent = {**headers, HEADER: value.encode("latin-1")}  # bytes: httpx sends str header values as ASCII only
    refused(client.post(INFER, content=body, headers=sent), 400, HEADER.lower())


def test_binary_data_size_larger_than_the_data(client):
    matrix = two_rows()
    chunk = matrix.astype("<f4").tobytes()
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [2, WIDTH], "parameters": {"binary_data_size": 99999}}
    body, headers = binary_body({"inputs": [tensor]}, [chunk])
    refused(client.post(INFER, content=body, headers=headers), 400, "input-0", "binary_data_size")


def test_binary_data_size_leaving_bytes_over(client):
    matrix = two_rows()
    chunk = matrix.astype("<f4").tobytes()
    tensor = {
        "name": "input-0",
        "datatype": "FP32",
        "shape": [2, WIDTH],
        "parameters": {"binary_data_size": len(chunk)},
    }
    body, headers = binary_body({"inputs": [tensor]}, [chunk, b"\0\0\0\0"])
    refused(client.post(INFER, content=body, headers=headers), 400, "4 bytes")


def test_binary_data_size_not_matching_the_shape(client):
    matrix = two_rows()
    chunk = matrix.astype("<f4").tobytes()[:-4]
    tensor = {
        "name": "input-0",
        "datatype": "FP32",
        "shape": [2, WIDTH],
        "parameters": {"binary_data_size": len(chunk)},
    }
    body, headers = binary_body({"inputs": [tensor]}, [chunk])
    refused(client.post(INFER, content=body, headers=headers), 400, "input-0", "FP32")


def test_malformed_json(client):
    refused(client.post(INFER, content=b'{"inputs": [', headers={"content-type": "application/json"}), 400, "JSON")


def test_empty_inputs_list(client):
    refused(client.post(INFER, json={"inputs": []}), 400, "inputs")


def test_unknown_output_name(client):
    request = matrix_request(two_rows(), outputs=[{"name": "risk_band"}])
    refused(client.post(INFER, json=request), 400, "risk_band")


def test_pd_form_with_an_unknown_category_names_the_field_and_row(client):
    request = field_request([RECORD, RECORD | {"race": "Martian"}])
    refused(client.post(INFER, json=request), 400, "race", "row 1", "Martian")


@pytest.mark.parametrize("code", ["0", "000", "0.5", "00.01"])
def test_pd_form_with_an_icd9_code_outside_every_chapter(client, code):
    # zero is no ICD-9 code (once icd9.is_valid took these and icd9.group raised ValueError in features.encode)
    request = field_request([RECORD, RECORD | {"diag_2": code}])
    refused(client.post(INFER, json=request), 400, "diag_2", "row 1")


def test_pd_form_with_an_unknown_field(client):
    request = field_request([RECORD])
    request["inputs"].append({"name": "shoe_size", "datatype": "FP64", "shape": [1], "data": [44]})
    refused(client.post(INFER, json=request), 400, "shoe_size")


def test_pd_form_with_rows_that_disagree(client):
    request = field_request([RECORD, RECORD])
    request["inputs"][3]["shape"] = [1]
    request["inputs"][3]["data"] = request["inputs"][3]["data"][:1]
    refused(client.post(INFER, json=request), 400, request["inputs"][3]["name"], "rows")


def test_two_inputs_without_the_pd_form(client):
    request = matrix_request(two_rows())
    request["inputs"].append({**request["inputs"][0], "name": "input-1"})
    refused(client.post(INFER, json=request), 400, "one input")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([10**400] * (2 * WIDTH), "input-0"),
        ([[1, [2]]] * 2, "input-0"),
        ([{"a": 1}] * (2 * WIDTH), "input-0"),
        (["x"] * (2 * WIDTH), "input-0"),
        ([True] * (2 * WIDTH), "input-0"),
        ("not a list", "input-0"),
    ],
)
def test_odd_json_data_is_refused_not_a_500(client, data, needle):
    request = matrix_request(two_rows())
    request["inputs"][0]["data"] = data
    refused(client.post(INFER, json=request), 400, needle)


@pytest.mark.parametrize(
    "request_body",
    [
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, WIDTH]}]},
        {"inputs": [{"name": "input-0", "datatype": "FP99", "shape": [1], "data": [1]}]},
        {"inputs": [{"name": "input-0", "datatype": {}, "shape": [1], "data": [1]}]},
        {"inputs": [{"name": "input-0", "datatype": ["FP32"], "shape": [1], "data": [1]}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1], "data": [1], "parameters": [1]}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1.5], "data": [1]}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, WIDTH], "data": []}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [0, WIDTH], "data": []}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [10**30, WIDTH], "data": [1]}]},
        {"inputs": "input-0"},
        {"inputs": [7]},
        {"id": 5, "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1], "data": [1]}]},
        {"parameters": [], "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1], "data": [1]}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": "label"},
        [1, 2],
    ],
)
def test_malformed_requests_are_400(client, request_body):
    answer = client.post(INFER, json=request_body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]


def test_too_many_rows(client):
    request = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [10_001, WIDTH], "data": [0.0]}]}
    request["inputs"][0]["data"] = [0.0] * (10_001 * WIDTH)
    answer = client.post(INFER, json=request)
    assert answer.status_code in (400, 413), answer.text


def test_refused_request_bodies_are_not_logged(client, service):
    marker = "secret-patient-7f3a9c"
    request = field_request([RECORD | {"race": marker}])
    refused(client.post(INFER, json=request), 400, "race")
    refused(client.post(INFER, content=b'{"inputs": "' + marker.encode() + b'"'), 400)
    assert marker not in service.log_text()


def model_calls(service) -> tuple[float, float]:
    """readmission_model_call_rows: (model calls, rows scored) so far."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(scrape(service)):
        if family.name == "readmission_model_call_rows":
            values = {sample.name: sample.value for sample in family.samples if not sample.labels.get("le")}
            return values["readmission_model_call_rows_count"], values["readmission_model_call_rows_sum"]
    raise AssertionError("readmission_model_call_rows is not exposed")


def test_concurrent_requests_scored_together_each_get_their_own_answer(service, client, local, figure):
    """Small requests in flight together are scored in one model call (bento/core/scoring.py): no answer is mixed up,
    and every row is scored exactly once."""
    import asyncio

    sizes = [1, 2, 1, 3, 1, 1, 5, 1] * 4  # 60 rows over 32 requests of 1-5 rows, all in flight at once
    matrix = matrix_of(records(sum(sizes), seed=21))
    starts = np.cumsum([0, *sizes[:-1]])

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            calls = [
                http.post(INFER, json=matrix_request(matrix[start : start + size], id=f"r{i}"))
                for i, (start, size) in enumerate(zip(starts, sizes, strict=True))
            ]
            return await asyncio.gather(*calls)

    calls_before, rows_before = model_calls(service)
    answers = asyncio.run(send_all())
    expected = local.probabilities(matrix)
    for i, (answer, start, size) in enumerate(zip(answers, starts, sizes, strict=True)):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["id"] == f"r{i}"
        got = outputs_of(body)["probability"]["data"]
        assert np.abs(np.asarray(got) - expected[start : start + size]).max() <= 1e-6
    calls_after, rows_after = poll(
        lambda: (now := model_calls(service))[1] >= rows_before + len(matrix) and now, 10, "the rows scored counted"
    )
    calls, rows = calls_after - calls_before, rows_after - rows_before
    assert rows == len(matrix) and 1 <= calls <= len(sizes)
    figure("model calls for 32 concurrent requests (60 rows)", int(calls))


# --- every answer bounded by its request; every shape checked before any arithmetic -------------------------------

MIB = 1024 * 1024
CEILING_PER_ROW = 64  # bytes per row of the three outputs, each named at most once, in any encoding (README)
CEILING_FIXED = 1024  # model name, version, the outputs' descriptions, plus the echoed `id`


def test_a_repeated_output_is_refused_naming_it(client):
    outputs = [{"name": "label"}, {"name": "prediction_id"}, {"name": "prediction_id"}]
    refused(client.post(INFER, json=matrix_request(two_rows(), outputs=outputs)), 400, "'prediction_id' is named twice")


@pytest.mark.parametrize("binary_output", [False, True], ids=["json", "binary"])
def test_the_largest_answer_is_within_the_ceiling(client, binary_output):
    rows = ServiceSettings().max_infer_rows
    request_id = "r" * 200
    body, headers = binary_matrix(
        np.tile(matrix_of(records(100)), (rows // 100, 1)),
        id=request_id,
        parameters={"binary_data_output": binary_output},
    )
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.content) <= rows * CEILING_PER_ROW + CEILING_FIXED + len(request_id), len(answer.content)


def test_the_amplification_attack_is_refused_with_the_workers_memory_unmoved(service, figure):
    """The issue's attack: 5,000 rows (5.3 MB) naming prediction_id 2,000 times made a 400 MB answer, and the worker
    grew from 393 MB to 3 GB. The worker's memory is sampled while the request is served."""
    body, headers = binary_matrix(np.tile(two_rows(), (2500, 1)), outputs=[{"name": "prediction_id"}] * 2000)
    workers = [psutil.Process(pid) for pid in workers_of(service)]
    before = {worker.pid: worker.memory_info().rss for worker in workers}
    peak = dict(before)
    answered = threading.Event()

    def sample() -> None:
        while not answered.is_set():
            for worker in workers:
                peak[worker.pid] = max(peak[worker.pid], worker.memory_info().rss)
            answered.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answer = httpx.post(f"{service.url}{INFER}", content=body, headers=headers, timeout=300)
    finally:
        answered.set()
        sampler.join()
    growth = max(peak[pid] - before[pid] for pid in before)
    figure("worker RSS growth under the amplification attack (MiB)", round(growth / MIB, 1))
    assert growth < 64 * MIB, (
        f"the worker grew by {growth / MIB:.0f} MiB ({len(answer.content) / MIB:.0f} MiB answered)"
    )
    refused(answer, 400, "'prediction_id' is named twice")


SHAPES = {
    "2**62-by-0": [2**62, 0],
    "0-by-2**63": [0, 2**63],
    "65-dimensions": [1] * 65,
    "2**40-by-2**40-by-0": [2**40, 2**40, 0],
    "negative": [-1, WIDTH],
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("encoding", ["json", "binary"])
@pytest.mark.parametrize(("name", "datatype"), [("input-0", "FP32"), ("time_in_hospital", "FP64")])
def test_a_shape_beyond_any_tensor_is_refused_naming_the_input(client, shape, encoding, name, datatype):
    dims = SHAPES[shape]
    elements = 1 if shape == "65-dimensions" else 0  # what the shape's element count says (the data agrees)
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": dims}
    if encoding == "json":
        answer = client.post(INFER, json={"inputs": [tensor | {"data": [1.0] * elements}]})
    else:
        chunk = np.ones(elements, dtype=np.float32 if datatype == "FP32" else np.float64).tobytes()
        body, headers = binary_body({"inputs": [tensor | {"parameters": {"binary_data_size": len(chunk)}}]}, [chunk])
        answer = client.post(INFER, content=body, headers=headers)
    refused(answer, 400, f"input {name}: shape")
