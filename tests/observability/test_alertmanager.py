"""Alertmanager's configuration (observability/alertmanager/) against Debian's `prometheus-alertmanager` and its
`amtool`: the config and the example receivers pass `amtool check-config`, every alert of the rules routes where its
severity says, the inhibition covers exactly the model alerts, the webhooks post to the local receiver; `make up`'s
scripts start Alertmanager on loopback without clustering and point Prometheus at it; the receiver prints what it
gets. The notifications themselves: test_alertmanager_live.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from observability.alert_receiver import DEFAULT_PORT, Receiver
from tests import servers

OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"
CONFIG = servers.ALERTMANAGER_CONFIG
EXAMPLES = CONFIG.parent / "receivers.example.yml"
# The routing contract (issue 24): who is paged, and which alerts are about the model.
PAGES = {"ReadmissionServiceDown", "ReadmissionNotReady", "ReadmissionHighErrorRatio", "FeedbackStopped"}
MODEL_ALERTS = {"ReadmissionScoreDrift", "FeatureDrift", "LiveRocAucBelowTraining", "EstimatedRocAucBelowTraining",
                "LiveFiguresNotComputed", "FeedbackStopped",
                "FeedbackNeverReceived", "ReadmissionNoPredictions", "ReadmissionModelVersionChanged"}  # fmt: skip
RECEIVER_OF = {"critical": "pages", "warning": "tickets", "info": "notices"}
MATCHER = re.compile(r'^(\w+)(=~|!~|=|!=)"(.*)"$')


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install prometheus-alertmanager)")
    return found


def run(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **options)


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def alerts() -> list[dict]:
    document = yaml.safe_load((OBSERVABILITY / "prometheus" / "rules" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def labels_of(rule: dict) -> dict[str, str]:
    return {"alertname": rule["alert"], **rule["labels"]}


def matches(matchers: list[str], labels: dict[str, str]) -> bool:
    """Alertmanager's matchers (anchored regexes) on a label set."""
    for matcher in matchers:
        name, operator, value = MATCHER.match(matcher).groups()
        found = labels.get(name, "")
        hit = re.fullmatch(value, found) is not None if "~" in operator else found == value
        if hit == operator.startswith("!"):
            return False
    return True


