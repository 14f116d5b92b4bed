"""bento/errors.py: every refusal reason has an HTTP status and a gRPC code (a real grpc.StatusCode), and messages
stay bounded whatever a client sent."""

from __future__ import annotations

import grpc
import pytest

from bento.errors import MAX_MESSAGE, STATUS, Reason, RequestError, first_repeated, listing


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_every_reason_has_a_client_or_unavailable_http_status_and_a_grpc_code(reason):
    status, code = STATUS[reason]
    assert 400 <= status < 500 or status == 503
    assert code in grpc.StatusCode.__members__, f"{code} is no grpc.StatusCode"
    assert grpc.StatusCode[code] is not grpc.StatusCode.OK
    error = RequestError(reason, "why")
    assert (error.status, error.grpc_code) == (status, code)


def test_the_table_holds_reasons_only():
    assert set(STATUS) == set(Reason)


def test_long_words_and_long_messages_are_cut():
    word = "x" * 10_000
    error = RequestError(Reason.INVALID_VALUE, f"race: unknown value {word}")
    assert len(error.message) <= MAX_MESSAGE and "x" * 61 not in error.message and error.message.startswith("race:")
    many = RequestError(Reason.INVALID_VALUE, " ".join(["word"] * 1000))
    assert len(many.message) <= MAX_MESSAGE and many.message.endswith("(message cut)")


def test_listing_and_first_repeated():
    assert listing(list(range(15)), shown=3) == "0, 1, 2 (and 12 more)"
    assert listing(["a"]) == "a"
    assert first_repeated(["a", "b", "c", "b", "a"]) == "b"
    assert first_repeated(["a", "b"]) is None
