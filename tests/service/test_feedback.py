"""Prediction ids on every protocol, and POST /feedback against the shared live service and its prediction log.

The service writes the log to SQLite under its READMISSION_HOME (the test BentoML home); the tests read that
file to check what was, and was not, recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families

from bento.core.ids import PredictionIds, issued_at
from bento.predictionlog.sqlite import SQLITE_FILE
from tests.helpers import (
    INFER,
    LOGGED,
    MODEL,
    RECORD,
    SEED_EXAMPLE,
    binary_matrix,
    decode_binary_response,
    logged,
    matrix_of,
    poll,
    scrape,
)

FEEDBACK = "/feedback"


def predict_ids(client, count: int = 1) -> list[str]:
    """Ids of `count` fresh predictions from /predict/batch."""
    answer = client.post("/predict/batch", json=[RECORD] * count)
    assert answer.status_code == 200, answer.text
    return [p["prediction_id"] for p in answer.json()["predictions"]]


def old_id() -> str:
    """An id of this service's form, issued long ago and never logged: unknown at once, no waiting."""
    return PredictionIds().take(1, time.time() - 86_400)[0]


def outcomes_in_store(home: Path, ids: list[str]) -> dict[str, int]:
    with sqlite3.connect(f"file:{home / SQLITE_FILE}?mode=ro", uri=True) as db:
        marks = ",".join("?" * len(ids))
        return dict(db.execute(f"SELECT prediction_id, readmitted FROM outcomes WHERE prediction_id IN ({marks})", ids))


def feedback_counter(service, result: str) -> float:
    for family in text_string_to_metric_families(scrape(service)):
        if family.name == "readmission_feedback_outcomes":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["result"] == result:
                    return sample.value
    return 0.0


@pytest.fixture(scope="module")
def home(bento_home) -> Path:
    return Path(bento_home["home"])


# --- prediction ids ----------------------------------------------------------------------------------------


def test_every_protocol_gives_each_row_its_own_time_ordered_uuid7(client, service):
    single = client.post("/predict", json=SEED_EXAMPLE).json()["prediction_id"]
    batch = predict_ids(client, 3)
    matrix = matrix_of([RECORD, RECORD])
    body, headers = binary_matrix(matrix, outputs=[{"name": "prediction_id", "parameters": {"binary_data": True}}])
    _, arrays = decode_binary_response(client.post(INFER, content=body, headers=headers))
    rest_binary = [value.decode() for value in arrays["prediction_id"]]
    http = triton_http.InferenceServerClient(service.url.removeprefix("http://"))
    tensor = triton_http.InferInput("input-0", list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix, binary_data=False)
    rest_json = [value.decode() for value in http.infer(MODEL, [tensor]).as_numpy("prediction_id")]
    grpc_ids = []
    with triton_grpc.InferenceServerClient(service.grpc) as grpc:
        typed = triton_grpc.InferInput("input-0", list(matrix.shape), "FP32")
        typed.set_data_from_numpy(matrix)
        grpc_ids = [value.decode() for value in grpc.infer(MODEL, [typed]).as_numpy("prediction_id")]
    ids = [single, *batch, *rest_binary, *rest_json, *grpc_ids]
    assert len(ids) == 10 and len(set(ids)) == 10
    for prediction_id in ids:
        assert uuid.UUID(prediction_id).version == 7, prediction_id
        assert abs(issued_at(prediction_id) - time.time()) < 60
    assert batch == sorted(batch)


def test_ids_stay_unique_across_generators_and_sort_by_time():
    first, second = PredictionIds(), PredictionIds()
    now = time.time()
    ids = first.take(1000, now) + second.take(1000, now) + first.take(10, now + 1)
    assert len(set(ids)) == len(ids)
    assert ids[-10:] == sorted(ids[-10:]) and ids[-1] > ids[0]
    assert issued_at(ids[0]) == pytest.approx(now, abs=0.001)
    assert issued_at("not-an-id") is None and issued_at(str(uuid.uuid4())) is None


# --- feedback ------------------------------------------------------------------------------------------------


def test_feedback_records_outcomes_once_and_is_idempotent(client, service, home):
    ids = predict_ids(client, 3)
    body = [{"prediction_id": i, "readmitted_within_30_days": o} for i, o in zip(ids, (True, False, 1), strict=True)]
    recorded_before = feedback_counter(service, "recorded")
    first = client.post(FEEDBACK, json=body)  # sent at once: waits for the log to write the rows
    assert first.status_code == 200, first.text
    assert first.json() == {"recorded": 3, "unchanged": 0}
    again = client.post(FEEDBACK, json=body)
    assert again.json() == {"recorded": 0, "unchanged": 3}
    assert outcomes_in_store(home, ids) == {ids[0]: 1, ids[1]: 0, ids[2]: 1}
    poll(lambda: feedback_counter(service, "recorded") >= recorded_before + 3, 10, "the feedback counter")


def test_a_different_outcome_is_a_conflict_and_changes_nothing(client, home):
    (prediction_id,) = predict_ids(client)
    assert client.post(FEEDBACK, json=[{"prediction_id": prediction_id, "readmitted_within_30_days": True}]).is_success
    answer = client.post(FEEDBACK, json=[{"prediction_id": prediction_id, "readmitted_within_30_days": False}])
    assert answer.status_code == 409
    assert answer.json()["error"] == f"readmitted_within_30_days: another outcome is recorded for {prediction_id}"
    assert outcomes_in_store(home, [prediction_id]) == {prediction_id: 1}


