"""/predict's tail during a recomputation of the live figures, in a real service (issue 22's Performance target).

`.venv/bin/python -m bench.recompute_serving [--rows 1000000] [--rounds 3] [--rate 200] [--log PATH]` writes (or
reuses, `--log`) a SQLite prediction log holding `rows` labelled predictions of two versions in the last 30 days and
as many 30 to 90 days old (bench/live_recompute.py's), then for each placement of the computing child:

- `inherit`: READMISSION_MONITOR_CPUS unset: the child runs on the worker's core (SCHED_IDLE);
- `pinned`: READMISSION_MONITOR_CPUS=LOAD_CORE: the child runs on the other core;

starts our service (`bentoml serve`, one worker, pinned to SERVER_CORE, READMISSION_MONITOR_SECONDS=1, its rest set by
bench/servers/recompute_app.py so a recomputation can follow each request for one) and drives single-row
`/predict` at `rate` requests a second from h2load (4 HTTP/1.1 connections, pinned to LOAD_CORE, each request's start
and duration logged). Each round: `quiet` seconds without a recomputation, then one outcome sent (`POST /feedback`:
the labelled rows changed), which the lease holder recomputes in its child. A sampler (every 20 ms) records when the
child lives and the worker's CPU time (its own, /proc/PID/stat utime + stime: the child's is not in it).

Per round: /predict's p99 over the requests started while the child lived and over those of the quiet window before
it; the worker's CPU seconds over the recomputation less what serving took at the quiet window's rate; the child's
CPU seconds (the worker's cutime + cstime). Printed per round, and the median of the rounds per placement.

`--spin` keeps the child's core busy at the lowest priority (a shell loop under `chrt -i 0`) through each quiet
window, as the child keeps it after: on this virtual machine an idle core wakes more slowly than a busy one, so
without it the windows during a recomputation (a busy core) answer faster than the quiet ones (an idle core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench.contenders import server_ours
from bench.live_recompute import build
from bench.processes import LOAD_CORE, SERVER_CORE, Running
from bento.features import EXAMPLE_PATIENT
from bento.predictionlog.sqlite import SQLiteStore
from loadtest.cli import free_port

CHILD = b"bento.monitoring.live_compute"
WORKER = b"_bentoml_impl.worker.service"
HZ = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.02
CONNECTIONS = 4
SPIN = ("sh", "-c", "while :; do :; done")  # a busy loop


@dataclass
class Sample:
    """One reading of the sampler."""

    at: float  # time.time()
    worker_ticks: int  # the worker's own CPU (utime + stime)
    child_ticks: int  # its children's that it waited for (cutime + cstime)
    child: bool  # the computing child is alive


def stat_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of a process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def command_line(pid: int) -> bytes:
    """A process's command line (NUL-separated), empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children(pid: int) -> list[int]:
    """The children of every thread of `pid` (the child is the live-performance thread's, not the main thread's)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


class Sampler:
    """The worker's CPU time and whether its computing child lives, every SAMPLE_SECONDS, in a thread."""

    def __init__(self, worker: int) -> None:
        self.worker, self.samples = worker, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            own, waited = stat_ticks(self.worker)
            child = any(CHILD in command_line(pid) for pid in children(self.worker))
            self.samples.append(Sample(time.time(), own, waited, child))
            self._stop.wait(SAMPLE_SECONDS)

    def child_alive(self) -> bool:
        """Whether the child lived at the last reading."""
        return bool(self.samples) and self.samples[-1].child

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def worker_of(running: Running) -> int:
    """The pid of the service's one worker."""
    workers = [pid for pid in running.pids() if WORKER in command_line(pid)]
    if len(workers) != 1:
        raise RuntimeError(f"expected one worker, found {workers}")
    return workers[0]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until true, or raise naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def outcome_sent(client: httpx.Client) -> None:
    """One prediction made and its outcome sent once the log holds it: the labelled rows changed."""
    prediction_id = client.post("/predict", json=EXAMPLE_PATIENT).json()["prediction_id"]
    body = [{"prediction_id": prediction_id, "readmitted_within_30_days": True}]
    wait_for(lambda: client.post("/feedback", json=body).status_code == 200, 30, "the prediction in the log")


def p99_ms(latency_us: np.ndarray) -> float:
    """The 99th percentile of durations in microseconds, in milliseconds."""
    return float(np.percentile(latency_us, 99)) / 1000 if len(latency_us) else float("nan")


def placement(
    name: str, log: Path, work: Path, rounds: int, rate: int, quiet: float, tail: float, spin: bool
) -> list[dict[str, float]]:
    """One service run: `rounds` quiet windows, each followed by a recomputation; the figures of each round. `spin`:
    the child's core kept busy at the lowest priority through each quiet window."""
    port = free_port()
    server = server_ours(port, work / name, venv="project")
    server.command[server.command.index("bento.service:ReadmissionService")] = (
        "bench.servers.recompute_app:ReadmissionService"
    )
    server.env |= {"READMISSION_PREDICTION_LOG": str(log), "READMISSION_MONITOR_SECONDS": "1", "BENCH_CPU_SHARE": "1"}
    if name == "pinned":
        server.env["READMISSION_MONITOR_CPUS"] = LOAD_CORE
    core = (LOAD_CORE if name == "pinned" else SERVER_CORE) if spin else None
    (work / name).mkdir(parents=True, exist_ok=True)
    running, sampler, rounds_done = Running(server, port, work / name / "service.log"), None, []
    try:
        running.wait_ready()
        sampler = Sampler(worker_of(running))
        with httpx.Client(base_url=running.url(""), timeout=30) as client:
            # the first computation (a new holder) and its rest
            wait_for(lambda: client.get("/performance").json()["computed_at"] is not None, 600, "the first figures")
            wait_for(lambda: not sampler.child_alive(), 600, "the first child's end")
            time.sleep(2)  # its rest
            body = work / "predict.json"
            body.write_text(json.dumps(EXAMPLE_PATIENT))
            for i in range(rounds):
                rounds_done.append(_one_round(client, sampler, running, body, work / name / f"h2load-{i}.log", rate,
                                              quiet, tail, core))  # fmt: skip
    finally:
        if sampler is not None:
            sampler.stop()
        running.stop()
    return [_round(sampler.samples, *done) for done in rounds_done]


