"""A soak run with its verdict: steady mixed traffic for a long time, then three checks.

    .venv/bin/python loadtest/soak.py --host http://127.0.0.1:3000 --duration 10m --window 60
    make soak                                  # serves the built Bento on a free loopback port, runs this, stops it

Runs Locust's `soak` scenario through loadtest/run.py (every task of the locustfile: `/predict` clinical and
encoded, V2 infer one row and batches, V2 metadata) with `--users` users and their think time, a rate a
small machine sustains. Meanwhile it reads the service's resident memory (`readmission_process_resident_memory_bytes`,
the whole process tree) and CPU time from its Prometheus port (`--metrics`, READMISSION_METRICS_PORT) every
`--sample-every` seconds. Verdict:

    zero failures      no failed request over the whole run
    p99 stable         p99 of the last full window <= 1.5 x p99 of the first (the warm-up window)
    memory flat        resident memory at the end < 10% above its value at the end of the first window

With `--service-log`, also: no patient field value the run sent appears in that log (loadtest/logscan.py).
Writes `soak.json` beside Locust's results (loadtest/results/<name>/), prints a short summary.
Exit code: 0 when every check holds, 1 when one fails, 2 when the run produced no result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bento.settings import MODEL_NAME
from loadtest import logscan  # (not loadtest.run: it imports Locust, which monkey-patches this process)
from loadtest.cli import duration_seconds, split_passthrough, wait_ready

LOADTEST = Path(__file__).resolve().parent

RUN = LOADTEST / "run.py"
RESULTS = LOADTEST / "results"
MAX_P99_RATIO = 1.5
MAX_RSS_GROWTH_PERCENT = 10.0
RSS_METRIC = "readmission_process_resident_memory_bytes"
CPU_METRIC = "readmission_process_cpu_seconds_total"
EXIT_OK, EXIT_FAILED, EXIT_NO_RESULT = 0, 1, 2


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the ones passed to Locust unchanged (after `--`)."""
    argv, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("LOADTEST_HOST", "http://127.0.0.1:3000"))
    parser.add_argument(
        "--metrics", default="http://127.0.0.1:8082/metrics", help="the service's Prometheus /metrics (its own port)"
    )
    parser.add_argument("--duration", type=duration_seconds, default="10m", help="90, 10m, 1h (default 10m)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per measurement window (default 60)")
    parser.add_argument(
        "--users", type=int, default=20, help="users, each with a 0.5-1.5 s think time: about 1 req/s each (20)"
    )
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between memory samples (5)")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="wait this long for /readyz first")
    parser.add_argument("--service-log", type=Path, help="the service's log: check that no patient value is in it")
    parser.add_argument("--name", default="", help="results folder name (default <UTC timestamp>-soak)")
    parser.add_argument("--results", type=Path, default=Path(os.environ.get("LOADTEST_RESULTS", RESULTS)))
    parser.add_argument("--v2-model", default=os.environ.get("READMISSION_V2_MODEL_NAME", MODEL_NAME))
    args = parser.parse_args(argv)
    if args.duration < 2 * args.window:
        parser.error(f"--duration ({args.duration:g} s) must hold at least two windows of {args.window:g} s")
    return args, passthrough


