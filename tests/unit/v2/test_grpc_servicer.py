"""V2 over gRPC in-process: bento/v2/grpc_servicer.py's handlers called as grpc.aio calls them, with a request's bytes
and a fake ServicerContext whose abort raises as grpc.aio's does. ModelInfer with typed and raw contents answers the
tiny model's outputs, the same as the REST path for the same rows; refusals carry the reason's gRPC code and the REST
message (garbage bytes INVALID_ARGUMENT, another model NOT_FOUND, no token UNAUTHENTICATED); a bug is INTERNAL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2 as pb

from bento import features
from bento.core.scoring import ScoringCore
from bento.http import auth
from bento.v2 import inference
from bento.v2.grpc_servicer import CONTENTS_FIELD, DESCRIPTOR, InferenceServicer, rpc_handler
from bento.v2.tensors import from_binary, to_binary
from tests.helpers import FIELD_DATATYPES, INFER, MODEL, field_request, matrix_of, records

PATIENTS = records(6, seed=71)
MATRIX = matrix_of(PATIENTS)
WIDTH = len(features.COLUMNS)


class Context:
    """The parts of grpc.aio.ServicerContext the servicer uses; `abort` records the status and raises AbortError,
    as grpc.aio's does."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError("Locally aborted.")


def call(core: ScoringCore, method: str, request: Any, metadata: tuple = ()) -> tuple[Any, Context]:
    """The method's response as a client parses it (None where the call aborted) and the context."""
    handler = rpc_handler(method, getattr(InferenceServicer(core), method), core)
    context = Context(metadata)
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    try:
        response = asyncio.run(handler(raw, context))
    except grpc.aio.AbortError:
        return None, context
    assert context.code is None
    output = getattr(pb, DESCRIPTOR.methods_by_name[method].output_type.name)
    return output.FromString(response.SerializeToString()), context


def aborted(core: ScoringCore, method: str, request: Any, metadata: tuple = ()) -> Context:
    response, context = call(core, method, request, metadata)
    assert response is None, "the call was answered"
    return context


def matrix_infer(matrix: np.ndarray, raw: bool = False, **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name=MODEL, **fields)
    tensor = request.inputs.add(name="input-0", datatype="FP32", shape=list(matrix.shape))
    if raw:
        request.raw_input_contents.append(to_binary(matrix, "FP32"))
    else:
        tensor.contents.fp32_contents.extend(matrix.ravel().tolist())
    return request


def field_infer(patients: list[dict]) -> Any:
    request = pb.ModelInferRequest(model_name=MODEL)
    for f in features.FIELDS:
        datatype = FIELD_DATATYPES[f.kind]
        tensor = request.inputs.add(name=f.name, datatype=datatype, shape=[len(patients)])
        values = [p[f.name] for p in patients]
        contents = getattr(tensor.contents, CONTENTS_FIELD[datatype])
        contents.extend([v.encode() for v in values] if datatype == "BYTES" else values)
    return request


def outputs_of(response: Any) -> dict[str, np.ndarray]:
    """The outputs of a ModelInferResponse by name, typed or raw."""
    arrays = {}
    for i, output in enumerate(response.outputs):
        if response.raw_output_contents:
            count = int(np.prod(output.shape))
            arrays[output.name] = from_binary(response.raw_output_contents[i], output.datatype, count, output.name)
        else:
            arrays[output.name] = np.array(getattr(output.contents, CONTENTS_FIELD[output.datatype]))
    return arrays


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_model_infer_answers_the_models_outputs_typed_or_raw_as_sent(core, tiny, raw):
    response, _ = call(core, "ModelInfer", matrix_infer(MATRIX, raw=raw, id="g-1"))
    assert (response.model_name, response.model_version, response.id) == (MODEL, "1", "g-1")
    assert bool(response.raw_output_contents) is raw
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        (name, datatype, [6]) for name, datatype in inference.OUTPUTS.items()
    ]
    outputs = outputs_of(response)
    probabilities = tiny.probabilities(MATRIX)
    np.testing.assert_array_equal(outputs["probability"].astype(np.float32), probabilities)
    np.testing.assert_array_equal(outputs["label"], tiny.labels(probabilities))
    assert len(set(outputs["prediction_id"].tolist())) == 6


def test_one_tensor_per_field_and_the_outputs_asked_for(core, tiny):
    request = field_infer(PATIENTS)
    request.outputs.add(name="label")
    response, _ = call(core, "ModelInfer", request)
    assert [o.name for o in response.outputs] == ["label"]
    np.testing.assert_array_equal(outputs_of(response)["label"], tiny.labels(tiny.probabilities(MATRIX)))


def test_grpc_and_rest_answer_the_same_for_the_same_rows(app):
    core = app.app.state.core
    rest = {o["name"]: o["data"] for o in app.post(INFER, json=field_request(PATIENTS)).json()["outputs"]}
    response, _ = call(core, "ModelInfer", matrix_infer(MATRIX, raw=True))
    grpc_outputs = outputs_of(response)
    assert grpc_outputs["probability"].tolist() == rest["probability"]
    assert grpc_outputs["label"].tolist() == rest["label"]
    assert not set(grpc_outputs["prediction_id"].tolist()) & {i.encode() for i in rest["prediction_id"]}


