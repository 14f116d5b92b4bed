"""Property-based fuzzing (hypothesis) of what a hostile client can send, with strategies of our own.

test_fuzz.py fuzzes from the OpenAPI document (schemathesis), which only writes JSON a parser would write. These
strategies write what the document cannot describe: integers of hundreds of digits, NaN, lone UTF-16 surrogates in
keys and values, repeated keys, deep nesting, shapes whose arithmetic overflows, binary chunks that lie about their
size, and bytes that are no protobuf message. Over /predict, /predict/batch, /feedback, V2 REST (JSON and the binary
extension) and V2 gRPC: never a 5xx, INTERNAL or UNKNOWN; every 4xx is a JSON `error`; the service answers after.
The budget is fixed and derandomized (the same examples on every run): about half a minute in all.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from bento import features
from bento.v2.tensors import DTYPES
from tests.helpers import HEADER, INFER, MODEL, RECORD, field_request

EXAMPLES = 600  # per surface; each example is one request (gRPC: one call)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
NAMES = [f.name for f in features.FIELDS]

# --- the hostile parts ---------------------------------------------------------------------------------------------

surrogate = st.sampled_from(["\ud800", "\udfff", "\udc00", "a\ud83d"])  # lone halves (a pair would be valid text)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.builds(lambda head, bad, tail: head + bad + tail, st.text(max_size=5), surrogate, st.text(max_size=5)),
    st.sampled_from(["", "\x00", "Caucasian\x00", "428\r\n", "V57", " v57\t", "0.5", "٤٢٨", "x" * 5000]),
)
huge_integer = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**308, 10**309]),
)
number = st.one_of(
    huge_integer, st.integers(-5, 100), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0])
)
leaf = st.one_of(st.none(), st.booleans(), number, hostile_text)
value = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3), max_leaves=8
)


def written(body: Any) -> bytes:
    """JSON text as Python writes it: lone surrogates as their escapes, NaN and Infinity bare, big integers whole."""
    return json.dumps(body).encode()


@st.composite
def mangled(draw: st.DrawFn, body: Any) -> bytes:
    """`body` as JSON text, sometimes with a key repeated or nested deeply, or a part of it cut off."""
    text = written(body)
    how = draw(st.sampled_from(["as-is", "as-is", "repeated-key", "deep", "cut"]))
    if how == "repeated-key" and text.startswith(b"{") and len(text) > 2:
        key = draw(st.sampled_from([*NAMES, "inputs", "id", "outputs"]))
        text = b"{" + json.dumps(key).encode() + b": 1, " + json.dumps(key).encode() + b": 2, " + text[1:]
    elif how == "deep":
        depth = draw(st.integers(1, 5000))
        text = b"[" * depth + text + b"]" * depth
    elif how == "cut":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    return text


@st.composite
def patient(draw: st.DrawFn) -> dict[str, Any]:
    """RECORD with some fields' values (and perhaps names) replaced by hostile ones."""
    changed = draw(st.dictionaries(st.sampled_from(NAMES) | hostile_text, value, max_size=3))
    return RECORD | changed


shape = st.lists(
    st.one_of(
        st.integers(0, 3),
        st.sampled_from([-1, 263, 2**31, 2**40, 2**40 + 1, 2**62, 2**63 - 1, 2**63, 2**64]),
    ),
    max_size=70,
)


@st.composite
def tensor(draw: st.DrawFn) -> dict[str, Any]:
    """A V2 input tensor description: name, datatype and shape from hostile choices, data or none."""
    result: dict[str, Any] = {
        "name": draw(st.sampled_from(["input-0", *NAMES]) | hostile_text),
        "datatype": draw(st.sampled_from(list(DTYPES)) | hostile_text),
        "shape": draw(shape | value),
    }
    if draw(st.booleans()):
        result["data"] = draw(st.lists(value, max_size=6) | value)
    if draw(st.booleans()):
        result["parameters"] = draw(st.dictionaries(hostile_text, value, max_size=2))
    return result


@st.composite
def arithmetic_tensor(draw: st.DrawFn) -> dict[str, Any]:
    """A tensor valid but for its shape, whose element count is zero or one while its arithmetic overflows."""
    dims = draw(st.lists(st.sampled_from([0, 1, 1, 2**31, 2**40, 2**62, 2**63 - 1, 2**63]), min_size=1, max_size=70))
    count = 0 if 0 in dims else 1
    name, datatype = draw(st.sampled_from([("input-0", "FP32"), ("input-0", "FP64"), ("time_in_hospital", "FP64")]))
    return {"name": name, "datatype": datatype, "shape": dims, "data": [1.0] * count}


@st.composite
def v2_request(draw: st.DrawFn) -> dict[str, Any]:
    """A V2 inference request: a valid per-field request with hostile parts, or hostile tensors."""
    tensors = st.lists(tensor() | arithmetic_tensor(), max_size=3)
    request = field_request([RECORD]) if draw(st.booleans()) else {"inputs": draw(tensors)}
    if draw(st.booleans()):
        request["id"] = draw(hostile_text | value)
    if draw(st.booleans()):
        names = st.sampled_from(["probability", "label", "prediction_id"]) | hostile_text
        request["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": names}) | value, max_size=4))
    if draw(st.booleans()):
        request["parameters"] = draw(st.dictionaries(hostile_text, value, max_size=2) | value)
    return request


