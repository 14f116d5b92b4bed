"""Run one load-test scenario headless, locally or distributed, and exit with the SLO check's code.

    .venv/bin/python loadtest/run.py                                  # constant, 10 users, 60 s, 127.0.0.1:3000
    .venv/bin/python loadtest/run.py --scenario step --users 40 --duration 300
    .venv/bin/python loadtest/run.py --scenario stress --users 200 -- --stress-step-users 10 --stress-step-time 20
    .venv/bin/python loadtest/run.py --scenario soak --users 20 --duration 4h
    .venv/bin/python loadtest/run.py --workers 2                      # a master and 2 local workers

Writes into loadtest/results/<name>/ (default: <UTC timestamp>-<scenario>): Locust's CSV
(`locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv`, `locust_exceptions.csv`), the HTML
report `report.html`, `summary.json` (SLO verdict, per-request numbers, stress breaking point, workers) and
the logs. Prints a short summary at the end. Exit code: 0 when the SLO holds, 1 when violated, anything else
when Locust itself failed. Options after `--` go to Locust unchanged (SLO thresholds, stress bounds ...).
Every run is bounded: the scenario ends itself, the locustfile stops it at a hard limit, and this script
kills it if it still runs after that.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bento.settings import MODEL_NAME
from loadtest import encounters, shapes, slo
from loadtest.cli import duration_seconds, free_port, split_passthrough

LOADTEST = Path(__file__).resolve().parent

LOCUSTFILE = LOADTEST / "locustfile.py"
RESULTS = LOADTEST / "results"
GRACE = 90.0  # seconds past the hard limit before the processes are killed


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the ones passed through to Locust."""
    argv, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--host",
        default=os.environ.get("LOADTEST_HOST", "http://127.0.0.1:3000"),
        help="the service (default http://127.0.0.1:3000, env LOADTEST_HOST)",
    )
    parser.add_argument(
        "--scenario", choices=sorted(shapes.SCENARIOS), default=os.environ.get("LOADTEST_SCENARIO", "constant")
    )
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOADTEST_USERS", "10")))
    parser.add_argument("--spawn-rate", type=float, default=float(os.environ.get("LOADTEST_SPAWN_RATE", "5")))
    parser.add_argument(
        "--duration",
        type=duration_seconds,
        default=os.environ.get("LOADTEST_DURATION", "0"),
        help="90, 90s, 5m, 1h; 0: the default (constant 60 s, step 5 m, stress 10 m, soak 1 h)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("LOADTEST_WORKERS", "0")),
        help="0: one local process; N: a master and N local worker processes",
    )
    parser.add_argument("--v2-model", default=os.environ.get("READMISSION_V2_MODEL_NAME", MODEL_NAME))
    parser.add_argument("--name", default="", help="results folder name (default <UTC timestamp>-<scenario>)")
    parser.add_argument("--results", type=Path, default=Path(os.environ.get("LOADTEST_RESULTS", RESULTS)))
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=int(os.environ.get("LOADTEST_PROMETHEUS_PORT", "9646")),
        help="the master's /metrics port on 127.0.0.1 (0: off)",
    )
    parser.add_argument("--verbose", action="store_true", help="Locust's periodic stats on the console too")
    return parser.parse_args(argv), passthrough


def prepare_encounters(folder: Path) -> encounters.Encounters:
    """Load the encounter pool once; every Locust process then reads the same file quickly."""
    pool = encounters.load()
    if pool.path is None:
        path = encounters.write_records(pool.records, folder / "encounters.jsonl.gz")
        pool = encounters.Encounters(pool.records, pool.source, path)
    return pool


def _stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM (Locust writes its reports), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario; return the SLO exit code (or Locust's when it failed before the check)."""
    args, passthrough = parse(argv)
    name = args.name or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{args.scenario}"
    folder = (args.results / name).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pool = prepare_encounters(folder)
    print(f"encounters: {len(pool.records)} records from {pool.source}", flush=True)

    duration = args.duration or shapes.DEFAULT_DURATIONS[args.scenario]
    hard_limit = duration + 60
    common = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        args.host,
        "--v2-model",
        args.v2_model,
        "--encounters",
        str(pool.path),
    ]
    master = [
        *common,
        "--headless",
        "--scenario",
        args.scenario,
        "--scenario-users",
        str(args.users),
        "--scenario-spawn-rate",
        str(args.spawn_rate),
        "--scenario-duration",
        str(duration),
        "--hard-limit",
        str(hard_limit),
        "--prometheus-port",
        str(args.prometheus_port),
        "--csv",
        str(folder / "locust"),
        "--csv-full-history",
        "--html",
        str(folder / "report.html"),
        "--summary-file",
        str(folder / "summary.json"),
        "--logfile",
        str(folder / "locust.log"),
    ]
    if not args.verbose:
        master.append("--only-summary")
    workers: list[subprocess.Popen] = []
    logs: list = []
    if args.workers > 0:
        port = free_port()
        master += [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(args.workers),
            "--expect-workers-max-wait",
            "60",
        ]
        for index in range(args.workers):
            log = (folder / f"worker-{index}.log").open("wb")
            logs.append(log)
            command = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *passthrough]
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    master += passthrough
    (folder / "command.json").write_text(json.dumps({"master": master, "workers": args.workers}, indent=2) + "\n")
    print(f"running {args.scenario} against {args.host} for up to {duration:g} s; results in {folder}", flush=True)

    process = subprocess.Popen(master)
    try:
        code = process.wait(timeout=hard_limit + GRACE)
    except subprocess.TimeoutExpired:
        print(f"Locust still running {hard_limit + GRACE:g} s after start: stopping it", file=sys.stderr)
        _stop(process)
        code = process.returncode
    except KeyboardInterrupt:
        _stop(process)
        code = process.returncode
    finally:
        deadline = time.monotonic() + 20
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(worker)
        for log in logs:
            log.close()

    summary = folder / "summary.json"
    print(f"\nreports: {folder / 'report.html'}, {folder / 'locust_stats.csv'}, {summary}")
    if not summary.is_file():
        print(f"Locust ended (exit code {code}) without an SLO verdict; see {folder / 'locust.log'}", file=sys.stderr)
        return code if code else slo.EXIT_NO_DATA
    return code


if __name__ == "__main__":
    sys.exit(main())
