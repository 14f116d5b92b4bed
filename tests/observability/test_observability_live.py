"""Observability against real data: a real Prometheus (Debian's `prometheus`) scrapes the real Bento service,
a second instance of it and a short Locust run, every second; then every dashboard query, every recording
rule and every alert expression must return data, the dashboard is drawn into docs/dashboard.png, and
stopping the second instance makes ReadmissionServiceDown go pending. Everything on 127.0.0.1."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from observability import dashboard, snapshot
from tests import servers
from tests.helpers import PROMQL_COMPARISON, bentoml_env, poll

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "observability" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
PICTURE = REPO / "docs" / "dashboard.png"
LOAD_SECONDS = 40

pytestmark = pytest.mark.slow


def measure(expr: str) -> str:
    """An alert expression with its comparisons made `bool`: it returns its series whether or not it fires."""
    return PROMQL_COMPARISON.sub(r"\1 bool ", expr)


def rules(kind: str) -> list[dict]:
    """Every `record` or `alert` rule of the rule files."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(rule for rule in group["rules"] if kind in rule)
    return found


@dataclass
class Prometheus:
    server: servers.Server
    client: httpx.Client
    started: float
    second_instance: str
    locust_port: int

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        answer = self.client.get("/api/v1/query", params=params)
        assert answer.status_code == 200, f"{expr}: {answer.text}"
        return answer.json()["data"]["result"]


