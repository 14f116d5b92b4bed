"""End to end in a real browser: Debian's chromium, driven by Playwright, against the running app and service.

Fills the form, compares the risk the page shows with the service's own answer, scores a CSV,
checks the message when the service is down, and saves the screenshot the README shows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bento import features
from tests import servers
from tests.helpers import CSV
from ui import batch
from ui.client import Client
from ui.result import BANDS, percent, unusual_notice
from ui.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "ui-screenshot.png"
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def start_app(url: str, tmp_path: Path) -> servers.Server:
    port = servers.free_port()
    command = [str(Path(sys.executable).parent / "streamlit"), "run", "ui/app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer"]  # fmt: skip
    env = {"READMISSION_API_URL": url, "READMISSION_UI_TIMEOUT": "10"}
    return servers.start(command, port, env, tmp_path / "streamlit.log", ready_path="/_stcore/health", timeout=60)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def app(service, tmp_path_factory) -> Iterator[servers.Server]:
    server = start_app(service.url, tmp_path_factory.mktemp("streamlit"))
    yield server
    server.stop()


def load_example(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Load an example patient").click()
    inpatient = page.get_by_role("spinbutton", name="Inpatient stays in the prior year", exact=True)
    page.wait_for_function("e => e.value === '2'", arg=inpatient.element_handle())


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def test_the_page_shows_the_services_risk_for_the_entered_patient(page, app, service):
    load_example(page, app.url)
    set_number(page, "Inpatient stays in the prior year", 3)
    set_number(page, "Days in hospital", 7)
    page.get_by_role("combobox", name="Age band (years)").click()
    page.get_by_role("option", name="[80-90)", exact=True).click()
    diagnosis = page.get_by_role("textbox", name="Primary diagnosis (ICD-9)", exact=True)
    diagnosis.fill("410.71")
    diagnosis.press("Tab")
    page.get_by_text("Group: Circulatory system").first.wait_for()
    page.get_by_role("button", name="Estimate the risk").click()
    shown = page.locator("#risk-probability")
    shown.wait_for()

    record = {**features.EXAMPLE_PATIENT, "number_inpatient": 3, "time_in_hospital": 7, "age": "[80-90)",
              "diag_1": "410.71"}  # fmt: skip
    expected = httpx.post(f"{service.url}/predict?explain=true", json=record, timeout=10).json()
    assert shown.inner_text() == percent(expected["probability"])
    assert page.locator("#risk-band").inner_text() == BANDS[expected["risk_band"]][0]
    # Streamlit draws the page top to bottom: wait until the model's caption, drawn last, is there
    version = f"version {expected['model']['version']}"
    page.wait_for_function("text => document.body.innerText.includes(text)", arg=version)
    text = page.locator("body").inner_text()
    assert f"{percent(expected['model']['threshold'])} or more" in text
    assert version in text
    chart = page.locator("[data-testid='stVegaLiteChart']")
    chart.wait_for()
    page.wait_for_timeout(500)  # let vega draw the bars
    assert "Traceback" not in page.content()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_an_unusual_patient_gets_the_notice_beside_the_risk(page, app, service):
    load_example(page, app.url)
    set_number(page, "Emergency visits in the prior year", 60)
    page.get_by_role("button", name="Estimate the risk").click()
    notice = page.locator("#unusual-notice")
    notice.wait_for()
    record = {**features.EXAMPLE_PATIENT, "number_emergency": 60}
    expected = httpx.post(f"{service.url}/predict", json=record, timeout=10).json()
    assert {"field": "number_emergency", "reason": "above_training_range"} in expected["unusual"]
    assert notice.inner_text().endswith(unusual_notice(expected["unusual"]))
    assert page.locator("#risk-probability").inner_text() == percent(expected["probability"])


def test_a_csv_is_scored_in_the_page_and_matches_the_service(page, app, service, tmp_path):
    upload = batch.read(CSV.encode())
    answers = batch.score(Client(Settings(api_url=service.url)), upload.records, 1)
    single = httpx.post(f"{service.url}/predict", json=upload.records[1], timeout=10).json()
    assert answers[1]["probability"] == single["probability"]

    csv_file = tmp_path / "encounters.csv"
    csv_file.write_text(CSV)
    page.goto(app.url)
    page.get_by_role("tab", name="Many patients (CSV)").click()
    page.locator("input[type=file]").set_input_files(str(csv_file))
    page.get_by_text("4 rows: 2 valid, 2 with problems.").wait_for()
    assert page.get_by_text("Rows not scored").is_visible()
    page.get_by_role("button", name="Score 2 rows").click()
    page.get_by_text("Scored rows").wait_for()
    page.get_by_text("Download the scored table (CSV)").wait_for()


def test_service_down_shows_a_clear_message_and_keeps_the_values(page, tmp_path):
    down = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    app = start_app(down, tmp_path)
    try:
        load_example(page, app.url)
        set_number(page, "Inpatient stays in the prior year", 4)
        page.get_by_role("button", name="Estimate the risk").click()
        page.get_by_text(f"The risk service cannot be reached at {down}").wait_for()
        assert page.get_by_role("spinbutton", name="Inpatient stays in the prior year", exact=True).input_value() == "4"
        assert page.get_by_role("textbox", name="Primary diagnosis (ICD-9)", exact=True).input_value() == "428"
        assert page.locator("#risk-probability").count() == 0
        assert "Traceback" not in page.content()
    finally:
        app.stop()
