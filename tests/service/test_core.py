"""The scoring core in-process: requests in flight together are scored in one model call, each gets its rows and ids."""

from __future__ import annotations

import asyncio

import numpy as np

from bento.core.scoring import COALESCED_ROWS, ScoredBatch, ScoringCore
from bento.errors import Reason, RequestError
from bento.settings import ServiceSettings
from tests.helpers import matrix_of, records


class CountingPredictor:
    """The served predictor, counting the model calls and their rows."""

    def __init__(self, predictor) -> None:
        self.predictor, self.calls = predictor, []
        self.info, self.backend, self.labels = predictor.info, predictor.backend, predictor.labels
        self.unusual = predictor.unusual

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        self.calls.append(len(matrix))
        return self.predictor.probabilities(matrix)


def test_requests_of_one_event_loop_turn_are_scored_in_one_call(local):
    core = ScoringCore(ServiceSettings())
    counting = CountingPredictor(local)
    core.predictor = counting
    sizes = [1, 3, 2, 1, 5, 1]
    matrix = matrix_of(records(sum(sizes), seed=31))
    starts = np.cumsum([0, *sizes[:-1]])

    async def together() -> list:
        return await asyncio.gather(
            *(core.score_together(matrix[s : s + n]) for s, n in zip(starts, sizes, strict=True))
        )

    results = asyncio.run(together())
    assert counting.calls == [sum(sizes)]  # one call for the six requests
    expected = local.probabilities(matrix)
    for scores, start, size in zip(results, starts, sizes, strict=True):
        np.testing.assert_array_equal(scores.probabilities, expected[start : start + size])
        np.testing.assert_array_equal(scores.labels, local.labels(expected[start : start + size]))


def test_a_large_request_is_scored_alone_and_a_missing_model_fails_every_waiting_request(local):
    core = ScoringCore(ServiceSettings())
    counting = CountingPredictor(local)
    core.predictor = counting
    large = matrix_of(records(COALESCED_ROWS + 1, seed=32))

    async def both() -> list:
        return await asyncio.gather(core.score_together(large), core.score_together(large[:1]))

    asyncio.run(both())
    assert sorted(counting.calls) == [1, COALESCED_ROWS + 1]
    core.predictor = None

    async def without_a_model() -> list:
        return await asyncio.gather(*(core.score_together(large[:1]) for _ in range(3)), return_exceptions=True)

    errors = asyncio.run(without_a_model())
    assert all(isinstance(e, RequestError) and e.reason is Reason.NOT_READY for e in errors)


def test_requests_scored_together_each_get_their_own_ids_in_order_with_the_logged_probabilities(local):
    """A request handed another's ids would label the wrong patients when feedback comes: each id's logged
    probability must be the one its request received for that row, for requests of different sizes."""
    core = ScoringCore(ServiceSettings())
    counting = CountingPredictor(local)
    core.predictor = counting
    batches: list[ScoredBatch] = []  # what the core hands its subscribers, as the prediction log receives it
    core.subscribe(batches.append)
    pool = matrix_of(records(2000, seed=33))
    _, first = np.unique(local.probabilities(pool), return_index=True)
    sizes = [1, 7, 2, 1, 12, 3, 1, 5, 9, 1, 4, 2, 6, 1, 8, 3]
    rows = pool[np.sort(first)[: sum(sizes)]]  # distinct rows with distinct probabilities: no two ids confusable
    assert len(rows) == sum(sizes)
    starts = np.cumsum([0, *sizes[:-1]])

    async def together() -> list:
        return await asyncio.gather(*(core.score_together(rows[s : s + n]) for s, n in zip(starts, sizes, strict=True)))

    results = asyncio.run(together())
    assert counting.calls == [sum(sizes)]  # all in one model call
    every_id = [prediction_id for scores in results for prediction_id in scores.ids]
    assert len(set(every_id)) == len(every_id) == sum(sizes)
    logged = {
        prediction_id: probability
        for batch in batches
        for prediction_id, probability in zip(batch.ids, batch.probabilities.tolist(), strict=True)
    }
    assert set(logged) == set(every_id)
    for scores, start, size in zip(results, starts, sizes, strict=True):
        assert scores.ids == sorted(scores.ids)  # UUIDv7: in the order of the rows
        own = local.probabilities(rows[start : start + size])
        np.testing.assert_array_equal(scores.probabilities, own)
        assert [logged[prediction_id] for prediction_id in scores.ids] == own.tolist()