@pytest.fixture(scope="module")
def second_service(bento_home, tmp_path_factory) -> Iterator[servers.Server]:
    """A second `bentoml serve` of the same model, ours to stop (the shared `service` is never stopped).

    It gets a copy of the BentoML home: a server wipes its home's Prometheus multiprocess folder on start,
    which would reset the shared service's metrics."""
    port = servers.free_port()
    folder = tmp_path_factory.mktemp("second-service")
    home = folder / "bentoml"
    shutil.copytree(bento_home["home"], home, ignore=shutil.ignore_patterns("prometheus_multiproc_dir", "tmp"))
    log = folder / "service.log"
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", "bento.service:ReadmissionService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = servers.start(command, port, bentoml_env(home), log)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(service, second_service, tmp_path_factory) -> Iterator[Prometheus]:
    """observability/prometheus/prometheus.yml, retargeted, on a free port with its own storage, 1 s scrapes."""
    folder = tmp_path_factory.mktemp("prometheus")
    locust_port = servers.free_port()
    targets = {
        "readmission": [service.metrics_target, second_service.metrics_target],
        "locust": [f"127.0.0.1:{locust_port}"],
    }
    server = servers.start_prometheus(folder, targets)
    client = httpx.Client(base_url=server.url, timeout=30)
    handle = Prometheus(server, client, time.time(), targets["readmission"][1], locust_port)

    def both_scraped() -> bool:
        active = client.get("/api/v1/targets").json()["data"]["activeTargets"]
        return sum(t["labels"]["job"] == "readmission" and t["health"] == "up" for t in active) == 2

    try:
        poll(both_scraped, 30, "the first scrape of both service instances")
        yield handle
    finally:
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def load(prometheus, service, bento_home, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A bounded Locust run against the service, and a refused request every second (so the error panels have
    errors: Locust's requests are all valid)."""
    for body in ({"race": "Martian"}, {"age": 7}, []):
        assert httpx.post(service.url + "/predict", json=body, timeout=10).status_code // 100 == 4
    assert httpx.get(service.url + "/v2/models/no-such-model", timeout=10).status_code == 404
    stop = threading.Event()

    def refused_requests() -> None:
        bodies = [{"race": "Martian"}, {"age": 7}, []]
        with httpx.Client(base_url=service.url, timeout=10) as client:
            for count in range(LOAD_SECONDS + 60):
                if stop.wait(1.0):
                    return
                client.post("/predict", json=bodies[count % len(bodies)])

    sender = threading.Thread(target=refused_requests, daemon=True)
    sender.start()
    results = tmp_path_factory.mktemp("locust")
    command = [sys.executable, str(REPO / "loadtest" / "run.py"), "--host", service.url, "--scenario", "constant",
               "--users", "6", "--spawn-rate", "6", "--duration", str(LOAD_SECONDS), "--results", str(results),
               "--prometheus-port", str(prometheus.locust_port), "--",
               "--think-min", "0.1", "--think-max", "0.5", "--batch-rows", "16"]  # fmt: skip
    env = {**os.environ, **bentoml_env(bento_home["home"])}
    log = (results / "run.log").open("wb")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop.set()
        sender.join(15)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_rules_are_loaded_and_healthy(prometheus):
    expected = {rule.get("record") or rule["alert"] for kind in ("record", "alert") for rule in rules(kind)}

    def evaluated() -> dict[str, dict]:
        groups = prometheus.client.get("/api/v1/rules").json()["data"]["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert expected <= set(loaded), expected - set(loaded)
        done = all(not loaded[name].get("lastEvaluation", "0001").startswith("0001") for name in expected)
        return loaded if done else {}

    loaded = poll(evaluated, 15, "the first evaluation of every rule")
    unhealthy = [(name, loaded[name].get("lastError")) for name in expected if loaded[name]["health"] != "ok"]
    assert not unhealthy, unhealthy


def test_every_panel_rule_and_alert_returns_data_under_load(prometheus, load):
    def locust_scraped_long_enough() -> bool:
        assert load.poll() is None, f"Locust ended early with {load.returncode}"
        samples = prometheus.query('count_over_time(locust_users{job="locust"}[1m])')
        running = prometheus.query("sum(locust_users) > 0")
        # Locust's feedback of both outcomes has reached the live figures (an interval needs both classes)
        live = prometheus.query('readmission_live_metric{window="30d", metric="roc_auc_ci_high"}')
        # and a rule evaluation since they appeared (they appear once 20 outcomes complete a step of the figures)
        gap = prometheus.query("model_version:readmission_roc_auc_gap:30d")
        return bool(samples and running and live and gap and float(samples[0]["value"][1]) >= 15)

    poll(locust_scraped_long_enough, LOAD_SECONDS + 30, "15 s of Locust metrics and live figures in Prometheus")
    # the row "Champion and challenger" has data only where a challenger scores in shadow
    shadow = bool(prometheus.query(dashboard.COMPARISON))
    checks = [(f"panel {title!r} query {ref}", expr) for title, ref, expr in dashboard.queries()
              if shadow or dashboard.COMPARISON not in expr]  # fmt: skip
    for rule in rules("record"):
        checks.append((f"recording rule {rule['record']} (its expression)", rule["expr"]))
        checks.append((f"recording rule {rule['record']} (the recorded series)", rule["record"]))
    for rule in rules("alert"):
        checks.append((f"alert {rule['alert']} (measure: {measure(rule['expr']).strip()})", measure(rule["expr"])))
    assert len(checks) >= 40
    at = time.time()
    empty, no_number = [], []
    for name, expr in checks:
        result = prometheus.query(expr, at)
        if not result:
            empty.append(name)
        elif not any(math.isfinite(float(series["value"][1])) for series in result):
            no_number.append(name)
    assert not empty, "empty result for:\n" + "\n".join(empty)
    assert not no_number, "only NaN/Inf for:\n" + "\n".join(no_number)

    # and the numbers make sense for this traffic
    def value(expr: str) -> float:
        (series,) = prometheus.query(expr, at)
        return float(series["value"][1])

    assert value("readmission:request_errors:ratio_rate5m") == 0
    assert 0 < value("readmission:request_duration_seconds:p99_5m") < 5
    assert 0 <= value("readmission:score_drift:max_abs_share_diff1h") <= 1
    assert value("readmission:model_versions:count30m") == 1
    outcomes = {s["metric"]["label"] for s in prometheus.query("label:readmission_predictions:rate1m", at)}
    assert outcomes == {"0", "1"}
    reasons = prometheus.query("sum by (reason) (readmission_validation_failures_total)", at)
    assert reasons, "the refused requests were counted"
    drift_measure = prometheus.query(measure(next(r["expr"] for r in rules("alert") if "drift" in r["expr"])), at)
    assert drift_measure and drift_measure[0]["metric"] == {}


def test_dashboard_picture_from_real_data(prometheus, load):
    load.wait(LOAD_SECONDS + 90)
    assert load.returncode in (0, 1), f"Locust failed ({load.returncode})"  # 1: SLO missed on a slow machine
    ended = time.time()

    def scraped_after_the_run() -> bool:
        series = prometheus.query('timestamp(up{job="readmission"})')
        return bool(series) and min(float(s["value"][1]) for s in series) > ended

    poll(scraped_after_the_run, 30, "a scrape of every service instance after the load ended", interval=0.5)
    end = time.time()
    start = max(prometheus.started, end - 180)
    snapshot.draw(prometheus.server.url, start, end, PICTURE, step=1)
    assert PICTURE.stat().st_size > 50_000


def test_stopping_an_instance_makes_service_down_pending(prometheus, second_service):
    second_service.stop()

    def down_alert() -> dict | None:
        alerts = prometheus.client.get("/api/v1/alerts").json()["data"]["alerts"]
        for alert in alerts:
            labels = alert["labels"]
            if labels["alertname"] == "ReadmissionServiceDown" and labels.get("instance") == prometheus.second_instance:
                return alert
        return None

    alert = poll(down_alert, 30, "ReadmissionServiceDown for the stopped instance")
    assert alert["state"] in ("pending", "firing")
    assert alert["labels"]["severity"] == "critical"
    assert "runbook_url" in alert["annotations"]
    alerts = prometheus.client.get("/api/v1/alerts").json()["data"]["alerts"]
    down = {a["labels"].get("instance") for a in alerts if a["labels"]["alertname"] == "ReadmissionServiceDown"}
    others = down - {prometheus.second_instance}
    assert not others, "the shared service is still up"
