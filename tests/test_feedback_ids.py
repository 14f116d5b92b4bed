"""POST /feedback waits for ids so recent their worker may not have logged them yet, and for no other id."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from bento import feedback
from bento.log_store import UnknownPredictionError
from bento.prediction_log import PredictionIds


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
