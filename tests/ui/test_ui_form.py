"""The Streamlit app's form logic (AppTest, no browser), the HTTP client and the CSV batch scoring."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bento import features
from tests import servers
from tests.helpers import CSV, FakeService
from ui import batch, form
from ui.client import Client, ServiceError
from ui.settings import Settings

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
ANSWER = {
    "probability": 0.19234,
    "label": 1,
    "risk_band": "high",
    "factors": [
        {"field": "number_inpatient", "label": "Inpatient stays in the prior year", "value": "2",
         "contribution": 0.31, "effect": "raises risk"},
        {"field": "age", "label": "Age band (years)", "value": "[70-80)", "contribution": -0.05,
         "effect": "lowers risk"},
    ],
    "model": {"name": "readmission", "version": "7", "bento_tag": "readmission:abc", "threshold": 0.149},
}  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeService]:
    service = FakeService(ANSWER)
    yield service
    service.stop()


def app(monkeypatch, url: str, timeout: float = 5) -> AppTest:
    monkeypatch.setenv("READMISSION_API_URL", url)
    monkeypatch.setenv("READMISSION_UI_TIMEOUT", str(timeout))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    return at


def closed_url() -> str:
    return f"http://127.0.0.1:{servers.free_port()}"


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def widget(at: AppTest, name: str):
    key = f"field:{name}"
    for kind in (at.number_input, at.selectbox, at.text_input):
        found = [w for w in kind if w.key == key]
        if found:
            return found[0]
    raise KeyError(name)


def errors_next_to(at: AppTest, name: str) -> list[str]:
    """The error messages in the form column that holds the field's widget."""
    key = f"field:{name}"
    for column in at.columns:
        if any(w.key == key for kind in (column.number_input, column.selectbox, column.text_input) for w in kind):
            return [e.value for e in column.error]
    raise KeyError(name)


def page_text(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.markdown, at.error, at.warning, at.info, at.caption) for e in kind)


def test_the_form_starts_with_sensible_defaults_and_no_errors(monkeypatch):
    at = app(monkeypatch, closed_url())
    assert len(at.number_input) + len(at.selectbox) + len(at.text_input) == len(features.FIELDS)
    assert widget(at, "time_in_hospital").value == 1
    assert widget(at, "number_inpatient").value == 0
    assert widget(at, "insulin").value == "No"
    assert widget(at, "A1Cresult").value == "None"
    assert widget(at, "weight").value == form.NOT_RECORDED
    assert widget(at, "gender").value is None  # required, no default: the clinician chooses
    assert widget(at, "diag_1").value == ""
    assert not at.error and not at.warning
    assert [e.label for e in at.tabs] == ["One patient", "Many patients (CSV)", "About the model"]


def test_blank_required_fields_are_named_next_to_the_field_and_nothing_is_sent(monkeypatch, fake):
    at = app(monkeypatch, fake.url)
    button(at, "Estimate the risk").click().run()
    assert errors_next_to(at, "gender") == ["Sex: is required: please choose a value"]
    assert errors_next_to(at, "diag_1") == ["Primary diagnosis (ICD-9): is required: please enter a value"]
    assert "nothing was sent" in at.warning[0].value
    assert fake.requests == []


def test_the_example_patient_fills_the_form_and_shows_the_diagnosis_groups(monkeypatch):
    at = app(monkeypatch, closed_url())
    button(at, "Load an example patient").click().run()
    for name, value in features.EXAMPLE_PATIENT.items():
        assert widget(at, name).value == value, name
    assert widget(at, "weight").value == form.NOT_RECORDED
    captions = [c.value for c in at.caption]
    assert "Group: Circulatory system" in captions
    assert "Group: Diabetes mellitus (250.xx)" in captions
    button(at, "Clear the form").click().run()
    assert widget(at, "age").value is None and widget(at, "diag_1").value == ""


def test_an_out_of_range_value_is_shown_next_to_its_field_and_nothing_is_sent(monkeypatch, fake):
    at = app(monkeypatch, fake.url)
    button(at, "Load an example patient").click().run()
    widget(at, "time_in_hospital").set_value(20).run()
    widget(at, "diag_2").set_value("42X").run()
    button(at, "Estimate the risk").click().run()
    assert errors_next_to(at, "time_in_hospital") == ["Days in hospital: 20 is outside the range 1 to 14"]
    assert "is not an ICD-9 code" in errors_next_to(at, "diag_2")[0]
    assert errors_next_to(at, "diag_1") == []
    assert "2 field(s) need attention" in at.warning[0].value
    assert fake.requests == []
    # fixing the values clears the errors and sends the record
    widget(at, "time_in_hospital").set_value(14).run()
    widget(at, "diag_2").set_value("250.02").run()
    button(at, "Estimate the risk").click().run()
    assert not at.error
    assert len(fake.requests) == 1


