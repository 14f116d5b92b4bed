"""The SLO check of a load test: p95 latency, failure ratio and minimum throughput.

Runs inside Locust at the end of every run (the locustfile sets Locust's exit code from it), and on its own
over the CSV a run left behind, with the same or other thresholds:

    python -m loadtest.slo loadtest/results/<run>/            # or the CSV prefix: .../<run>/locust
    python -m loadtest.slo loadtest/results/<run>/ --max-p95-ms 250 --min-rps 20

Thresholds (flags, else environment variables, else defaults):

    --max-p95-ms            LOADTEST_SLO_P95_MS                500    p95 of all requests, milliseconds
    --max-failure-ratio     LOADTEST_SLO_MAX_FAILURE_RATIO     0.01   failed / all requests
    --min-rps               LOADTEST_SLO_MIN_RPS               1.0    requests per second over the run

Exit code 0 when every threshold holds, 1 when one is violated (a run without any request violates
them all), 2 when there is no CSV to read.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_VIOLATED, EXIT_NO_DATA = 0, 1, 2
AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class Thresholds:
    """The service-level objectives a run must meet."""

    max_p95_ms: float = 500.0
    max_failure_ratio: float = 0.01
    min_rps: float = 1.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Thresholds:
        """Thresholds from LOADTEST_SLO_* variables, defaults where unset."""
        env = os.environ if environ is None else environ
        return cls(
            max_p95_ms=float(env.get("LOADTEST_SLO_P95_MS", cls.max_p95_ms)),
            max_failure_ratio=float(env.get("LOADTEST_SLO_MAX_FAILURE_RATIO", cls.max_failure_ratio)),
            min_rps=float(env.get("LOADTEST_SLO_MIN_RPS", cls.min_rps)),
        )


@dataclass(frozen=True)
class Endpoint:
    """The statistics of one request name (or of all of them: `Aggregated`)."""

    method: str
    name: str
    requests: int
    failures: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    rps: float

    @property
    def failure_ratio(self) -> float:
        """Failed / all requests (1.0 when nothing but failures, 0.0 when nothing at all)."""
        return self.failures / self.requests if self.requests else (1.0 if self.failures else 0.0)


@dataclass
class Result:
    """The outcome of a check: the numbers, the thresholds and what was violated."""

    total: Endpoint
    endpoints: list[Endpoint]
    thresholds: Thresholds
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no threshold is violated."""
        return not self.violations

    @property
    def exit_code(self) -> int:
        """0 when passed, 1 otherwise."""
        return EXIT_OK if self.passed else EXIT_VIOLATED

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for the run's summary file)."""
        return {
            "passed": self.passed,
            "violations": self.violations,
            "thresholds": asdict(self.thresholds),
            "total": {**asdict(self.total), "failure_ratio": round(self.total.failure_ratio, 6)},
            "endpoints": [{**asdict(e), "failure_ratio": round(e.failure_ratio, 6)} for e in self.endpoints],
        }


def check(total: Endpoint, endpoints: Sequence[Endpoint], thresholds: Thresholds) -> Result:
    """Compare a run's totals with the thresholds."""
    result = Result(total, list(endpoints), thresholds)
    if total.requests == 0:
        result.violations.append("no request was made")
        return result
    if total.p95_ms > thresholds.max_p95_ms:
        result.violations.append(f"p95 latency {total.p95_ms:.0f} ms > {thresholds.max_p95_ms:g} ms")
    if total.failure_ratio > thresholds.max_failure_ratio:
        result.violations.append(
            f"failure ratio {total.failure_ratio:.2%} > {thresholds.max_failure_ratio:.2%} "
            f"({total.failures} of {total.requests} requests failed)"
        )
    if total.rps < thresholds.min_rps:
        result.violations.append(f"throughput {total.rps:.2f} req/s < {thresholds.min_rps:g} req/s")
    return result


# ----------------------------------------------------------------------------------------------------------
# reading statistics


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else 0.0
    except ValueError:
        return 0.0


