"""Client errors: each carries its HTTP status and a bounded reason (a metrics label)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a request was refused; the closed set of `reason` label values."""

    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"
    BATCH_SIZE = "batch_size"
    BODY_TOO_LARGE = "body_too_large"
    MEDIA_TYPE = "media_type"
    TENSOR = "tensor"
    UNKNOWN_MODEL = "unknown_model"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"


STATUS: dict[Reason, int] = {
    Reason.INVALID_JSON: 400,
    Reason.INVALID_VALUE: 400,
    Reason.BATCH_SIZE: 400,
    Reason.BODY_TOO_LARGE: 413,
    Reason.MEDIA_TYPE: 415,
    Reason.TENSOR: 400,
    Reason.UNKNOWN_MODEL: 404,
    Reason.NOT_FOUND: 404,
    Reason.NOT_READY: 503,
}


class RequestError(Exception):
    """A request the service refuses, with a message that names the field and the reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return STATUS[self.reason]
