"""`readmission monitor` on a prediction log filled with known rows: the report's figures and the reliability plot."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.predictionlog.sqlite import SQLiteStore
from bento.quality import estimates
from tests.helpers import queued
from training import cli
from training.monitor import INTERVAL_ROW

LABELLED = "labelled predictions (oldest multiple of 20 by outcome time)"

DAY = 86400.0
TRAINING = {"roc_auc": 0.6719, "roc_auc_ci_low": 0.6594, "roc_auc_ci_high": 0.6853, "pr_auc": 0.2294, "brier": 0.0982}


def _fill(path, now: float) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Labelled predictions of versions 3 and 4 at 5, 60 and 120 days ago, the outcomes of each batch's later half
    recorded before those of its first half; what each (version, window) holds, in the order of the ids."""
    rng = np.random.default_rng(4)
    store, ids = SQLiteStore(path), PredictionIds()
    expected: dict[tuple[str, str], list] = {}
    for version, days_ago, rows in (("3", 5, 300), ("3", 60, 200), ("3", 120, 100), ("4", 5, 150)):
        outcome = (rng.random(rows) < 0.25).astype(np.int64)
        probability = np.clip(0.2 + 0.15 * outcome + rng.normal(0, 0.12, rows), 0.001, 0.999).astype(np.float32)
        labels = (probability >= 0.3).astype(np.int64)
        batch = ScoredBatch(ids.take(rows, now - days_ago * DAY), now - days_ago * DAY, version, probability, labels,
                            np.zeros((rows, 1), dtype=np.float32))  # fmt: skip
        store.append(queued(batch), keep_features=False)
        half = rows // 2
        store.record_outcomes(dict(zip(batch.ids[half:], outcome[half:].tolist(), strict=True)), now - 10)
        store.record_outcomes(dict(zip(batch.ids[:half], outcome[:half].tolist(), strict=True)), now)
        for window, days in (("30d", 30), ("90d", 90)):
            if days_ago <= days:
                expected.setdefault((version, window), []).append((outcome, probability.astype(np.float64)))
    store.close()
    return {key: tuple(np.concatenate(part) for part in zip(*parts, strict=True)) for key, parts in expected.items()}


def _table(text: str, version: str) -> dict[str, list[str]]:
    """The rows of one version's table: label -> cells."""
    section = text.split(f"model version {version}\n\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| metric"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_report_per_version_and_window_beside_the_training_figures(tmp_path, monkeypatch, capsys):
    now = time.time()
    expected = _fill(tmp_path / "log.db", now)
    estimated = estimates.expected_roc_auc(expected[("4", "30d")][1][:140])  # 150 predictions: the oldest 140 by id
    published = np.r_[75:150, 0:65]  # 150 outcomes: the oldest 140 by the time recorded, the later half's first
    for window in ("30d", "90d"):
        expected[("4", window)] = tuple(column[published] for column in expected[("4", window)])
    models = tmp_path / "bentoml" / "models" / "readmission" / "abc123"
    models.mkdir(parents=True)
    (models / "model_metadata.json").write_text(json.dumps({"mlflow_version": "3", "test_metrics": TRAINING}))
    monkeypatch.setenv("READMISSION_PREDICTION_LOG", str(tmp_path / "log.db"))
    monkeypatch.setenv("READMISSION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert cli.main(["monitor", "--plot", str(tmp_path / "plots" / "live.png")]) == 0
    out = capsys.readouterr().out

    three, four = _table(out, "3"), _table(out, "4")
    assert three[LABELLED] == ["-", "300", "500"]
    assert three["predictions estimated (oldest multiple of 20)"] == ["-", "300", "500"]
    assert float(four["Estimated ROC-AUC (before outcomes)"][1]) == pytest.approx(estimated, abs=5e-5)
    assert four[LABELLED] == ["-", "140", "140"]
    assert three["ROC-AUC"][0] == "0.6719" and three[INTERVAL_ROW][0] == "0.6594 - 0.6853"
    assert three["Expected calibration error"][0] == "-" and four["ROC-AUC"][0] == "-"
    assert "no training figures found for version 4" in out
    for version, table in (("3", three), ("4", four)):
        for column, window in enumerate(("30d", "90d"), start=1):
            outcome, probability = expected[(version, window)]
            assert float(table["ROC-AUC"][column]) == pytest.approx(roc_auc_score(outcome, probability), abs=5e-5)
            assert float(table["PR-AUC (average precision)"][column]) == pytest.approx(
                average_precision_score(outcome, probability), abs=5e-5
            )
            assert float(table["Brier score"][column]) == pytest.approx(
                brier_score_loss(outcome, probability), abs=5e-5
            )
            assert float(table["Share flagged"][column]) == pytest.approx((probability >= 0.3).mean(), abs=5e-5)
            low, high = (float(v) for v in table[INTERVAL_ROW][column].split(" - "))
            assert low < float(table["ROC-AUC"][column]) < high
    plot = tmp_path / "plots" / "live.png"
    assert f"reliability plot: {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_log_is_one_line_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("READMISSION_HOME", str(tmp_path))
    monkeypatch.delenv("READMISSION_PREDICTION_LOG", raising=False)
    assert cli.main(["monitor"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"readmission monitor: no prediction log at {tmp_path / 'predictions.db'} (set READMISSION_PREDICTION_LOG)"
    )
    assert not (tmp_path / "predictions.db").exists()