def stats_csv(location: str | os.PathLike[str]) -> Path:
    """The `*_stats.csv` of a run: a results folder (the one such file in it), or the `--csv` prefix."""
    path = Path(location)
    if path.is_dir():
        found = sorted(path.glob("*_stats.csv"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected one *_stats.csv in {path}, found {len(found)}")
        return found[0]
    if path.name.endswith("_stats.csv"):
        return path
    return path.with_name(path.name + "_stats.csv")


def read_csv(location: str | os.PathLike[str]) -> tuple[Endpoint, list[Endpoint]]:
    """The Aggregated row and the per-request rows of Locust's `*_stats.csv`."""
    path = stats_csv(location)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    endpoints = [
        Endpoint(
            method=row.get("Type") or "",
            name=row.get("Name") or "",
            requests=int(_number(row.get("Request Count"))),
            failures=int(_number(row.get("Failure Count"))),
            median_ms=_number(row.get("Median Response Time")),
            p95_ms=_number(row.get("95%")),
            p99_ms=_number(row.get("99%")),
            max_ms=_number(row.get("Max Response Time")),
            rps=_number(row.get("Requests/s")),
        )
        for row in rows
    ]
    totals = [e for e in endpoints if e.name == AGGREGATED]
    if not totals:
        raise ValueError(f"{path} has no {AGGREGATED} row")
    return totals[-1], [e for e in endpoints if e.name != AGGREGATED]


def from_stats(stats: Any) -> tuple[Endpoint, list[Endpoint]]:
    """The same numbers from Locust's live `RequestStats` (as the CSV export computes them)."""

    def endpoint(entry: Any) -> Endpoint:
        timed = entry.num_requests - entry.num_none_requests
        return Endpoint(
            method=entry.method or "",
            name=entry.name,
            requests=entry.num_requests,
            failures=entry.num_failures,
            median_ms=float(entry.median_response_time or 0),
            p95_ms=float(entry.get_response_time_percentile(0.95) or 0) if timed else 0.0,
            p99_ms=float(entry.get_response_time_percentile(0.99) or 0) if timed else 0.0,
            max_ms=float(entry.max_response_time or 0),
            rps=float(entry.total_rps),
        )

    entries = sorted(stats.entries.values(), key=lambda e: (e.name, e.method or ""))
    return endpoint(stats.total), [endpoint(e) for e in entries]


# ----------------------------------------------------------------------------------------------------------
# the summary


def format_summary(result: Result, extra: dict[str, Any] | None = None) -> str:
    """A short human summary: per-request lines, the totals, the scenario and the verdict."""
    lines = ["", "=== load test summary ==="]
    header = f"{'request':<44} {'reqs':>8} {'fails':>6} {'med ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/s':>8}"
    lines.append(header)
    for e in [*result.endpoints, result.total]:
        name = f"{e.method} {e.name}".strip()[:44]
        lines.append(
            f"{name:<44} {e.requests:>8} {e.failures:>6} {e.median_ms:>7.0f} {e.p95_ms:>7.0f} {e.p99_ms:>7.0f} "
            f"{e.rps:>8.2f}"
        )
    extra = extra or {}
    scenario = extra.get("scenario") or {}
    if scenario:
        lines.append(f"scenario: {scenario.get('scenario')}  {scenario.get('stop_reason') or ''}".rstrip())
        point = scenario.get("breaking_point")
        if point:
            lines.append(
                f"breaking point: {point['users']} users, {point['rps']:.1f} req/s "
                f"(p95 {point['p95_ms']} ms, failure ratio {point['failure_ratio']:.2%})"
            )
        capacity = scenario.get("capacity")
        if scenario.get("scenario") == "stress" and capacity:
            lines.append(f"last good step: {capacity['users']} users, {capacity['rps']:.1f} req/s")
        for w in scenario.get("windows") or []:
            partial = " (partial)" if w["partial"] else ""
            lines.append(
                f"soak window {w['index']}: {w['seconds']:g} s, {w['requests']} reqs, {w['failures']} fails, "
                f"{w['rps']:.1f} req/s, p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms{partial}"
            )
    if extra.get("workers"):
        reported = ", ".join(f"{w['id']}: {w['requests']} reqs" for w in extra["workers"])
        lines.append(f"workers reported: {len(extra['workers'])} ({reported})")
    t = result.thresholds
    lines.append(
        f"SLO: p95 <= {t.max_p95_ms:g} ms, failure ratio <= {t.max_failure_ratio:.2%}, "
        f"throughput >= {t.min_rps:g} req/s"
    )
    if result.passed:
        lines.append("SLO check: PASSED")
    else:
        lines.extend(["SLO check: FAILED", *(f"  - {v}" for v in result.violations)])
    return "\n".join(lines)


def add_threshold_arguments(parser: Any, prefix: str = "", env: bool = False) -> None:
    """The three threshold options (Locust's parser takes env_var=, argparse does not)."""
    defaults = Thresholds.from_env()
    options = (
        ("max-p95-ms", "LOADTEST_SLO_P95_MS", defaults.max_p95_ms, "SLO: largest acceptable p95, ms"),
        ("max-failure-ratio", "LOADTEST_SLO_MAX_FAILURE_RATIO", defaults.max_failure_ratio, "SLO: largest failed/all"),
        ("min-rps", "LOADTEST_SLO_MIN_RPS", defaults.min_rps, "SLO: smallest acceptable requests per second"),
    )
    for name, variable, default, text in options:
        extra = {"env_var": variable} if env else {}
        parser.add_argument(f"--{prefix}{name}", type=float, default=default, help=f"{text} ({variable})", **extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Check a finished run's CSV against the thresholds; print the summary; return the exit code."""
    parser = argparse.ArgumentParser(description="SLO check of a Locust run's CSV statistics")
    parser.add_argument("run", help="the results folder of a run, or its --csv prefix")
    add_threshold_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead")
    args = parser.parse_args(argv)
    try:
        total, endpoints = read_csv(args.run)
    except (OSError, ValueError) as error:
        print(f"SLO check: no statistics to check ({error})", file=sys.stderr)
        return EXIT_NO_DATA
    thresholds = Thresholds(args.max_p95_ms, args.max_failure_ratio, args.min_rps)
    result = check(total, endpoints, thresholds)
    extra: dict[str, Any] = {}
    summary_file = stats_csv(args.run).with_name("summary.json")
    if summary_file.is_file():
        saved = json.loads(summary_file.read_text())
        extra = {"scenario": saved.get("scenario"), "workers": saved.get("workers")}
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_summary(result, extra))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
