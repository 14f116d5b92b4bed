"""Client errors: each carries a bounded reason (a metrics label), and the reason its HTTP status and gRPC code."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a request was refused; the closed set of `reason` label values."""

    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"
    BATCH_SIZE = "batch_size"
    BODY_TOO_LARGE = "body_too_large"
    BODY_TIMEOUT = "body_timeout"
    MEDIA_TYPE = "media_type"
    TENSOR = "tensor"
    UNKNOWN_MODEL = "unknown_model"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_PREDICTION = "unknown_prediction"
    CONFLICT = "conflict"
    STORE_UNAVAILABLE = "store_unavailable"


# Each reason's HTTP status and gRPC status code (a name of grpc.StatusCode: this module imports no gRPC), side by
# side; tests/unit/test_errors.py checks that every Reason has both.
STATUS: dict[Reason, tuple[int, str]] = {
    Reason.INVALID_JSON: (400, "INVALID_ARGUMENT"),
    Reason.INVALID_VALUE: (400, "INVALID_ARGUMENT"),
    Reason.BATCH_SIZE: (400, "INVALID_ARGUMENT"),
    Reason.BODY_TOO_LARGE: (413, "RESOURCE_EXHAUSTED"),
    Reason.BODY_TIMEOUT: (408, "DEADLINE_EXCEEDED"),
    Reason.MEDIA_TYPE: (415, "INVALID_ARGUMENT"),
    Reason.TENSOR: (400, "INVALID_ARGUMENT"),
    Reason.UNKNOWN_MODEL: (404, "NOT_FOUND"),
    Reason.NOT_FOUND: (404, "NOT_FOUND"),
    Reason.NOT_READY: (503, "UNAVAILABLE"),
    Reason.UNAUTHORIZED: (401, "UNAUTHENTICATED"),
    Reason.UNKNOWN_PREDICTION: (404, "NOT_FOUND"),
    Reason.CONFLICT: (409, "ALREADY_EXISTS"),
    Reason.STORE_UNAVAILABLE: (503, "UNAVAILABLE"),
}


# Errors echo field names and values a client chose, possibly megabytes of them: long words are cut, then the whole.
MAX_MESSAGE = 500
_LONG_WORD = re.compile(r"\S{80,}")


def listing(values: Sequence[Any], shown: int = 12) -> str:
    """The first `shown` values, comma-separated, and how many more there are (for error messages)."""
    text = ", ".join(str(v) for v in values[:shown])
    return text + (f" (and {len(values) - shown} more)" if len(values) > shown else "")


def first_repeated(names: Iterable[str]) -> str | None:
    """The first name that appears a second time in `names`, or None (for messages that name a repeated key)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


class RequestError(Exception):
    """A request the service refuses, with a message that names the field and the reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        message = _LONG_WORD.sub(lambda word: word.group()[:60] + "...", message)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 20] + " ... (message cut)"
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return STATUS[self.reason][0]

    @property
    def grpc_code(self) -> str:
        """The gRPC status code's name."""
        return STATUS[self.reason][1]
