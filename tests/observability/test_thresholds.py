"""Operational thresholds are defined once (observability/thresholds.py): the dashboard reads them, and the
committed rule files must carry exactly the same numbers and endpoint patterns, which must name real routes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bento.server.app import ROUTES
from observability import thresholds
from tests.helpers import PROMQL_COMPARISON

RULES = Path(__file__).resolve().parents[2] / "observability" / "prometheus" / "rules"
ALERT_THRESHOLDS = {
    "ReadmissionHighErrorRatio": thresholds.SLO_ERROR_RATIO,
    "ReadmissionLatencyP99OverSLO": thresholds.SLO_P99_SECONDS,
    "ReadmissionScoreDrift": thresholds.SCORE_DRIFT_THRESHOLD,
    "FeatureDrift": thresholds.FEATURE_PSI_THRESHOLD,
}
ENDPOINT_MATCHER = re.compile(r'endpoint(=~|!~)"([^"]*)"')


def rules(name: str) -> list[dict]:
    return [rule for group in yaml.safe_load((RULES / name).read_text())["groups"] for rule in group["rules"]]


def test_alerts_compare_with_the_thresholds():
    alerts = {rule["alert"]: rule for rule in rules("alerts.yml")}
    for name, value in ALERT_THRESHOLDS.items():
        number = re.match(
            r"\s*(-?[\d.]+)", alerts[name]["expr"][PROMQL_COMPARISON.search(alerts[name]["expr"]).end() :]
        )
        assert number and float(number.group(1)) == value, name
    guard = alerts["LiveRocAucBelowTraining"]["expr"].rsplit(">=", 1)[1]
    assert float(guard) == thresholds.LIVE_MIN_LABELLED_ROWS
    guard = alerts["EstimatedRocAucBelowTraining"]["expr"].rsplit(">=", 1)[1]
    assert float(guard) == thresholds.ESTIMATE_MIN_ROWS
    rows = alerts["FeatureDrift"]["expr"].rsplit(">=", 1)[1]
    assert float(rows) == thresholds.FEATURE_MIN_ROWS


def test_rules_use_the_endpoint_patterns_and_the_psi_epsilon():
    text = "".join(path.read_text() for path in sorted(RULES.glob("*.yml")))
    matchers = set(ENDPOINT_MATCHER.findall(text))
    assert matchers == {("=~", thresholds.SCORING_ENDPOINTS), ("!~", thresholds.PROBE_ENDPOINTS)}
    (psi,) = [
        rule["expr"] for rule in rules("recording.yml") if rule.get("record") == "field:readmission_feature_psi:1h"
    ]
    epsilons = re.findall(r"clamp_min\(.*?,\s*([\d.e-]+)\)", psi)
    assert len(epsilons) == 4 and {float(e) for e in epsilons} == {thresholds.PSI_EPSILON}


def test_endpoint_patterns_name_the_applications_route_templates():
    """Prometheus regexes are anchored at both ends, like fullmatch. /livez, /readyz and /healthz are BentoML's,
    answered outside the application, so they never become an endpoint label."""
    paths = {route.path for route in ROUTES}
    probes = {path for path in paths if re.fullmatch(thresholds.PROBE_ENDPOINTS, path)}
    scoring = {path for path in paths if re.fullmatch(thresholds.SCORING_ENDPOINTS, path)}
    assert probes == {"/health", "/v2/health/live", "/v2/health/ready"}
    assert scoring == {
        "/predict",
        "/predict/batch",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
    }