def unlabelled_values(exposition: str) -> dict[str, float]:
    """Every unlabelled sample of a Prometheus text exposition, by sample name."""
    return {
        sample.name: float(sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if not sample.labels
    }


class Sampler(threading.Thread):
    """Reads the service's resident memory and CPU time from its /metrics every few seconds."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.url = url
        self.every = every
        self.samples: list[dict[str, float]] = []
        self.errors = 0
        self._halt = threading.Event()

    def sample(self, client: httpx.Client) -> None:
        """One sample (an unreachable service counts as an error, not a sample)."""
        try:
            values = unlabelled_values(client.get(self.url).text)
        except (httpx.HTTPError, ValueError):  # unreachable, or not an exposition
            self.errors += 1
            return
        rss, cpu = values.get(RSS_METRIC), values.get(CPU_METRIC)
        if rss is None:
            self.errors += 1
            return
        self.samples.append({"time": round(time.time(), 3), "rss_bytes": rss, "cpu_seconds": cpu or 0.0})

    def run(self) -> None:
        """Sample until stopped."""
        with httpx.Client(timeout=5) as client:
            while not self._halt.is_set():
                self.sample(client)
                self._halt.wait(self.every)
            self.sample(client)

    def stop(self) -> None:
        """Take a last sample and end."""
        self._halt.set()
        self.join(30)


def _nearest(samples: list[dict[str, float]], moment: float) -> dict[str, float] | None:
    return min(samples, key=lambda s: abs(s["time"] - moment)) if samples else None


def verdict(summary: dict[str, Any], samples: list[dict[str, float]]) -> dict[str, Any]:
    """The soak figures and the three checks, from Locust's summary.json and the memory samples."""
    windows = summary.get("scenario", {}).get("windows") or []
    full = [w for w in windows if not w["partial"]] or windows
    first, last = (full[0], full[-1]) if full else ({}, {})
    total = summary.get("total", {})
    requests, failures = int(total.get("requests", 0)), int(total.get("failures", 0))
    p99_first, p99_last = first.get("p99_ms"), last.get("p99_ms")
    ratio = p99_last / p99_first if p99_first and p99_last is not None else None
    warm = _nearest(samples, first["ended"]) if first else None
    end = _nearest(samples, last["ended"]) if last else None
    growth = (end["rss_bytes"] - warm["rss_bytes"]) / warm["rss_bytes"] * 100 if warm and end else None
    during = [s for s in samples if first and first["started"] <= s["time"] <= last["ended"]]
    cpu = (
        (during[-1]["cpu_seconds"] - during[0]["cpu_seconds"]) / (during[-1]["time"] - during[0]["time"])
        if len(during) > 1 and during[-1]["time"] > during[0]["time"]
        else None
    )
    traffic = {e["name"]: e["requests"] for e in summary.get("endpoints", [])}
    checks = {
        "zero_failures": {
            "passed": requests > 0 and failures == 0,
            "detail": f"{failures} of {requests} requests failed",
        },
        "p99_stable": {
            "passed": len(full) >= 2 and ratio is not None and ratio <= MAX_P99_RATIO,
            "detail": f"last window p99 {p99_last} ms / first {p99_first} ms = "
            + (f"{ratio:.2f}" if ratio is not None else "n/a")
            + f" (at most {MAX_P99_RATIO:g}; {len(full)} full windows)",
        },
        "memory_flat": {
            "passed": growth is not None and growth < MAX_RSS_GROWTH_PERCENT,
            "detail": (
                f"RSS {warm['rss_bytes'] / 2**20:.1f} MiB after warm-up -> {end['rss_bytes'] / 2**20:.1f} MiB "
                f"at the end: {growth:+.2f}% (below {MAX_RSS_GROWTH_PERCENT:g}%)"
                if growth is not None and warm and end
                else "no memory samples from /metrics"
            ),
        },
    }
    return {
        "duration_seconds": round(last["ended"] - first["started"], 1) if first else 0.0,
        "requests": requests,
        "failures": failures,
        "rps": total.get("rps"),
        "traffic": traffic,
        "mixed_traffic": any(n.startswith("/predict") for n in traffic) and any("/infer" in n for n in traffic),
        "windows": windows,
        "p99_ms_per_window": [w["p99_ms"] for w in windows],
        "p99_first_ms": p99_first,
        "p99_last_ms": p99_last,
        "p99_ratio": round(ratio, 3) if ratio is not None else None,
        "rss_warm_bytes": warm["rss_bytes"] if warm else None,
        "rss_end_bytes": end["rss_bytes"] if end else None,
        "rss_max_bytes": max((s["rss_bytes"] for s in during), default=None),
        "rss_growth_percent": round(growth, 2) if growth is not None else None,
        "service_cpu_cores": round(cpu, 3) if cpu is not None else None,
        "checks": checks,
    }


def format_report(result: dict[str, Any]) -> str:
    """A short human summary of a soak verdict."""
    lines = [
        "",
        "=== soak ===",
        f"{result['duration_seconds']:g} s, {result['requests']} requests ({result['rps'] or 0:.1f} req/s), "
        f"{result['failures']} failed; service CPU {result['service_cpu_cores']} cores",
        "p99 per window (ms): " + ", ".join(str(p) for p in result["p99_ms_per_window"]),
    ]
    for name, check in result["checks"].items():
        lines.append(f"{'PASS' if check['passed'] else 'FAIL'}  {name}: {check['detail']}")
    lines.append(f"soak verdict: {'PASSED' if result['passed'] else 'FAILED'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, write soak.json, print the summary; return 0 (passed), 1 (failed) or 2 (no result)."""
    args, passthrough = parse(argv)
    name = args.name or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-soak"
    folder = (args.results / name).resolve()
    try:
        wait_ready(args.host.rstrip("/") + "/readyz", args.ready_timeout)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return EXIT_NO_RESULT
    sampler = Sampler(args.metrics, args.sample_every)
    sampler.start()
    try:
        command = [
            sys.executable, str(RUN), "--host", args.host, "--scenario", "soak", "--users", str(args.users),
            "--duration", f"{args.duration:g}", "--v2-model", args.v2_model, "--name", name,
            "--results", str(args.results), "--prometheus-port", "0",
            "--", "--soak-window", f"{args.window:g}", *passthrough,
        ]  # fmt: skip
        code = subprocess.run(command, check=False).returncode  # run.py bounds the run (kills Locust if need be)
    finally:
        sampler.stop()
    summary_file = folder / "summary.json"
    if not summary_file.is_file():
        print(f"no summary from Locust (exit code {code}): no soak verdict", file=sys.stderr)
        return EXIT_NO_RESULT
    result = {
        "host": args.host,
        "users": args.users,
        "window_seconds": args.window,
        "locust_exit_code": code,
        **verdict(json.loads(summary_file.read_text()), sampler.samples),
        "sample_errors": sampler.errors,
        "samples": sampler.samples,
    }
    if args.service_log is not None:
        hits = logscan.scan_log(args.service_log, logscan.run_records(folder))
        result["checks"]["no_patient_values_in_log"] = {
            "passed": not hits,
            "detail": f"{len(hits)} lines of {args.service_log} hold a value the run sent"
            + (f", first: line {hits[0].line} {hits[0].value!r}" if hits else ""),
        }
    result["passed"] = all(check["passed"] for check in result["checks"].values())
    (folder / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(format_report(result))
    print(f"soak.json: {folder / 'soak.json'}")
    return EXIT_OK if result["passed"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
