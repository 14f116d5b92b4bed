"""Live performance end to end: the champion's held-out test split replayed through a real service, its true
outcomes sent back, and the figures the service computes (GET /performance, /metrics) checked against scikit-learn
on the same rows: the oldest multiple of PUBLISH_ROWS by the time their outcome was recorded."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import average_precision_score, brier_score_loss, precision_score, roc_auc_score

from bento.model.predictor import METADATA_FILE
from bento.quality import estimates, figures
from bento.quality.privacy import PUBLISH_ROWS
from tests import servers
from tests.helpers import copy_home, poll, published_rows, replay, scrape, send_outcomes, serve
from tests.reference import nannyml_cbpe
from training import data, registry

CHUNK = 1000  # rows per infer and per feedback call


def _test_split(champion_store) -> tuple[np.ndarray, np.ndarray]:
    """The champion's held-out test split, rebuilt as training built it (same data, same seed)."""
    registry.connect(champion_store["settings"])
    seed = int(MlflowClient().get_run(champion_store["registered"].run_id).data.params["seed"])
    frame = data.clean(data.load(Path(champion_store["data"]), verify=False))
    return data.design_matrix(data.split(frame, seed=seed).test)


def _live_gauges(server: servers.Server) -> dict[tuple[str, ...], float]:
    """readmission_live_metric and readmission_training_metric samples by (name, labels...)."""
    found = {}
    for family in text_string_to_metric_families(scrape(server)):
        if family.name in ("readmission_live_metric", "readmission_training_metric"):
            for sample in family.samples:
                labels = sample.labels
                found[(family.name, labels["model_version"], labels.get("window"), labels["metric"])] = sample.value
    return found


def _computed(client: httpx.Client) -> dict | None:
    """The body of GET /performance once the figures have been computed."""
    answer = client.get("/performance")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body if body["computed_at"] is not None else None


def test_replayed_test_split_gives_the_offline_figures(champion_store, bento_home, tmp_path, figure):
    matrix, outcome = _test_split(champion_store)
    metadata = json.loads((bento_home["model_dir"] / METADATA_FILE).read_text())
    version = str(metadata["mlflow_version"])
    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_MONITOR_SECONDS="1",
                   READMISSION_PREDICTION_LOG=str(tmp_path / "log.db"))  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            before = poll(lambda: _computed(client), 30, "the first computation", interval=0.3)
            assert before["live"][version]["90d"] == {"labelled_rows": 0}  # no outcome yet: nothing else
            assert before["training"][version] == {k: metadata["test_metrics"][k] for k in figures.METRICS}

            probability, _, ids = replay(client, matrix, CHUNK)
            send_outcomes(client, ids, outcome, CHUNK)

            published = published_rows(ids, CHUNK)
            rows = len(published)

            def labelled() -> dict | None:
                live = client.get("/performance").json()["live"][version]
                return live if all(live[w]["labelled_rows"] == rows for w in ("30d", "90d")) else None

            live = poll(labelled, 60, f"{rows} labelled rows in /performance", interval=0.5)

            def scraped() -> dict | None:  # the same figures on the metrics port (a scrape is up to 1 s old)
                found = _live_gauges(server)
                counted = found.get(("readmission_live_metric", version, "90d", "labelled_rows"))
                return found if counted == rows else None

            gauges = poll(scraped, 10, f"{rows} labelled rows in /metrics")
    finally:
        server.stop()

    assert len(outcome) - rows < PUBLISH_ROWS, "the rows past the last step wait for the next outcomes"
    outcome, probability = outcome[published], probability[published]
    flagged = probability >= np.float32(metadata["threshold"])
    offline = {
        "roc_auc": roc_auc_score(outcome, probability),
        "brier": brier_score_loss(outcome, probability),
        "pr_auc": average_precision_score(outcome, probability),
        "flagged_rate": flagged.mean(),
        "precision": precision_score(outcome, flagged),
    }
    for window in ("30d", "90d"):
        for metric, expected in offline.items():
            assert live[window][metric] == pytest.approx(expected, abs=1e-9), (window, metric)
            assert gauges[("readmission_live_metric", version, window, metric)] == pytest.approx(expected, abs=1e-9)
        assert gauges[("readmission_live_metric", version, window, "labelled_rows")] == rows
        assert live[window]["roc_auc_ci_low"] < offline["roc_auc"] < live[window]["roc_auc_ci_high"]
    for metric in figures.METRICS:
        assert gauges[("readmission_training_metric", version, None, metric)] == metadata["test_metrics"][metric]
    # one copy of each metric: bento/quality/figures.py agrees with scikit-learn on the real rows
    assert figures.roc_auc(outcome, probability) == pytest.approx(offline["roc_auc"], abs=1e-12)
    assert figures.average_precision(outcome, probability) == pytest.approx(offline["pr_auc"], abs=1e-12)
    assert figures.brier(outcome, probability) == pytest.approx(offline["brier"], abs=1e-12)
    figure("live ROC-AUC - scikit-learn's", f"{live['90d']['roc_auc'] - offline['roc_auc']:.2e}")
    figure("live Brier - scikit-learn's", f"{live['90d']['brier'] - offline['brier']:.2e}")
    figure(
        "live ROC-AUC - training's (float32 compiled vs xgboost)",
        f"{live['90d']['roc_auc'] - metadata['test_metrics']['roc_auc']:.2e}",
    )
    figure("replayed rows; published", f"{len(ids)}; {rows}")


