"""`POST /feedback`: the true outcomes of earlier predictions, once they are known (30 days after discharge).

The body is a JSON list of `{"prediction_id": "...", "readmitted_within_30_days": true}`; every prediction
answer carries its `prediction_id`. A call is all or nothing: an id the log does not hold answers 404, an
outcome other than the one already recorded answers 409, and then nothing of the call is recorded. Sending
the same outcome again changes nothing (idempotent), so a client may retry. A store busy with other writers
(feedback calls, the log's writer) is waited for within STORE_BUSY_SECONDS: feedback answers 503 only when the
store fails or the log is off, never because of its own load.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request

from bento.core.ids import issued_at
from bento.errors import Reason, RequestError, listing
from bento.http.body import read_body, require_json
from bento.http.parsing import parse_json
from bento.http.responses import FastJSONResponse
from bento.monitoring import metrics
from bento.monitoring.lifecycle import Monitoring
from bento.predictionlog.store import ConflictingOutcomeError, StoreBusyError, StoreError, UnknownPredictionError
from bento.predictionlog.writer import PredictionLog

FIELDS = ("prediction_id", "readmitted_within_30_days")
SHOWN_IDS = 5  # ids named in an error message
FUTURE_SKEW_SECONDS = 1.0  # how far ahead of this worker's clock another worker's id may be stamped
STORE_BUSY_SECONDS = 15.0  # a busy store is tried again this long, well within BentoML's 30 s request timeout
BUSY_PAUSE = 0.1


def parse_outcomes(body: Any, max_rows: int) -> dict[str, int]:
    """The outcomes of a feedback body by prediction id; RequestError names the item, the field and the reason."""
    if not isinstance(body, list):
        raise RequestError(Reason.INVALID_VALUE, f"the body must be a JSON list of objects with {' and '.join(FIELDS)}")
    if not body:
        raise RequestError(Reason.BATCH_SIZE, "the list of outcomes is empty")
    if len(body) > max_rows:
        raise RequestError(Reason.BATCH_SIZE, f"the list holds {len(body)} outcomes; the limit is {max_rows}")
    outcomes: dict[str, int] = {}
    conflicting = []
    for i, item in enumerate(body):
        prediction_id, outcome = _item(item, f"[{i}]")
        if outcomes.get(prediction_id, outcome) != outcome:
            conflicting.append(prediction_id)
        outcomes[prediction_id] = outcome
    if conflicting:
        raise RequestError(Reason.CONFLICT, f"the list gives two outcomes for {listing(conflicting, SHOWN_IDS)}")
    return outcomes


def _item(item: Any, where: str) -> tuple[str, int]:
    if not isinstance(item, dict):
        raise RequestError(Reason.INVALID_VALUE, f"{where}: must be an object with {' and '.join(FIELDS)}")
    for name in item:
        if name not in FIELDS:
            raise RequestError(Reason.INVALID_VALUE, f"{where}.{name}: unknown field; fields are {', '.join(FIELDS)}")
    for name in FIELDS:
        if name not in item:
            raise RequestError(Reason.INVALID_VALUE, f"{where}.{name}: is required")
    prediction_id, outcome = item["prediction_id"], item["readmitted_within_30_days"]
    if not isinstance(prediction_id, str) or issued_at(prediction_id) is None:
        raise RequestError(Reason.INVALID_VALUE, f"{where}.prediction_id: not a prediction id of this service")
    if not isinstance(outcome, bool) and outcome not in (0, 1):
        raise RequestError(Reason.INVALID_VALUE, f"{where}.readmitted_within_30_days: must be true or false")
    return prediction_id.lower(), int(outcome)  # the log holds ids as issued: lower case


async def _record(log: PredictionLog, outcomes: dict[str, int]) -> tuple[int, int]:
    """Record; ids so recent that their worker may not have written them yet are waited for, polling the store
    (a read: the store looks ids up before it takes a write lock), and so is a busy store."""
    busy_until = time.monotonic() + STORE_BUSY_SECONDS
    while True:
        try:
            result = await asyncio.to_thread(log.store.record_outcomes, outcomes, time.time())
            return result.recorded, result.unchanged
        except StoreBusyError:
            if time.monotonic() >= busy_until:
                raise
            await asyncio.sleep(BUSY_PAUSE)
        except UnknownPredictionError as unknown:
            newest = max(issued_at(prediction_id) or 0.0 for prediction_id in unknown.ids)
            now = time.time()
            # an id stamped in the future was never issued: waiting for it would hold the request until it times out
            if now >= newest + log.settle_seconds or newest > now + FUTURE_SKEW_SECONDS:
                raise
            await asyncio.sleep(log.flush_seconds / 2)


async def feedback(request: Request) -> FastJSONResponse:
    """`POST /feedback`: record true outcomes; answers how many were new and how many were known."""
    monitoring: Monitoring = request.app.state.monitoring
    settings = monitoring.core.settings
    require_json(request)
    body = parse_json(await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds))
    outcomes = parse_outcomes(body, settings.max_infer_rows)
    log = monitoring.log
    if log is None:
        raise RequestError(Reason.STORE_UNAVAILABLE, "the prediction log is off (READMISSION_PREDICTION_LOG=off)")
    try:
        recorded, unchanged = await _record(log, outcomes)
    except UnknownPredictionError as error:
        unknown = listing(error.ids, SHOWN_IDS)
        raise RequestError(Reason.UNKNOWN_PREDICTION, f"prediction_id: unknown: {unknown}") from error
    except ConflictingOutcomeError as error:
        changed = f"readmitted_within_30_days: another outcome is recorded for {listing(error.ids, SHOWN_IDS)}"
        raise RequestError(Reason.CONFLICT, changed) from error
    except StoreError as error:
        raise RequestError(Reason.STORE_UNAVAILABLE, "the prediction log cannot be written now; retry later") from error
    metrics.feedback(recorded, unchanged)
    return FastJSONResponse({"recorded": recorded, "unchanged": unchanged})
