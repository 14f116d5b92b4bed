"""bento/v2/inference.py, what V2 tensors mean to the model whatever the transport: the matrix of either input form
(one FP32/FP64 [N, F] tensor; one tensor per clinical field, text fields as BYTES), the row limits, the outputs a
request names, the model's metadata."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from bento import features
from bento.core.scoring import Scores
from bento.errors import Reason, RequestError
from bento.settings import ServiceSettings
from bento.v2 import inference
from bento.v2.tensors import InferRequest, Tensor, decode_request, to_binary
from tests.helpers import FIELD_DATATYPES, HEADER, binary_body, field_request, matrix_of, matrix_request, records

WIDTH = len(features.COLUMNS)
PATIENTS = records(6, seed=3)
MATRIX = matrix_of(PATIENTS)


def decoded(request: dict) -> InferRequest:
    return decode_request(orjson.dumps(request), None)


def refusal(request: InferRequest, max_rows: int = 100) -> RequestError:
    with pytest.raises(RequestError) as raised:
        inference.matrix_of(request, max_rows)
    return raised.value


def tensor(name: str, datatype: str, data: np.ndarray) -> Tensor:
    return Tensor(name, datatype, data.shape, data)


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_one_matrix_tensor_is_the_matrix_as_float32(datatype):
    matrix = inference.matrix_of(decoded(matrix_request(MATRIX, datatype)), 100)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, MATRIX)


@pytest.mark.parametrize("shape_2d", [False, True])
def test_one_tensor_per_clinical_field_in_json_encodes_as_the_records_do(shape_2d):
    matrix = inference.matrix_of(decoded(field_request(PATIENTS, shape_2d=shape_2d)), 100)
    np.testing.assert_array_equal(matrix, MATRIX)


def test_one_tensor_per_clinical_field_in_binary_with_bytes_text_fields_encodes_as_the_records_do():
    inputs, chunks = [], []
    for f in features.FIELDS:
        datatype = FIELD_DATATYPES[f.kind]
        values = np.array([p[f.name] for p in PATIENTS], dtype=object if datatype == "BYTES" else None)
        chunk = to_binary(values, datatype)
        chunks.append(chunk)
        parameters = {"binary_data_size": len(chunk)}
        inputs.append({"name": f.name, "datatype": datatype, "shape": [len(PATIENTS)], "parameters": parameters})
    raw, headers = binary_body({"inputs": inputs}, chunks)  # no content_type: the field names say the form
    matrix = inference.matrix_of(decode_request(raw, headers[HEADER]), 100)
    np.testing.assert_array_equal(matrix, MATRIX)


def only(patient: dict) -> InferRequest:
    """The field form of one patient with an input for the fields it names, and none for the others."""
    request = field_request([patient])
    request["inputs"] = [tensor for tensor in request["inputs"] if tensor["name"] in patient]
    return decoded(request)


def test_fields_left_out_take_their_defaults_and_an_empty_text_is_missing():
    required = {name: value for name, value in PATIENTS[0].items() if features.FIELDS_BY_NAME[name].required}
    assert "diag_2" not in required and len(required) < len(features.FIELDS)
    expected = features.encode([features.validate(required)])
    np.testing.assert_array_equal(inference.matrix_of(only(required), 1), expected)
    np.testing.assert_array_equal(inference.matrix_of(only({**required, "diag_2": ""}), 1), expected)
    assert not np.array_equal(inference.matrix_of(only({**required, "diag_2": "428"}), 1), expected)


@pytest.mark.parametrize("form", ["matrix", "fields"])
def test_no_rows_and_more_rows_than_the_limit_are_batch_size_refusals(form):
    request = decoded(matrix_request(MATRIX) if form == "matrix" else field_request(PATIENTS))
    error = refusal(request, max_rows=5)
    assert error.reason is Reason.BATCH_SIZE and "holds 6 rows; the limit is 5" in error.message
    assert inference.matrix_of(request, 6).shape == (6, WIDTH)
    empty = decoded(matrix_request(MATRIX[:0]) if form == "matrix" else field_request([]))
    assert refusal(empty).reason is Reason.BATCH_SIZE


@pytest.mark.parametrize(
    ("request_", "reason", "says"),
    [
        (InferRequest(None, {}, [tensor("input-0", "INT64", np.zeros((1, WIDTH), np.int64))], None),
         Reason.TENSOR, "datatype must be FP32 or FP64, not INT64"),
        (InferRequest(None, {}, [tensor("input-0", "FP32", np.zeros((1, WIDTH - 1), np.float32))], None),
         Reason.TENSOR, f"shape must be [N, {WIDTH}], got [1, {WIDTH - 1}]"),
        (InferRequest(None, {}, [tensor("input-0", "FP32", np.zeros(WIDTH, np.float32))], None),
         Reason.TENSOR, f"shape must be [N, {WIDTH}]"),
        (InferRequest(None, {}, [tensor("a", "FP32", MATRIX), tensor("b", "FP32", MATRIX)], None),
         Reason.TENSOR, "expected one input tensor"),
        (InferRequest(None, {"content_type": "pd"}, [tensor("weight_kg", "FP64", np.ones(2))], None),
         Reason.INVALID_VALUE, "input weight_kg: not a clinical field"),
        (InferRequest(None, {}, [tensor("age", "BYTES", np.array([[b"[10-20)", b"[20-30)"]], dtype=object))], None),
         Reason.TENSOR, "input age: shape must be [N] or [N, 1], got [1, 2]"),
        (InferRequest(None, {}, [tensor("race", "BYTES", np.array([b"\xff"], dtype=object))], None),
         Reason.TENSOR, "input race: BYTES data must be UTF-8 text"),
        (InferRequest(None, {}, [tensor("time_in_hospital", "FP64", np.ones(2)), tensor("age", "BYTES",
         np.array([b"[10-20)"], dtype=object))], None), Reason.TENSOR, "input age: has 1 rows, other inputs 2"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_tensors_the_model_cannot_read_are_refused_naming_the_input(request_, reason, says):
    error = refusal(request_)
    assert error.reason is reason and says in error.message


def test_a_value_outside_the_spec_names_the_field_and_the_row():
    bad_matrix = MATRIX.copy()
    bad_matrix[2, features.COLUMN_INDEX["race_Caucasian"]] = 2.0
    error = refusal(decoded(matrix_request(bad_matrix)))
    assert error.reason is Reason.INVALID_VALUE and "input input-0 row 2 column race_Caucasian" in error.message
    patients = [*PATIENTS[:3], {**PATIENTS[3], "race": "Martian"}]
    error = refusal(decoded(field_request(patients)))
    assert error.reason is Reason.INVALID_VALUE and error.message.startswith("input race row 3:")


def test_output_names_are_every_output_or_those_asked_for_in_order(tiny):
    request = decoded(matrix_request(MATRIX))
    assert inference.output_names(request, tiny) == ["probability", "label", "prediction_id"]
    names = ["probability", "prediction_id", "label"]  # not in the model's order, nor sorted
    asked = decoded(matrix_request(MATRIX, outputs=[{"name": name} for name in names]))
    assert inference.output_names(asked, tiny) == names
    with pytest.raises(RequestError, match="output 'logit' does not exist") as raised:
        inference.output_names(decoded(matrix_request(MATRIX, outputs=[{"name": "logit"}])), tiny)
    assert raised.value.reason is Reason.TENSOR


def test_output_of_gives_each_output_of_the_scores():
    scores = Scores(np.array([0.1, 0.9], np.float32), np.array([0, 1], np.int64), ["id-a", "id-b"])
    assert inference.output_of(scores, "probability") is scores.probabilities
    assert inference.output_of(scores, "label") is scores.labels
    assert inference.output_of(scores, "prediction_id").tolist() == ["id-a", "id-b"]


def test_model_metadata_lists_both_input_forms_the_outputs_and_the_columns(tiny):
    metadata = inference.model_metadata(ServiceSettings(v2_model_name="readmit"), tiny)
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("readmit", ["1"], "xgboost")
    matrix_input, *field_inputs = metadata["inputs"]
    assert matrix_input == {"name": "input-0", "datatype": "FP32", "shape": [-1, WIDTH]}
    assert [(i["name"], i["datatype"]) for i in field_inputs] == [
        (f.name, FIELD_DATATYPES[f.kind]) for f in features.FIELDS
    ]
    assert metadata["outputs"] == [
        {"name": "probability", "datatype": "FP32", "shape": [-1]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "prediction_id", "datatype": "BYTES", "shape": [-1]},
    ]
    parameters = metadata["parameters"]
    assert parameters["columns"] == list(features.COLUMNS)
    assert (parameters["threshold"], parameters["bento_tag"]) == (tiny.info.threshold, "readmission:tiny")
    assert inference.server_metadata()["extensions"] == ["binary_tensor_data"]
