"""Prediction ids: UUIDv7 strings (RFC 9562), what every answer carries and `POST /feedback` names.

The time of the prediction in milliseconds, then 26 random bits per process and a 48-bit counter, so ids are
unique across workers and restarts, sort by time, and cost a string format each. `issued_at` is the one check of
that format (any case of hex digits, as RFC 9562 allows). The ids of one `take` differ in their counter alone, so the
prediction log stores a batch's ids as its first id and their count (`run`, `last`, `offset_in`).
"""

from __future__ import annotations

import re
import secrets
import threading

_COUNTER_BITS = 48
_PREFIX = 24  # characters before the counter's 12 hex digits: the time, the version and the process's random bits
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE | re.ASCII)


class PredictionIds:
    """UUIDv7 prediction ids: time-ordered, unique across processes."""

    def __init__(self) -> None:
        random_bits = secrets.randbits(26)
        self._rand_a = random_bits >> 14  # 12 bits after the version nibble
        self._rand_b_high = (0b10 << 14) | (random_bits & 0x3FFF)  # variant, then 14 random bits
        self._next = 0
        self._lock = threading.Lock()  # the gRPC and HTTP handlers share one event loop; tests call from threads

    def take(self, count: int, now: float) -> list[str]:
        """`count` new ids stamped with `now` (seconds since the epoch)."""
        with self._lock:
            first, self._next = self._next, self._next + count
        return _ids(f"{first_id_at(now)}7{self._rand_a:03x}-{self._rand_b_high:04x}-", first, count)


def _ids(prefix: str, first: int, count: int) -> list[str]:
    return [f"{prefix}{n & ((1 << _COUNTER_BITS) - 1):012x}" for n in range(first, first + count)]


def run(first_id: str, count: int) -> list[str]:
    """The `count` ids of one `take` that begins with `first_id`."""
    return _ids(first_id[:_PREFIX], int(first_id[_PREFIX:], 16), count)


def last(first_id: str, count: int) -> str:
    """The last of the `count` ids of the `take` that begins with `first_id`."""
    return _ids(first_id[:_PREFIX], int(first_id[_PREFIX:], 16) + count - 1, 1)[0]


def offset_in(first_id: str, count: int, prediction_id: str) -> int | None:
    """Where `prediction_id` lies among the `count` ids of the `take` that begins with `first_id`, or None where it
    is not one of them exactly as issued (lower-case hex)."""
    prefix, first = first_id[:_PREFIX], int(first_id[_PREFIX:], 16)
    if prediction_id[:_PREFIX] != prefix:
        return None
    try:
        offset = int(prediction_id[_PREFIX:], 16) - first
    except ValueError:
        return None
    if 0 <= offset < count and _ids(prefix, first + offset, 1)[0] == prediction_id:
        return offset
    return None


def first_id_at(moment: float) -> str:
    """The time prefix of the ids issued in `moment`'s millisecond: ids issued earlier sort below it, those issued
    then or later at or above it (what lets the log find old predictions by its primary key)."""
    millis = int(moment * 1000)
    return f"{millis >> 16:08x}-{millis & 0xFFFF:04x}-"


def issued_at(prediction_id: str) -> float | None:
    """When a prediction id was issued (seconds since the epoch), or None for what is not one of ours: a UUIDv7
    with the RFC 9562 variant in the canonical 8-4-4-4-12 layout."""
    if _ID.fullmatch(prediction_id) is None:
        return None
    return int(prediction_id[:8] + prediction_id[9:13], 16) / 1000
