"""bento/http/parsing.py: JSON parsed strictly with errors a client can act on (a repeated key named, lone surrogates
located, UTF-16 recognised, empty and deeply nested bodies), and byte counts in headers."""

from __future__ import annotations

import json

import pytest

from bento.errors import Reason, RequestError
from bento.http.parsing import is_length, parse_json


def refusal(raw: bytes) -> str:
    with pytest.raises(RequestError) as raised:
        parse_json(raw)
    assert raised.value.reason is Reason.INVALID_JSON
    return raised.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"race": "Caucasian", "age": "[70-80)", "n": [1, 2.5, null, true]}',
        b'{"diag_1": "V57: rehabilitation", "note": "a:b:c"}',  # colons in strings: the checking parser agrees
        b'[{"a": 1}, {"a": 2}]',  # the same key in two objects is no repetition
        '{"name": "Zoë 😀"}'.encode(),
        b'{"pair": "\\ud83d\\ude00"}',  # a surrogate pair escaped: one character
        b"  [1]  ",
    ],
)
def test_valid_json_parses_as_the_standard_parser_does(raw):
    assert parse_json(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"race": "Asian", "race": "Caucasian"}', "race"),
        (b'[{"ok": 1}, {"b": {"c": 1, "c": 2}}]', "c"),
        (b'{"a": 1, "a": 1}', "a"),  # even with the same value
    ],
)
def test_a_key_repeated_in_one_object_is_named(raw, key):
    assert refusal(raw) == f"the key {key!r} appears twice in one object"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"race": "\\ud800"}', "race"),
        (b'{"patients": [1, {"diag_1": "x\\udfff"}]}', "patients[1].diag_1"),
        (b'{"\\udc00": 1}', "'\\\\udc00' (a key)"),
        (b'"\\ud800"', "the body"),
    ],
)
def test_a_lone_surrogate_is_located(raw, where):
    assert refusal(raw) == f"{where}: not valid Unicode (a lone UTF-16 surrogate)"


def test_utf16_and_other_encodings_are_named():
    assert "NUL bytes: UTF-16 or UTF-32?" in refusal('{"a": 1}'.encode("utf-16-le"))
    assert refusal('{"a": 1}'.encode("utf-16")) == "the body is not UTF-8 text"  # with a byte order mark
    assert refusal(b'{"a": "\xe9"}') == "the body is not UTF-8 text"  # latin-1


@pytest.mark.parametrize("raw", [b"", b" \r\n\t"])
def test_an_empty_body_says_so(raw):
    assert refusal(raw) == "the body is empty; expected JSON"


def test_nesting_beyond_the_parsers_is_refused_and_deep_objects_within_them_parse():
    assert refusal(b"[" * 100_000 + b"]" * 100_000) == "the JSON is nested too deeply"
    deep = b'{"a": ' * 1000 + b"1" + b"}" * 1000  # within orjson's depth, beyond Python's recursion limit
    value = parse_json(deep)
    for _ in range(1000):
        value = value["a"]
    assert value == 1


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"a": }', "malformed JSON: Expecting value at line 1 column 7"),
        (b'{"a": 1,\n "b": [1,]}', "at line 2"),
        (b"[1" + b"0" * 5000 + b"]", "malformed JSON:"),  # more digits than Python converts
    ],
)
def test_malformed_json_says_where(raw, says):
    assert says in refusal(raw)


@pytest.mark.parametrize("value", ["0", "12", " 12 ", "\t3", "007"])
def test_byte_counts(value):
    assert is_length(value)


@pytest.mark.parametrize("value", ["", " ", "-1", "+1", "1.0", "1e3", "0x10", "²", "\uff11", "1 2", "12\n"])
def test_what_is_not_a_byte_count(value):
    assert not is_length(value)
