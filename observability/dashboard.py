"""The Grafana dashboard of the readmission service, built with Grafana's own SDK from the rows of panels below.

    .venv/bin/python -m observability.dashboard          # writes observability/grafana/dashboards/readmission.json
    .venv/bin/python -m observability.dashboard --check  # exit 1 when the committed JSON is not the generator's

The JSON is assembled by grafana-foundation-sdk (Grafana Labs' builders, generated from Grafana's schemas; the
build for Grafana 11.6, pyproject.toml), which also lays the rows and panels out on Grafana's 24-column grid.
Every query is plain PromQL (no Grafana variables or macros), so tests/observability/test_observability_live.py
runs each one against a real Prometheus, and observability/snapshot.py draws the same panels from the same
queries. Job names (`readmission`, `locust`, `prometheus`) are the same locally and in Kubernetes; CPU and memory
queries read the service's own process metrics, Prometheus's, and cAdvisor's container metrics joined with `or`,
so the panel shows whichever exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as sdk_common_models
from grafana_foundation_sdk.models import dashboard as sdk_dashboard_models
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from observability.thresholds import (
    FEATURE_PSI_THRESHOLD,
    SCORE_DRIFT_THRESHOLD,
    SCORING_ENDPOINTS,
    SLO_ERROR_RATIO,
    SLO_P99_SECONDS,
)

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "grafana" / "dashboards" / "readmission.json"
# grafana/provisioning/datasources/prometheus.yml
DATASOURCE = sdk_dashboard_models.DataSourceRef(type_val="prometheus", uid="prometheus")
UID = "readmission"
TITLE = "Readmission service"

SCORING = f'"{SCORING_ENDPOINTS}"'
LIVE_METRICS = '"roc_auc|roc_auc_ci_low|roc_auc_ci_high"'
COMPARISON = "readmission_live_comparison"  # champion and challenger on the same patients: only with a challenger
DIFFERENCES = '"roc_auc_difference|roc_auc_difference_low|roc_auc_difference_high"'
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
    """A Grafana panel: kind is `stat`, `timeseries` or `bargauge`; width in grid columns (of 24)."""

    title: str
    kind: str
    width: int
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, color)
    text_mode: str = "auto"
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    """A titled row of the dashboard: its panels side by side, left to right, all `height` grid units high."""

    title: str
    height: int
    panels: tuple[Panel, ...]


UP_DOWN = (("1", "UP", "green"), ("0", "DOWN", "red"))
READY = (("1", "READY", "green"), ("0", "NOT READY", "red"))

ROWS: tuple[Row, ...] = (
    Row(
        "Status",
        4,
        (
            Panel(
                "Service up",
                "stat",
                3,
                (Query('min(up{job="readmission"})'),),
                description="Whether Prometheus can scrape every instance of the service "
                "(alert ReadmissionServiceDown).",
                thresholds=((None, "red"), (1, "green")),
                mappings=UP_DOWN,
            ),
            Panel(
                "Model ready",
                "stat",
                3,
                (Query("min(readmission_model_ready)"),),
                description="1 when every worker has loaded the model (/readyz); alert ReadmissionNotReady.",
                thresholds=((None, "red"), (1, "green")),
                mappings=READY,
            ),
            Panel(
                "Model version",
                "stat",
                4,
                (
                    Query(
                        "max by (model_name, model_version) (readmission_model_info)",
                        "{{model_name}} v{{model_version}}",
                    ),
                ),
                description="The served model version(s); two during a canary. Alert ReadmissionModelVersionChanged.",
                thresholds=((None, "blue"),),
                text_mode="name",
            ),
            Panel(
                "Predictions / s",
                "stat",
                3,
                (Query("sum(label:readmission_predictions:rate1m)"),),
                unit="short",
                description="Patients scored per second (batch rows count one each).",
            ),
            Panel(
                "5xx ratio (5m)",
                "stat",
                3,
                (Query("readmission:request_errors:ratio_rate5m"),),
                unit="percentunit",
                description="Server errors over all API requests (health checks excluded); "
                f"alert over {SLO_ERROR_RATIO:.0%}.",
                thresholds=((None, "green"), (SLO_ERROR_RATIO / 5, "orange"), (SLO_ERROR_RATIO, "red")),
            ),
            Panel(
                "p99 latency (5m)",
                "stat",
                3,
                (Query("readmission:request_duration_seconds:p99_5m"),),
                unit="s",
                description=f"p99 of the scoring endpoints; SLO {SLO_P99_SECONDS * 1000:g} ms.",
                thresholds=((None, "green"), (SLO_P99_SECONDS * 0.8, "orange"), (SLO_P99_SECONDS, "red")),
            ),
            Panel(
                "Locust users",
                "stat",
                2,
                (Query("sum(locust_users) or vector(0)"),),
                description="Users of the running load test (0 without one).",
                thresholds=((None, "blue"),),
            ),
            Panel(
                "Alerts firing",
                "stat",
                3,
                (Query('count(ALERTS{alertstate="firing"}) or vector(0)'),),
                description="Alerts of observability/prometheus/rules/alerts.yml firing now (Prometheus /alerts).",
                thresholds=((None, "green"), (1, "red")),
            ),
        ),
    ),
    Row(
        "Champion and challenger",
        8,
        (
            Panel(
                "ROC-AUC difference, challenger - champion, same patients (90 days)",
                "timeseries",
                12,
                (
                    Query(
                        f'{COMPARISON}{{window="90d", metric=~{DIFFERENCES}}}',
                        "{{metric}} v{{challenger_version}} - v{{champion_version}}",
                    ),
                ),
                unit="none",
                description="The challenger scores every served prediction in shadow: the difference of ROC-AUC on "
                "the same labelled predictions, with DeLong's paired 95% interval. `readmission promote --live` "
                "promotes only when the whole interval lies above 0 (or a margin).",
                thresholds=((None, "red"), (0.0, "green")),
            ),
            Panel(
                "ROC-AUC and Brier of each, same patients (90 days)",
                "bargauge",
                6,
                (
                    Query(
                        f'{COMPARISON}{{window="90d", metric=~"champion_roc_auc|challenger_roc_auc|champion_brier|'
                        'challenger_brier|brier_difference"}',
                        "{{metric}} (v{{champion_version}} / v{{challenger_version}})",
                        instant=True,
                    ),
                ),
                unit="none",
                description="Each model's ROC-AUC and Brier score on the labelled predictions both scored, and the "
                "Brier difference challenger - champion (below 0: the challenger is better calibrated).",
            ),
            Panel(
                "Rows compared and p-value (90 days)",
                "stat",
                6,
                (Query(f'{COMPARISON}{{window="90d", metric=~"rows|p_value"}}', "{{metric}}", instant=True),),
                description="Labelled predictions scored by both models, and the p-value of DeLong's test of no "
                "difference in ROC-AUC.",
            ),
        ),
    ),
    Row(
        "Traffic and latency",
        8,
        (
            Panel(
                "Request rate by endpoint and status",
                "timeseries",
                12,
                (Query("endpoint_code:bentoml_service_request:rate1m", "{{endpoint}} {{http_response_code}}"),),
                unit="reqps",
                description="Requests per second by route template and HTTP status.",
            ),
            Panel(
                "Latency p50 / p95 / p99 by endpoint",
                "timeseries",
                12,
                (
                    Query("endpoint:bentoml_service_request_duration_seconds:p50_1m", "p50 {{endpoint}}"),
                    Query("endpoint:bentoml_service_request_duration_seconds:p95_1m", "p95 {{endpoint}}"),
                    Query("endpoint:bentoml_service_request_duration_seconds:p99_1m", "p99 {{endpoint}}"),
                ),
                unit="s",
                description="From the service's histogram over 1 minute.",
                thresholds=((None, "green"), (SLO_P99_SECONDS, "red")),
            ),
        ),
    ),
    Row(
        "Errors",
        8,
        (
            Panel(
                "5xx ratio by endpoint",
                "timeseries",
                12,
                (Query("endpoint:bentoml_service_request_errors:ratio_rate1m", "{{endpoint}}"),),
                unit="percentunit",
                description="Share of server errors per endpoint (0 with traffic and no error).",
                thresholds=((None, "green"), (SLO_ERROR_RATIO, "red")),
            ),
            Panel(
                "Errors: non-2xx answers and refused requests",
                "timeseries",
                12,
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
        ),
    ),
    Row(
        "Predictions and score drift",
        8,
        (
            Panel(
                "Predictions by outcome",
                "timeseries",
                8,
                (Query("label:readmission_predictions:rate1m", "label {{label}} (v{{model_version}})"),),
                unit="short",
                description='Predictions per second: label "1" = readmission within 30 days predicted.',
                stacked=True,
            ),
            Panel(
                "Score distribution vs training (share of scores <= le, 1h)",
                "bargauge",
                8,
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
                8,
                (Query("readmission:score_drift:max_abs_share_diff1h", "max |served - training|"),),
                unit="percentunit",
                description=f"Kolmogorov-Smirnov distance on the score buckets; alert ReadmissionScoreDrift over "
                f"{SCORE_DRIFT_THRESHOLD:g}.",
                thresholds=((None, "green"), (SCORE_DRIFT_THRESHOLD, "red")),
            ),
        ),
    ),
    Row(
        "Resources",
        8,
        (
            Panel(
                "CPU per service (cores)",
                "timeseries",
                12,
                (
                    Query(
                        "sum by (job) (rate(readmission_process_cpu_seconds_total[1m]))"
                        ' or sum by (job) (rate(process_cpu_seconds_total{job=~"prometheus|locust"}[1m]))'
                        " or sum by (namespace, pod) (rate(container_cpu_usage_seconds_total"
                        f"{{namespace=~{K8S_NAMESPACES}, "
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
                12,
                (
                    Query(
                        "sum by (job) (readmission_process_resident_memory_bytes)"
                        ' or sum by (job) (process_resident_memory_bytes{job=~"prometheus|locust"})'
                        " or sum by (namespace, pod) (container_memory_working_set_bytes"
                        f"{{namespace=~{K8S_NAMESPACES}, "
                        'container!="", container!="POD"})',
                        "{{job}}{{namespace}} {{pod}}",
                    ),
                ),
                unit="bytes",
                description="Resident memory locally; working set per pod in Kubernetes.",
            ),
        ),
    ),
    Row(
        "Load",
        8,
        (
            Panel(
                "Locust load next to latency",
                "timeseries",
                16,
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
                8,
                (Query("sum by (endpoint) (bentoml_service_request_in_progress)", "{{endpoint}}"),),
                unit="short",
                description="Requests being served now, per endpoint (all workers).",
            ),
        ),
    ),
    # which clinical fields moved away from the training data
    Row(
        "Feature drift",
        8,
        (
            Panel(
                f"Fields drifting (PSI > {FEATURE_PSI_THRESHOLD:g}, 1h)",
                "stat",
                4,
                (Query(f"count(field:readmission_feature_psi:1h > {FEATURE_PSI_THRESHOLD:g}) or vector(0)"),),
                description="Clinical fields whose served mix over the last hour differs from training by a population "
                "stability index above the threshold; alert FeatureDrift when it lasts 30 minutes.",
                thresholds=((None, "green"), (1, "red")),
            ),
            Panel(
                "Feature drift: PSI of the 10 most drifted fields (1h)",
                "bargauge",
                10,
                (Query("sort_desc(topk(10, field:readmission_feature_psi:1h))", "{{field}}", instant=True),),
                description="Population stability index per clinical field, served (last hour) against the training "
                f"shares stored with the model; red above {FEATURE_PSI_THRESHOLD:g} (the bar is full from 1).",
                thresholds=((None, "green"), (FEATURE_PSI_THRESHOLD / 2, "orange"), (FEATURE_PSI_THRESHOLD, "red")),
            ),
            Panel(
                "Feature drift over time (PSI, 5 most drifted fields)",
                "timeseries",
                10,
                (Query("topk(5, field:readmission_feature_psi:1h)", "{{field}}"),),
                description="The fields' PSI over time: a step after a deployment upstream, a slope as the patient "
                "mix moves.",
                thresholds=((None, "green"), (FEATURE_PSI_THRESHOLD, "red")),
            ),
        ),
    ),
    # the model against the outcomes sent back through POST /feedback
    Row(
        "Live accuracy",
        8,
        (
            Panel(
                "Live ROC-AUC (30 days) and its interval vs training",
                "timeseries",
                10,
                (
                    Query(
                        f'readmission_live_metric{{window="30d", metric=~{LIVE_METRICS}}}',
                        "live {{metric}} v{{model_version}}",
                    ),
                    Query(
                        f"readmission_training_metric{{metric=~{LIVE_METRICS}}}",
                        "training {{metric}} v{{model_version}}",
                    ),
                    Query(
                        'readmission_estimated_metric{window="30d", metric="estimated_roc_auc"}',
                        "estimated before outcomes v{{model_version}}",
                    ),
                ),
                unit="none",
                description="ROC-AUC of the labelled predictions of the last 30 days with its 95% DeLong interval, "
                "next to the test split's; alert LiveRocAucBelowTraining when the live interval lies wholly below. "
                "The estimate from the probabilities alone (every prediction of 30 days, before outcomes arrive) "
                "leads by a month; alert EstimatedRocAucBelowTraining below the training interval. It cannot see a "
                "change in how outcomes relate to the features.",
            ),
            Panel(
                "Live metrics (30 days) vs training",
                "bargauge",
                8,
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
                    Query(
                        'readmission_estimated_metric{window="30d", metric=~"estimated_precision|flagged_rate"}',
                        "estimated {{metric}}",
                        instant=True,
                    ),
                ),
                unit="none",
                description="PR-AUC, Brier score, calibration error, share flagged and precision at the threshold: "
                "live (last 30 days of outcomes) next to the model's test split, and the precision and share "
                "flagged estimated from every prediction of 30 days before outcomes arrive.",
            ),
            Panel(
                "Outcomes received (feedback) and labelled rows",
                "timeseries",
                6,
                (
                    Query(
                        "sum by (result) (increase(readmission_feedback_outcomes_total[1h]))", "feedback {{result}} / h"
                    ),
                    Query(
                        'readmission_live_metric{metric="labelled_rows"}',
                        "labelled rows {{window}}",
                        right_axis_unit="short",
                    ),
                ),
                description="Outcomes sent back per hour (alert FeedbackStopped after 2 days without any while "
                "predicting), and the labelled predictions the live metrics rest on.",
            ),
        ),
    ),
)


def _target(query: Query, ref_id: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(query.expr)
        .legend_format(query.legend or "__auto")
        .editor_mode(QueryEditorMode.CODE)
    )
    return target.instant() if query.instant else target.range()


def _thresholds(panel: Panel) -> sdk_dashboard.ThresholdsConfig:
    steps = [sdk_dashboard_models.Threshold(value=value, color=color) for value, color in panel.thresholds]
    return sdk_dashboard.ThresholdsConfig().mode(sdk_dashboard_models.ThresholdsMode.ABSOLUTE).steps(steps)


def _mappings(panel: Panel) -> list[sdk_dashboard_models.ValueMapping]:
    if not panel.mappings:
        return []
    options = {
        value: sdk_dashboard_models.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, text, color) in enumerate(panel.mappings)
    }
    return [sdk_dashboard_models.ValueMap(options=options)]


def _last_value() -> sdk_common.ReduceDataOptions:
    return sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _stat(panel: Panel) -> stat.Panel:
    return (
        stat.Panel()
        .color_mode(sdk_common_models.BigValueColorMode.BACKGROUND)
        .graph_mode(sdk_common_models.BigValueGraphMode.NONE)
        .text_mode(sdk_common_models.BigValueTextMode(panel.text_mode))
        .justify_mode(sdk_common_models.BigValueJustifyMode.AUTO)
        .orientation(sdk_common_models.VizOrientation.AUTO)
        .reduce_options(_last_value())
        .color_scheme(sdk_dashboard.FieldColor().mode(sdk_dashboard_models.FieldColorModeId.THRESHOLDS))
    )


def _bargauge(panel: Panel) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .orientation(sdk_common_models.VizOrientation.HORIZONTAL)
        .display_mode(sdk_common_models.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .value_mode(sdk_common_models.BarGaugeValueMode.COLOR)
        .reduce_options(_last_value())
        .min(0)
        .max(1)
        .color_scheme(sdk_dashboard.FieldColor().mode(sdk_dashboard_models.FieldColorModeId.THRESHOLDS))
    )


def _timeseries(panel: Panel) -> timeseries.Panel:
    styles = sdk_common_models.GraphThresholdsStyleMode
    stacking = sdk_common_models.StackingMode.NORMAL if panel.stacked else sdk_common_models.StackingMode.NONE
    builder = (
        timeseries.Panel()
        .legend(
            sdk_common.VizLegendOptions()
            .display_mode(sdk_common_models.LegendDisplayMode.LIST)
            .placement(sdk_common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            sdk_common.VizTooltipOptions()
            .mode(sdk_common_models.TooltipDisplayMode.MULTI)
            .sort(sdk_common_models.SortOrder.DESCENDING)
        )
        .draw_style(sdk_common_models.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10 if panel.stacked else 0)
        .show_points(sdk_common_models.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(sdk_common.StackingConfig().mode(stacking).group("A"))
        .thresholds_style(
            sdk_common.GraphThresholdsStyleConfig().mode(styles.LINE if len(panel.thresholds) > 1 else styles.OFF)
        )
        .color_scheme(sdk_dashboard.FieldColor().mode(sdk_dashboard_models.FieldColorModeId.PALETTE_CLASSIC))
    )
    for index, query in enumerate(panel.queries):
        if query.right_axis_unit:
            builder = builder.override_by_query(
                _ref_id(index),
                [
                    sdk_dashboard_models.DynamicConfigValue(id_val="unit", value=query.right_axis_unit),
                    sdk_dashboard_models.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                ],
            )
    return builder


KINDS = {"stat": _stat, "bargauge": _bargauge, "timeseries": _timeseries}


def _panel(panel: Panel, height: int, number: int) -> stat.Panel | bargauge.Panel | timeseries.Panel:
    builder = (
        KINDS[panel.kind](panel)
        .id(number)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .span(panel.width)
        .height(height)
        .unit(panel.unit)
        .thresholds(_thresholds(panel))
        .mappings(_mappings(panel))
    )
    for index, query in enumerate(panel.queries):
        builder = builder.with_target(_target(query, _ref_id(index)))
    return builder


def _ref_id(index: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[index]


def build() -> sdk_dashboard_models.Dashboard:
    """The dashboard (for file provisioning): each row, then its panels, numbered in that order from 1."""
    builder = (
        sdk_dashboard.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Health, traffic, latency, errors, predictions, score and feature drift, live accuracy and load of "
            "the readmission model service (observability/dashboard.py)."
        )
        .tags(["readmission", "bentoml", "slo"])
        .timezone("browser")
        .readonly()
        .tooltip(sdk_dashboard_models.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh("10s")
        .time("now-1h", "now")
    )
    number = 0
    for row in ROWS:
        number += 1
        builder = builder.with_row(sdk_dashboard.Row(row.title).id(number))
        for panel in row.panels:
            number += 1
            builder = builder.with_panel(_panel(panel, row.height, number))
    return builder.build()


def encode(model: sdk_dashboard_models.Dashboard) -> str:
    """The JSON text of a dashboard model, laid out as committed (keys sorted, so the file diffs well)."""
    return JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False).encode(model) + "\n"


def render() -> str:
    """The dashboard JSON text exactly as committed."""
    return encode(build())


def layout() -> list[tuple[Row | Panel, tuple[int, int, int, int]]]:
    """Every row and panel in dashboard order with the place (x, y, w, h) the SDK gave it on the grid."""
    items: list[Row | Panel] = [item for row in ROWS for item in (row, *row.panels)]
    places = [(p.grid_pos.x, p.grid_pos.y, p.grid_pos.w, p.grid_pos.h) for p in build().panels]
    return list(zip(items, places, strict=True))


def queries(model: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel of a dashboard JSON model (rows have none)."""
    model = json.loads(render()) if model is None else model
    return [(panel["title"], t["refId"], t["expr"]) for panel in model["panels"] for t in panel.get("targets", [])]


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
    print(f"wrote {args.output} ({len(ROWS)} rows, {sum(len(row.panels) for row in ROWS)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
