"""bento/v2/json_tensors.py, the simdjson fast path of large V2 JSON bodies: it decodes exactly what the strict path
(`parse_json`, then `decode_body`) decodes, bit for bit, or hands the body over so that every refusal (NaN,
infinities, wrong lengths, non-numbers, nesting, repeated keys, ...) keeps its status and message."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bento import features
from bento.errors import RequestError
from bento.http.parsing import parse_json
from bento.v2 import inference, json_tensors
from bento.v2.tensors import InferRequest, decode_body, decode_request
from tests.helpers import WIDTH, matrix_of, records

PAD = b" " * json_tensors.MIN_BYTES  # trailing blanks: a small body long enough for the fast path


def strict(raw: bytes) -> InferRequest:
    return decode_body(parse_json(raw), b"")


def fast(raw: bytes) -> InferRequest:
    return decode_request(raw, None)


def outcome(decode: Any, raw: bytes) -> tuple[Any, ...]:
    """What a path makes of a body: the request with each tensor's bytes, then the checked matrix or its refusal;
    or the refusal of the body (reason and message)."""
    try:
        request = decode(raw)
    except RequestError as error:
        return ("refused", error.reason, error.message)
    tensors = [
        (t.name, t.datatype, t.shape, t.data.dtype.str, t.data.tolist() if t.data.dtype == object else t.data.tobytes())
        for t in request.inputs
    ]
    try:
        matrix: Any = inference.matrix_of(request, 10**6).tobytes()
    except RequestError as error:
        matrix = ("refused", error.reason, error.message)
    return ("decoded", request.id, request.parameters, request.outputs, tensors, matrix)


def same_both_ways(raw: bytes) -> tuple[Any, ...]:
    """The outcome of the body, the same by both paths."""
    expected = outcome(strict, raw)
    assert outcome(fast, raw) == expected
    return expected


def tensor_body(data: str, shape: list[int], datatype: str = "FP32", extra: str = "") -> bytes:
    """A request of one tensor "input-0" whose data is the JSON text `data`, padded past MIN_BYTES."""
    head = f'"name":"input-0","datatype":"{datatype}","shape":{json.dumps(shape)}'
    return f'{{"id":"r1"{extra},"inputs":[{{{head},"data":{data}}}]}}'.encode() + PAD


ROWS = next(m[~np.isnan(m).any(axis=1)][:40] for m in [matrix_of(records(100))])  # valid rows, none missing
FLAT = "[" + ",".join(str(v) for v in ROWS.ravel()) + "]"  # shortest float32 text, as clients send it
NESTED = json.dumps(ROWS.tolist())


@pytest.mark.parametrize("data", [FLAT, NESTED], ids=["flat", "nested"])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_a_matrix_takes_the_fast_path_and_decodes_bit_for_bit_as_the_strict_path(data, datatype):
    raw = tensor_body(data, [40, WIDTH], datatype)
    parsed = json_tensors.parse(raw)
    assert parsed is not None and isinstance(parsed["inputs"][0]["data"], np.ndarray)
    decoded = same_both_ways(raw)
    assert decoded[0] == "decoded" and not isinstance(decoded[-1], tuple)  # a checked matrix, not a refusal


NOT_TAKEN = {
    "NaN": ("[1.5,NaN,2]", [3]),
    "Infinity": ("[1.5,Infinity,2]", [3]),
    "-Infinity": ("[1.5,-Infinity,2]", [3]),
    "a number beyond a double": ("[1.5,1e400,2]", [3]),
    "an integer beyond 64 bits": ("[1.5,1" + "0" * 30 + ",2]", [3]),
    "an integer beyond 2**53 (rounded twice as a double)": (f"[{2**53 + 2**29 + 1},1,2]", [3]),
    "a string": ('[1.5,"2",2]', [3]),
    "true": ("[1.5,true,2]", [3]),
    "null (NaN, by the strict path)": ("[1.5,null,2]", [3]),
    "an object": ('[1.5,{"a":1},2]', [3]),
    "ragged rows": ("[[1,2],[3]]", [3]),
    "a list among numbers": ("[1,[2],3]", [3]),
    "a number among lists": ("[[1],2,[3]]", [3]),
    "an empty list among numbers": ("[1,[],2,3]", [3]),
    "three levels": ("[[[1],[2]],[[3],[4]]]", [4]),
    "a list within a row": ("[[1,[2]],[3,4]]", [4]),
    "data that is no list": ("1.5", [1]),
}


@pytest.mark.parametrize(("data", "shape"), NOT_TAKEN.values(), ids=NOT_TAKEN.keys())
def test_what_the_fast_path_cannot_vouch_for_takes_the_strict_path_with_its_answer(data, shape):
    raw = tensor_body(data, shape)
    assert json_tensors.parse(raw) is None
    same_both_ways(raw)


VALUES = [str(v) for v in ROWS[:2].ravel()]
STAY = features.COLUMN_INDEX["time_in_hospital"]  # a number column of row 0
RAGGED = "input input-0: data is ragged or malformed"
NEEDS = f"input input-0: shape [2, {WIDTH}] needs {2 * WIDTH} elements"


def with_value(token: str) -> str:
    """Two rows as flat data, the length of stay of the first written as `token`."""
    return "[" + ",".join([*VALUES[:STAY], token, *VALUES[STAY + 1 :]]) + "]"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (with_value("Infinity"), "input input-0 row 0 column time_in_hospital: inf is outside the column's range"),
        (with_value("-Infinity"), "input input-0 row 0 column time_in_hospital: -inf is outside the column's range"),
        (with_value("1e400"), "input input-0 row 0 column time_in_hospital: inf is outside the column's range"),
        (with_value("3.5e38"), "input input-0 row 0 column time_in_hospital: inf is outside the column's range"),
        (with_value('"2"'), "input input-0: FP32 data must be numbers"),
        (with_value("{}"), "input input-0: data must be numbers (null means missing)"),
        (with_value("[2]"), RAGGED),
        ("[" + ",".join(VALUES[:-1]) + "]", f"{NEEDS}, the data holds {2 * WIDTH - 1}"),
        ("[" + ",".join(VALUES) + ",1]", f"{NEEDS}, the data holds {2 * WIDTH + 1}"),
        (f"[[{','.join(VALUES[:WIDTH])}],[{','.join(VALUES[WIDTH:-1])}]]", RAGGED),
    ],
    ids=["Infinity", "-Infinity", "1e400", "3.5e38 (beyond FP32)", "string", "object", "nested", "short", "long",
         "ragged"],
)  # fmt: skip
def test_the_refusals_of_large_bodies_keep_their_400_and_message(data, says):
    raw = tensor_body(data, [2, WIDTH])
    assert json_tensors.parse(raw) is None or "elements" in says  # a wrong length is refused after either parse
    outcome_ = same_both_ways(raw)
    refusal = outcome_ if outcome_[0] == "refused" else outcome_[-1]
    assert refusal[2] == says and RequestError(refusal[1], says).status == 400


@pytest.mark.parametrize("token", ["NaN", "null"])
def test_nan_and_null_are_a_missing_value_on_both_paths(token):
    *_, matrix = same_both_ways(tensor_body(with_value(token), [2, WIDTH]))
    assert np.isnan(np.frombuffer(matrix, np.float32)[STAY])


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf" + tensor_body(FLAT, [40, WIDTH]),  # a byte order mark: simdjson skips it, json refuses it
        tensor_body(FLAT, [40, WIDTH], extra=',"id":"r2"'),  # a repeated key
        tensor_body(FLAT, [40, WIDTH], extra=',"parameters":{"a":1,"a":2}'),
        tensor_body(FLAT, [40, WIDTH], extra=',"parameters":{"note":"\\ud800"}'),  # a lone surrogate
        tensor_body(FLAT, [40, WIDTH], extra=',"parameters":{"note":"a [ in a string"}'),
        tensor_body(FLAT, [40, WIDTH], extra=',"parameters":{"n":1' + "0" * 30 + "}"),  # a big integer
        tensor_body(FLAT, [40, WIDTH], extra=',"parameters":' + "[" * 40 + "]" * 40),  # deep nesting
        tensor_body(FLAT, [40, WIDTH], datatype="INT64"),
        tensor_body(FLAT, [40, WIDTH])[:-1] + b"\x00",  # trailing NUL
        b"[" + tensor_body(FLAT, [40, WIDTH]) + b"]",  # not an object
    ],
    ids=["bom", "repeated id", "repeated parameter", "surrogate", "bracket in string", "big int", "deep", "int64",
         "nul", "list"],
)  # fmt: skip
def test_a_body_with_anything_the_strict_parser_treats_otherwise_takes_the_strict_path(raw):
    assert json_tensors.parse(raw) is None
    same_both_ways(raw)


def test_a_small_body_takes_the_strict_path():
    assert json_tensors.parse(tensor_body("[1.5,2]", [2]).rstrip()) is None


# --- the property: both paths agree on generated bodies, valid and not -----------------------------------------

TOKENS = ["NaN", "Infinity", "-Infinity", "-0", "-0.0", "1e400", "3.5e38", "-1e-400", "1E+2", "null", "true",
          '"1"', "[]", "[1]", "[[1]]", "{}", str(2**53 + 2**29 + 1), str(2**64 - 1), str(10**25)]  # fmt: skip
# 2**53 + 2**29 + 1: among integers only, the strict path rounds it to FP32 once (to 2**53 + 2**30), a double twice
modest = st.one_of(
    st.floats(-1e6, 1e6).map(repr),
    st.floats(-1e6, 1e6, width=32).map(lambda v: str(np.float32(v))),  # shortest float32 text, as clients send
    st.integers(-1000, 1000).map(str),
)
wide = st.one_of(
    modest,
    st.floats(allow_nan=False, allow_infinity=False).map(repr),  # beyond 2**53 too
    st.integers(-(2**70), 2**70).map(str),
)
integers = st.integers(-(2**24), 2**24).map(str)


@st.composite
def data_texts(draw: st.DrawFn) -> tuple[str, int]:
    """JSON text of `data` (flat, rows, ragged or deeper; numbers or integers only, at most one other token) and
    how many values it holds."""
    form = draw(st.sampled_from(["flat", "flat", "rows", "rows", "ragged", "deep"]))
    pool = draw(st.sampled_from([modest, modest, wide, integers]))
    width = draw(st.integers(1, 6))
    rows = draw(st.lists(st.lists(pool, min_size=width, max_size=width), max_size=8))
    token = draw(st.one_of(st.none(), st.none(), st.sampled_from(TOKENS)))
    if token is not None and rows:
        row = draw(st.integers(0, len(rows) - 1))
        rows[row][draw(st.integers(0, width - 1))] = token
    if form == "ragged" and rows:
        rows[-1].append("1")
    count = sum(len(row) for row in rows)
    if form == "flat":
        return "[" + ",".join(value for row in rows for value in row) + "]", count
    texts = ["[" + ",".join(row) + "]" for row in rows]
    if form == "deep" and texts:
        texts[0] = "[" + texts[0] + "]"
    return "[" + ",".join(texts) + "]", count


EXTRAS = [
    '"id":"r"',
    '"id":3',
    '"id":"[x"',
    '"id":"\\u005b"',
    '"id":"\\ud83d\\ude00"',
    '"parameters":{"content_type":"np"}',
    '"outputs":[{"name":"probability"}]',
    '"outputs":[{"name":"label","parameters":{"binary_data":false}}]',
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    inputs = []
    for index in range(draw(st.sampled_from([1, 1, 2]))):
        data, count = draw(data_texts())
        shape = draw(st.sampled_from([[count], [1, count], [count + 1], [count, 0, 1]]))
        datatype = draw(st.sampled_from(["FP32"] * 6 + ["FP64"] * 3 + ["FP16", "INT64", "BOOL", "fp32"]))
        fields = [f'"name":"x{index}"', f'"datatype":"{datatype}"', f'"shape":{json.dumps(shape)}', f'"data":{data}']
        if draw(st.booleans()):
            fields.append(draw(st.sampled_from(['"parameters":{}', '"parameters":{"a":[1,2]}', '"data":[1]'])))
        inputs.append("{" + ",".join(draw(st.permutations(fields))) + "}")
    extras = draw(st.lists(st.sampled_from(EXTRAS), max_size=3))
    text = "{" + ",".join([*extras, '"inputs":[' + ",".join(inputs) + "]"]) + "}"
    return draw(st.sampled_from(["", " \n", "\t"])).encode() + text.encode() + PAD


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bodies())
def test_both_paths_decode_every_generated_body_alike_or_refuse_it_alike(raw):
    same_both_ways(raw)
