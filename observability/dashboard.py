"""The Grafana dashboard of the readmission service, generated from the panel list below.

    .venv/bin/python -m observability.dashboard          # writes observability/grafana/dashboards/readmission.json
    .venv/bin/python -m observability.dashboard --check  # exit 1 when the committed JSON is not the generator's

Every query is plain PromQL (no Grafana variables or macros), so tests/observability/test_observability_live.py runs
each one against a real Prometheus, and observability/snapshot.py draws the same panels from the same queries.
Job names (`readmission`, `locust`, `prometheus`) are the same locally and in Kubernetes; CPU and memory
queries read the service's own process metrics, Prometheus's, and cAdvisor's container metrics joined
with `or`, so the panel shows whichever exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from observability.thresholds import (
    FEATURE_PSI_THRESHOLD,
    SCORE_DRIFT_THRESHOLD,
    SCORING_ENDPOINTS,
    SLO_ERROR_RATIO,
    SLO_P99_SECONDS,
)

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "grafana" / "dashboards" / "readmission.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # grafana/provisioning/datasources/prometheus.yml
UID = "readmission"
SCHEMA_VERSION = 39

SCORING = f'"{SCORING_ENDPOINTS}"'
LIVE_METRICS = '"roc_auc|roc_auc_ci_low|roc_auc_ci_high"'
K8S_NAMESPACES = '"readmission|loadtest|observability"'


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel, with its legend, and the y axis it is drawn on."""

    expr: str
    legend: str = ""
    instant: bool = False
    right_axis_unit: str = ""  # draw on a right axis with this unit (e.g. latency next to load)


@dataclass(frozen=True)
class Panel:
    """A Grafana panel: kind is `stat`, `timeseries` or `bargauge`; grid is (x, y, w, h)."""

    title: str
    kind: str
    grid: tuple[int, int, int, int]
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, color)
    text_mode: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)


UP_DOWN = (("1", "UP", "green"), ("0", "DOWN", "red"))
READY = (("1", "READY", "green"), ("0", "NOT READY", "red"))

