"""A challenger in shadow, in-process: the application of bento/server/app.py over the tiny model with a second real
model as its challenger (bento/predictionlog/shadow.py). Every served row is scored by the challenger into the log
under the same prediction id, the answers are the champion's, /health names the challenger, and /performance measures
both versions on the same outcomes; a challenger that raises, or hangs, changes no answer and its misses are counted.
With real servers and models trained on the UCI data: tests/service/test_shadow.py.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from contextlib import closing

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.metrics import roc_auc_score

from bento.model.predictor import Predictor
from bento.predictionlog.sqlite import SQLITE_FILE
from tests import sample_data
from tests.helpers import SHADOW_LOGGED, matrix_of, poll, records, shadow_logged, sqlite_ids
from training import data

WAIT = 30  # seconds: generous, for a busy machine


@pytest.fixture(scope="module")
def rival(tiny, tmp_path_factory) -> Predictor:
    """Another real booster on the same rows (shallower, fewer trees) as version "2", with a threshold of its own."""
    import xgboost as xgb

    csv = sample_data.write_csv(tmp_path_factory.mktemp("rival"))
    x, y = data.design_matrix(data.clean(data.load(csv, verify=False)))
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.5, "nthread": 1, "seed": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=6)
    info = dataclasses.replace(tiny.info, version="2", tag="readmission-challenger:rival", threshold=0.3)
    return Predictor(booster, info)


def shadow_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("readmission_shadow_rows_total", {"outcome": outcome}) or 0.0


def shadow_rows(database) -> dict[str, tuple[str, float, int]]:
    """prediction id -> (version, probability, label) of the log's shadow rows."""
    if not database.exists():
        return {}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'shadow_batches'").fetchone() is None:
            return {}
        rows = shadow_logged(db.execute(SHADOW_LOGGED).fetchall())
        return {prediction_id: (version, p, label) for prediction_id, version, p, label in rows}


def answered(answers: list[dict]) -> list[tuple[float, int]]:
    return [(a["probability"], a["label"]) for a in answers]


def served(model: Predictor, patients: list[dict]) -> list[tuple[float, int]]:
    """What the answers must say: `model`'s probability (as the API rounds it) and label."""
    probabilities = model.probabilities(matrix_of(patients))
    rounded = np.round(probabilities.astype(float), 6).tolist()
    return list(zip(rounded, model.labels(probabilities).tolist(), strict=True))


def test_the_challenger_scores_every_served_row_into_the_log_and_both_are_measured(serve, tiny, rival, tmp_path):
    client = serve(challenger=rival, monitor_seconds=1)
    assert client.get("/health").json()["shadow"] == {"status": "on", "model": rival.info.summary()}
    patients = records(60, seed=5)
    answers = client.post("/predict/batch", json=patients).json()["predictions"]
    assert answered(answers) == served(tiny, patients), "the champion's answers, unchanged"
    ids = [answer["prediction_id"] for answer in answers]
    database = tmp_path / SQLITE_FILE
    logged = poll(lambda: set(ids) <= set(rows := shadow_rows(database)) and rows, WAIT, "the shadow rows")
    probabilities = rival.probabilities(matrix_of(patients))
    exact, labels = probabilities.astype(np.float64).tolist(), rival.labels(probabilities).tolist()
    assert [logged[i] for i in ids] == [("2", p, label) for p, label in zip(exact, labels, strict=True)], (
        "the challenger's exact probabilities and its labels at its own threshold, under the served ids"
    )
    outcomes = [n % 3 == 0 for n in range(len(ids))]
    feedback = [{"prediction_id": i, "readmitted_within_30_days": o} for i, o in zip(ids, outcomes, strict=True)]
    assert client.post("/feedback", json=feedback).status_code == 200

    def both() -> dict | None:
        live = client.get("/performance").json()["live"]
        rows = [live.get(v, {}).get("30d", {}).get("labelled_rows", 0) for v in ("1", "2")]
        return live if rows == [60, 60] else None

    live = poll(both, WAIT, "60 labelled rows of each version in /performance")
    champion = tiny.probabilities(matrix_of(patients)).astype(np.float64)
    assert live["1"]["30d"]["roc_auc"] == pytest.approx(roc_auc_score(outcomes, champion), abs=1e-9)
    assert live["2"]["30d"]["roc_auc"] == pytest.approx(roc_auc_score(outcomes, probabilities), abs=1e-9)


def raising(tiny) -> Predictor:
    """A challenger whose booster really fails on every call: it was trained on 5 columns, not the spec's."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x, y = rng.random((50, 5), dtype=np.float32), rng.integers(0, 2, 50)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=y), num_boost_round=2)
    return Predictor(booster, dataclasses.replace(tiny.info, version="2"))


def hanging(tiny, release: threading.Event) -> Predictor:
    """A challenger that never answers until `release` (a hang cannot be produced for real on demand: its scoring
    function is replaced, the one test double here)."""
    model = Predictor(tiny.booster, dataclasses.replace(tiny.info, version="2"))

    def wait(matrix: np.ndarray) -> np.ndarray:
        release.wait(120)
        return tiny.probabilities(matrix)

    model.probabilities = wait
    return model


@pytest.mark.parametrize("fault", ["raises", "hangs"])
def test_a_challenger_that_raises_or_hangs_changes_no_answer_and_its_misses_are_counted(serve, tiny, tmp_path, fault):
    release = threading.Event()
    challenger = raising(tiny) if fault == "raises" else hanging(tiny, release)
    outcome = "failed" if fault == "raises" else "skipped"
    missed_before = shadow_counted(outcome)
    client = serve(challenger=challenger)
    try:
        started = time.monotonic()
        for n in range(5):  # one flush each: the first call fails or hangs, the next ones find it failing or busy
            patients = records(20, seed=n)
            answer = client.post("/predict/batch", json=patients)
            assert answer.status_code == 200, answer.text
            assert answered(answer.json()["predictions"]) == served(tiny, patients)
            ids = {p["prediction_id"] for p in answer.json()["predictions"]}
            poll(lambda ids=ids: ids <= sqlite_ids(tmp_path / SQLITE_FILE), WAIT, "the served rows in the log")
        assert time.monotonic() - started < 60, "the answers or the served rows waited for the challenger"
        poll(lambda: shadow_counted(outcome) - missed_before == 100, WAIT, f"100 rows counted {outcome}")
        assert shadow_rows(tmp_path / SQLITE_FILE) == {}
    finally:
        release.set()
