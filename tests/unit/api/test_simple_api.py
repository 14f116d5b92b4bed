"""The simple JSON API in-process (bento/api/: /predict, /predict/batch, ?explain=true, /feedback, /performance,
/health) through the application of bento/server/app.py over the tiny model: answers equal the model's own output,
refusals name the field, feedback lands in the temporary SQLite log."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from bento import features
from bento.core.ids import issued_at
from bento.model import explain
from bento.monitoring import metrics
from bento.openapi import schemas
from bento.predictionlog.sqlite import SQLITE_FILE, SQLiteStore
from bento.predictionlog.store import ShadowBatch
from bento.quality import comparison
from tests.helpers import RECORD, SEED_EXAMPLE, matrix_of, poll, records, sqlite_ids


def expected(tiny, matrix: np.ndarray) -> list[tuple[float, int, str]]:
    """What the answers must say of each row: the tiny model's probability (as the API rounds it), label, band."""
    probabilities = tiny.probabilities(matrix)
    return [
        (round(float(p), 6), int(label), tiny.band(float(p)).value)
        for p, label in zip(probabilities, tiny.labels(probabilities), strict=True)
    ]


def said(answers: list[dict]) -> list[tuple[float, int, str]]:
    return [(a["probability"], a["label"], a["risk_band"]) for a in answers]


def test_predict_answers_the_models_probability_label_band_and_the_model(app, tiny):
    before = time.time()
    answer = app.post("/predict", json=RECORD)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert said([body]) == expected(tiny, matrix_of([RECORD]))
    assert body["model"] == tiny.info.summary()
    assert before - 0.01 <= issued_at(body["prediction_id"]) <= time.time() + 0.01
    assert "factors" not in body


def test_the_encoded_form_of_the_original_design_gives_the_same_answer_as_its_row(app, tiny):
    answer = app.post("/predict", json=SEED_EXAMPLE)
    assert answer.status_code == 200, answer.text
    assert said([answer.json()]) == expected(tiny, features.vector_from_encoded(SEED_EXAMPLE)[None, :])


def test_a_batch_answers_each_patient_in_order_with_its_own_id(app, tiny):
    patients = records(7, seed=21)
    answer = app.post("/predict/batch", json=patients)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert said(predictions) == expected(tiny, matrix_of(patients))
    ids = [p["prediction_id"] for p in predictions]
    assert len(set(ids)) == 7 and ids == sorted(ids)


@pytest.mark.parametrize("flag", ["true", "1", "TRUE"])
def test_explain_adds_the_top_factors_of_each_patient(serve, tiny, flag):
    client = serve(top_factors=3)
    patients = records(2, seed=22)
    predictions = client.post(f"/predict/batch?explain={flag}", json=patients).json()["predictions"]
    assert [p["factors"] for p in predictions] == explain.factors(
        tiny, matrix_of(patients), [features.validate(p) for p in patients], 3
    )
    single = client.post(f"/predict?explain={flag}", json=patients[0]).json()
    assert single["factors"] == predictions[0]["factors"] and len(single["factors"]) == 3


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/predict", {**RECORD, "race": "Martian"}, 400, "race: "),
        ("/predict", {**RECORD, "time_in_hospital": 400}, 400, "time_in_hospital: "),
        ("/predict", [RECORD], 400, "the body must be a JSON object of patient fields"),
        ("/predict?explain=maybe", RECORD, 400, "explain: must be true or false"),
        ("/predict/batch", [RECORD, {**RECORD, "diag_1": "XYZ"}], 400, "[1].diag_1: "),
        ("/predict/batch", RECORD, 400, "the body must be a JSON list of patients"),
        ("/predict/batch", [], 400, "the batch is empty"),
        ("/predict/batch", [RECORD] * 4, 400, "the batch has 4 patients; the limit is 3"),
    ],
)
def test_refusals_are_json_naming_the_field(serve, path, body, status, says):
    answer = serve(max_batch_rows=3).post(path, json=body)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"].startswith(says) or says in answer.json()["error"]