def test_an_unknown_id_refuses_the_whole_call(client, home):
    (known,) = predict_ids(client)
    unknown = old_id()
    body = [
        {"prediction_id": known, "readmitted_within_30_days": False},
        {"prediction_id": unknown, "readmitted_within_30_days": True},
    ]
    answer = client.post(FEEDBACK, json=body)  # waits for the known row to be written, then refuses
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == f"prediction_id: unknown: {unknown}"
    assert outcomes_in_store(home, [known]) == {}  # all or nothing
    assert client.post(FEEDBACK, json=body[:1]).json() == {"recorded": 1, "unchanged": 0}


def test_an_id_in_upper_case_names_the_same_prediction(client, home):
    (prediction_id,) = predict_ids(client)
    answer = client.post(FEEDBACK, json=[{"prediction_id": prediction_id.upper(), "readmitted_within_30_days": True}])
    assert answer.json() == {"recorded": 1, "unchanged": 0}, answer.text
    assert outcomes_in_store(home, [prediction_id]) == {prediction_id: 1}


def test_an_id_too_recent_to_be_written_is_waited_for_not_refused(client):
    (prediction_id,) = predict_ids(client)
    started = time.monotonic()
    answer = client.post(FEEDBACK, json=[{"prediction_id": prediction_id, "readmitted_within_30_days": True}])
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prediction_id": "x"}, 400, "the body must be a JSON list of objects with prediction_id and readmitted_"),
        ([], 400, "the list of outcomes is empty"),
        (["x"], 400, "[0]: must be an object with prediction_id and readmitted_within_30_days"),
        ([{"prediction_id": "OLD"}], 400, "[0].readmitted_within_30_days: is required"),
        ([{"readmitted_within_30_days": True}], 400, "[0].prediction_id: is required"),
        ([{"prediction_id": "OLD", "readmitted_within_30_days": True, "age": 80}], 400, "[0].age: unknown field"),
        ([{"prediction_id": 7, "readmitted_within_30_days": True}], 400, "[0].prediction_id: not a prediction id"),
        ([{"prediction_id": str(uuid.uuid4()), "readmitted_within_30_days": 1}], 400, "[0].prediction_id: not a"),
        ([{"prediction_id": i, "readmitted_within_30_days": 1} for i in ("OLD", "BAD")], 400, "[1].prediction_id: not"),
        ([{"prediction_id": "OLD", "readmitted_within_30_days": "yes"}], 400, "[0].readmitted_within_30_days: must"),
        ([{"prediction_id": "OLD", "readmitted_within_30_days": 2}], 400, "[0].readmitted_within_30_days: must be"),
        ([{"prediction_id": "OLD", "readmitted_within_30_days": None}], 400, "[0].readmitted_within_30_days: must"),
        ([{"prediction_id": "OLD", "readmitted_within_30_days": True}] * 10_001, 400, "the list holds 10001 outcomes"),
        (
            [{"prediction_id": "OLD", "readmitted_within_30_days": v} for v in (True, False)],
            409,
            "the list gives two outcomes for OLD",
        ),
    ],
    ids=lambda value: None if isinstance(value, list | dict) else str(value)[:40],
)  # fmt: skip
def test_bad_feedback_gets_a_4xx_naming_the_item_and_the_reason(client, body, status, message):
    prediction_id = old_id()
    answer = client.post(FEEDBACK, content=_json(body, prediction_id), headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"].startswith(message.replace("OLD", prediction_id)), answer.text


def _json(body, prediction_id: str) -> bytes:
    malformed = prediction_id[:19] + "c" + prediction_id[20:]  # the length and version of an id, another variant
    return json.dumps(body).replace('"OLD"', f'"{prediction_id}"').replace('"BAD"', f'"{malformed}"').encode()


def test_feedback_needs_json(client):
    assert client.post(FEEDBACK, content=b"[", headers={"content-type": "application/json"}).status_code == 400
    assert client.post(FEEDBACK, content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.get(FEEDBACK).status_code == 405


def test_the_log_holds_what_was_served(client, home):
    answer = client.post("/predict/batch", json=[RECORD, SEED_EXAMPLE]).json()
    ids = [p["prediction_id"] for p in answer["predictions"]]

    def stored():
        with closing(sqlite3.connect(f"file:{home / SQLITE_FILE}?mode=ro", uri=True)) as db:
            rows = logged(db.execute(LOGGED).fetchall())
        return {
            i: (probability, label, version, encoded)
            for i, (_, version, probability, label, encoded) in rows.items()
            if i in ids
        }

    rows = poll(lambda: len(stored()) == 2 and stored(), 10, "the two rows in the prediction log")
    for prediction in answer["predictions"]:
        probability, label, version, encoded = rows[prediction["prediction_id"]]
        assert probability == pytest.approx(prediction["probability"], abs=1e-6)
        assert label == prediction["label"] and version == answer["model"]["version"]
        assert encoded is None  # no patient field is stored unless READMISSION_PREDICTION_LOG_FEATURES opts in
    assert np.isfinite([r[0] for r in rows.values()]).all()
