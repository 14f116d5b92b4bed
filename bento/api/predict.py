"""The simple JSON API: `POST /predict` (one patient) and `POST /predict/batch` (a list).

A patient is either the clinical record (`"race": "Caucasian"`, `"diag_1": "428"` ...) or the
encoded flat form of the original design (`"race_Caucasian": 1.0`, `"age_[50-60)": 1.0` ...); a
body holding any one-hot column name is read as the encoded form. `?explain=true` adds the top
contributing factors.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from starlette.requests import Request

from bento import features
from bento.core.scoring import COALESCED_ROWS, ScoringCore
from bento.errors import Reason, RequestError
from bento.http.body import read_body, require_json
from bento.http.parsing import parse_json
from bento.http.responses import FastJSONResponse
from bento.model import explain
from bento.settings import ServiceSettings

ENCODED_ONLY_COLUMNS = frozenset(features.COLUMNS) - frozenset(features.FIELDS_BY_NAME)


def parse_patient(body: Any, where: str = "") -> tuple[np.ndarray, dict[str, Any]]:
    """One patient as (encoded row, clinical record); RequestError names the field and the reason."""
    if not isinstance(body, dict):
        raise RequestError(Reason.INVALID_VALUE, f"{where or 'the body'} must be a JSON object of patient fields")
    try:
        if ENCODED_ONLY_COLUMNS.intersection(body):
            row = features.vector_from_encoded(body)
            return row, features.decode(row)
        record = features.validate(body)
        return features.encode([record])[0], record
    except features.FieldError as error:
        raise RequestError(Reason.INVALID_VALUE, f"{where}{error.field}: {error.reason}") from error


async def _answers(
    core: ScoringCore, matrix: np.ndarray, records: list[dict[str, Any]], top: int
) -> list[dict[str, Any]]:
    predictor = core.model()
    scores = await core.score_together(matrix)
    # TreeSHAP takes about 0.6 ms a row: off the event loop (xgboost's predict is thread-safe)
    factors = await asyncio.to_thread(explain.factors, predictor, matrix, records, top) if top else None
    answers = []
    rows = zip(scores.probabilities.tolist(), scores.labels.tolist(), scores.ids, strict=True)
    for i, (probability, label, prediction_id) in enumerate(rows):
        answer: dict[str, Any] = {
            "prediction_id": prediction_id,
            "probability": round(probability, 6),
            "label": label,
            "risk_band": predictor.band(probability).value,
        }
        if scores.unusual is not None:  # the model's unusual-patient check is on
            answer["unusual"] = [finding.as_json() for finding in scores.unusual[i]]
        if factors is not None:
            answer["factors"] = factors[i]
        answers.append(answer)
    return answers


def _explain_count(request: Request, settings: ServiceSettings) -> int:
    flag = request.query_params.get("explain", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise RequestError(Reason.INVALID_VALUE, "explain: must be true or false")
    return settings.top_factors if flag in ("true", "1") else 0


async def predict(request: Request) -> FastJSONResponse:
    """`POST /predict`: one patient in, probability, label, risk band and model out."""
    core: ScoringCore = request.app.state.core
    predictor, settings = core.model(), core.settings
    require_json(request)
    top = _explain_count(request, settings)
    row, record = parse_patient(
        parse_json(await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds))
    )
    answer = (await _answers(core, row[None, :], [record], top))[0]
    return FastJSONResponse({**answer, "model": predictor.info.summary()})


def _patients(body: list[Any]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    return [parse_patient(patient, f"[{i}].") for i, patient in enumerate(body)]


async def predict_batch(request: Request) -> FastJSONResponse:
    """`POST /predict/batch`: a JSON list of patients (at most READMISSION_MAX_BATCH_ROWS)."""
    core: ScoringCore = request.app.state.core
    predictor, settings = core.model(), core.settings
    require_json(request)
    top = _explain_count(request, settings)
    body = parse_json(await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds))
    if not isinstance(body, list):
        raise RequestError(Reason.INVALID_VALUE, "the body must be a JSON list of patients")
    if not body:
        raise RequestError(Reason.BATCH_SIZE, "the batch is empty")
    if len(body) > settings.max_batch_rows:
        raise RequestError(
            Reason.BATCH_SIZE, f"the batch has {len(body)} patients; the limit is {settings.max_batch_rows}"
        )
    # checking takes about 30 µs a patient: a large batch is checked off the event loop, as it is explained
    parsed = await asyncio.to_thread(_patients, body) if len(body) > COALESCED_ROWS else _patients(body)
    matrix = np.stack([row for row, _ in parsed])
    answers = await _answers(core, matrix, [record for _, record in parsed], top)
    return FastJSONResponse({"predictions": answers, "model": predictor.info.summary()})
