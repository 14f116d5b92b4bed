"""The *About the model* tab's live performance (Streamlit's AppTest against a small fake service, no browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import FakeService
from ui import performance

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
TRAINING = {"roc_auc": 0.6719, "roc_auc_ci_low": 0.6594, "roc_auc_ci_high": 0.6853, "brier": 0.0982, "precision": 0.22}
LIVE = {
    "30d": {"labelled_rows": 1234, "roc_auc": 0.701, "roc_auc_ci_low": 0.65, "roc_auc_ci_high": 0.75, "brier": 0.1},
    "90d": {"labelled_rows": 2345, "roc_auc": 0.69, "flagged_rate": 0.25},
}


@pytest.fixture
def fake() -> Iterator[FakeService]:
    service = FakeService({})
    yield service
    service.stop()


def _about(monkeypatch, fake: FakeService) -> AppTest:
    monkeypatch.setenv("READMISSION_API_URL", fake.url)
    monkeypatch.setenv("READMISSION_API_TOKEN", "s3cret")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not fake.authorizations  # nothing is fetched until the clinician asks
    at.toggle[0].set_value(True).run()
    assert not at.exception
    return at


def test_live_figures_beside_the_training_ones(monkeypatch, fake):
    estimated = {"30d": {"scored_rows": 4000, "estimated_roc_auc": 0.6779, "estimated_precision": 0.2238},
                 "90d": {"scored_rows": 0}}  # fmt: skip
    fake.body = {"computed_at": 1.0, "live": {"7": LIVE}, "estimated": {"7": estimated}, "training": {"7": TRAINING}}
    at = _about(monkeypatch, fake)
    assert fake.authorizations == [("/performance", "Bearer s3cret")]
    [table] = at.table
    frame = table.value
    assert list(frame.columns) == [performance.TRAINING, "Last 30 days", "Last 90 days"]
    assert frame.loc["Patients with a known outcome"].tolist() == ["-", "1,234", "2,345"]
    assert frame.loc["ROC-AUC (discrimination)"].tolist() == ["0.672", "0.701", "0.690"]
    assert frame.loc["ROC-AUC 95% interval"].tolist() == ["0.659 - 0.685", "0.650 - 0.750", "-"]
    assert frame.loc["Share flagged"].tolist() == ["-", "-", "25.0%"]
    assert frame.loc["Patients scored (estimates: all, outcome or not)"].tolist() == ["-", "4,000", "0"]
    assert frame.loc["Estimated ROC-AUC, before outcomes"].tolist() == ["-", "0.678", "-"]
    assert frame.loc["Estimated readmitted among the flagged"].tolist() == ["-", "22.4%", "-"]
    assert "Model version 7" in " ".join(m.value for m in at.markdown)
    assert not at.info


def test_no_feedback_yet_is_said_politely_and_training_is_still_shown(monkeypatch, fake):
    empty = {"30d": {"labelled_rows": 0}, "90d": {"labelled_rows": 0}}
    fake.body = {"computed_at": 1.0, "live": {"7": empty}, "training": {"7": TRAINING}}
    at = _about(monkeypatch, fake)
    assert "Fewer than 20 outcomes have been received yet" in at.info[0].value
    assert at.table[0].value.loc["ROC-AUC (discrimination)"].tolist() == ["0.672", "-", "-"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [(503, {"error": "the prediction log is off"}, "not ready"), (200, {"live": []}, "does not understand")],
)
def test_a_service_without_figures_is_a_message_not_an_error(monkeypatch, fake, status, body, message):
    fake.status, fake.body = status, body
    at = _about(monkeypatch, fake)
    assert not at.error and not at.table
    assert "Live performance is not available now" in at.info[0].value and message in at.info[0].value


def test_a_version_name_is_shown_as_text_not_markup(monkeypatch, fake):
    fake.body = {"live": {"<b>*7*</b>": LIVE}, "training": {}}
    at = _about(monkeypatch, fake)
    shown = " ".join(m.value for m in at.markdown)
    assert r"Model version \<b\>\*7\*\</b\>" in shown
