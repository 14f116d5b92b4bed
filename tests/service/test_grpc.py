"""The Open Inference Protocol over gRPC, through clients nobody here wrote, against the REST answers.

The shared service (tests/conftest.py) serves gRPC on a port of its own; tritonclient.grpc drives it as a
client program would; hostile messages go through the protocol's generated stubs or a bare socket.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from bento import features
from tests.helpers import INFER, MODEL, WIDTH, field_request, matrix_request, poll, records, scrape

TOLERANCE = 1e-6
ROWS = features.encode([features.validate(r) for r in records(20, seed=3)])


@pytest.fixture(scope="module")
def address(service) -> str:
    return service.grpc


@pytest.fixture(scope="module")
def client(address) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(address) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def http(service):
    import httpx

    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


def rest_probabilities(http, matrix: np.ndarray) -> np.ndarray:
    answer = http.post(INFER, json=matrix_request(matrix))
    assert answer.status_code == 200, answer.text
    return np.asarray(next(o for o in answer.json()["outputs"] if o["name"] == "probability")["data"])


def matrix_input(matrix: np.ndarray, datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput("input-0", list(matrix.shape), datatype)
    tensor.set_data_from_numpy(matrix.astype(np.float32 if datatype == "FP32" else np.float64))
    return tensor


def refusal(call, code: grpc.StatusCode) -> str:
    """Run `call`, which must fail with `code`; the message."""
    with pytest.raises((InferenceServerException, grpc.RpcError)) as caught:
        call()
    error = caught.value
    status = error.status() if isinstance(error, InferenceServerException) else str(error.code())
    assert status == str(code), f"{status}: {error}"
    return error.message() if isinstance(error, InferenceServerException) else error.details()


# --- health, metadata ------------------------------------------------------------------------------------


def test_server_and_model_are_live_and_ready(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)


def test_metadata_lists_the_matrix_and_every_clinical_field(client, http):
    server = client.get_server_metadata()
    assert server.name == http.get("/v2").json()["name"]
    metadata = client.get_model_metadata(MODEL)
    rest = http.get(f"/v2/models/{MODEL}").json()
    assert metadata.name == MODEL and list(metadata.versions) == rest["versions"]
    assert [(i.name, i.datatype, list(i.shape)) for i in metadata.inputs] == [
        (i["name"], i["datatype"], i["shape"]) for i in rest["inputs"]
    ]
    assert {(o.name, o.datatype) for o in metadata.outputs} == {(o["name"], o["datatype"]) for o in rest["outputs"]}
    assert {o.name for o in metadata.outputs} == {"probability", "label", "prediction_id"}


def test_versions_and_other_models(client, http):
    version = http.get(f"/v2/models/{MODEL}").json()["versions"][0]
    assert client.is_model_ready(MODEL, version)
    assert "no version '999'" in refusal(lambda: client.get_model_metadata(MODEL, "999"), grpc.StatusCode.NOT_FOUND)
    assert "is not served here" in refusal(lambda: client.is_model_ready("other"), grpc.StatusCode.NOT_FOUND)


def test_health_service_and_reflection(address):
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == 1  # SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services


# --- inference -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_raw_matrix_equals_the_rest_answer(client, http, datatype):
    result = client.infer(MODEL, [matrix_input(ROWS, datatype)], request_id="grpc-1")
    assert result.get_response().id == "grpc-1"
    probabilities = result.as_numpy("probability")
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(ROWS),)
    assert np.abs(probabilities - rest_probabilities(http, ROWS)).max() <= TOLERANCE
    labels = result.as_numpy("label")
    assert labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1}


def test_output_selection(client):
    result = client.infer(MODEL, [matrix_input(ROWS)], outputs=[triton.InferRequestedOutput("label")])
    assert [o.name for o in result.get_response().outputs] == ["label"]
    assert result.as_numpy("probability") is None


def test_typed_contents_answer_in_typed_contents(stub, http):
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input-0", datatype="FP32", shape=list(ROWS.shape))
    tensor.contents.fp32_contents.extend(ROWS.ravel().tolist())
    response = stub.ModelInfer(request)
    assert not response.raw_output_contents
    outputs = {o.name: o for o in response.outputs}
    got = np.asarray(outputs["probability"].contents.fp32_contents)
    assert np.abs(got - rest_probabilities(http, ROWS)).max() <= TOLERANCE
    labels = list(outputs["label"].contents.int64_contents)
    assert len(labels) == len(ROWS) and set(labels) <= {0, 1}


def test_per_field_bytes_form_equals_the_rest_answer(client, http):
    patients = records(5, seed=8)
    rest = http.post(INFER, json=field_request(patients))
    assert rest.status_code == 200, rest.text
    expected = next(o for o in rest.json()["outputs"] if o["name"] == "probability")["data"]
    inputs = []
    for tensor in field_request(patients)["inputs"]:
        data = tensor["data"]
        if tensor["datatype"] == "BYTES":
            array = np.array([b"" if v is None else v.encode() for v in data], dtype=np.object_)
        else:
            array = np.array(data, dtype=np.float64 if tensor["datatype"] == "FP64" else np.int64)
        item = triton.InferInput(tensor["name"], [len(data)], tensor["datatype"])
        item.set_data_from_numpy(array)
        inputs.append(item)
    result = client.infer(MODEL, inputs, parameters={"content_type": "pd"})
    assert np.abs(result.as_numpy("probability") - np.asarray(expected)).max() <= TOLERANCE


# --- hostile input: a clear status, the server unharmed ------------------------------------------------------


def infer_request(matrix: np.ndarray, datatype: str = "FP32", raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input-0", datatype=datatype, shape=list(matrix.shape))
    request.raw_input_contents.append(raw if raw is not None else matrix.astype(np.float32).tobytes())
    return request


def typed_request(shape: list[int], field: str, values: list[float]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input-0", datatype="FP32", shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


def typed_and_raw() -> pb.ModelInferRequest:
    request = infer_request(ROWS[:1])
    request.inputs[0].contents.fp32_contents.extend(ROWS[0].tolist())
    return request


MALFORMED = {
    # what is wrong: (the request, what the INVALID_ARGUMENT message says)
    "wrong-datatype": (
        lambda: infer_request(ROWS, datatype="INT32", raw=np.nan_to_num(ROWS).astype(np.int32).tobytes()),
        "datatype must be FP32 or FP64, not INT32",
    ),
    "raw-of-the-wrong-length": (
        lambda: infer_request(ROWS[:2], raw=ROWS[:2].astype(np.float32).tobytes()[:-4]),
        "bytes of FP32 do not make 526 elements",
    ),
    "shape-against-typed-contents": (
        lambda: typed_request([2, WIDTH], "fp32_contents", ROWS[0].tolist()),
        f"needs {2 * WIDTH} elements, the data holds {WIDTH}",
    ),
    "typed-and-raw-contents": (typed_and_raw, "both typed contents and raw_input_contents"),
    "typed-contents-in-the-wrong-field": (
        lambda: typed_request([1, WIDTH], "fp64_contents", ROWS[0].tolist()),
        "FP32 data belongs in contents.fp32_contents, not fp64_contents",
    ),
}


@pytest.mark.parametrize("malformed", list(MALFORMED))
def test_a_malformed_tensor_is_invalid_argument_with_the_reason(stub, malformed):
    build, needle = MALFORMED[malformed]
    request = build()
    assert needle in refusal(lambda: stub.ModelInfer(request), grpc.StatusCode.INVALID_ARGUMENT)


def test_value_out_of_range_names_the_column(stub):
    bad = ROWS[:1].copy()
    bad[0, features.COLUMNS.index("time_in_hospital")] = 0
    message = refusal(lambda: stub.ModelInfer(infer_request(bad)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "column time_in_hospital: 0 is outside the column's range" in message


def test_unknown_model_and_output(stub):
    request = infer_request(ROWS[:1])
    request.model_name = "other"
    assert "is not served here" in refusal(lambda: stub.ModelInfer(request), grpc.StatusCode.NOT_FOUND)
    request = infer_request(ROWS[:1])
    request.outputs.add(name="nope")
    assert "output 'nope' does not exist" in refusal(lambda: stub.ModelInfer(request), grpc.StatusCode.INVALID_ARGUMENT)


def test_a_message_over_the_limit_is_resource_exhausted(stub):
    rows = 17 * 1024 * 1024 // (4 * WIDTH) + 1  # over the 16 MiB default of READMISSION_MAX_BODY_BYTES
    request = infer_request(np.zeros((rows, WIDTH), dtype=np.float32))
    refusal(lambda: stub.ModelInfer(request), grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_garbage_bytes_on_the_port_leave_the_server_serving(address, client):
    host, port = address.split(":")
    for garbage in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 8):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(garbage)
            connection.settimeout(5)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                connection.recv(1024)  # the server answers (a GOAWAY) or closes
    assert client.is_server_ready()
    assert client.infer(MODEL, [matrix_input(ROWS[:1])]).as_numpy("probability").shape == (1,)


def test_grpc_calls_are_counted_with_bounded_labels(client, stub, service):
    def counted(code: str) -> float:
        samples = [
            sample
            for family in text_string_to_metric_families(scrape(service))
            for sample in family.samples
            if sample.name == "readmission_grpc_requests_total"
        ]
        return sum(s.value for s in samples if s.labels == {"method": "ModelInfer", "code": code})

    ok, invalid = counted("OK"), counted("INVALID_ARGUMENT")
    client.infer(MODEL, [matrix_input(ROWS[:1])])
    refusal(lambda: stub.ModelInfer(infer_request(ROWS[:1], datatype="INT32")), grpc.StatusCode.INVALID_ARGUMENT)
    poll(lambda: counted("OK") == ok + 1 and counted("INVALID_ARGUMENT") == invalid + 1, 10, "the two calls counted")


# --- bounded answers, shapes, bytes that are no message ----------------------------------------------------------

CEILING_PER_ROW = 64  # bytes per row of the three outputs, each named at most once (README; as over REST)


def test_a_repeated_output_is_invalid_argument_before_any_answer_is_built(stub):
    request = infer_request(ROWS)
    for name in ("label", "prediction_id", "prediction_id"):
        request.outputs.add(name=name)
    message = refusal(lambda: stub.ModelInfer(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert "'prediction_id' is named twice" in message


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_the_largest_answer_is_within_the_ceiling(stub, raw):
    rows = 10_000  # READMISSION_MAX_INFER_ROWS
    matrix = np.tile(ROWS, (rows // len(ROWS), 1))
    request = (
        infer_request(matrix) if raw else typed_request(list(matrix.shape), "fp32_contents", matrix.ravel().tolist())
    )
    request.id = "r" * 200
    answer = stub.ModelInfer(request)
    assert answer.ByteSize() <= rows * CEILING_PER_ROW + 1024 + len(request.id), answer.ByteSize()


SHAPES = {
    "2**62-by-0": [2**62, 0],
    "0-by-2**63-1": [0, 2**63 - 1],
    "65-dimensions": [1] * 65,
    "2**40-by-2**40-by-0": [2**40, 2**40, 0],
    "negative": [-1, WIDTH],
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize(("name", "datatype"), [("input-0", "FP32"), ("time_in_hospital", "FP64")])
def test_a_shape_beyond_any_tensor_is_invalid_argument_naming_the_input(stub, shape, raw, name, datatype):
    dims = SHAPES[shape]
    elements = [1.0] if shape == "65-dimensions" else []
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=dims)
    if raw:
        request.raw_input_contents.append(
            np.asarray(elements, dtype=np.float32 if datatype == "FP32" else np.float64).tobytes()
        )
    else:
        getattr(tensor.contents, "fp32_contents" if datatype == "FP32" else "fp64_contents").extend(elements)
    message = refusal(lambda: stub.ModelInfer(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert f"input {name}: shape" in message


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady"])
def test_bytes_that_are_no_request_message_are_invalid_argument(address, client, method):
    garbage = [b"\x0a\xff", b"\x0a\x02\xff\xfe", b"\xff" * 16, bytes(range(256))]  # truncated, not UTF-8, bad tags
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")  # bytes in, bytes out
        for raw in garbage:
            message = refusal(lambda raw=raw: call(raw, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
            assert "is not a" in message and "Request message" in message, message
    assert client.is_server_ready()