PANELS: tuple[Panel, ...] = (
    # overall status
    Panel(
        "Service up",
        "stat",
        (0, 0, 3, 4),
        (Query('min(up{job="readmission"})'),),
        description="Whether Prometheus can scrape every instance of the service (alert ReadmissionServiceDown).",
        thresholds=((None, "red"), (1, "green")),
        mappings=UP_DOWN,
    ),
    Panel(
        "Model ready",
        "stat",
        (3, 0, 3, 4),
        (Query("min(readmission_model_ready)"),),
        description="1 when every worker has loaded the model (/readyz); alert ReadmissionNotReady.",
        thresholds=((None, "red"), (1, "green")),
        mappings=READY,
    ),
    Panel(
        "Model version",
        "stat",
        (6, 0, 4, 4),
        (Query("max by (model_name, model_version) (readmission_model_info)", "{{model_name}} v{{model_version}}"),),
        description="The served model version(s); two during a canary. Alert ReadmissionModelVersionChanged.",
        thresholds=((None, "blue"),),
        text_mode="name",
    ),
    Panel(
        "Predictions / s",
        "stat",
        (10, 0, 3, 4),
        (Query("sum(label:readmission_predictions:rate1m)"),),
        unit="short",
        description="Patients scored per second (batch rows count one each).",
    ),
    Panel(
        "5xx ratio (5m)",
        "stat",
        (13, 0, 3, 4),
        (Query("readmission:request_errors:ratio_rate5m"),),
        unit="percentunit",
        description=f"Server errors over all API requests (health checks excluded); alert over {SLO_ERROR_RATIO:.0%}.",
        thresholds=((None, "green"), (SLO_ERROR_RATIO / 5, "orange"), (SLO_ERROR_RATIO, "red")),
    ),
    Panel(
        "p99 latency (5m)",
        "stat",
        (16, 0, 3, 4),
        (Query("readmission:request_duration_seconds:p99_5m"),),
        unit="s",
        description=f"p99 of the scoring endpoints; SLO {SLO_P99_SECONDS * 1000:g} ms.",
        thresholds=((None, "green"), (SLO_P99_SECONDS * 0.8, "orange"), (SLO_P99_SECONDS, "red")),
    ),
    Panel(
        "Locust users",
        "stat",
        (19, 0, 2, 4),
        (Query("sum(locust_users) or vector(0)"),),
        description="Users of the running load test (0 without one).",
        thresholds=((None, "blue"),),
    ),
    Panel(
        "Alerts firing",
        "stat",
        (21, 0, 3, 4),
        (Query('count(ALERTS{alertstate="firing"}) or vector(0)'),),
        description="Alerts of observability/prometheus/rules/alerts.yml firing now (Prometheus /alerts).",
        thresholds=((None, "green"), (1, "red")),
    ),
    # traffic and latency
    Panel(
        "Request rate by endpoint and status",
        "timeseries",
        (0, 4, 12, 8),
        (Query("endpoint_code:bentoml_service_request:rate1m", "{{endpoint}} {{http_response_code}}"),),
        unit="reqps",
        description="Requests per second by route template and HTTP status.",
    ),
    Panel(
        "Latency p50 / p95 / p99 by endpoint",
        "timeseries",
        (12, 4, 12, 8),
        (
            Query("endpoint:bentoml_service_request_duration_seconds:p50_1m", "p50 {{endpoint}}"),
            Query("endpoint:bentoml_service_request_duration_seconds:p95_1m", "p95 {{endpoint}}"),
            Query("endpoint:bentoml_service_request_duration_seconds:p99_1m", "p99 {{endpoint}}"),
        ),
        unit="s",
        description="From the service's histogram over 1 minute.",
        thresholds=((None, "green"), (SLO_P99_SECONDS, "red")),
    ),
    # errors
    Panel(
        "5xx ratio by endpoint",
        "timeseries",
        (0, 12, 12, 8),
        (Query("endpoint:bentoml_service_request_errors:ratio_rate1m", "{{endpoint}}"),),
        unit="percentunit",
        description="Share of server errors per endpoint (0 with traffic and no error).",
        thresholds=((None, "green"), (SLO_ERROR_RATIO, "red")),
    ),
    Panel(
        "Errors: non-2xx answers and refused requests",
        "timeseries",
        (12, 12, 12, 8),
        (
            Query(
                "sum by (endpoint, http_response_code) "
                '(rate(bentoml_service_request_total{http_response_code!~"2.."}[1m]))',
                "{{http_response_code}} {{endpoint}}",
            ),
            Query(
                "sum by (endpoint, reason) (rate(readmission_validation_failures_total[1m]))",
                "refused {{endpoint}}: {{reason}}",
            ),
        ),
        unit="reqps",
        description="Error history: answers other than 2xx, and requests refused by validation, by reason.",
    ),
    # the model
    Panel(
        "Predictions by outcome",
        "timeseries",
        (0, 20, 8, 8),
        (Query("label:readmission_predictions:rate1m", "label {{label}} (v{{model_version}})"),),
        unit="short",
        description='Predictions per second: label "1" = readmission within 30 days predicted.',
        extra={"stack": True},
    ),
    Panel(
        "Score distribution vs training (share of scores <= le, 1h)",
        "bargauge",
        (8, 20, 8, 8),
        (
            Query("le:readmission_predicted_probability:share1h", "served <= {{le}}", instant=True),
            Query("max by (le) (readmission_training_score_share)", "training <= {{le}}", instant=True),
        ),
        unit="percentunit",
        description="Cumulative share of the served scores at or below each bucket bound, next to the "
        "training test split's (readmission_training_score_share).",
    ),
    Panel(
        "Score drift (largest CDF gap vs training, 1h)",
        "timeseries",
        (16, 20, 8, 8),
        (Query("readmission:score_drift:max_abs_share_diff1h", "max |served - training|"),),
        unit="percentunit",
        description=f"Kolmogorov-Smirnov distance on the score buckets; alert ReadmissionScoreDrift over "
        f"{SCORE_DRIFT_THRESHOLD:g}.",
        thresholds=((None, "green"), (SCORE_DRIFT_THRESHOLD, "red")),
    ),
    # resources
    Panel(
        "CPU per service (cores)",
        "timeseries",
        (0, 28, 12, 8),
        (
            Query(
                "sum by (job) (rate(readmission_process_cpu_seconds_total[1m]))"
                ' or sum by (job) (rate(process_cpu_seconds_total{job=~"prometheus|locust"}[1m]))'
                f" or sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{namespace=~{K8S_NAMESPACES}, "
                'container!="", container!="POD"}[1m]))',
                "{{job}}{{namespace}} {{pod}}",
            ),
        ),
        unit="short",
        description="The service's process tree (supervisor and workers) and Prometheus locally; every "
        "container of the stack from cAdvisor in Kubernetes.",
    ),
    Panel(
        "Memory per service",
        "timeseries",
        (12, 28, 12, 8),
        (
            Query(
                "sum by (job) (readmission_process_resident_memory_bytes)"
                ' or sum by (job) (process_resident_memory_bytes{job=~"prometheus|locust"})'
                f" or sum by (namespace, pod) (container_memory_working_set_bytes{{namespace=~{K8S_NAMESPACES}, "
                'container!="", container!="POD"})',
                "{{job}}{{namespace}} {{pod}}",
            ),
        ),
        unit="bytes",
        description="Resident memory locally; working set per pod in Kubernetes.",
    ),
    # load
    Panel(
        "Locust load next to latency",
        "timeseries",
        (0, 36, 16, 8),
        (
            Query("sum(locust_users)", "Locust users"),
            Query('sum(rate(locust_requests_total{name!="Aggregated"}[1m]))', "Locust requests / s"),
            Query(
                f"histogram_quantile(0.95, sum by (le) (rate(bentoml_service_request_duration_seconds_bucket"
                f"{{endpoint=~{SCORING}}}[1m])))",
                "service p95",
                right_axis_unit="s",
            ),
            Query(
                'max(locust_response_time_quantile_seconds{name="Aggregated", quantile="0.95"})',
                "Locust p95 (client side)",
                right_axis_unit="s",
            ),
        ),
        unit="short",
        description="Users and throughput of the load test (left) against the p95 seen by the service and by "
        "Locust (right).",
    ),
    Panel(
        "Requests in progress",
        "timeseries",
        (16, 36, 8, 8),
        (Query("sum by (endpoint) (bentoml_service_request_in_progress)", "{{endpoint}}"),),
        unit="short",
        description="Requests being served now, per endpoint (all workers).",
    ),
    # drift: which clinical fields moved away from the training data
    Panel(
        f"Fields drifting (PSI > {FEATURE_PSI_THRESHOLD:g}, 1h)",
        "stat",
        (0, 44, 4, 8),
        (Query(f"count(field:readmission_feature_psi:1h > {FEATURE_PSI_THRESHOLD:g}) or vector(0)"),),
        description="Clinical fields whose served mix over the last hour differs from training by a population "
        "stability index above the threshold; alert FeatureDrift when it lasts 30 minutes.",
        thresholds=((None, "green"), (1, "red")),
    ),
    Panel(
        "Feature drift: PSI of the 10 most drifted fields (1h)",
        "bargauge",
        (4, 44, 10, 8),
        (Query("sort_desc(topk(10, field:readmission_feature_psi:1h))", "{{field}}", instant=True),),
        description="Population stability index per clinical field, served (last hour) against the training "
        f"shares stored with the model; red above {FEATURE_PSI_THRESHOLD:g} (the bar is full from 1).",
        thresholds=((None, "green"), (FEATURE_PSI_THRESHOLD / 2, "orange"), (FEATURE_PSI_THRESHOLD, "red")),
    ),
    Panel(
        "Feature drift over time (PSI, 5 most drifted fields)",
        "timeseries",
        (14, 44, 10, 8),
        (Query("topk(5, field:readmission_feature_psi:1h)", "{{field}}"),),
        description="The fields' PSI over time: a step after a deployment upstream, a slope as the patient mix moves.",
        thresholds=((None, "green"), (FEATURE_PSI_THRESHOLD, "red")),
    ),
    # live accuracy: the model against the outcomes sent back through POST /feedback
    Panel(
        "Live ROC-AUC (30 days) and its interval vs training",
        "timeseries",
        (0, 52, 10, 8),
        (
            Query(
                f'readmission_live_metric{{window="30d", metric=~{LIVE_METRICS}}}', "live {{metric}} v{{model_version}}"
            ),
            Query(f"readmission_training_metric{{metric=~{LIVE_METRICS}}}", "training {{metric}} v{{model_version}}"),
        ),
        unit="none",
        description="ROC-AUC of the labelled predictions of the last 30 days with its 95% bootstrap interval, next "
        "to the test split's; alert LiveRocAucBelowTraining when the live interval lies wholly below.",
    ),
    Panel(
        "Live metrics (30 days) vs training",
        "bargauge",
        (10, 52, 8, 8),
        (
            Query(
                'readmission_live_metric{window="30d", metric=~"pr_auc|brier|ece|flagged_rate|precision"}',
                "live {{metric}}",
                instant=True,
            ),
            Query(
                'readmission_training_metric{metric=~"pr_auc|brier|ece|flagged_rate|precision"}',
                "training {{metric}}",
                instant=True,
            ),
        ),
        unit="none",
        description="PR-AUC, Brier score, calibration error, share flagged and precision at the threshold: live "
        "(last 30 days of outcomes) next to the model's test split.",
    ),
    Panel(
        "Outcomes received (feedback) and labelled rows",
        "timeseries",
        (18, 52, 6, 8),
        (
            Query("sum by (result) (increase(readmission_feedback_outcomes_total[1h]))", "feedback {{result}} / h"),
            Query(
                'readmission_live_metric{metric="labelled_rows"}', "labelled rows {{window}}", right_axis_unit="short"
            ),
        ),
        description="Outcomes sent back per hour (alert FeedbackStopped after 2 days without any while predicting), "
        "and the labelled predictions the live metrics rest on.",
    ),
)


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": value, "color": color} for value, color in steps]}


