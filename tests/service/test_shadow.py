"""A challenger in shadow end to end: real `bentoml serve` processes over the champion and the challenger trained on the
UCI data (`shadow_home`: two split seeds, one `readmission import`).

The champion's held-out split is replayed through a service scoring the challenger in shadow and through one with
READMISSION_SHADOW=off: the answers are identical; once the true outcomes are sent, each version's live ROC-AUC equals
scikit-learn's on that version's own probabilities (the challenger's computed offline with its model from MLflow).
A challenger that cannot be loaded leaves the service ready, without shadow, and /health says why. (A challenger
that raises or hangs while serving: tests/unit/api/test_shadow.py and tests/unit/predictionlog/test_shadow.py.)
"""

from __future__ import annotations

import shutil

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.helpers import RECORD, poll, published_rows, replay, scrape, send_outcomes, serve
from training import data
from training.settings import MODEL_NAME

CHUNK = 1000  # rows per infer and per feedback call
WAIT = 120  # seconds: generous, for a busy machine


def home_copy(shadow_home: dict, folder):
    """A private copy of the shadow BentoML home in `folder` (its own prediction log and Prometheus files)."""
    return shutil.copytree(shadow_home["home"], folder / "home", ignore=shutil.ignore_patterns("prometheus*", "*.db*"))


def offline_challenger(shadow_home: dict, matrix: np.ndarray) -> np.ndarray:
    """The challenger's probabilities computed here, with its model from the MLflow registry."""
    uri = f"sqlite:///{shadow_home['mlflow_home'] / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    booster = mlflow.xgboost.load_model(f"models:/{MODEL_NAME}/{shadow_home['challenger'].version}")
    return booster.inplace_predict(matrix).astype(np.float32)


def shadow_counted(server, outcome: str) -> float:
    lines = [line for line in scrape(server).splitlines() if line.startswith("readmission_shadow_rows_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if f'outcome="{outcome}"' in line)


def test_the_replayed_split_answers_as_without_shadow_and_each_version_is_measured_on_its_own_probabilities(
    shadow_home, tmp_path
):
    frame = data.clean(data.load(shadow_home["data"], verify=False))
    matrix, outcome = data.design_matrix(data.split(frame, seed=42).test)  # the champion's held-out split
    champion, challenger = shadow_home["champion"].version, shadow_home["challenger"].version
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    with_shadow = serve(home_copy(shadow_home, tmp_path / "with"), tmp_path / "with", READMISSION_MONITOR_SECONDS="1")
    try:
        without = serve(home_copy(shadow_home, tmp_path / "without"), tmp_path / "without", READMISSION_SHADOW="off")
    except Exception:
        with_shadow.stop()
        raise
    try:
        with httpx.Client(base_url=with_shadow.url, timeout=60) as client, httpx.Client(base_url=without.url) as plain:
            health = client.get("/health").json()["shadow"]
            assert health["status"] == "on" and health["model"]["version"] == challenger, health
            assert health["model"]["bento_tag"] == shadow_home["challenger_tag"]
            assert plain.get("/health").json()["shadow"] == {"status": "off", "reason": "off (READMISSION_SHADOW=off)"}

            def scored(rows: int) -> None:  # one chunk per flush: each call of the challenger well within its budget
                poll(lambda: shadow_counted(with_shadow, "scored") == rows, WAIT, f"{rows} rows scored in shadow")

            probabilities, labels, ids = replay(client, matrix, CHUNK, scored)
            unshadowed, plain_labels, _ = replay(plain, matrix, CHUNK)
            assert np.array_equal(probabilities, unshadowed) and np.array_equal(labels, plain_labels), "identical"
            send_outcomes(client, ids, outcome, CHUNK)
            published = published_rows(ids, CHUNK)  # the rows measured: the oldest multiple of 20 by outcome time
            rows = len(published)

            def measured() -> dict | None:
                live = client.get("/performance").json()["live"]
                counts = [live.get(v, {}).get("90d", {}).get("labelled_rows") for v in (champion, challenger)]
                return live if counts == [rows, rows] else None

            live = poll(measured, WAIT, f"{rows} labelled rows of each version in /performance", interval=0.5)
            assert shadow_counted(with_shadow, "failed") == shadow_counted(with_shadow, "skipped") == 0
    finally:
        with_shadow.stop()
        without.stop()
    offline = offline_challenger(shadow_home, matrix).astype(np.float64)[published]
    outcome, probabilities = outcome[published], probabilities[published]
    for window in ("30d", "90d"):
        assert live[champion][window]["roc_auc"] == pytest.approx(
            roc_auc_score(outcome, probabilities.astype(np.float64)), abs=1e-9
        )
        assert live[challenger][window]["roc_auc"] == pytest.approx(roc_auc_score(outcome, offline), abs=1e-9)
    assert live[champion]["90d"]["roc_auc"] != live[challenger]["90d"]["roc_auc"], "two models, not one twice"


def test_a_challenger_that_cannot_be_loaded_leaves_the_service_ready_without_shadow(shadow_home, tmp_path):
    home = home_copy(shadow_home, tmp_path)
    name, version = shadow_home["challenger_tag"].split(":")
    (home / "models" / name / version / "model.ubj").write_bytes(b"not a booster")
    server = serve(home, tmp_path)
    try:
        health = httpx.get(f"{server.url}/health", timeout=30).json()
        assert health["status"] == "ok" and health["model"]["bento_tag"] == shadow_home["tag"]
        assert health["shadow"]["status"] == "off"
        assert health["shadow"]["reason"].startswith("failed to load: model " + shadow_home["challenger_tag"])
        assert httpx.post(f"{server.url}/predict", json=RECORD, timeout=30).status_code == 200
    finally:
        server.stop()