def _one_round(
    client: httpx.Client,
    sampler: Sampler,
    running: Running,
    body: Path,
    requests: Path,
    rate: int,
    quiet: float,
    tail: float,
    spin: str | None,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """h2load for `quiet` + `tail` seconds, a recomputation asked for after `quiet`: the quiet window's start, when
    the outcome was sent, each request's start (s) and duration (us). `spin`: a core kept busy at the lowest priority
    through the quiet window, as the child keeps it after."""
    spinner = None if spin is None else subprocess.Popen(["chrt", "-i", "0", "taskset", "-c", spin, *SPIN])
    load = subprocess.Popen(
        ["taskset", "-c", LOAD_CORE, "h2load", "--h1", "-c", str(CONNECTIONS), "--rps", str(rate // CONNECTIONS),
         "-D", str(round(quiet + tail)), "-d", str(body), "-H", "content-type: application/json",
         f"--log-file={requests}", running.url("/predict")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    quiet_from = time.time() + 2  # connections made
    time.sleep(quiet)
    if spinner is not None:
        spinner.kill()
        spinner.wait()
    triggered = time.time()
    outcome_sent(client)
    wait_for(lambda: any(s.child and s.at > triggered for s in sampler.samples), 60, "the child")
    wait_for(lambda: not sampler.child_alive(), tail, "the child's end before the load's")
    output, _ = load.communicate(timeout=quiet + tail + 60)
    if load.returncode != 0 or "status codes:" not in output:
        raise RuntimeError(f"h2load: {output[-800:]}")
    started, status, latency = np.loadtxt(requests, dtype=np.float64, unpack=True, ndmin=2)
    if np.any(status != 200):
        raise RuntimeError(f"{int(np.sum(status != 200))} answers other than 200")
    return quiet_from, triggered, started / 1e6, latency


def _round(
    samples: list[Sample], quiet_from: float, triggered: float, started: np.ndarray, latency: np.ndarray
) -> dict[str, float]:
    """The figures of one round from the samples and the requests."""
    after = [s for s in samples if s.at >= triggered]
    first = next(i for i, s in enumerate(after) if s.child)
    last = next(i for i in range(first, len(after)) if not after[i].child) - 1
    child_from, child_to = after[first].at - SAMPLE_SECONDS, after[last].at + SAMPLE_SECONDS
    quiet = [s for s in samples if quiet_from <= s.at <= triggered]
    quiet_rate = (quiet[-1].worker_ticks - quiet[0].worker_ticks) / HZ / (quiet[-1].at - quiet[0].at)
    # the worker's part: from the sample before the child to one refresh after it (reading the stored figures)
    span = [s for s in samples if after[first].at - 1.0 <= s.at <= child_to + 1.0]
    worker = (span[-1].worker_ticks - span[0].worker_ticks) / HZ - quiet_rate * (span[-1].at - span[0].at)
    during = latency[(started >= child_from) & (started <= child_to)]
    before = latency[(started >= quiet_from) & (started < triggered)]
    return {
        "child_seconds": child_to - child_from,
        "child_cpu": (span[-1].child_ticks - span[0].child_ticks) / HZ,
        "worker_cpu": worker,
        "quiet_p99_ms": p99_ms(before),
        "during_p99_ms": p99_ms(during),
        "ratio": p99_ms(during) / p99_ms(before),
        "requests_during": len(during),
        "requests_quiet": len(before),
    }


def main() -> None:
    """Write (or reuse) the log, run each placement, print the rounds and their medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="labelled rows in the 30-day window (at least)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=200, help="single-row /predict requests a second")
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds without a recomputation before each")
    parser.add_argument("--tail", type=float, default=90.0, help="seconds of load after asking for one (it ends in)")
    parser.add_argument("--log", type=Path, default=None, help="reuse (or write) the SQLite log here")
    parser.add_argument("--placements", default="inherit,pinned")
    parser.add_argument(
        "--spin", action="store_true", help="keep the child's core busy at the lowest priority in the quiet windows"
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # this harness (the sampler) off the server's core
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        log = args.log or work / "log.db"
        if not log.exists():
            started = time.perf_counter()
            store = SQLiteStore(log)
            build(store, args.rows, 2, time.time())
            store.close()
            print(f"log: {2 * args.rows:,} labelled rows written in {time.perf_counter() - started:.0f} s", flush=True)
        for name in args.placements.split(","):
            rounds = placement(name, log, work, args.rounds, args.rate, args.quiet, args.tail, args.spin)
            for i, figures in enumerate(rounds):
                shown = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
                print(f"{name} round {i + 1}: {shown}", flush=True)
            medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
            print(f"{name} median: " + "  ".join(f"{k} {v:.3f}" for k, v in medians.items()), flush=True)


if __name__ == "__main__":
    main()
