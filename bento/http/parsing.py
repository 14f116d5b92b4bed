"""Bytes a client sent, parsed strictly: JSON with errors a client can act on, and byte counts in headers.

No web framework here: the V2 tensor decoder (bento/v2/tensors.py) parses with it under REST and gRPC alike.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from bento.errors import Reason, RequestError, first_repeated

_LENGTH = re.compile(r"[ \t]*[0-9]+[ \t]*")


def is_length(value: str) -> bool:
    """Whether a header value is a byte count: ASCII digits only (str.isdigit also takes '²', which int() refuses)."""
    return _LENGTH.fullmatch(value) is not None


def parse_json(raw: bytes) -> Any:
    """JSON from UTF-8 bytes (orjson), every key once and every string valid Unicode; else a 400 saying why.

    orjson takes duplicate keys (the last wins) and refuses what the standard parser explains better (NaN,
    numbers beyond a double, lone surrogates, other encodings). A body whose text holds more colons than the
    parsed objects hold keys may repeat a key (or hold a colon in a string): that rare body, and every body orjson
    refuses, is parsed again by the standard parser, which names the repeated key, the bad text or the error.
    """
    if not raw.strip():
        raise RequestError(Reason.INVALID_JSON, "the body is empty; expected JSON")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _parse_checked(raw)
    if raw.count(b":") > _key_count(parsed):
        return _parse_checked(raw, unicode_checked=True)
    return parsed


def _key_count(value: Any) -> int:
    """The keys of the objects in `value` (iteratively: orjson nests 1,024 deep, beyond Python's recursion limit);
    lists whose first item is no container are skipped (an undercount only sends the body to the checking parser)."""
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if item.__class__ is dict:
            count += len(item)
            pending.extend(v for v in item.values() if v.__class__ is dict or v.__class__ is list)
        elif item.__class__ is list and item and (item[0].__class__ is dict or item[0].__class__ is list):
            pending.extend(item)
    return count


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        repeated = first_repeated(key for key, _ in pairs)
        raise RequestError(Reason.INVALID_JSON, f"the key {_quoted(repeated)} appears twice in one object")
    return result


def _quoted(text: str) -> str:
    return repr(text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))


def _parse_checked(raw: bytes, unicode_checked: bool = False) -> Any:
    """`raw` parsed by the standard parser; `unicode_checked`: orjson took it, so its text is valid Unicode."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(Reason.INVALID_JSON, "the body is not UTF-8 text") from error
    if "\x00" in text:  # JSON never holds a raw NUL: UTF-16 or UTF-32 text without a byte order mark
        raise RequestError(Reason.INVALID_JSON, "the body is not UTF-8 text (it holds NUL bytes: UTF-16 or UTF-32?)")
    try:
        parsed = json.loads(text, object_pairs_hook=_unique_keys)
        where = None if unicode_checked else _lone_surrogate(parsed, "")
    except RecursionError as error:
        raise RequestError(Reason.INVALID_JSON, "the JSON is nested too deeply") from error
    except json.JSONDecodeError as error:
        raise RequestError(
            Reason.INVALID_JSON, f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    except ValueError as error:  # e.g. an integer literal with more digits than Python converts
        raise RequestError(Reason.INVALID_JSON, f"malformed JSON: {error}") from error
    if where is not None:
        raise RequestError(Reason.INVALID_JSON, f"{where or 'the body'}: not valid Unicode (a lone UTF-16 surrogate)")
    return parsed


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any, where: str) -> str | None:
    """Where in `value` a string (a key or a value) holds a lone surrogate (the parser joins the valid pairs)."""
    if isinstance(value, str):
        return where if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                return f"{where}.{_quoted(key)} (a key)".lstrip(".")
            found = _lone_surrogate(item, f"{where}.{key}".lstrip("."))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None
