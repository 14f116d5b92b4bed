"""Large V2 JSON bodies parsed by simdjson: each FP32/FP64 input's numbers reach numpy as one float64 buffer, with
no Python float per value (the strict parser, bento/http/parsing.py, makes ~263,000 of them per 1,000-row body).

`parse(raw)` returns exactly what `parse_json(raw)` would, except that the `data` of each input is a flat float64
array of the values the strict path would decode; or None wherever that is not certain, and the strict path
decides and words every refusal. It takes a body only when:
- it holds at least MIN_BYTES and its first non-blank byte opens an object (simdjson skips a UTF-8 byte order mark
  that the strict parser refuses) and simdjson parses it (RFC 8259, valid UTF-8, no lone surrogate, integers
  within 64 bits, no number beyond a double: those go to the strict path as they are);
- every object holds each key once (the strict parser refuses a repeated key) within MAX_DEPTH levels;
- every input is an object of datatype FP32 or FP64 whose `data` is a list of numbers, or a list of equally long
  lists of numbers (null, true, strings, ragged or deeper nesting: strict path);
- every value of `data` lies strictly within ±2**53 (beyond it a list of integers only, which the strict path casts
  from int64 at once, would be rounded twice here).
simdjson flattens nested lists into the buffer; that `data` holds no list deeper than its form is proven by counting
the body's '[' bytes against the lists found, so no string of the rest of the body may hold a '['.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import simdjson

MIN_BYTES = 2048  # below it the strict path is as fast and the number arrays small
MAX_DEPTH = 32  # deeper bodies (no request needs them) take the strict path
FLOAT_TYPES = ("FP32", "FP64")
_EXACT = 2.0**53  # every integer strictly within it is exact in a float64
_OPENS_OBJECT = re.compile(rb"[ \t\r\n]*\{")


class _UnsureError(Exception):
    """The body may decode otherwise under the strict path: it decides."""


def parse(raw: bytes) -> dict[str, Any] | None:
    """The body with each input's `data` as flat float64 values, exactly as the strict path decodes it; else None."""
    if len(raw) < MIN_BYTES or _OPENS_OBJECT.match(raw) is None:
        return None
    lists = [0]
    try:  # a parser per body: one kept would hold on to buffers several times the largest body it ever parsed
        body = _body(simdjson.Parser().parse(raw), lists)
    except (_UnsureError, ValueError, RuntimeError, TypeError):  # simdjson refuses (RuntimeError: big integers)
        return None
    if np.count_nonzero(np.frombuffer(raw, np.uint8) == ord("[")) != lists[0]:
        return None  # a list inside `data` that simdjson flattened, or a '[' in a string
    return body


def _body(document: Any, lists: list[int]) -> dict[str, Any]:
    if not isinstance(document, simdjson.Object):
        raise _UnsureError
    body = {}
    for key in _keys(document):
        value = document[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            lists[0] += 1
            body[key] = [_input(item, lists) for item in value]
        else:
            body[key] = _plain(value, lists, 1)
    return body


def _input(item: Any, lists: list[int]) -> dict[str, Any]:
    if not isinstance(item, simdjson.Object):
        raise _UnsureError
    tensor = {key: _plain(item[key], lists, 2) for key in _keys(item) if key != "data"}
    if tensor.get("datatype") not in FLOAT_TYPES or "data" not in item:
        raise _UnsureError
    tensor["data"] = _numbers(item["data"], lists)
    return tensor


def _numbers(data: Any, lists: list[int]) -> np.ndarray:
    """A list of numbers or of equally long lists of numbers, flat; the lists it holds are counted."""
    if not isinstance(data, simdjson.Array):
        raise _UnsureError
    lists[0] += 1
    if len(data) and isinstance(data[0], simdjson.Array):
        rows = list(data)
        width = len(rows[0])
        if not all(isinstance(row, simdjson.Array) and len(row) == width for row in rows):
            raise _UnsureError
        lists[0] += len(rows)
    values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    if values.size and not -_EXACT < values.min() <= values.max() < _EXACT:
        raise _UnsureError
    return values


def _keys(item: Any) -> list[str]:
    keys = list(item.keys())
    if len(set(keys)) != len(keys) or any("[" in key for key in keys):
        raise _UnsureError
    return keys


def _plain(value: Any, lists: list[int], depth: int) -> Any:
    """`value` as the strict parser returns it; the lists in it counted."""
    if depth > MAX_DEPTH:
        raise _UnsureError
    if isinstance(value, simdjson.Object):
        return {key: _plain(value[key], lists, depth + 1) for key in _keys(value)}
    if isinstance(value, simdjson.Array):
        lists[0] += 1
        return [_plain(item, lists, depth + 1) for item in value]
    if isinstance(value, str) and "[" in value:
        raise _UnsureError
    return value