def test_the_answer_shows_risk_band_threshold_factors_and_model(monkeypatch, fake):
    at = app(monkeypatch, fake.url)
    button(at, "Load an example patient").click().run()
    button(at, "Estimate the risk").click().run()
    path, sent = fake.requests[0]
    assert path == "/predict?explain=true"
    assert sent == {k: v for k, v in features.validate(features.EXAMPLE_PATIENT).items() if v is not None}
    text = page_text(at)
    assert "19.2%" in text and "High risk" in text
    assert "14.9%" in text  # the operating threshold
    assert "version **7**" in text and "not diagnosis" in text
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    assert "Few patients like this" not in text  # the answer's `unusual` is absent
    # a changed value marks the estimate as out of date
    widget(at, "number_inpatient").set_value(0).run()
    assert "Values have changed" in at.info[0].value


def test_an_unusual_patient_gets_a_notice_beside_the_risk_naming_why(monkeypatch, fake):
    unusual = [
        {"field": "number_emergency", "reason": "above_training_range"},
        {"field": "admission_source_id", "reason": "rare_code"},
        {"field": None, "reason": "outlier_score"},
    ]
    fake.body = {**ANSWER, "unusual": unusual}
    at = app(monkeypatch, fake.url)
    button(at, "Load an example patient").click().run()
    button(at, "Estimate the risk").click().run()
    text = page_text(at)
    assert (
        "Few patients like this in the training data: Emergency visits in the prior year above any in the training "
        "data; Admission source rare in the training data; this combination of stay, visits, tests and medications"
    ) in text
    assert "19.2%" in text  # the risk is shown all the same
    fake.body = {**ANSWER, "unusual": []}
    button(at, "Estimate the risk").click().run()
    assert "Few patients like this" not in page_text(at)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, {"error": "model not loaded"}, "starting up and not ready"),
        (500, {"error": "boom"}, "failed (HTTP 500)"),
        (400, {"error": "diag_1: bad code"}, "did not accept the record: diag_1: bad code"),
        (200, {"unexpected": True}, "does not understand"),
    ],
)
def test_service_errors_are_a_clear_message_and_the_values_stay(monkeypatch, fake, status, body, message):
    fake.status, fake.body = status, body
    at = app(monkeypatch, fake.url)
    button(at, "Load an example patient").click().run()
    button(at, "Estimate the risk").click().run()
    assert not at.exception
    assert message in " ".join(e.value for e in at.error)
    assert "Traceback" not in page_text(at)
    assert widget(at, "number_inpatient").value == features.EXAMPLE_PATIENT["number_inpatient"]


def test_service_down_is_a_clear_message_and_the_values_stay(monkeypatch):
    url = closed_url()
    at = app(monkeypatch, url)
    button(at, "Load an example patient").click().run()
    widget(at, "number_inpatient").set_value(4).run()
    button(at, "Estimate the risk").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"The risk service cannot be reached at {url}. It may be down or restarting: your values are kept, "
        "try again in a minute and tell IT if it persists."
    ]
    assert "Traceback" not in page_text(at)
    assert widget(at, "number_inpatient").value == 4
    assert widget(at, "diag_1").value == "428"


