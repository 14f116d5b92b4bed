"""bento/server/timeout.py: the request timeout answers as BentoML's TimeoutMiddleware did (504 and its body before
the response starts, nothing once it has)."""

from __future__ import annotations

import asyncio
import json

import pytest

from bento.server.timeout import RequestTimeout

SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


def serve(app, seconds: float) -> list[dict]:
    """The messages the server received from `app` behind RequestTimeout(`seconds`)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(RequestTimeout(app, seconds)(dict(SCOPE), receive, send))
    return sent


def answer(sent: list[dict]) -> tuple[int, bytes]:
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def respond(send, body: bytes = b"done") -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_a_request_not_answered_in_time_is_cancelled_and_answered_504_as_bentoml_did():
    cancelled = []

    async def slow(scope, receive, send):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        await respond(send)

    status, body = answer(serve(slow, 0.05))
    assert status == 504 and json.loads(body) == {"error": "Not able to process the request in 0.05 seconds"}
    assert cancelled == [True]


def test_the_timeout_no_longer_applies_once_the_response_has_started():
    async def streaming(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.15)
        await send({"type": "http.response.body", "body": b"late but whole"})

    assert answer(serve(streaming, 0.05)) == (200, b"late but whole")


def test_a_prompt_answer_passes_untouched():
    async def prompt(scope, receive, send):
        await respond(send)

    assert answer(serve(prompt, 1)) == (200, b"done")


def test_the_applications_own_timeout_error_is_not_taken_for_the_deadline():
    async def failing(scope, receive, send):
        raise TimeoutError("the application's")

    with pytest.raises(TimeoutError, match="the application's"):
        serve(failing, 1)
