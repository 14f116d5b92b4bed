"""`readmission compare` and `readmission promote --live` on a prediction log holding paired rows (the served
version and a challenger scored in shadow) and a real MLflow registry (SQLite, in the test's folder) whose aliases
name those versions: the report's figures, the promotion with its evidence as tags, and the refusals."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import ShadowBatch
from bento.quality import comparison
from tests.helpers import queued
from training import cli, registry
from training.settings import MODEL_NAME, TrainingSettings

DAY = 86400.0


def _fill(path, now: float, better: bool) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Version 1 served 600 labelled predictions (400 of them 5 days ago, 200 60 days ago), version 2 scored
    each in shadow: better than the champion by construction (`better`) or as good as a coin; what each window
    holds (outcome, champion's, challenger's probabilities)."""
    rng = np.random.default_rng(7)
    store, ids = SQLiteStore(path), PredictionIds()
    held: dict[str, list] = {"30d": [], "90d": []}
    for days_ago, rows in ((5, 400), (60, 200)):
        outcome = (rng.random(rows) < 0.3).astype(np.int64)
        champion = np.clip(0.3 + 0.15 * outcome + rng.normal(0, 0.2, rows), 0.001, 0.999).astype(np.float32)
        signal = 0.4 * outcome if better else 0.0
        challenger = np.clip(0.3 + signal + rng.normal(0, 0.1, rows), 0.001, 0.999).astype(np.float32)
        when = now - days_ago * DAY
        batch = ScoredBatch(ids.take(rows, when), when, "1", champion, (champion >= 0.4).astype(np.int64),
                            np.zeros((rows, 1), dtype=np.float32))  # fmt: skip
        shadow = [ShadowBatch(batch.ids[0], "2", challenger, (challenger >= 0.4).astype(np.int64))]
        store.append(queued(batch), keep_features=False, shadow=shadow)
        store.record_outcomes(dict(zip(batch.ids, outcome.tolist(), strict=True)), now)
        for window, days in (("30d", 30), ("90d", 90)):
            if days_ago <= days:
                held[window].append((outcome, champion.astype(np.float64), challenger.astype(np.float64)))
    store.close()
    return {w: tuple(np.concatenate(part) for part in zip(*parts, strict=True)) for w, parts in held.items()}


@pytest.fixture
def registered(tmp_path, monkeypatch) -> MlflowClient:
    """A registry holding versions 1 (champion) and 2 (challenger), and the environment naming it and the log."""
    monkeypatch.setenv("READMISSION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("READMISSION_PREDICTION_LOG", str(tmp_path / "log.db"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.connect(TrainingSettings.from_env())
    client = MlflowClient()
    client.create_registered_model(MODEL_NAME)
    for version, alias in (("1", "champion"), ("2", "challenger")):
        (tmp_path / f"model-{version}").mkdir()
        assert str(client.create_model_version(MODEL_NAME, str(tmp_path / f"model-{version}")).version) == version
        client.set_registered_model_alias(MODEL_NAME, alias, version)
    return client


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(MODEL_NAME).aliases.items()}


