"""Locust's own statistics as Prometheus metrics, so Grafana can show the load next to the service's latency.

The master (or the single local process) serves them at `http://<--prometheus-host>:<--prometheus-port>/metrics`
(default 127.0.0.1:9646; `--prometheus-port 0` turns it off), and at `/metrics` of the Locust web UI when
that runs (port 8089). Workers serve nothing: the master holds the aggregated statistics.

Every value is read from Locust's statistics at scrape time (no second bookkeeping). Per request name, with
labels `method` and `name`, plus the whole run as `name="Aggregated"`, `method=""` (exclude it when summing):

    locust_requests_total                      counter  requests completed (failures included)
    locust_request_failures_total              counter  requests that failed
    locust_response_time_seconds_count/_sum    summary  response times (rate(sum)/rate(count) = mean)
    locust_response_time_quantile_seconds      gauge    quantile="0.5|0.95|0.99" over the last ~10 s
    locust_requests_per_second                 gauge    current throughput (last ~10 s)
    locust_failures_per_second                 gauge    current failures per second
    locust_errors_total                        counter  by method, name, error (first 50 distinct errors)

and, without request labels: `locust_users` (running users), `locust_workers` (connected workers, 0 when not
distributed), `locust_running` (1 while a test runs), `locust_scenario_info{scenario}` (1), and for the stress
scenario `locust_breaking_point_users` / `locust_breaking_point_rps` once it has found the breaking point.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.95, 0.99)
MAX_ERRORS = 50
LABELS = ("method", "name")


def add_arguments(parser: Any) -> None:
    """Register the exporter options on Locust's argument parser."""
    group = parser.add_argument_group("prometheus", "Locust statistics as Prometheus metrics (loadtest/metrics.py)")
    group.add_argument(
        "--prometheus-port",
        type=int,
        default=9646,
        env_var="LOADTEST_PROMETHEUS_PORT",
        help="port of the /metrics endpoint on the master; 0 turns it off (default 9646)",
    )
    group.add_argument(
        "--prometheus-host",
        default="127.0.0.1",
        env_var="LOADTEST_PROMETHEUS_HOST",
        help="address the /metrics endpoint binds (default 127.0.0.1; 0.0.0.0 in a pod)",
    )


class LocustCollector:
    """A prometheus_client collector that reads an environment's runner statistics when scraped."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment

    def collect(self) -> Iterator[Metric]:
        """The metrics listed in the module docstring."""
        runner = self.environment.runner
        if runner is None:
            return
        stats = runner.stats
        entries = [*sorted(stats.entries.values(), key=lambda e: (e.name, e.method or "")), stats.total]

        requests = CounterMetricFamily("locust_requests", "Requests completed, failures included", labels=LABELS)
        failures = CounterMetricFamily("locust_request_failures", "Requests that failed", labels=LABELS)
        times = SummaryMetricFamily("locust_response_time_seconds", "Response times of requests", labels=LABELS)
        quantiles = GaugeMetricFamily(
            "locust_response_time_quantile_seconds",
            "Response time quantiles over the last ~10 seconds",
            labels=(*LABELS, "quantile"),
        )
        rps = GaugeMetricFamily("locust_requests_per_second", "Current requests per second", labels=LABELS)
        fails = GaugeMetricFamily("locust_failures_per_second", "Current failures per second", labels=LABELS)
        for entry in entries:
            labels = [entry.method or "", entry.name]
            requests.add_metric(labels, entry.num_requests)
            failures.add_metric(labels, entry.num_failures)
            timed = entry.num_requests - entry.num_none_requests
            times.add_metric(labels, count_value=timed, sum_value=entry.total_response_time / 1000.0)
            rps.add_metric(labels, float(entry.current_rps))
            fails.add_metric(labels, float(entry.current_fail_per_sec))
            if timed and entry.use_response_times_cache:
                for q in QUANTILES:
                    value = entry.get_current_response_time_percentile(q)
                    if value is not None:
                        quantiles.add_metric([*labels, str(q)], value / 1000.0)
        yield from (requests, failures, times, quantiles, rps, fails)

        errors = CounterMetricFamily("locust_errors", "Failed requests by error", labels=(*LABELS, "error"))
        for error in list(stats.errors.values())[:MAX_ERRORS]:
            errors.add_metric([error.method or "", error.name, str(error.error)[:120]], error.occurrences)
        yield errors

        yield GaugeMetricFamily("locust_users", "Users running now", value=runner.user_count)
        yield GaugeMetricFamily("locust_workers", "Workers connected to the master", value=_worker_count(runner))
        yield GaugeMetricFamily("locust_running", "1 while a test runs", value=int(runner.state in RUNNING))
        yield from self._scenario()

    def _scenario(self) -> Iterator[Metric]:
        shape = self.environment.shape_class
        report = shape.report() if shape is not None and hasattr(shape, "report") else {}
        if not report:
            return
        info = GaugeMetricFamily("locust_scenario_info", "The scenario being run", labels=("scenario",))
        info.add_metric([str(report.get("scenario"))], 1)
        yield info
        point = report.get("breaking_point")
        if point:
            yield GaugeMetricFamily(
                "locust_breaking_point_users", "Users at the stress breaking point", value=point["users"]
            )
            yield GaugeMetricFamily(
                "locust_breaking_point_rps", "Requests per second at the stress breaking point", value=point["rps"]
            )


RUNNING = frozenset({"spawning", "running"})


def _worker_count(runner: Any) -> int:
    return int(getattr(runner, "worker_count", 0) or 0)


def registry_for(environment: Any) -> CollectorRegistry:
    """A registry holding only the Locust collector of this environment."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LocustCollector(environment))
    return registry


def start(environment: Any, host: str, port: int) -> Any:
    """Serve the metrics on host:port (a gevent WSGI server, cooperative with Locust) and on the web UI."""
    from gevent.pywsgi import WSGIServer

    registry = registry_for(environment)
    server = None
    if port:
        server = WSGIServer((host, port), make_wsgi_app(registry), log=None)
        server.start()
        log.info("Prometheus metrics at http://%s:%d/metrics", host, port)
    web_ui = getattr(environment, "web_ui", None)
    if web_ui is not None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        @web_ui.app.route("/metrics")
        def _metrics() -> tuple[bytes, int, dict[str, str]]:
            return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    return server