def test_garbage_bytes_are_invalid_argument_not_unknown(core):
    context = aborted(core, "ModelInfer", b"\xff\xff\xff")
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT
    assert context.details == "the request is not a ModelInferRequest message"


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady"])
def test_another_model_is_not_found_with_the_rest_message(core, method):
    request = (
        pb.ModelInferRequest(model_name="other")
        if method == "ModelInfer"
        else getattr(pb, f"{method}Request")(name="other")
    )
    context = aborted(core, method, request)
    assert context.code is grpc.StatusCode.NOT_FOUND
    assert context.details == "model 'other' is not served here; this server serves 'readmission'"


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (matrix_infer(MATRIX[:, :-1]), f"input input-0: shape must be [N, {WIDTH}]"),
        (pb.ModelInferRequest(model_name=MODEL), "inputs: must be a non-empty list of tensors"),
        (matrix_infer(MATRIX, raw=True, raw_input_contents=[b"", b""]), "raw_input_contents holds 3 entries"),
        (pb.ModelInferRequest(model_name=MODEL, raw_input_contents=[to_binary(MATRIX[:1], "FP32")], inputs=[
            pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[1, WIDTH],
                                                  contents=pb.InferTensorContents(fp32_contents=[0.0] * WIDTH))]),
         "input input-0: has both typed contents and raw_input_contents"),
        (pb.ModelInferRequest(model_name=MODEL, inputs=[pb.ModelInferRequest.InferInputTensor(
            name="input-0", datatype="FP32", shape=[1, WIDTH],
            contents=pb.InferTensorContents(int64_contents=[0] * WIDTH))]),
         "FP32 data belongs in contents.fp32_contents, not int64_contents"),
        (pb.ModelInferRequest(model_name=MODEL, inputs=[pb.ModelInferRequest.InferInputTensor(
            name="input-0", datatype="FP16", shape=[1, WIDTH])]), "FP16 data must be sent as raw_input_contents"),
        (matrix_infer(np.vstack([MATRIX] * 2)), "the request holds 12 rows; the limit is 10"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_malformed_tensors_are_invalid_argument_with_the_rest_message(core_of, request_, says):
    core = core_of(max_infer_rows=10)
    context = aborted(core, "ModelInfer", request_)
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT
    assert says in context.details
    assert core.in_flight.count == 0


def test_the_token_guards_metadata_and_infer_not_the_probes(core_of):
    core = core_of(api_token="tok")
    missing = aborted(core, "ModelInfer", matrix_infer(MATRIX))
    assert (missing.code, missing.details) == (grpc.StatusCode.UNAUTHENTICATED, auth.MISSING)
    wrong = aborted(core, "ModelMetadata", pb.ModelMetadataRequest(name=MODEL), (("authorization", "Bearer to"),))
    assert (wrong.code, wrong.details) == (grpc.StatusCode.UNAUTHENTICATED, auth.WRONG)
    response, _ = call(core, "ModelInfer", matrix_infer(MATRIX), (("authorization", "Bearer tok"),))
    assert len(response.outputs) == 3
    assert call(core, "ModelReady", pb.ModelReadyRequest(name=MODEL))[0].ready
    assert call(core, "ServerLive", pb.ServerLiveRequest())[0].live


def test_metadata_and_readiness_say_what_rest_says(core, tiny):
    metadata, _ = call(core, "ModelMetadata", pb.ModelMetadataRequest(name=MODEL, version="1"))
    expected = inference.model_metadata(core.settings, tiny)
    assert (metadata.name, list(metadata.versions), metadata.platform) == (MODEL, ["1"], "xgboost")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in expected["inputs"]
    ]
    assert [t.name for t in metadata.outputs] == list(inference.OUTPUTS)
    server, _ = call(core, "ServerMetadata", pb.ServerMetadataRequest())
    assert list(server.extensions) == ["binary_tensor_data"]
    assert call(core, "ServerReady", pb.ServerReadyRequest())[0].ready
    core.draining = True
    assert not call(core, "ServerReady", pb.ServerReadyRequest())[0].ready
    assert not call(core, "ModelReady", pb.ModelReadyRequest(name=MODEL))[0].ready


def test_no_model_is_unavailable_and_a_bug_is_internal_saying_nothing_of_it(core, tiny, caplog):
    before = REGISTRY.get_sample_value("readmission_grpc_requests_total", {"method": "ModelInfer", "code": "INTERNAL"})
    core.predictor = None
    assert aborted(core, "ModelInfer", matrix_infer(MATRIX)).code is grpc.StatusCode.UNAVAILABLE

    class Broken:
        info, labels = tiny.info, tiny.labels

        def probabilities(self, matrix):
            raise ValueError("patient 1234")

    core.predictor = Broken()
    context = aborted(core, "ModelInfer", matrix_infer(MATRIX))
    assert (context.code, context.details) == (grpc.StatusCode.INTERNAL, "internal error; see the service log")
    assert "unexpected ValueError in /inference.GRPCInferenceService/ModelInfer" in caplog.text
    assert "1234" not in caplog.text
    after = REGISTRY.get_sample_value("readmission_grpc_requests_total", {"method": "ModelInfer", "code": "INTERNAL"})
    assert after == (before or 0) + 1
    assert core.in_flight.count == 0


def test_an_abort_of_the_handler_itself_keeps_its_status(core, caplog):
    async def handler(request: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too much")

    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(rpc_handler("ServerLive", handler, core)(b"", context))
    assert (context.code, context.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "too much")
    assert "unexpected" not in caplog.text


def test_the_unusual_output_over_grpc_as_over_rest(app):
    core = app.app.state.core
    patients = [*PATIENTS, {**PATIENTS[0], "number_emergency": 100}]
    request = field_infer(patients)
    request.outputs.add(name="unusual")
    response, _ = call(core, "ModelInfer", request)
    assert [(o.name, o.datatype) for o in response.outputs] == [("unusual", "BYTES")]
    texts = [json.loads(value) for value in outputs_of(response)["unusual"].tolist()]
    rest = app.post(INFER, json=field_request(patients) | {"outputs": [{"name": "unusual"}]}).json()["outputs"][0]
    assert texts == [json.loads(text) for text in rest["data"]] and any(texts)