def _table(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| figure"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_compare_reports_each_window_of_the_pair(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("READMISSION_PREDICTION_LOG", str(tmp_path / "log.db"))
    held = _fill(tmp_path / "log.db", time.time(), better=True)
    assert cli.main(["compare"]) == 0
    out = capsys.readouterr().out
    assert "champion version 1, challenger version 2" in out
    table = _table(out)
    assert table["labelled predictions scored by both"] == ["400", "600"]
    for column, window in enumerate(("30d", "90d")):
        outcome, champion, challenger = held[window]
        found = comparison.compare(outcome, champion, challenger)
        assert float(table["ROC-AUC, champion"][column]) == pytest.approx(roc_auc_score(outcome, champion), abs=5e-5)
        assert float(table["ROC-AUC, challenger"][column]) == pytest.approx(
            roc_auc_score(outcome, challenger), abs=5e-5
        )
        assert table["its 95% interval (DeLong, paired)"][column] == (
            f"{found['roc_auc_difference_low']:+.4f} to {found['roc_auc_difference_high']:+.4f}"
        )
        assert float(table["Brier difference (challenger - champion: below 0 is better)"][column]) == pytest.approx(
            found["brier_difference"], abs=5e-5
        )
    assert cli.main(["compare", "--window", "30"]) == 0
    assert _table(capsys.readouterr().out)["labelled predictions scored by both"] == ["400"]


def test_promote_live_moves_the_champion_to_a_better_challenger_and_tags_the_evidence(tmp_path, registered, capsys):
    held = _fill(tmp_path / "log.db", time.time(), better=True)
    assert cli.main(["promote", "--live", "--margin", "0.02", "--window", "30"]) == 0
    assert "readmission@champion -> version 2 (was 1" in capsys.readouterr().out
    assert _aliases(registered) == {"champion": "2"}  # the challenger alias is gone
    expected = comparison.compare(*held["30d"])
    for version, role in (("1", "champion"), ("2", "challenger")):
        tags = registered.get_model_version(MODEL_NAME, version).tags
        assert tags["live_promotion.role"] == role
        assert (tags["live_promotion.window"], tags["live_promotion.margin"]) == ("30d", "0.02")
        assert (tags["live_promotion.champion_version"], tags["live_promotion.challenger_version"]) == ("1", "2")
        assert tags["live_promotion.rows"] == "400"
        assert time.time() - 60 < datetime.fromisoformat(tags["live_promotion.decided_at"]).timestamp() <= time.time()
        for name, value in expected.items():
            assert float(tags[f"live_promotion.{name}"]) == pytest.approx(value, rel=1e-12)
    assert expected["roc_auc_difference_low"] > 0.02


def test_promote_live_refuses_a_challenger_that_is_not_better_and_changes_nothing(tmp_path, registered, capsys):
    _fill(tmp_path / "log.db", time.time(), better=False)
    assert cli.main(["promote", "--live"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("readmission promote: the challenger is not better by more than 0: ROC-AUC difference -")
    assert "labelled predictions in the last 90d: nothing changed" in err and "\n" not in err
    assert _aliases(registered) == {"champion": "1", "challenger": "2"}
    assert not any(k.startswith("live_promotion") for v in ("1", "2")
                   for k in registered.get_model_version(MODEL_NAME, v).tags)  # fmt: skip


def test_promote_live_refuses_a_margin_the_interval_does_not_clear_and_a_pair_the_log_does_not_hold(
    tmp_path, registered, capsys
):
    found = comparison.compare(*_fill(tmp_path / "log.db", time.time(), better=True)["90d"])
    margin = f"{(found['roc_auc_difference_low'] + found['roc_auc_difference']) / 2:.4f}"  # below the difference
    assert cli.main(["promote", "--live", "--margin", margin]) == 1  # but not below its whole interval
    assert f"not better by more than {float(margin):g}" in capsys.readouterr().err
    registered.set_registered_model_alias(MODEL_NAME, "champion", "2")  # the aliases now name another pair
    registered.set_registered_model_alias(MODEL_NAME, "challenger", "1")
    assert cli.main(["promote", "--live"]) == 1
    assert capsys.readouterr().err.strip() == (
        "readmission promote: no labelled predictions of champion version 2 and challenger version 1 in the last "
        "90d: nothing changed"
    )
    assert _aliases(registered) == {"champion": "2", "challenger": "1"}


def test_promote_takes_a_version_or_live_not_both_nor_neither(registered, capsys):
    assert cli.main(["promote"]) == 1
    assert capsys.readouterr().err.strip() == "readmission promote: give the version to promote, or --live"
    assert cli.main(["promote", "2", "--live"]) == 1
    assert capsys.readouterr().err.strip() == "readmission promote: give a version or --live, not both"
    assert _aliases(registered) == {"champion": "1", "challenger": "2"}
    assert cli.main(["promote", "2"]) == 0 and _aliases(registered)["champion"] == "2"  # by hand, as before
