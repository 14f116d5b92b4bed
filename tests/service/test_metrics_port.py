"""The Prometheus port of the shared service (bento/monitoring/metrics_port.py): `/metrics` there and nowhere else, no
individual in the difference of two scrapes (what moves with a patient is published per metrics.PUBLISH_ROWS
rows), and scrapes cheap enough that four scrapers hammering the port barely move `/predict`'s latency."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bento import features
from bento.predictionlog.sqlite import SQLITE_FILE
from bento.quality.privacy import PUBLISH_ROWS
from tests import servers
from tests.helpers import RECORD, poll, records, scrape, sqlite_ids

# serial: compares /predict's latency with and without scrapers: alone, not beside another worker
pytestmark = pytest.mark.serial

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
WRITTEN = ("readmission_prediction_log_rows_total", frozenset({("outcome", "written")}))
ESTIMATED = "readmission_estimated_metric"  # moves in steps of PUBLISH_ROWS predictions of a version
# The families a prediction may move at once: traffic, the size of the model call, the log's own counts, the
# service's processes (their number too). Nothing of them depends on the patient's fields or score.
MOVE_WITH_ANY_REQUEST = {
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_request_duration_seconds_count",
    "bentoml_service_request_duration_seconds_sum",
    "readmission_model_call_rows_bucket",
    "readmission_model_call_rows_count",
    "readmission_model_call_rows_sum",
    "readmission_prediction_log_rows_total",
    "readmission_prediction_log_queue_rows",
    "readmission_process_cpu_seconds_total",
    "readmission_process_resident_memory_bytes",
    # the lease holder's child computing the live figures (bento/monitoring/live_compute.py) after new predictions:
    # one process more while it runs, whatever the rows hold
    "readmission_process_count",
}
ROUNDS = 8  # quiet and busy half-seconds each
PER_PATIENT = ("readmission_feature_rows_total", "readmission_predictions_total", "readmission_predicted_probability")
# Hammers a URL from 4 threads of its own process until killed; prints the scrapes answered and their size.
SCRAPERS = """
import http.client, signal, sys, threading, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1]); done = [0] * 4; size = [0]
def hammer(i):
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    while True:
        connection.request("GET", url.path); size[0] = len(connection.getresponse().read()); done[i] += 1
for i in range(4): threading.Thread(target=hammer, args=(i,), daemon=True).start()
signal.signal(signal.SIGTERM, lambda *_: (print(sum(done), size[0], flush=True), sys.exit(0)))
signal.pause()
"""


def samples(text: str) -> Samples:
    """Every sample of an exposition by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def settled(service: servers.Server, client: httpx.Client, written: float, since: float) -> Samples:
    """The first scrape showing `written` rows in the log (its consumers, drift among them, ran before) and the
    estimates the lease holder computed from them (after `since`, a moment before the rows were sent)."""
    poll(lambda: samples(scrape(service)).get(WRITTEN, 0) >= written, 15, f"{written} rows")
    # the lease holder rests 100 times its last child's CPU time (mostly its start-up: 0.2-0.5 s) between computations
    performance = poll(lambda: (p := client.get("/performance").json())["computed_at"] >= since and p, 120, "estimates")
    shown = {
        (ESTIMATED, frozenset({("model_version", v), ("window", w), ("metric", m)})): value
        for v, windows in performance["estimated"].items()
        for w, figures in windows.items()
        for m, value in figures.items()
    }
    return poll(lambda: (now := samples(scrape(service))).items() >= shown.items() and now, 15, "the estimates scraped")


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}


def per_patient(changes: dict, name: str) -> dict[str, float]:
    """The changes of one per-patient family, summed per field (or for the whole family)."""
    totals: dict[str, float] = {}
    for (sample, labels), change in changes.items():
        if sample.startswith(name):
            key = dict(labels).get("field", sample)
            totals[key] = totals.get(key, 0.0) + change
    return totals


