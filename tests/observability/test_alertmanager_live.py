"""Alerts from the real service to a person, end to end: Debian's `prometheus` sends its alerts to Debian's
`prometheus-alertmanager` running the committed routing (observability/alertmanager/alertmanager.yml), whose webhooks
post to the local receiver (observability/alert_receiver.py) in a thread of this test.

The rules run shortened as in test_drift_live.py (tests/servers.py `shortened_rules`): the hour to WINDOW seconds,
FeatureDrift's 30 minutes to 5 s, ReadmissionNotReady's 2 minutes to 2 s; Alertmanager's group_wait, group_interval
and repeat_interval to TIMINGS. The service is sent only emergency admissions of patients aged 80 or more (the held-out
rows of its training data, shifted as in test_drift_live.py):
1. exactly one FeatureDrift notification reaches `tickets`, grouping the drifting fields of the model version, with
   the runbook's link;
2. a silence made with amtool stops it: the alerts are silenced, and no FeatureDrift notification follows while a
   clock alert (posted with amtool, repeated every TIMINGS interval) is notified twice;
3. a second service whose model is missing joins the scrape: ReadmissionNotReady pages, and with the silence expired
   the model alerts stay quiet, inhibited, over two more clock notifications.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from observability.alert_receiver import Notification, Receiver
from observability.thresholds import RUNBOOK_BASE_URL
from tests import servers
from tests.helpers import MODEL, Stream, old_emergencies, poll, serve

WINDOW = 20  # seconds standing in for the rules' hour
TIMINGS = {"group_wait": "3s", "group_interval": "2s", "repeat_interval": "3s"}
CLOCK = "AlertmanagerClock"  # the alert posted with amtool whose repeats show Alertmanager flushing its groups
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def alertmanager(receiver, tmp_path_factory) -> Iterator[servers.Server]:
    server = servers.start_alertmanager(tmp_path_factory.mktemp("alertmanager"), receiver.url, TIMINGS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(service, alertmanager, tmp_path_factory) -> Iterator[servers.Server]:
    folder = tmp_path_factory.mktemp("prometheus-alerting")
    rules = servers.shortened_rules(folder, {"1h": f"{WINDOW}s", "30m": "5s", "2m": "2s"})
    server = servers.start_prometheus(folder, {"readmission": [service.metrics_target]}, rules, alertmanager.url)
    yield server
    server.stop()


def amtool(alertmanager: servers.Server, *args: str) -> str:
    """amtool (Debian's prometheus-alertmanager ships it) against the test's Alertmanager; its output."""
    tool = shutil.which("amtool")
    if tool is None:
        pytest.skip("amtool is not installed (apt-get install prometheus-alertmanager)")
    done = subprocess.run([tool, f"--alertmanager.url={alertmanager.url}", *args], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def alerts_in(alertmanager: servers.Server, alertname: str) -> list[dict]:
    """Alertmanager's alerts of that name, with their status (active, suppressed; silencedBy, inhibitedBy)."""
    answer = httpx.get(f"{alertmanager.url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def notified(receiver: Receiver, alertname: str) -> list[Notification]:
    """The notifications of the groups of that alert name, oldest first."""
    return [n for n in receiver.notifications() if n.payload["groupLabels"].get("alertname") == alertname]


def two_more_clock_notifications(receiver: Receiver) -> None:
    """Wait until the clock alert has been notified twice more: every group has been flushed and, with its repeat
    interval elapsed, would have been notified again meanwhile."""
    seen = len(notified(receiver, CLOCK))
    poll(lambda: len(notified(receiver, CLOCK)) >= seen + 2, 30, "two more notifications of the clock alert")


def test_drift_tickets_once_a_silence_stops_it_and_not_ready_pages_and_inhibits_it(
    service, prometheus, alertmanager, receiver, held_out, tmp_path, figure
):
    """The steps of the module's docstring (`steps`), with the service without a model started beside them."""
    home = tmp_path / "empty-home"
    home.mkdir()
    with ThreadPoolExecutor(1) as pool:  # the service without a model starts meanwhile (about 10 s), for step 3
        starting = pool.submit(serve, home, tmp_path, ready_path="/livez")
        try:
            steps(service, prometheus, alertmanager, receiver, held_out, starting, figure)
        finally:
            starting.result().stop()


def steps(service, prometheus, alertmanager, receiver, held_out, starting: Future, figure) -> None:
    """1. the ticket, 2. the silence, 3. the page and the inhibition (`starting`: the service without a model)."""
    version = httpx.get(f"{service.url}/v2/models/{MODEL}", timeout=10).json()["versions"][0]
    started = time.monotonic()
    stream = Stream(service.url, old_emergencies(held_out))
    try:
        # 1. one ticket for every drifting field of the version
        (ticket,) = poll(lambda: notified(receiver, "FeatureDrift"), 90, "a FeatureDrift notification")
        ticketed = time.monotonic()
        silence = amtool(alertmanager, "silence", "add", "alertname=FeatureDrift", f"model_version={version}",
                         "--duration=10m", "--comment=the end-to-end test", "--author=tests")  # fmt: skip
        assert ticket.receiver == "tickets" and ticket.payload["status"] == "firing", ticket
        assert ticket.payload["groupLabels"] == {"alertname": "FeatureDrift", "model_version": version}
        fields = {alert["labels"]["field"] for alert in ticket.payload["alerts"]}
        assert {"age", "admission_type_id"} <= fields and "gender" not in fields, fields
        for alert in ticket.payload["alerts"]:
            assert alert["labels"]["model_version"] == version and alert["labels"]["category"] == "model"
            assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE_URL}#featuredrift"

        # 2. the silence stops it
        def silenced() -> bool:
            found = alerts_in(alertmanager, "FeatureDrift")
            return bool(found) and all(a["status"]["silencedBy"] == [silence] for a in found)

        poll(silenced, 10, "the FeatureDrift alerts silenced")
        amtool(alertmanager, "alert", "add", f"alertname={CLOCK}", "severity=info", "--annotation=summary=clock")
        two_more_clock_notifications(receiver)
        assert len(notified(receiver, "FeatureDrift")) == 1, "a FeatureDrift notification despite the silence"

        # 3. a service without its model: the page, and the model alerts inhibited
        not_ready = starting.result()
        servers.add_prometheus_targets(prometheus, "readmission", [not_ready.metrics_target])
        joined = time.monotonic()
        page = poll(lambda: notified(receiver, "ReadmissionNotReady"), 60, "the page for ReadmissionNotReady")[0]
        paged = time.monotonic()
        assert page.receiver == "pages" and page.payload["status"] == "firing", page
        (alert,) = page.payload["alerts"]
        assert alert["labels"]["instance"] == not_ready.metrics_target
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE_URL}#readmissionnotready"
        amtool(alertmanager, "silence", "expire", silence)

        def inhibited() -> list[dict]:
            found = alerts_in(alertmanager, "FeatureDrift")
            quiet = all(not a["status"]["silencedBy"] and a["status"]["inhibitedBy"] for a in found)
            return found if found and quiet else []

        poll(inhibited, 10, "the FeatureDrift alerts inhibited, no longer silenced")
        two_more_clock_notifications(receiver)
        assert len(notified(receiver, "FeatureDrift")) == 1, "a FeatureDrift notification while the model is not ready"
        model_alerts = [a for a in httpx.get(f"{alertmanager.url}/api/v2/alerts", timeout=10).json()
                        if a["labels"].get("category") == "model"]  # fmt: skip
        assert all(a["status"]["inhibitedBy"] for a in model_alerts), json.dumps(model_alerts, indent=1)
    finally:
        stream.close()
    figure("seconds from the shift to the FeatureDrift ticket", f"{ticketed - started:.0f}")
    figure("FeatureDrift: fields in the one ticket", len(fields))
    figure("seconds from the not-ready target joining to the page", f"{paged - joined:.0f}")
    figure(
        "model alerts inhibited while not ready", ", ".join(sorted({a["labels"]["alertname"] for a in model_alerts}))
    )
