"""bento/http/body.py on a Starlette Request built from an ASGI scope and a receive callable: the body read whole,
413 on the declared and on the streamed size (reading no further), 408 for a body slower than the timeout,
and the JSON media type."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.requests import Request

from bento.errors import Reason, RequestError
from bento.http.body import read_body, require_json


class Client:
    """What a client sends: the body in chunks, then (`stalls`) nothing more, ever; counts the reads."""

    def __init__(self, chunks: list[bytes], stalls: bool = False) -> None:
        self.chunks = list(chunks)
        self.stalls = stalls
        self.reads = 0

    async def receive(self) -> dict:
        self.reads += 1
        if not self.chunks:
            assert self.stalls, "read past the end of the body"
            await asyncio.Event().wait()  # a client that stopped sending: only the timeout ends this
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.stalls}


def request(client: Client, **headers: str) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "query_string": b"",
        "headers": [(name.replace("_", "-").encode(), value.encode("latin-1")) for name, value in headers.items()],
    }
    return Request(scope, client.receive)


def read(client: Client, max_bytes: int = 100, timeout: float = 5, **headers: str) -> bytes:
    return asyncio.run(read_body(request(client, **headers), max_bytes, timeout))


def refused(client: Client, max_bytes: int = 100, timeout: float = 5, **headers: str) -> RequestError:
    with pytest.raises(RequestError) as raised:
        read(client, max_bytes, timeout, **headers)
    return raised.value


def test_a_body_in_chunks_is_read_whole():
    client = Client([b'{"a":', b"", b" 1}"])
    assert read(client, content_length="8") == b'{"a": 1}'
    assert read(Client([b"x" * 100]), max_bytes=100) == b"x" * 100  # at the limit


def test_a_declared_length_over_the_limit_is_413_before_any_read():
    client = Client([b"x" * 10])
    error = refused(client, max_bytes=100, content_length="101")
    assert (error.reason, error.status) == (Reason.BODY_TOO_LARGE, 413)
    assert error.message == "the body exceeds the limit of 100 bytes"
    assert client.reads == 0


@pytest.mark.parametrize("declared", [None, "5"])  # none, or a length the client then exceeds
def test_a_streamed_body_over_the_limit_is_413_as_soon_as_it_passes_it(declared):
    client = Client([b"x" * 40] * 10)
    headers = {} if declared is None else {"content_length": declared}
    error = refused(client, max_bytes=100, **headers)
    assert error.reason is Reason.BODY_TOO_LARGE
    assert client.reads == 3, "read beyond the chunk that passed the limit"


@pytest.mark.parametrize("declared", ["abc", "-1", "1.5", "²"])
def test_a_malformed_content_length_is_refused(declared):
    error = refused(Client([b"{}"]), content_length=declared)
    assert error.reason is Reason.INVALID_JSON and "Content-Length must be a non-negative integer" in error.message


def test_a_body_slower_than_the_timeout_is_408_saying_what_arrived():
    timeout = 0.2
    started = time.monotonic()
    error = refused(Client([b"12345"], stalls=True), timeout=timeout)
    elapsed = time.monotonic() - started
    assert (error.reason, error.status) == (Reason.BODY_TIMEOUT, 408)
    assert error.message == "the body did not arrive within 0.2 s (5 bytes received)"
    assert timeout <= elapsed < 1.5


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json",
     "*/*", ""],
)  # fmt: skip
def test_json_media_types_are_taken(content_type):
    headers = {} if content_type is None else {"content_type": content_type}
    require_json(request(Client([]), **headers))


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_media_types_are_415(content_type):
    with pytest.raises(RequestError) as raised:
        require_json(request(Client([]), content_type=f"{content_type}; charset=utf-8"))
    assert (raised.value.reason, raised.value.status) == (Reason.MEDIA_TYPE, 415)
    assert f"Content-Type {content_type} is not supported" in raised.value.message
