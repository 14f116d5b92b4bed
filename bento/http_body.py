"""JSON bodies: read bounded in size, parsed with errors a client can act on, answered with orjson."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from bento.errors import Reason, RequestError

_LENGTH = re.compile(r"[ \t]*[0-9]+[ \t]*")


def is_length(value: str) -> bool:
    """Whether a header value is a byte count: ASCII digits only (str.isdigit also takes '²', which int() refuses)."""
    return _LENGTH.fullmatch(value) is not None


async def read_body(request: Request, max_bytes: int, timeout_seconds: float) -> bytes:
    """The whole body: 413 as soon as it is known to exceed `max_bytes`, 408 if it takes over `timeout_seconds`.

    The deadline covers the whole body, so a client trickling bytes cannot hold a connection open for long.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not is_length(declared):
            raise RequestError(Reason.INVALID_JSON, "Content-Length must be a non-negative integer")
        if int(declared) > max_bytes:
            raise RequestError(Reason.BODY_TOO_LARGE, f"the body exceeds the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise RequestError(Reason.BODY_TOO_LARGE, f"the body exceeds the limit of {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError as error:
        raise RequestError(
            Reason.BODY_TIMEOUT, f"the body did not arrive within {timeout_seconds:g} s ({size} bytes received)"
        ) from error
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """JSON from bytes (orjson); malformed, too deeply nested or oversized numbers give a 400."""
    if not raw.strip():
        raise RequestError(Reason.INVALID_JSON, "the body is empty; expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # the rare path: let the standard parser explain, and take NaN/Infinity so the field gets named
    try:
        return json.loads(raw)
    except RecursionError as error:
        raise RequestError(Reason.INVALID_JSON, "the JSON is nested too deeply") from error
    except UnicodeDecodeError as error:
        raise RequestError(Reason.INVALID_JSON, "the body is not UTF-8 text") from error
    except json.JSONDecodeError as error:
        raise RequestError(
            Reason.INVALID_JSON, f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    except ValueError as error:  # e.g. an integer literal with more digits than Python converts
        raise RequestError(Reason.INVALID_JSON, f"malformed JSON: {error}") from error


def require_json(request: Request) -> None:
    """Refuse (415) a body declared as something other than JSON."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media not in ("application/json", "", "*/*") and not media.endswith("+json"):
        raise RequestError(Reason.MEDIA_TYPE, f"Content-Type {media} is not supported; send application/json")


class FastJSONResponse(JSONResponse):
    """A JSON response serialised by orjson (several times faster than the standard library)."""

    def render(self, content: Any) -> bytes:
        """The body bytes."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