def test_bodies_that_are_not_json_too_large_or_of_another_media_type_are_refused(serve):
    client = serve(max_body_bytes=2000)
    malformed = client.post("/predict", content=b'{"race": "Asian", "race": "Other"}')
    assert malformed.status_code == 400 and "the key 'race' appears twice" in malformed.json()["error"]
    large = client.post("/predict/batch", json=[RECORD] * 10)
    assert large.status_code == 413 and large.headers["connection"] == "close"
    assert large.json() == {"error": "the body exceeds the limit of 2000 bytes"}
    typed = client.post("/predict", content=b"race=Asian", headers={"content-type": "text/plain"})
    assert typed.status_code == 415


def test_feedback_records_outcomes_of_logged_predictions_once_and_refuses_conflicts(app, tmp_path):
    ids = [p["prediction_id"] for p in app.post("/predict/batch", json=records(3, seed=23)).json()["predictions"]]
    poll(lambda: set(ids) <= sqlite_ids(tmp_path / SQLITE_FILE), 10, "the predictions in the log", interval=0.05)
    outcomes = [{"prediction_id": i, "readmitted_within_30_days": n == 0} for n, i in enumerate(ids)]
    first = app.post("/feedback", json=outcomes)
    assert first.status_code == 200 and first.json() == {"recorded": 3, "unchanged": 0}
    again = app.post("/feedback", json=[{**o, "prediction_id": o["prediction_id"].upper()} for o in outcomes])
    assert again.json() == {"recorded": 0, "unchanged": 3}
    changed = app.post("/feedback", json=[{"prediction_id": ids[0], "readmitted_within_30_days": False}])
    assert changed.status_code == 409 and ids[0] in changed.json()["error"]