def _mappings(mappings: tuple[tuple[str, str, str], ...]) -> list[dict[str, Any]]:
    if not mappings:
        return []
    options = {value: {"text": text, "color": color, "index": i} for i, (value, text, color) in enumerate(mappings)}
    return [{"type": "value", "options": options}]


def _target(query: Query, ref_id: str) -> dict[str, Any]:
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        "editorMode": "code",
    }


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "stat":
        return {
            "reduceOptions": reduce,
            "colorMode": "background",
            "graphMode": "none",
            "textMode": panel.text_mode,
            "justifyMode": "auto",
            "orientation": "auto",
        }
    if panel.kind == "bargauge":
        return {
            "reduceOptions": reduce,
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "valueMode": "color",
        }
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel.thresholds),
        "mappings": _mappings(panel.mappings),
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
    }
    if panel.kind == "bargauge":
        defaults.update(min=0, max=1)
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if panel.extra.get("stack") else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.extra.get("stack") else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if len(panel.thresholds) > 1 else "off"},
        }
    overrides = [
        {
            "matcher": {"id": "byFrameRefID", "options": _ref_id(i)},
            "properties": [
                {"id": "unit", "value": query.right_axis_unit},
                {"id": "custom.axisPlacement", "value": "right"},
            ],
        }
        for i, query in enumerate(panel.queries)
        if query.right_axis_unit
    ]
    return {"defaults": defaults, "overrides": overrides}


def _ref_id(index: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[index]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (for file provisioning)."""
    panels = []
    for number, panel in enumerate(PANELS, start=1):
        x, y, w, h = panel.grid
        panels.append(
            {
                "id": number,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {"x": x, "y": y, "w": w, "h": h},
                "targets": [_target(query, _ref_id(i)) for i, query in enumerate(panel.queries)],
                "fieldConfig": _field_config(panel),
                "options": _options(panel),
            }
        )
    return {
        "id": None,
        "uid": UID,
        "title": "Readmission service",
        "description": "Health, traffic, latency, errors, predictions, score drift and load of the readmission "
        "model service (observability/dashboard.py).",
        "tags": ["readmission", "bentoml", "slo"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    """The dashboard JSON text exactly as committed."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def queries(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel of a dashboard JSON model."""
    model = build() if dashboard is None else dashboard
    return [(panel["title"], t["refId"], t["expr"]) for panel in model["panels"] for t in panel["targets"]]


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard JSON, or with --check report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m observability.dashboard", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(PANELS)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
