"""POST /feedback waits for ids so recent their worker may not have logged them yet, and for no other id; what is
a prediction id (bento/predictionlog/writer.py's `issued_at`, the one check of the format)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from bento.api import feedback
from bento.core.ids import PredictionIds, issued_at
from bento.predictionlog.store import UnknownPredictionError


class _EmptyStore:
    def __init__(self) -> None:
        self.calls = 0

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> None:
        self.calls += 1
        raise UnknownPredictionError(list(outcomes))


def _record(prediction_id: str) -> tuple[float, int]:
    store = _EmptyStore()
    log = SimpleNamespace(store=store, settle_seconds=0.5, flush_seconds=0.1)
    started = time.perf_counter()
    with pytest.raises(UnknownPredictionError):
        asyncio.run(asyncio.wait_for(feedback._record(log, {prediction_id: 1}), timeout=5))  # type: ignore[arg-type]
    return time.perf_counter() - started, store.calls


def test_a_fresh_id_is_waited_for_until_it_settles():
    elapsed, calls = _record(PredictionIds().take(1, time.time())[0])
    assert 0.3 < elapsed < 2 and calls > 1


@pytest.mark.parametrize("seconds_ahead", [60, 10 * 365 * 86400])
def test_an_id_stamped_in_the_future_is_unknown_at_once(seconds_ahead):
    """The fuzzer of the OpenAPI document sent such ids: each held a request until BentoML's 30 s timeout (504)."""
    elapsed, calls = _record(PredictionIds().take(1, time.time() + seconds_ahead)[0])
    assert elapsed < 0.3 and calls == 1


ISSUED = PredictionIds().take(1, 1_700_000_000.0)[0]


@pytest.mark.parametrize(
    "malformed",
    [
        ISSUED[:8] + "0" + ISSUED[9:],  # a dash replaced
        ISSUED[:19] + "c" + ISSUED[20:],  # the variant is not RFC 9562's
        ISSUED[:-1] + "g",  # not hex
        "+" + ISSUED[1:],  # int() would take a sign
        ISSUED[:-1] + "\n",
        ISSUED.replace("-", "") + "----",  # the length, not the layout
        ISSUED[:14] + "4" + ISSUED[15:],  # UUIDv4
        ISSUED[:-1] + "\u0661",  # a non-ASCII digit
    ],
    # named, not shown: the ids hold random bits of this process, and pytest-xdist's workers must collect alike
    ids=["dash", "variant", "hex", "sign", "newline", "layout", "uuid4", "digit"],
)
def test_only_the_canonical_uuid7_layout_is_a_prediction_id(malformed):
    assert issued_at(malformed) is None


def test_a_prediction_id_in_upper_case_is_one():
    assert issued_at(ISSUED.upper()) == issued_at(ISSUED) == 1_700_000_000.0