def test_a_slow_service_times_out_with_a_clear_message(monkeypatch):
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        at = app(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        button(at, "Load an example patient").click().run()
        button(at, "Estimate the risk").click().run()
    assert "did not answer within 0.5 seconds" in at.error[0].value
    assert widget(at, "age").value == "[70-80)"


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("READMISSION_API_URL", raising=False)
    monkeypatch.delenv("READMISSION_UI_TIMEOUT", raising=False)
    assert Settings.from_env().api_url == "http://127.0.0.1:3000"
    monkeypatch.setenv("READMISSION_API_URL", "http://predictor.example:8080/")
    monkeypatch.setenv("READMISSION_UI_TIMEOUT", "2.5")
    settings = Settings.from_env()
    assert (settings.api_url, settings.timeout) == ("http://predictor.example:8080", 2.5)
    monkeypatch.setenv("READMISSION_UI_TIMEOUT", "0")
    with pytest.raises(ValueError, match="READMISSION_UI_TIMEOUT"):
        Settings.from_env()


def test_a_csv_is_checked_row_by_row_with_the_reasons():
    upload = batch.read(CSV.encode())
    assert len(upload.frame) == 4
    assert [r["race"] for r in upload.records] == ["Caucasian", "Asian"]
    failures = upload.failures.to_dict("records")
    assert [f["row"] for f in failures] == [2, 3]
    assert failures[0]["encounter_id"] == "2"
    assert failures[0]["problems"] == "Days in hospital (time_in_hospital): 20 is outside the range 1 to 14"
    problems = failures[1]["problems"]
    assert "Sex (gender): unknown value 'Unknown/Invalid'" in problems
    assert "discharge_disposition_id): code 11 is outside the model's scope" in problems
    assert "Primary diagnosis (ICD-9) (diag_1): '42X' is not an ICD-9 code" in problems
    assert "metformin" in upload.missing_columns


def test_a_csv_record_matches_the_form_record():
    upload = batch.read(CSV.encode())
    first = features.validate(upload.records[0])
    expected = features.validate({**features.EXAMPLE_PATIENT, "payer_code": "MC", "metformin": "No"})
    assert first == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "not a readable CSV"), (b"a,b\n1,2\n", "no encounters"), (b"\xff\xfe\x00bad", "not a readable CSV")],
)
def test_a_file_that_is_not_a_csv_of_encounters_is_refused(data, message):
    with pytest.raises(batch.BatchError, match=message):
        batch.read(data)


def test_scoring_goes_in_chunks_and_keeps_the_rows_in_order(fake):
    upload = batch.read(CSV.encode())
    records = upload.records * 3  # 6 records, chunks of 4 and 2
    answer = {"probability": 0.1, "label": 0, "risk_band": "moderate"}
    fake.body = lambda request: {"predictions": [answer] * len(request), "model": ANSWER["model"]}
    client = Client(Settings(api_url=fake.url))
    seen = []
    answers = batch.score(client, records, 4, lambda done, total: seen.append((done, total)))
    assert len(answers) == 6 and seen == [(4, 6), (6, 6)]
    assert [len(body) for path, body in fake.requests] == [4, 2]
    assert {path for path, _ in fake.requests} == {"/predict/batch"}
    table = batch.results(batch.Upload(upload.frame, [0, 3], upload.records, upload.failures), answers[:2])
    assert list(table["row"]) == [1, 4]
    assert list(table["encounter_id"]) == ["1", "4"]
    assert list(table.columns[:4]) == ["row", "probability", "risk_band", "flagged"]


def test_a_batch_answer_of_the_wrong_length_is_refused(fake):
    fake.body = {"predictions": [], "model": {}}
    with pytest.raises(ServiceError, match="does not understand"):
        Client(Settings(api_url=fake.url)).predict_batch([features.EXAMPLE_PATIENT])


def test_the_kubernetes_manifests_expose_a_hardened_app_on_nodeport_30081():
    import yaml

    k8s = Path(APP).parent / "k8s"
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    service = yaml.safe_load((k8s / "service.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "readmission-ui"
    assert service["spec"]["selector"] == {"app": "readmission-ui"}
    assert service["spec"]["ports"][0]["nodePort"] == 30081
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/_stcore/health", "port": "http"}
    assert container["ports"][0]["containerPort"] == 8501
    assert pod["securityContext"]["runAsNonRoot"] is True
    hardened = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["securityContext"] == hardened
    assert {"requests", "limits"} <= container["resources"].keys()
    env = {e["name"]: e.get("value") for e in container["env"]}  # the API token: a secretKeyRef
    assert env["READMISSION_API_URL"] == "http://readmission-predictor.readmission.svc.cluster.local"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {env["HOME"], "/tmp"}


def test_a_risk_band_the_ui_does_not_know_is_shown_escaped(monkeypatch):
    from ui import result

    shown: list[str] = []
    monkeypatch.setattr(result.st, "markdown", lambda text, **_: shown.append(text))
    monkeypatch.setattr(result.st, "caption", lambda *_, **__: None)
    monkeypatch.setattr(result.st, "altair_chart", lambda *_, **__: None)
    answer = {"probability": 0.2, "risk_band": "<script>alert(1)</script>", "label": 1, "model": {"threshold": 0.15}}
    with contextlib.suppress(Exception):  # what follows the risk box may need more of the answer
        result.show(answer)
    assert shown and "<script>" not in shown[0] and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown[0]
