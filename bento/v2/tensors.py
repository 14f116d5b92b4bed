"""Open Inference Protocol (KServe V2) tensors: decoded from JSON and the binary tensor data extension, and encoded.

The one codec of the protocol's tensors: the REST adapter decodes whole bodies here, the gRPC servicer its raw and
typed contents (`element_count`, `from_binary`, `shaped`), so both refuse alike.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from bento.errors import Reason, RequestError, first_repeated
from bento.http.parsing import is_length, parse_json
from bento.v2 import json_tensors

HEADER_LENGTH = "inference-header-content-length"
DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": object,
}  # fmt: skip
MAX_DIMENSIONS = 64  # numpy's limit
MAX_ELEMENTS = 2**40  # far beyond any body the service reads, far within numpy's limits


@dataclass(frozen=True)
class Tensor:
    """One named input tensor, its data reshaped to `shape` (BYTES as an object array of bytes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request."""

    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[dict[str, Any]] | None


def tensor_error(message: str) -> RequestError:
    """A refusal of a malformed tensor (reason `tensor`, 400 over HTTP, INVALID_ARGUMENT over gRPC)."""
    return RequestError(Reason.TENSOR, message)


def decode_request(raw: bytes, header_length: str | None) -> InferRequest:
    """Parse an inference request body; `header_length` is the binary extension's header value."""
    binary = b""
    if header_length is not None:
        if not is_length(header_length) or int(header_length) > len(raw):
            raise tensor_error(f"{HEADER_LENGTH} {header_length!r} does not fit a body of {len(raw)} bytes")
        raw, binary = raw[: int(header_length)], raw[int(header_length) :]
    body = json_tensors.parse(raw)
    return decode_body(parse_json(raw) if body is None else body, binary)


def decode_body(body: Any, binary: bytes) -> InferRequest:
    """A parsed request body (`json_tensors.parse`'s, or the strict parser's) and its binary data, decoded."""
    if not isinstance(body, dict):
        raise tensor_error("the request must be a JSON object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise tensor_error("id: must be a string")
    parameters = _parameters(body.get("parameters"), "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise tensor_error("inputs: must be a non-empty list of tensors")
    outputs = body.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list)
        or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        raise tensor_error("outputs: must be a list of objects with a name")
    offset = 0
    tensors = []
    for index, item in enumerate(inputs):
        tensor, offset = _decode_input(item, index, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise tensor_error(f"the body holds {len(binary) - offset} bytes of binary data that no input claims")
    return request_of(request_id, parameters, tensors, outputs)


def request_of(
    request_id: str | None, parameters: dict[str, Any], tensors: list[Tensor], outputs: list[dict[str, Any]] | None
) -> InferRequest:
    """The decoded request; TENSOR error for an input or an output named twice (a repeated output would multiply
    the answer: each output at most once bounds it by the rows asked for)."""
    _once([t.name for t in tensors], "input")
    _once([o["name"] for o in outputs or ()], "output")
    return InferRequest(request_id, parameters, tensors, outputs)


def _once(names: list[str], what: str) -> None:
    name = first_repeated(names)
    if name is not None:
        raise tensor_error(f"{what}s: {what} {name!r} is named twice; name each {what} once")


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise tensor_error(f"{where}: must be an object")
    return value


def _decode_input(item: Any, index: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise tensor_error(f"inputs[{index}]: must be an object with a name")
    name = item["name"]
    datatype, shape = item.get("datatype"), item.get("shape")
    count = element_count(name, datatype, shape)
    parameters = _parameters(item.get("parameters"), f"input {name} parameters")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise tensor_error(f"input {name}: binary_data_size {size!r} exceeds the binary data sent")
        data = from_binary(binary[offset : offset + size], datatype, count, name)
        offset += size
    else:
        if "data" not in item:
            raise tensor_error(f"input {name}: has neither data nor binary_data_size")
        data = _from_json(item["data"], datatype, name)
    return shaped(name, datatype, shape, data, parameters), offset


def element_count(name: str, datatype: Any, shape: Any) -> int:
    """The number of elements of a tensor description; TENSOR error for an unknown datatype or a bad shape.

    The shape is checked before any arithmetic on it: at most numpy's 64 dimensions, each a non-negative integer,
    and the product of the non-zero ones at most MAX_ELEMENTS (so `[2**62, 0]`, empty as it is, is refused too).
    """
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise tensor_error(f"input {name}: unknown datatype {datatype!r}; expected one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise tensor_error(f"input {name}: shape must be a list of non-negative integers")
    if len(shape) > MAX_DIMENSIONS:
        raise tensor_error(f"input {name}: shape has {len(shape)} dimensions; the limit is {MAX_DIMENSIONS}")
    extent = 1
    for dimension in shape:
        extent *= dimension or 1
        if extent > MAX_ELEMENTS:
            raise tensor_error(f"input {name}: shape {shape} describes over 2**40 elements (zeros aside)")
    return math.prod(shape)


def shaped(name: str, datatype: str, shape: list[int], data: np.ndarray, parameters: dict[str, Any]) -> Tensor:
    """The tensor, its flat data reshaped; TENSOR error where the data does not hold the shape's elements."""
    count = math.prod(shape)
    if data.size != count:
        raise tensor_error(f"input {name}: shape {shape} needs {count} elements, the data holds {data.size}")
    return Tensor(name, datatype, tuple(shape), data.reshape(shape), parameters)


def from_binary(chunk: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    """The elements of raw little-endian tensor data (BYTES: each element 4-byte length-prefixed)."""
    if datatype == "BYTES":
        items, position = [], 0
        while position < len(chunk):
            if position + 4 > len(chunk):
                raise tensor_error(f"input {name}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", chunk, position)
            position += 4
            if position + length > len(chunk):
                raise tensor_error(f"input {name}: a BYTES element is longer than the data sent")
            items.append(chunk[position : position + length])
            position += length
        return np.array(items, dtype=object)
    dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise tensor_error(f"input {name}: {len(chunk)} bytes of {datatype} do not make {count} elements")
    return np.frombuffer(chunk, dtype=dtype)


def _from_json(data: Any, datatype: str, name: str) -> np.ndarray:
    if isinstance(data, np.ndarray):  # FP32 or FP64 values that json_tensors.parse read, as the lines below would
        return data.astype(DTYPES[datatype])
    try:
        array = np.asarray(data)
    except ValueError as error:
        raise tensor_error(f"input {name}: data is ragged or malformed") from error
    if datatype == "BYTES":
        flat = array.ravel()
        if array.dtype.kind != "U" and not all(v is None or isinstance(v, str) for v in flat.tolist()):
            raise tensor_error(f"input {name}: BYTES data must be strings")
        return np.array([None if v is None else v.encode() for v in flat.tolist()], dtype=object)
    if array.dtype == object:  # JSON null (missing) among numbers: NaN, for floating types only
        values = array.ravel().tolist()
        if datatype not in ("FP16", "FP32", "FP64") or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
        ):
            raise tensor_error(
                f"input {name}: data must be numbers{' (null means missing)' if datatype.startswith('FP') else ''}"
            )
        try:
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        except OverflowError as error:  # an integer literal beyond float64, e.g. 1 followed by 400 zeros
            raise tensor_error(f"input {name}: a value does not fit {datatype}") from error
    if datatype == "BOOL":
        if array.size and array.dtype.kind != "b":
            raise tensor_error(f"input {name}: BOOL data must be true or false")
        return array.astype(np.bool_)
    if array.size and array.dtype.kind not in "iuf":
        raise tensor_error(f"input {name}: {datatype} data must be numbers")
    target = np.dtype(DTYPES[datatype])
    if target.kind in "iu":
        if array.size and array.dtype.kind == "f":
            raise tensor_error(f"input {name}: {datatype} data must be integers")
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise tensor_error(f"input {name}: a value does not fit {datatype}")
    return array.astype(target)


def to_binary(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's data in the binary extension's layout (BYTES: each element's 4-byte length, then the element)."""
    if datatype == "BYTES":
        elements = [value.encode() if isinstance(value, str) else value for value in array.ravel().tolist()]
        return b"".join(struct.pack("<I", len(element)) + element for element in elements)
    return np.ascontiguousarray(array, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).tobytes()


def encode_response(
    payload: dict[str, Any], outputs: list[tuple[str, str, np.ndarray]], binary: set[str]
) -> tuple[bytes, dict[str, str]]:
    """The response body and headers; outputs named in `binary` go in the binary extension."""
    described, chunks = [], []
    for name, datatype, array in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary:
            chunk = to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = array.ravel().tolist()
        described.append(entry)
    header = orjson.dumps({**payload, "outputs": described})
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