def test_config_passes_amtool_check_config():
    result = run(tool("amtool"), "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 receivers" in result.stdout and "1 inhibit rules" in result.stdout


def test_example_receivers_pass_amtool_check_config_in_place_of_the_webhooks(tmp_path):
    examples = yaml.safe_load(EXAMPLES.read_text())["receivers"]
    assert [r["name"] for r in examples] == [r["name"] for r in config()["receivers"]]
    kinds = {key for receiver in examples for key in receiver if key.endswith("_configs")}
    assert kinds == {"pagerduty_configs", "slack_configs", "opsgenie_configs", "email_configs"}
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump({**config(), "receivers": examples}))
    result = run(tool("amtool"), "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    keys = {key for receiver in examples for kind in kinds for item in receiver.get(kind, []) for key in item}
    secrets = {"routing_key", "service_key", "api_url", "api_key", "auth_password", "auth_secret"}
    assert not keys & secrets, "a secret written in the examples: read it from a file (*_file)"
    assert {"routing_key_file", "api_url_file", "api_key_file", "auth_password_file"} <= keys


def test_every_alert_routes_where_its_severity_says():
    """amtool's own routing of each alert's labels: critical pages, warning tickets, info notices."""
    amtool = tool("amtool")
    assert {rule["alert"] for rule in alerts() if rule["labels"]["severity"] == "critical"} == PAGES
    for rule in alerts():
        labels = [f"{name}={value}" for name, value in labels_of(rule).items()]
        result = run(amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == RECEIVER_OF[rule["labels"]["severity"]], rule["alert"]


def test_grouping_by_alert_and_model_version():
    route = config()["route"]
    assert route["receiver"] == "tickets" and route["group_by"] == ["alertname", "model_version"]
    assert all("group_by" not in child for child in route["routes"])  # the same grouping everywhere


def test_inhibition_silences_exactly_the_model_alerts_while_the_service_is_down_or_not_ready():
    (rule,) = config()["inhibit_rules"]
    assert "equal" not in rule  # any instance down or not ready: the model's figures cannot be trusted
    sources = {r["alert"] for r in alerts() if matches(rule["source_matchers"], labels_of(r))}
    targets = {r["alert"] for r in alerts() if matches(rule["target_matchers"], labels_of(r))}
    assert sources == {"ReadmissionServiceDown", "ReadmissionNotReady"}
    assert targets == MODEL_ALERTS == {r["alert"] for r in alerts() if r["labels"]["category"] == "model"}


def test_webhooks_post_to_the_local_receiver_with_resolutions():
    for receiver in config()["receivers"]:
        (hook,) = receiver["webhook_configs"]
        url = urlsplit(hook["url"])
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", DEFAULT_PORT, f"/{receiver['name']}")
        assert hook["send_resolved"] is True
    assert {receiver["name"] for receiver in config()["receivers"]} == set(RECEIVER_OF.values())


def test_run_alertmanager_listens_on_loopback_without_a_cluster_and_posts_to_the_given_webhook(tmp_path):
    tool("prometheus-alertmanager")
    port = servers.free_port()
    env = {"ALERTMANAGER_PORT": str(port), "ALERTMANAGER_STATE": str(tmp_path / "state"),
           "ALERTMANAGER_WEBHOOK_URL": "http://127.0.0.1:6123/hooks/"}  # fmt: skip
    command = ["bash", str(OBSERVABILITY / "run_alertmanager.sh")]
    server = servers.start(command, port, env, tmp_path / "alertmanager.log", ready_path="/-/ready", timeout=30)
    try:
        status = httpx.get(f"{server.url}/api/v2/status", timeout=10).json()
    finally:
        server.stop()
    assert status["cluster"]["status"] == "disabled"
    running = yaml.safe_load(status["config"]["original"])
    urls = [hook["url"] for receiver in running["receivers"] for hook in receiver["webhook_configs"]]
    assert urls == ["http://127.0.0.1:6123/hooks/pages", "http://127.0.0.1:6123/hooks/tickets",
                    "http://127.0.0.1:6123/hooks/notices"]  # fmt: skip
    assert running["route"]["group_by"] == config()["route"]["group_by"]  # the committed routing, otherwise


WATCH_ALERTMANAGERS = """
import json, sys, time, urllib.request
deadline = time.monotonic() + 20
while True:
    with urllib.request.urlopen(sys.argv[1] + "/api/v1/alertmanagers") as answer:
        active = json.load(answer)["data"]["activeAlertmanagers"]
    if active or time.monotonic() > deadline:
        print(json.dumps(active))
        break
    time.sleep(0.2)
"""


def test_make_up_starts_alertmanager_beside_prometheus_which_sends_to_it(tmp_path):
    """run_prometheus.sh with a command (what `make up` runs): both on their ports while the command runs (here, a
    poll of Prometheus's list of Alertmanagers), both stopped after."""
    tool("prometheus")
    tool("prometheus-alertmanager")
    prometheus_port, alertmanager_port = servers.free_port(), servers.free_port()
    env = {"PROMETHEUS_PORT": str(prometheus_port), "ALERTMANAGER_PORT": str(alertmanager_port),
           "METRICS_PORT": str(servers.free_port()), "PROMETHEUS_STATE": str(tmp_path / "prometheus"),
           "ALERTMANAGER_STATE": str(tmp_path / "alertmanager")}  # fmt: skip
    watch = [sys.executable, "-c", WATCH_ALERTMANAGERS, f"http://127.0.0.1:{prometheus_port}"]
    result = run("bash", str(OBSERVABILITY / "run_prometheus.sh"), *watch, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    active = json.loads(result.stdout.strip().splitlines()[-1])
    assert [a["url"] for a in active] == [f"http://127.0.0.1:{alertmanager_port}/api/v2/alerts"], result.stdout
    assert f"Alertmanager: http://127.0.0.1:{alertmanager_port}" in result.stdout
    for port in (prometheus_port, alertmanager_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)


def test_the_receiver_prints_one_line_per_alert_with_its_runbook():
    receiver = Receiver().start()
    alert = {"status": "firing", "labels": {"alertname": "ReadmissionNotReady", "instance": "a:1"},
             "annotations": {"summary": "no model", "runbook_url": "https://r#readmissionnotready"}}  # fmt: skip
    payload = {"receiver": "pages", "status": "firing", "groupLabels": {"alertname": "ReadmissionNotReady"},
               "alerts": [alert]}  # fmt: skip
    try:
        assert httpx.post(f"{receiver.url}/pages", json=payload, timeout=10).status_code == 200
        (notification,) = receiver.notifications()  # recorded before the answer
    finally:
        receiver.stop()
    assert notification.receiver == "pages" and notification.payload == payload
    assert notification.lines() == [
        "[pages] FIRING ReadmissionNotReady instance=a:1: no model (https://r#readmissionnotready)"
    ]
