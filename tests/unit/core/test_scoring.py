"""bento/core/scoring.py with the tiny model: subscribers receive every scored batch until they unsubscribe, requests
of one event-loop turn reach them as one batch, readiness and the model check. (test_core.py checks the
coalescing against the real model, in the service layer.)"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bento.core.scoring import ScoredBatch
from bento.errors import Reason, RequestError
from tests.helpers import matrix_of, records

MATRIX = matrix_of(records(9, seed=61))


class Subscriber:
    """Keeps what it is handed; subscribed as a bound method, as the prediction log's `append` is."""

    def __init__(self) -> None:
        self.batches: list[ScoredBatch] = []

    def take(self, batch: ScoredBatch) -> None:
        self.batches.append(batch)


def test_every_subscriber_gets_each_scored_batch_as_scored(core, tiny):
    first, second = Subscriber(), Subscriber()
    core.subscribe(first.take)
    core.subscribe(second.take)
    scores = core.score(MATRIX[:4])
    (batch,) = first.batches
    assert second.batches == [batch]
    assert batch.ids == scores.ids and batch.model_version == "1"
    assert batch.probabilities is scores.probabilities and batch.labels is scores.labels
    np.testing.assert_array_equal(batch.probabilities, tiny.probabilities(MATRIX[:4]))
    np.testing.assert_array_equal(batch.matrix, MATRIX[:4])
    core.score(MATRIX[4:])
    assert [len(b.ids) for b in first.batches] == [4, 5]


def test_an_unsubscribed_consumer_gets_nothing_more_and_the_others_go_on(core):
    gone, staying = Subscriber(), Subscriber()
    core.subscribe(gone.take)
    core.subscribe(staying.take)
    core.score(MATRIX[:1])
    core.unsubscribe(gone.take)  # another bound method object than the one subscribed, as the lifecycle passes it
    core.score(MATRIX[1:3])
    assert [len(b.ids) for b in gone.batches] == [1]
    assert [len(b.ids) for b in staying.batches] == [1, 2]
    core.unsubscribe(staying.take)
    core.score(MATRIX)
    assert len(staying.batches) == 2


def test_requests_of_one_turn_reach_subscribers_as_one_batch_each_request_its_own_slice(core, tiny):
    subscriber = Subscriber()
    core.subscribe(subscriber.take)
    sizes = [2, 1, 4, 2]
    starts = np.cumsum([0, *sizes[:-1]])

    async def together() -> list:
        return await asyncio.gather(
            *(core.score_together(MATRIX[s : s + n]) for s, n in zip(starts, sizes, strict=True))
        )

    results = asyncio.run(together())
    (batch,) = subscriber.batches
    assert [i for scores in results for i in scores.ids] == batch.ids
    for scores, start, size in zip(results, starts, sizes, strict=True):
        np.testing.assert_array_equal(scores.probabilities, tiny.probabilities(MATRIX[start : start + size]))


def test_readiness_needs_a_model_and_no_drain(core):
    assert core.ready()
    core.draining = True
    assert not core.ready()
    core.draining, core.predictor = False, None
    assert not core.ready()
    with pytest.raises(RequestError) as raised:
        core.score(MATRIX[:1])
    assert raised.value.reason is Reason.NOT_READY


@pytest.mark.parametrize(
    ("name", "version", "says"),
    [("other", None, "model 'other' is not served here"), ("readmission", "2", "has no version '2'; served: 1")],
)
def test_another_model_or_version_is_unknown(core, name, version, says):
    core.check_model("readmission", None)
    core.check_model("readmission", "1")
    with pytest.raises(RequestError, match=says) as raised:
        core.check_model(name, version)
    assert raised.value.reason is Reason.UNKNOWN_MODEL


def test_calls_in_flight_are_counted_with_the_last_start(core):
    flight = core.in_flight
    flight.begin()
    flight.begin()
    started = flight.last_start
    flight.end()
    assert flight.count == 1 and started > 0
    flight.end()
    assert flight.count == 0 and flight.last_start == started