# --- the properties --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(service):
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


def assert_refused_cleanly(answer: httpx.Response) -> None:
    """No 5xx; a 4xx is a JSON `error` message."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        assert isinstance(answer.json()["error"], str) and answer.json()["error"], answer.text[:300]


def post(http: httpx.Client, path: str, content: bytes, headers: dict[str, str] | None = None) -> None:
    assert_refused_cleanly(
        http.post(path, content=content, headers={"content-type": "application/json"} | (headers or {}))
    )


@FUZZ
@given(data=st.data())
def test_predict(http, data):
    body = data.draw(patient() | value)
    post(http, "/predict", data.draw(mangled(body)))


@FUZZ
@given(data=st.data())
def test_predict_batch(http, data):
    body = data.draw(st.lists(patient() | value, min_size=1, max_size=3) | value)
    post(http, "/predict/batch", data.draw(mangled(body)))


@FUZZ
@given(data=st.data())
def test_feedback(http, data):
    outcome = st.fixed_dictionaries(
        {"prediction_id": hostile_text | value, "readmitted_within_30_days": st.booleans() | value}
    )
    body = data.draw(st.lists(outcome | value, min_size=1, max_size=3) | value)
    post(http, "/feedback", data.draw(mangled(body)))


@FUZZ
@given(data=st.data())
def test_v2_json(http, data):
    post(http, INFER, data.draw(mangled(data.draw(v2_request()))))


@FUZZ
@given(data=st.data())
def test_v2_binary(http, data):
    request = data.draw(v2_request())
    chunks = []
    for item in request.get("inputs", []) if isinstance(request.get("inputs"), list) else []:
        if isinstance(item, dict) and data.draw(st.booleans()):
            chunk = data.draw(st.binary(max_size=64))
            item.pop("data", None)
            size = data.draw(st.just(len(chunk)) | huge_integer | st.integers(-2, 100))
            item["parameters"] = {"binary_data_size": size}
            chunks.append(chunk)
    header = written(request)
    length = data.draw(st.just(len(header)) | st.integers(-1, len(header) + 10) | st.sampled_from([2**64, 10**30]))
    post(http, INFER, header + b"".join(chunks), {HEADER: str(length), "content-type": "application/octet-stream"})


@pytest.fixture(scope="module")
def stub(service):
    with grpc.insecure_channel(service.grpc) as channel:
        yield channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


grpc_text = st.text(max_size=20)  # protobuf strings are UTF-8 by construction: surrogates go in the raw bytes below


@st.composite
def grpc_request(draw: st.DrawFn) -> pb.ModelInferRequest:
    """A ModelInferRequest with hostile names, datatypes, shapes and contents."""
    request = pb.ModelInferRequest(model_name=MODEL, id=draw(grpc_text))
    raw = draw(st.booleans())
    int64 = st.integers(-(2**63), 2**63 - 1)
    for _ in range(draw(st.integers(0, 3))):
        dims = draw(st.lists(st.one_of(st.integers(0, 3), st.sampled_from([2**40, 2**62, 2**63 - 1, -1]), int64),
                             max_size=70))  # fmt: skip
        datatype = draw(st.sampled_from(list(DTYPES)) | grpc_text)
        name = draw(st.sampled_from(["input-0", *NAMES]) | grpc_text)
        item = request.inputs.add(name=name, datatype=datatype, shape=dims)
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            kind = draw(st.sampled_from(["fp32_contents", "fp64_contents", "int64_contents", "bytes_contents"]))
            if kind == "bytes_contents":
                values = draw(st.lists(st.binary(max_size=8) | st.just(b"\xed\xa0\x80"), max_size=4))
            elif kind == "int64_contents":
                values = draw(st.lists(int64, max_size=4))
            else:
                values = draw(st.lists(st.floats(width=32 if kind == "fp32_contents" else 64), max_size=4))
            getattr(item.contents, kind).extend(values)
    for name in draw(st.lists(st.sampled_from(["probability", "label", "prediction_id"]) | grpc_text, max_size=4)):
        request.outputs.add(name=name)
    if draw(st.booleans()):
        request.parameters["content_type"].string_param = draw(st.sampled_from(["pd", ""]) | grpc_text)
    return request


@FUZZ
@given(data=st.data())
def test_v2_grpc(stub, data):
    channel, client = stub
    if data.draw(st.booleans()):
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
        request = data.draw(st.binary(max_size=200) | grpc_request().map(lambda r: r.SerializeToString()[:-1]))
    else:
        call, request = client.ModelInfer, data.draw(grpc_request())
    try:
        call(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (error.code(), error.details())
        assert error.details(), error.code()


def test_the_service_still_answers_after_the_fuzz(http, stub):
    assert http.post("/predict", json=RECORD).status_code == 200
    prediction_id = http.post("/predict", json=RECORD).json()["prediction_id"]
    assert http.post("/feedback", json=[{"prediction_id": prediction_id, "readmitted_within_30_days": True}]).is_success
    assert stub[1].ServerReady(pb.ServerReadyRequest()).ready