def test_metrics_are_served_on_their_own_port_only(client, service):
    main = client.get("/metrics")
    assert main.status_code == 404 and main.json() == {"error": "no such endpoint"}
    assert service.metrics is not None and service.url not in service.metrics
    answer = httpx.get(service.metrics, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "readmission_model_info" in answer.text
    assert httpx.get(service.metrics.replace("/metrics", "/predict"), timeout=10).status_code == 404


def test_two_scrapes_around_one_prediction_reveal_nothing_of_the_patient(client, service, bento_home):
    start = samples(scrape(service)).get(WRITTEN, 0)
    logged = len(sqlite_ids(bento_home["home"] / SQLITE_FILE))  # every row the service logged (of one version)
    reset = PUBLISH_ROWS + (-logged) % PUBLISH_ROWS  # publishes whatever was pending; the log to a step of 20 rows
    sent = time.time()
    assert client.post("/predict/batch", json=records(reset, seed=5)).status_code == 200
    before = settled(service, client, start + reset, sent)

    patient = RECORD | {"age": "[90-100)", "race": "Asian", "insulin": "Up", "A1Cresult": ">8", "number_inpatient": 7}
    sent = time.time()
    assert client.post("/predict", json=patient).status_code == 200
    after = settled(service, client, start + reset + 1, sent)
    changes = moved(before, after)
    assert changes, "the scrape shows the prediction somewhere (the log's count at least)"
    assert {name for name, _ in changes} <= MOVE_WITH_ANY_REQUEST, sorted(changes)

    sent = time.time()
    rest = client.post("/predict/batch", json=records(PUBLISH_ROWS - 1, seed=6))
    assert rest.status_code == 200, rest.text
    published = moved(before, settled(service, client, start + reset + PUBLISH_ROWS, sent))
    steps = {dict(labels)["window"]: change for (name, labels), change in published.items()
             if name == ESTIMATED and dict(labels)["metric"] == "scored_rows"}  # fmt: skip
    assert steps == {"30d": PUBLISH_ROWS, "90d": PUBLISH_ROWS}, "the estimates moved with the 20 rows, once"
    fields = per_patient(published, PER_PATIENT[0])
    assert fields == {f.name: PUBLISH_ROWS for f in features.FIELDS}  # every field: the 20 rows, once
    assert per_patient(published, PER_PATIENT[1]) == {PER_PATIENT[1]: PUBLISH_ROWS}
    assert per_patient(published, PER_PATIENT[2] + "_count") == {PER_PATIENT[2] + "_count": PUBLISH_ROWS}


def predict_latencies(client: httpx.Client, seconds: float) -> list[float]:
    """Latencies (s) of single-row /predict calls made one after another for `seconds`."""
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        assert client.post("/predict", json=RECORD).status_code == 200
        latencies.append(time.perf_counter() - started)
    return latencies


def test_four_scrapers_hammering_the_port_barely_move_predict(client, service, figure):
    """Quiet and busy half-seconds alternate (the scrapers' process stopped, then continued), so the machine's
    other load weighs on both medians alike."""
    predict_latencies(client, 1)  # warm
    scrapers = subprocess.Popen([sys.executable, "-c", SCRAPERS, service.metrics], stdout=subprocess.PIPE, text=True)
    quiet: list[float] = []
    busy: list[float] = []
    try:
        for _ in range(ROUNDS):
            scrapers.send_signal(signal.SIGSTOP)
            quiet += predict_latencies(client, 0.5)
            scrapers.send_signal(signal.SIGCONT)
            busy += predict_latencies(client, 0.5)
    finally:
        scrapers.send_signal(signal.SIGCONT)
        scrapers.terminate()
        output, _ = scrapers.communicate(timeout=10)
    scraped, size = (int(v) for v in output.split())
    ratio = statistics.median(busy) / statistics.median(quiet)
    figure(
        "/predict median: quiet, 4 scrapers (ms)",
        f"{statistics.median(quiet) * 1000:.2f}, {statistics.median(busy) * 1000:.2f} ({ratio:.2f}x)",
    )
    figure("scrapes answered over the test (4 scrapers); bytes per scrape", f"{scraped}; {size}")
    assert scraped >= ROUNDS * 2, "the scrapers were answered throughout (paced: one scrape per 50 ms)"
    assert ratio < 1.2