def test_feedback_sent_at_once_waits_for_the_log_to_write_the_prediction(app):
    prediction_id = app.post("/predict", json=RECORD).json()["prediction_id"]
    answer = app.post("/feedback", json=[{"prediction_id": prediction_id, "readmitted_within_30_days": True}])
    assert answer.status_code == 200 and answer.json() == {"recorded": 1, "unchanged": 0}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"prediction_id": "x"}, 400, "the body must be a JSON list"),
        ([], 400, "the list of outcomes is empty"),
        ([{"prediction_id": "not-an-id", "readmitted_within_30_days": True}], 400, "[0].prediction_id: not a"),
        ([{"readmitted_within_30_days": True}], 400, "[0].prediction_id: is required"),
        ([{"prediction_id": "{old}", "readmitted_within_30_days": 2}], 400, "[0].readmitted_within_30_days: must"),
        ([{"prediction_id": "{old}", "readmitted_within_30_days": True, "note": 1}], 400, "[0].note: unknown field"),
        ([{"prediction_id": "{old}", "readmitted_within_30_days": True}], 404, "prediction_id: unknown: {old}"),
    ],
)
def test_feedback_refusals_name_the_item_and_the_field(app, body, status, says):
    old = "018bcfe5-6800-7abc-8abc-000000000001"  # issued in 2023: long settled, never logged here
    body = (
        [{k: old if v == "{old}" else v for k, v in item.items()} for item in body] if isinstance(body, list) else body
    )
    answer = app.post("/feedback", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"].startswith(says.format(old=old))


def test_performance_follows_the_feedback(serve, tmp_path):
    client = serve(monitor_seconds=1)
    ids = [p["prediction_id"] for p in client.post("/predict/batch", json=records(20, seed=24)).json()["predictions"]]
    more = client.post("/predict/batch", json=records(1, seed=25)).json()["predictions"]  # never an outcome
    poll(lambda: set(ids) <= sqlite_ids(tmp_path / SQLITE_FILE), 10, "the predictions in the log", interval=0.05)
    outcomes = [{"prediction_id": i, "readmitted_within_30_days": n % 2 == 0} for n, i in enumerate(ids)]
    assert client.post("/feedback", json=outcomes).status_code == 200

    def labelled() -> int:
        performance = client.get("/performance").json()
        return performance["live"].get("1", {}).get("30d", {}).get("labelled_rows", 0) == 20 and performance

    performance = poll(labelled, 10, "20 labelled rows in /performance", interval=0.05)
    assert performance["training"] == {"1": {"roc_auc": 0.7, "brier": 0.1}}
    assert performance["windows_days"] == {"30d": 30, "90d": 90}
    schemas.Performance.model_validate(performance)

    def stepped() -> dict | None:  # 21 predictions, outcome or not: the estimates of the oldest 20
        estimated = client.get("/performance").json()["estimated"]["1"]
        return estimated if estimated["30d"]["scored_rows"] == 20 else None

    estimated = poll(stepped, 10, "the estimates of 20 predictions", interval=0.05)
    assert len(more) == 1 and estimated["30d"] == estimated["90d"]
    assert set(estimated["30d"]) == {"scored_rows", "estimated_roc_auc", "estimated_precision", "flagged_rate"}
    assert 0.0 < estimated["30d"]["estimated_roc_auc"] < 1.0
    properties = client.get("/openapi.json").json()["components"]["schemas"]["Performance"]["properties"]
    assert "estimated" in properties


def test_performance_and_the_gauges_compare_the_challenger_on_the_same_patients(serve, tmp_path):
    client = serve(monitor_seconds=1)
    ids = [p["prediction_id"] for p in client.post("/predict/batch", json=records(24, seed=25)).json()["predictions"]]
    poll(lambda: set(ids) <= sqlite_ids(tmp_path / SQLITE_FILE), 10, "the predictions in the log", interval=0.05)
    outcome = [n % 3 == 0 for n in range(24)]
    challenger = [0.9 - 0.01 * n if o else 0.1 + 0.01 * n for n, o in enumerate(outcome)]
    store = SQLiteStore(tmp_path / SQLITE_FILE)
    scores = np.array(challenger, np.float32)
    store.append([], keep_features=False, shadow=[ShadowBatch(ids[0], "2", scores, (scores >= 0.5).astype(int))])
    outcomes = [{"prediction_id": i, "readmitted_within_30_days": o} for i, o in zip(ids, outcome, strict=True)]
    assert client.post("/feedback", json=outcomes).status_code == 200

    def compared() -> list | None:
        return client.get("/performance").json()["comparison"] or None

    [pair] = poll(compared, 10, "the comparison in /performance", interval=0.05)
    body = client.get("/performance").json()
    assert schemas.Performance.model_validate(body).model_dump() == body  # the OpenAPI schema says all of it
    paired = store.paired(since=0)
    store.close()
    assert len(set(paired.recorded.tolist())) == 1, "one feedback call: one time recorded, the oldest ids published"
    first = slice(0, 20)  # 24 outcomes: the oldest 20
    expected = comparison.compare(paired.outcome[first], paired.champion[first], paired.challenger[first])
    assert pair == {"champion_version": "1", "challenger_version": "2", "windows": {"30d": expected, "90d": expected}}
    assert expected["rows"] == 20 and expected["challenger_roc_auc"] == roc_auc_score(outcome[:20], challenger[:20])
    assert expected["champion_roc_auc"] == pytest.approx(
        roc_auc_score(paired.outcome[first], paired.champion[first]), abs=1e-9
    )
    gauges = {
        tuple(sample.labels[k] for k in ("champion_version", "challenger_version", "window", "metric")): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        if family.name == "readmission_live_comparison"
        for sample in family.samples
    }
    assert gauges == {
        ("1", "2", window, metric): value for window in ("30d", "90d") for metric, value in expected.items()
    }


PUBLIC = {  # the series of the realised figures, and their labels in order
    "readmission_live_metric": ("model_version", "window", "metric"),
    "readmission_live_comparison": ("champion_version", "challenger_version", "window", "metric"),
}


def _public(client) -> tuple[dict, dict]:
    """What anyone reads of the realised figures: the live and comparison series of a scrape, and /performance's."""
    series = {
        (family.name, *(sample.labels[label] for label in PUBLIC[family.name])): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        if family.name in PUBLIC
        for sample in family.samples
    }
    performance = client.get("/performance").json()
    return series, {"live": performance["live"], "comparison": performance["comparison"]}


def test_one_feedback_moves_no_public_figure_until_it_completes_a_step(serve, tmp_path):
    """The scrape-diff leak: two readings around ONE `POST /feedback` (about a prediction older than every labelled
    one) are identical once the figures were computed again; the PUBLISH_ROWS-th outcome moves them."""
    client = serve(monitor_seconds=1)
    older = [p["prediction_id"] for p in client.post("/predict/batch", json=records(20, seed=26)).json()["predictions"]]
    ids = [p["prediction_id"] for p in client.post("/predict/batch", json=records(20, seed=27)).json()["predictions"]]
    poll(lambda: set(older + ids) <= sqlite_ids(tmp_path / SQLITE_FILE), 10, "the predictions in the log", 0.05)
    store = SQLiteStore(tmp_path / SQLITE_FILE)
    scores = np.linspace(0.05, 0.95, 20, dtype=np.float32)
    store.append([], keep_features=False, shadow=[ShadowBatch(first, "2", scores, (scores >= 0.5).astype(int))
                                                  for first in (older[0], ids[0])])  # fmt: skip

    def feedback(about: list[str]) -> float:
        """Send outcomes about `about` in one call; when the figures served before it were computed (0: never)."""
        computed_at = client.get("/performance").json()["computed_at"] or 0.0
        outcomes = [{"prediction_id": i, "readmitted_within_30_days": int(i[-4:], 16) % 3 == 0} for i in about]
        assert client.post("/feedback", json=outcomes).status_code == 200
        return computed_at

    def recomputed(after: float) -> bool:
        """Whether the figures served were computed from the outcomes recorded now, later than `after`."""
        stored, served = store.stored_figures(), client.get("/performance").json()["computed_at"]
        return (
            stored is not None
            and stored.marker.split(" ")[0] == store.labelled_marker()
            and served == stored.computed_at > after
        )

    computed_at = feedback(ids)
    poll(lambda: recomputed(computed_at), 20, "the first step's figures served", interval=0.05)
    series, performance = _public(client)
    assert performance["live"]["1"]["30d"]["labelled_rows"] == 20 and "roc_auc" in performance["live"]["1"]["30d"]
    assert performance["comparison"][0]["windows"]["30d"]["rows"] == 20
    assert series[("readmission_live_metric", "1", "30d", "labelled_rows")] == 20
    assert ("readmission_live_comparison", "1", "2", "90d", "challenger_roc_auc") in series

    computed_at = feedback(older[:1])  # ONE outcome, about a prediction older than the 20 published
    poll(lambda: recomputed(computed_at), 20, "the figures computed again after one outcome", interval=0.05)
    assert _public(client) == (series, performance), "one outcome moved a public figure"

    computed_at = feedback(older[1:])  # the 20th: a step
    poll(lambda: recomputed(computed_at), 20, "the figures computed again after a step", interval=0.05)
    moved, after = _public(client)
    assert after["live"]["1"]["90d"]["labelled_rows"] == after["comparison"][0]["windows"]["90d"]["rows"] == 40
    assert (
        moved[("readmission_live_metric", "1", "90d", "roc_auc")]
        != series[("readmission_live_metric", "1", "90d", "roc_auc")]
    )
    store.close()


def test_without_a_log_feedback_and_performance_are_unavailable_and_predictions_go_on(serve, tmp_path):
    client = serve(prediction_log="off")
    prediction = client.post("/predict", json=RECORD).json()
    assert client.get("/performance").status_code == 503
    answer = client.post("/feedback", json=[{"prediction_id": prediction["prediction_id"],
                                             "readmitted_within_30_days": True}])  # fmt: skip
    assert answer.status_code == 503 and "the prediction log is off" in answer.json()["error"]
    assert not (tmp_path / SQLITE_FILE).exists()


def test_health_says_ok_with_the_model_and_503_while_draining_or_without_one(app, tiny):
    assert app.get("/health").json() == {
        "status": "ok", "model_loaded": True, "model": tiny.info.summary(), "unusual_check": "on",
        "shadow": {"status": "off", "reason": "none loaded"},
    }  # fmt: skip
    core = app.app.state.core
    core.draining = True
    draining = app.get("/health")
    assert draining.status_code == 503 and draining.json()["status"] == "draining"
    core.draining, core.predictor = False, None
    assert app.get("/health").json() == {"status": "not ready", "model_loaded": False}
    refused = app.post("/predict", json=RECORD)
    assert refused.status_code == 503 and "the model is not loaded" in refused.json()["error"]