def _estimated_then_realised(server: servers.Server, version: str, matrix: np.ndarray, outcome: np.ndarray) -> tuple:
    """The 30-day estimates once the replay is logged (before any outcome), the probabilities served, then the
    30-day live figures once `outcome` is sent."""
    published = len(outcome) // PUBLISH_ROWS * PUBLISH_ROWS
    with httpx.Client(base_url=server.url, timeout=60) as client:
        probability, _, ids = replay(client, matrix, CHUNK)

        def estimated() -> dict | None:
            body = client.get("/performance").json()
            found = body["estimated"].get(version, {}).get("30d", {})
            return body if found.get("scored_rows") == published else None

        before = poll(estimated, 120, f"the estimates of {published} rows", interval=0.5)
        assert before["live"][version]["30d"] == {"labelled_rows": 0}, "no outcome sent yet"
        send_outcomes(client, ids, outcome)

        def realised() -> dict | None:
            body = client.get("/performance").json()
            return body if body["live"][version]["30d"]["labelled_rows"] == published else None

        after = poll(realised, 120, f"{published} labelled rows", interval=0.5)
    assert after["estimated"] == before["estimated"], "outcomes move no estimate"
    return before["estimated"][version]["30d"], probability, after["live"][version]["30d"]


def test_the_estimates_before_outcomes_lie_in_the_realised_interval_and_miss_a_changed_subgroup(
    champion_store, bento_home, tmp_path, figure
):
    """The held-out split replayed: before any outcome, the estimated ROC-AUC lies inside the realised ROC-AUC's 95%
    interval (once the outcomes are sent) and agrees with NannyML's CBPE on the same probabilities. The same rows
    replayed into another log with the outcomes of the 80-90 age band flipped (how outcomes relate to the features
    changed, the features did not): the estimate is the same, the realised ROC-AUC falls below its interval."""
    matrix, outcome = _test_split(champion_store)
    metadata = json.loads((bento_home["model_dir"] / METADATA_FILE).read_text())
    version = str(metadata["mlflow_version"])
    published = len(outcome) // PUBLISH_ROWS * PUBLISH_ROWS
    figures_of = {}
    for stream, outcomes in (("true", outcome), ("flipped", _flipped_for_80_to_90(champion_store, outcome))):
        folder = tmp_path / stream
        folder.mkdir()
        server = serve(copy_home(bento_home, folder), folder, READMISSION_MONITOR_SECONDS="1",
                       READMISSION_PREDICTION_LOG=str(folder / "log.db"))  # fmt: skip
        try:
            figures_of[stream] = _estimated_then_realised(server, version, matrix, outcomes)
        finally:
            server.stop()
    estimate, probability, live = figures_of["true"]
    oldest = probability[:published]
    threshold = np.float32(metadata["threshold"])
    assert estimate["estimated_roc_auc"] == pytest.approx(estimates.expected_roc_auc(oldest), abs=1e-12)
    assert estimate["flagged_rate"] == pytest.approx(np.mean(oldest >= threshold), abs=1e-12)
    assert live["roc_auc_ci_low"] < estimate["estimated_roc_auc"] < live["roc_auc_ci_high"]
    figure("estimated ROC-AUC before outcomes; realised (95% interval)",
           f"{estimate['estimated_roc_auc']:.4f}; {live['roc_auc']:.4f} "
           f"({live['roc_auc_ci_low']:.4f} - {live['roc_auc_ci_high']:.4f})")  # fmt: skip
    figure(
        "estimated precision of the flagged; realised",
        f"{estimate['estimated_precision']:.4f}; {live['precision']:.4f}",
    )

    flipped_estimate, flipped_probability, flipped_live = figures_of["flipped"]
    assert np.array_equal(flipped_probability, probability)
    assert flipped_estimate == estimate, "the probabilities did not change: neither does the estimate"
    assert flipped_live["roc_auc_ci_high"] < estimate["estimated_roc_auc"], "only the outcomes show the change"
    figure("80-90 age band's outcomes flipped: estimated ROC-AUC; realised",
           f"{flipped_estimate['estimated_roc_auc']:.4f}; {flipped_live['roc_auc']:.4f}")  # fmt: skip

    reference = nannyml_cbpe(tmp_path, probability, outcome, oldest, float(threshold))
    assert estimate["estimated_roc_auc"] == pytest.approx(reference["as_run"]["roc_auc"], abs=0.01)
    assert estimate["estimated_roc_auc"] == pytest.approx(reference["uncalibrated"]["roc_auc"], abs=1e-4)


def _flipped_for_80_to_90(champion_store, outcome: np.ndarray) -> np.ndarray:
    """The true outcomes with those of the patients aged 80 to 90 flipped."""
    registry.connect(champion_store["settings"])
    seed = int(MlflowClient().get_run(champion_store["registered"].run_id).data.params["seed"])
    test = data.split(data.clean(data.load(Path(champion_store["data"]), verify=False)), seed=seed).test
    band = (test["age"] == "[80-90)").to_numpy()
    assert 0.1 < band.mean() < 0.3, band.mean()
    return np.where(band, 1 - outcome, outcome)
