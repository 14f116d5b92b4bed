"""Feature drift and the probe filter against the real service and a real Prometheus (Debian's `prometheus`).

The committed rules run with the hour shortened to WINDOW seconds and FeatureDrift's 30 minutes to 5 s
(tests/servers.py `shortened_rules`). The served stream is the real held-out rows of the data the champion was
trained on: sampled as they are, FeatureDrift stays silent for a whole window; then only emergency admissions
of patients aged 80 or more, and FeatureDrift fires naming age and admission type."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from observability.thresholds import FEATURE_PSI_THRESHOLD, PROBE_ENDPOINTS
from tests import servers
from tests.helpers import Stream, old_emergencies, poll

WINDOW = 20  # seconds standing in for the rules' hour
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("prometheus-drift")
    rules = servers.shortened_rules(folder, {"1h": f"{WINDOW}s", "30m": "5s"})
    server = servers.start_prometheus(folder, {"readmission": [service.metrics_target]}, rules)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def query(prometheus: httpx.Client, expr: str) -> list[dict]:
    answer = prometheus.get("/api/v1/query", params={"query": expr})
    assert answer.status_code == 200, f"{expr}: {answer.text}"
    return answer.json()["data"]["result"]


def test_probe_filter_matches_the_health_checks_the_service_counts(service, prometheus):
    """BentoML answers /livez, /readyz and /healthz itself: they never reach the application's metrics."""
    for path in ("/livez", "/readyz", "/healthz", "/health", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(service.url + path, timeout=10).status_code == 200, path

    def probes_seen() -> set[str]:
        series = query(
            prometheus, f'count by (endpoint) (bentoml_service_request_total{{endpoint=~"{PROBE_ENDPOINTS}"}})'
        )
        found = {s["metric"]["endpoint"] for s in series}
        return found if len(found) == 3 else set()

    assert poll(probes_seen, 20, "the three health checks in Prometheus") == {
        "/health",
        "/v2/health/live",
        "/v2/health/ready",
    }
    endpoints = {
        s["metric"]["endpoint"] for s in query(prometheus, "count by (endpoint) (bentoml_service_request_total)")
    }
    assert not endpoints & {"/livez", "/readyz", "/healthz"}


def test_feature_drift_fires_on_a_shifted_stream_and_not_on_held_out_rows(service, prometheus, held_out, figure):
    stream = Stream(service.url, held_out)
    started = time.monotonic()
    try:

        def window_full_of_held_out_rows() -> bool:
            evaluated = query(
                prometheus, f'count_over_time(field:readmission_feature_psi:1h{{field="age"}}[{WINDOW}s])'
            )
            return time.monotonic() - started > WINDOW + 5 and bool(evaluated) and float(evaluated[0]["value"][1]) >= 10

        poll(window_full_of_held_out_rows, WINDOW + 40, "a full window of held-out rows", interval=1)
        seconds = round(time.monotonic() - started)
        assert not query(prometheus, f'ALERTS{{alertname="FeatureDrift"}}[{seconds}s]'), "FeatureDrift on held-out rows"
        (rows,) = query(prometheus, "model_version:readmission_feature_rows:increase1h")
        assert float(rows["value"][1]) >= 1000  # the guard held: this silence is the PSI's
        unshifted = {
            s["metric"]["field"]: float(s["value"][1]) for s in query(prometheus, "field:readmission_feature_psi:1h")
        }
        assert len(unshifted) >= 40 and max(unshifted.values()) < 0.1, max(unshifted.items(), key=lambda kv: kv[1])

        stream.rows = old_emergencies(held_out)

        def drift_firing() -> set[str]:
            alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
            fields = {
                a["labels"]["field"]
                for a in alerts
                if a["labels"]["alertname"] == "FeatureDrift" and a["state"] == "firing"
            }
            return fields if {"age", "admission_type_id"} <= fields else set()

        fields = poll(drift_firing, WINDOW + 40, "FeatureDrift firing for age and admission type", interval=1)
        shift_seconds = time.monotonic() - started - seconds
        moved = {
            s["metric"]["field"]: float(s["value"][1]) for s in query(prometheus, "field:readmission_feature_psi:1h")
        }
    finally:
        stream.close()
    assert moved["age"] > FEATURE_PSI_THRESHOLD and moved["admission_type_id"] > FEATURE_PSI_THRESHOLD
    assert "gender" not in fields
    figure("held-out stream: largest PSI", f"{max(unshifted.values()):.3f} ({max(unshifted, key=unshifted.get)})")
    figure("shifted stream: PSI of age, admission type", f"{moved['age']:.2f}, {moved['admission_type_id']:.2f}")
    figure("shifted stream: fields firing", ", ".join(sorted(fields)))
    figure("seconds from the shift to FeatureDrift firing", f"{shift_seconds:.0f}")
    figure("rows sent", stream.sent)
