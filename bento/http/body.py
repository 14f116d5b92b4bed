"""Request bodies over HTTP: read bounded in size and time, and declared as JSON."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from bento.errors import Reason, RequestError
from bento.http.parsing import is_length


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


def require_json(request: Request) -> None:
    """Refuse (415) a body declared as something other than JSON."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media not in ("application/json", "", "*/*") and not media.endswith("+json"):
        raise RequestError(Reason.MEDIA_TYPE, f"Content-Type {media} is not supported; send application/json")
