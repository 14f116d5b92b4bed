"""bento/v2/tensors.py, the V2 tensor codec: request bodies in JSON and in the binary tensor data extension (FP32,
FP64, INT64, BYTES with length prefixes, JSON and binary inputs mixed), every malformed body refused with a message
naming the input, the shape limits, and responses that decode back to what was encoded."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import orjson
import pytest

from bento.errors import Reason, RequestError
from bento.v2.tensors import (
    DTYPES,
    MAX_DIMENSIONS,
    decode_request,
    element_count,
    encode_response,
    from_binary,
    to_binary,
)
from tests.helpers import HEADER, binary_body, binary_matrix, decode_binary_response, matrix_request

RNG = np.random.default_rng(5)
MATRIX = RNG.random((3, 4), dtype=np.float32)


def refused(raw: bytes, header_length: str | None = None, reason: Reason = Reason.TENSOR) -> str:
    """The message of the refusal of a body, checked to carry `reason`."""
    with pytest.raises(RequestError) as raised:
        decode_request(raw, header_length)
    assert raised.value.reason is reason, raised.value.message
    return raised.value.message


def body_of(request: dict) -> bytes:
    return orjson.dumps(request)


def bytes_chunk(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


# --- JSON ----------------------------------------------------------------------------------------------------


def test_a_json_matrix_decodes_with_its_name_shape_and_missing_values():
    matrix = MATRIX.copy()
    matrix[1, 2] = np.nan
    decoded = decode_request(body_of(matrix_request(matrix, id="r1", parameters={"a": 1})), None)
    (tensor,) = decoded.inputs
    assert (decoded.id, decoded.parameters, decoded.outputs) == ("r1", {"a": 1}, None)
    assert (tensor.name, tensor.datatype, tensor.shape, tensor.data.dtype) == ("input-0", "FP32", (3, 4), np.float32)
    np.testing.assert_array_equal(tensor.data, matrix)  # NaN where JSON held null


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("INT64", [1, -2, 2**62], np.array([1, -2, 2**62], dtype=np.int64)),
        ("FP64", [0.5, None, 1e300], np.array([0.5, np.nan, 1e300])),
        ("BOOL", [True, False], np.array([True, False])),
        ("BYTES", ["a", None, "é"], np.array([b"a", None, "é".encode()], dtype=object)),
        ("UINT8", [0, 255], np.array([0, 255], dtype=np.uint8)),
    ],
)
def test_json_data_of_each_kind_decodes_to_its_dtype(datatype, data, expected):
    request = {"inputs": [{"name": "x", "datatype": datatype, "shape": [len(data)], "data": data}]}
    (tensor,) = decode_request(body_of(request), None).inputs
    assert tensor.data.dtype == expected.dtype
    np.testing.assert_array_equal(tensor.data, expected)


@pytest.mark.parametrize(
    ("datatype", "data", "says"),
    [
        ("INT64", [1, None], "data must be numbers"),
        ("INT64", [1.5], "must be integers"),
        ("INT8", [128], "does not fit INT8"),
        ("FP32", ["1"], "must be numbers"),
        ("FP32", [[1, 2], [3]], "ragged or malformed"),
        ("BYTES", [1, 2], "BYTES data must be strings"),
        ("BOOL", [1, 0], "true or false"),
    ],
)
def test_json_data_that_does_not_fit_its_datatype_is_refused_naming_the_input(datatype, data, says):
    request = {"inputs": [{"name": "weight", "datatype": datatype, "shape": [len(data)], "data": data}]}
    message = refused(body_of(request))
    assert message.startswith("input weight:") and says in message


def test_an_integer_beyond_float64_is_refused_not_a_crash():
    raw = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1, 1' + b"0" * 400 + b"]}]}"
    assert "does not fit FP64" in refused(raw)


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        ([], "must be a JSON object"),
        ({"inputs": []}, "inputs: must be a non-empty list"),
        ({"inputs": [1]}, "inputs[0]: must be an object with a name"),
        ({"id": 3, "inputs": [{}]}, "id: must be a string"),
        ({"parameters": [], "inputs": [{}]}, "parameters: must be an object"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither data nor binary_data_size"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{}]}, "outputs:"),
    ],
    ids=repr,
)
def test_a_malformed_request_is_refused_saying_where(request_, says):
    assert says in refused(body_of(request_))


def test_a_body_that_is_no_json_is_invalid_json():
    refused(b"{inputs", reason=Reason.INVALID_JSON)


def test_an_input_or_an_output_named_twice_is_refused():
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}
    assert "input 'x' is named twice" in refused(body_of({"inputs": [tensor, tensor]}))
    outputs = [{"name": "label"}, {"name": "probability"}, {"name": "label"}]
    assert "output 'label' is named twice" in refused(body_of({"inputs": [tensor], "outputs": outputs}))


def test_data_that_does_not_hold_the_shape_is_refused():
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5]}]}
    assert "shape [2, 3] needs 6 elements, the data holds 5" in refused(body_of(request))


# --- shapes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "count"), [([], 1), ([0], 0), ([3, 4], 12), ([1] * MAX_DIMENSIONS, 1), ([2**20, 2**20], 2**40)]
)
def test_element_count_of_shapes_within_the_limits(shape, count):
    assert element_count("x", "FP32", shape) == count


@pytest.mark.parametrize(
    ("datatype", "shape", "says"),
    [
        ("FP32", [1] * (MAX_DIMENSIONS + 1), f"65 dimensions; the limit is {MAX_DIMENSIONS}"),
        ("FP32", [2**62, 0], "over 2**40 elements"),
        ("FP32", [0, 2**62], "over 2**40 elements"),  # empty, but the zero is no licence for the rest
        ("FP32", [2**20, 2**20, 2], "over 2**40 elements"),
        ("FP32", [-1], "non-negative integers"),
        ("FP32", [True], "non-negative integers"),
        ("FP32", [1.0], "non-negative integers"),
        ("FP32", "3", "non-negative integers"),
        ("FP128", [1], "unknown datatype 'FP128'"),
        (None, [1], "unknown datatype None"),
    ],
)
def test_element_count_refuses_bad_shapes_before_any_arithmetic(datatype, shape, says):
    with pytest.raises(RequestError) as raised:
        element_count("x", datatype, shape)
    assert raised.value.reason is Reason.TENSOR and says in raised.value.message


# --- the binary tensor data extension ------------------------------------------------------------------------


def test_a_binary_fp32_matrix_decodes_to_the_same_floats():
    raw, headers = binary_matrix(MATRIX)
    (tensor,) = decode_request(raw, headers[HEADER]).inputs
    assert tensor.shape == (3, 4) and tensor.data.dtype == np.float32
    np.testing.assert_array_equal(tensor.data, MATRIX)


def test_binary_and_json_inputs_mixed_each_take_their_own_bytes():
    fp64 = RNG.random(5)
    int64 = np.array([[1, -1], [2**40, 7]], dtype=np.int64)
    texts = [b"428", b"", "é".encode(), b"V57"]
    chunks = [fp64.astype("<f8").tobytes(), bytes_chunk(texts), int64.astype("<i8").tobytes()]
    inputs = [
        {"name": "a", "datatype": "FP64", "shape": [5], "parameters": {"binary_data_size": len(chunks[0])}},
        {"name": "json", "datatype": "FP32", "shape": [2], "data": [1.5, None]},
        {"name": "b", "datatype": "BYTES", "shape": [2, 2], "parameters": {"binary_data_size": len(chunks[1])}},
        {"name": "c", "datatype": "INT64", "shape": [2, 2], "parameters": {"binary_data_size": len(chunks[2])}},
    ]
    raw, headers = binary_body({"inputs": inputs}, chunks)
    a, plain, b, c = decode_request(raw, headers[HEADER]).inputs
    np.testing.assert_array_equal(a.data, fp64)
    np.testing.assert_array_equal(plain.data, np.array([1.5, np.nan], dtype=np.float32))
    assert b.data.tolist() == [texts[:2], texts[2:]]
    np.testing.assert_array_equal(c.data, int64)


@pytest.mark.parametrize("header_length", ["abc", "-1", "²", "1e3", "", "99999"])
def test_an_inference_header_length_that_does_not_fit_the_body_is_refused(header_length):
    raw, _ = binary_matrix(MATRIX)
    assert f"inference-header-content-length {header_length!r} does not fit" in refused(raw, header_length)


def test_an_inference_header_length_cutting_the_json_short_is_invalid_json():
    raw, headers = binary_matrix(MATRIX)
    refused(raw, str(int(headers[HEADER]) - 1), reason=Reason.INVALID_JSON)


def test_binary_bytes_no_input_claims_are_refused():
    raw, headers = binary_matrix(MATRIX)
    assert "holds 3 bytes of binary data that no input claims" in refused(raw + b"xyz", headers[HEADER])


@pytest.mark.parametrize("size", [49, -1, True, "48", 1.5])
def test_a_binary_data_size_beyond_the_data_or_malformed_is_refused(size):
    chunk = MATRIX.astype("<f4").tobytes()  # 48 bytes
    tensor = {"name": "m", "datatype": "FP32", "shape": [3, 4], "parameters": {"binary_data_size": size}}
    raw, headers = binary_body({"inputs": [tensor]}, [chunk])
    assert f"input m: binary_data_size {size!r} exceeds" in refused(raw, headers[HEADER])


@pytest.mark.parametrize("size", [44, 47, 50, 52])
def test_binary_data_of_the_wrong_length_for_the_shape_is_refused(size):
    chunk = (MATRIX.astype("<f4").tobytes() + b"\0" * 4)[:size]
    tensor = {"name": "m", "datatype": "FP32", "shape": [3, 4], "parameters": {"binary_data_size": size}}
    raw, headers = binary_body({"inputs": [tensor]}, [chunk])
    assert f"input m: {size} bytes of FP32 do not make 12 elements" in refused(raw, headers[HEADER])


@pytest.mark.parametrize(
    ("chunk", "says"),
    [
        (bytes_chunk([b"abc"]) + b"\x05\x00", "truncated BYTES element length"),
        (struct.pack("<I", 10) + b"abc", "a BYTES element is longer than the data sent"),
    ],
)
def test_truncated_bytes_elements_are_refused(chunk, says):
    tensor = {"name": "diag_1", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(chunk)}}
    raw, headers = binary_body({"inputs": [tensor]}, [chunk])
    assert f"input diag_1: {says}" in refused(raw, headers[HEADER])


def test_bytes_elements_must_make_the_shape():
    chunk = bytes_chunk([b"a", b"b", b"c"])
    tensor = {"name": "t", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(chunk)}}
    raw, headers = binary_body({"inputs": [tensor]}, [chunk])
    assert "shape [2] needs 2 elements, the data holds 3" in refused(raw, headers[HEADER])


@pytest.mark.parametrize("datatype", [name for name in DTYPES if name != "BYTES"])
def test_to_binary_and_from_binary_round_trip_every_numeric_datatype(datatype):
    dtype = np.dtype(DTYPES[datatype])
    if dtype.kind == "b":
        array = RNG.random(7) > 0.5
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        array = np.array([info.min, info.max, 0, 1, info.max // 3], dtype=dtype)
    else:
        array = np.array([0.0, -1.5, np.inf, np.finfo(dtype).max, np.nan], dtype=dtype)
    chunk = to_binary(array, datatype)
    assert len(chunk) == array.size * dtype.itemsize
    np.testing.assert_array_equal(from_binary(chunk, datatype, array.size, "x"), array)


def test_to_binary_is_little_endian_and_bytes_are_length_prefixed():
    assert to_binary(np.array([1], dtype=np.int64), "INT64") == b"\x01" + b"\x00" * 7
    assert to_binary(np.array([1.0], dtype=np.float32), "FP32") == struct.pack("<f", 1.0)
    elements = np.array(["428", "", "é"], dtype=object)
    chunk = to_binary(elements, "BYTES")
    assert chunk == b"\x03\x00\x00\x00428" + b"\x00" * 4 + b"\x02\x00\x00\x00" + "é".encode()
    assert from_binary(chunk, "BYTES", 3, "x").tolist() == [b"428", b"", "é".encode()]


# --- responses -----------------------------------------------------------------------------------------------

OUTPUTS = [
    ("probability", "FP32", np.array([0.25, 0.5, 0.125], dtype=np.float32)),
    ("label", "INT64", np.array([0, 1, 0], dtype=np.int64)),
    ("prediction_id", "BYTES", np.array(["a-1", "b-2", "c-3"])),
]


def test_a_json_response_holds_every_output_as_data():
    body, headers = encode_response({"model_name": "m", "id": "r"}, OUTPUTS, binary=set())
    assert headers == {"content-type": "application/json"}
    answer = json.loads(body)
    assert (answer["model_name"], answer["id"]) == ("m", "r")
    assert [(o["name"], o["datatype"], o["shape"], o["data"]) for o in answer["outputs"]] == [
        (name, datatype, list(array.shape), array.tolist()) for name, datatype, array in OUTPUTS
    ]


@pytest.mark.parametrize("binary", [{"probability"}, {"label", "prediction_id"}, {o[0] for o in OUTPUTS}])
def test_a_binary_response_decodes_back_to_the_outputs(binary):
    body, headers = encode_response({"model_name": "m"}, OUTPUTS, binary)
    assert headers["content-type"] == "application/octet-stream"
    header, arrays = decode_binary_response(httpx.Response(200, content=body, headers=headers))
    assert set(arrays) == binary
    for name, _, array in OUTPUTS:
        if name in binary:
            expected = np.array([v.encode() for v in array], dtype=object) if array.dtype.kind == "U" else array
            np.testing.assert_array_equal(arrays[name], expected)
        else:
            (entry,) = [o for o in header["outputs"] if o["name"] == name]
            assert entry["data"] == array.tolist()


def test_what_encode_response_writes_decode_request_reads():
    """The response's layout, its outputs renamed inputs, is a request body the decoder takes back whole."""
    body, headers = encode_response({}, OUTPUTS, {o[0] for o in OUTPUTS})
    length = int(headers["inference-header-content-length"])
    header = json.loads(body[:length])
    raw = orjson.dumps({"inputs": header["outputs"]})
    decoded = decode_request(raw + body[length:], str(len(raw)))
    for tensor, (name, datatype, array) in zip(decoded.inputs, OUTPUTS, strict=True):
        assert (tensor.name, tensor.datatype, tensor.shape) == (name, datatype, array.shape)
        expected = np.array([v.encode() for v in array], dtype=object) if datatype == "BYTES" else array
        np.testing.assert_array_equal(tensor.data, expected)
