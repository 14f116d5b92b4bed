"""The Open Inference Protocol (KServe V2) over the scoring core, whatever the transport: what a request's tensors
mean to the model, and the model's outputs and metadata.

Inputs: one FP32/FP64 tensor [N, F] in the model's column order (what KServe's xgbserver and MLServer accept), or
one tensor per clinical field ("pd" content type; BYTES for text fields). Outputs: `probability` (FP32 [N]),
`label` (INT64 [N]) and `prediction_id` (BYTES [N]: the id that `POST /feedback` names when the patient's outcome
is known); `unusual` (BYTES [N]: per row the JSON list of how it lies outside the training data, as `/predict` answers
it, "[]" when it does not) only when a request names it, so that clients that name none see no change. The REST
adapter (bento/v2/rest.py) and the gRPC servicer (bento/v2/grpc_servicer.py) decode their requests into the tensors
of bento/v2/tensors.py and ask this module; neither knows the other.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from bento import features
from bento.core.scoring import Scores
from bento.errors import Reason, RequestError
from bento.model.predictor import Predictor
from bento.settings import ServiceSettings
from bento.v2.tensors import InferRequest, Tensor

MATRIX_INPUT = "input-0"
OUTPUTS = {"probability": "FP32", "label": "INT64", "prediction_id": "BYTES"}  # what a request naming none gets
UNUSUAL = "unusual"
DATATYPES = {**OUTPUTS, UNUSUAL: "BYTES"}  # every output a request may name
FIELD_DATATYPES = {
    features.Kind.NUMBER: "FP64",
    features.Kind.CODE: "INT64",
    features.Kind.CATEGORY: "BYTES",
    features.Kind.ICD9: "BYTES",
}
SERVER_NAME = "readmission-bentoml"


def _server_version() -> str:
    try:
        return version("readmission")
    except PackageNotFoundError:
        return "0"


def server_metadata() -> dict[str, Any]:
    """`GET /v2`."""
    return {"name": SERVER_NAME, "version": _server_version(), "extensions": ["binary_tensor_data"]}


def model_metadata(settings: ServiceSettings, predictor: Predictor) -> dict[str, Any]:
    """`GET /v2/models/{name}`: every input a client may send, and the outputs."""
    field_inputs = [{"name": f.name, "datatype": FIELD_DATATYPES[f.kind], "shape": [-1]} for f in features.FIELDS]
    return {
        "name": settings.v2_model_name,
        "versions": [predictor.info.version],
        "platform": "xgboost",
        "inputs": [{"name": MATRIX_INPUT, "datatype": "FP32", "shape": [-1, len(features.COLUMNS)]}, *field_inputs],
        "outputs": [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in OUTPUTS.items()],
        "parameters": {
            **(
                {}
                if predictor.unusual is None
                else {"optional_outputs": [{"name": UNUSUAL, "datatype": DATATYPES[UNUSUAL], "shape": [-1]}]}
            ),
            "input_forms": f"either {MATRIX_INPUT} alone (FP32 or FP64 [N, {len(features.COLUMNS)}] in the order of "
            "`columns`), or one tensor per clinical field with parameters.content_type 'pd'",
            "columns": list(features.COLUMNS),
            "threshold": predictor.info.threshold,
            "bento_tag": predictor.info.tag,
        },
    }


def _is_field_form(request: InferRequest) -> bool:
    return request.parameters.get("content_type") == "pd" or any(
        t.name in features.FIELDS_BY_NAME for t in request.inputs
    )


def _matrix_from_tensor(tensor: Tensor, max_rows: int) -> np.ndarray:
    if tensor.datatype not in ("FP32", "FP64"):
        raise RequestError(Reason.TENSOR, f"input {tensor.name}: datatype must be FP32 or FP64, not {tensor.datatype}")
    if len(tensor.shape) != 2 or tensor.shape[1] != len(features.COLUMNS):
        raise RequestError(
            Reason.TENSOR, f"input {tensor.name}: shape must be [N, {len(features.COLUMNS)}], got {list(tensor.shape)}"
        )
    _check_rows(tensor.shape[0], max_rows)
    matrix = np.ascontiguousarray(tensor.data, dtype=np.float32)
    try:
        features.check_matrix(matrix)
    except features.FieldError as error:
        raise RequestError(Reason.INVALID_VALUE, f"input {tensor.name} {error.field}: {error.reason}") from error
    return matrix


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestError(Reason.BATCH_SIZE, "the request holds no rows")
    if rows > max_rows:
        raise RequestError(Reason.BATCH_SIZE, f"the request holds {rows} rows; the limit is {max_rows}")


def _matrix_from_fields(tensors: list[Tensor], max_rows: int) -> np.ndarray:
    columns: dict[str, list[Any]] = {}
    rows = None
    for tensor in tensors:
        f = features.FIELDS_BY_NAME.get(tensor.name)
        if f is None:
            raise RequestError(Reason.INVALID_VALUE, f"input {tensor.name}: not a clinical field")
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise RequestError(
                Reason.TENSOR, f"input {tensor.name}: shape must be [N] or [N, 1], got {list(tensor.shape)}"
            )
        if rows is not None and tensor.shape[0] != rows:
            raise RequestError(Reason.TENSOR, f"input {tensor.name}: has {tensor.shape[0]} rows, other inputs {rows}")
        rows = tensor.shape[0]
        columns[f.name] = [_field_value(v, tensor) for v in tensor.data.ravel().tolist()]
    assert rows is not None
    _check_rows(rows, max_rows)
    records = []
    for i in range(rows):
        try:
            records.append(features.validate({name: values[i] for name, values in columns.items()}))
        except features.FieldError as error:
            raise RequestError(Reason.INVALID_VALUE, f"input {error.field} row {i}: {error.reason}") from error
    return features.encode(records)


def _field_value(value: Any, tensor: Tensor) -> Any:
    if isinstance(value, bytes):
        try:
            text = value.decode()
        except UnicodeDecodeError as error:
            raise RequestError(Reason.TENSOR, f"input {tensor.name}: BYTES data must be UTF-8 text") from error
        return text or None
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _check_output(name: str, predictor: Predictor) -> str:
    """The name of an output the model produces; TENSOR error otherwise."""
    if name not in DATATYPES:
        raise RequestError(Reason.TENSOR, f"output {name!r} does not exist; outputs are {', '.join(DATATYPES)}")
    if name == UNUSUAL and predictor.unusual is None:
        raise RequestError(
            Reason.TENSOR, f"output {name!r}: model {predictor.info.version} has no unusual-patient check"
        )
    return name


def output_names(request: InferRequest, predictor: Predictor) -> list[str]:
    """The outputs a request asks for, in its order (the default OUTPUTS where it names none)."""
    if request.outputs is None:
        return list(OUTPUTS)
    return [_check_output(output["name"], predictor) for output in request.outputs]


def matrix_of(decoded: InferRequest, max_rows: int) -> np.ndarray:
    """The checked float32 matrix of a decoded request, in either input form."""
    if _is_field_form(decoded):
        return _matrix_from_fields(decoded.inputs, max_rows)
    if len(decoded.inputs) != 1:
        raise RequestError(
            Reason.TENSOR, f"expected one input tensor [N, {len(features.COLUMNS)}] or one per clinical field"
        )
    return _matrix_from_tensor(decoded.inputs[0], max_rows)


def output_of(scores: Scores, name: str) -> np.ndarray:
    """One output of the model (built only when a client asks for it: the ids as an array are not free)."""
    if name == "prediction_id":
        return np.array(scores.ids)
    if name == UNUSUAL:
        assert scores.unusual is not None  # output_names refuses it where the model has no check
        return np.array([json.dumps([f.as_json() for f in row], separators=(",", ":")) for row in scores.unusual])
    return scores.probabilities if name == "probability" else scores.labels
