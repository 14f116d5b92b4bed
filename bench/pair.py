"""Two variants of our service at once: the CPU a single-row request costs each, for differences of a few per cent.

    .venv/bin/python -m bench.pair [--rounds 4] [--duration 6] [--log-rows 0] NAME=ENV NAME=ENV

e.g. `.venv/bin/python -m bench.pair on= off=READMISSION_PREDICTION_LOG=off` (what the prediction log costs). Each
variant is our service (bench/contenders.py's `server_ours`, as bench/run.py runs it) with its environment variables
(`NAME=` for none, `NAME=A=1,B=2` for several). Both serve at once on the server core and are driven at once from the
load core (single-row V2 at 8 connections, a wrk each), so the machine's state, which moves bench/run.py's rounds by
±10%, is the same for both; the CPU a request of each process tree is compared (2 s of warm-up, then `duration`), and
the median of the rounds' ratios printed (the first named over the second: above 1 costs more). Rounds alternate which
starts first. `--log-rows`: every variant starts from a copy of a SQLite log of that many predictions made a day ago
(bench/live_compute_memory.py's `write_log`, in calls of 1,000 rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bench import contenders
from bench.contenders import Server, server_ours
from bench.drivers import wrk
from bench.inputs import BENTOML_HOME, input_rows, v2_body
from bench.live_compute_memory import write_log
from bench.processes import Running
from bento.predictionlog.sqlite import SQLITE_FILE
from loadtest.cli import free_port

WARMUP_SECONDS = 2
CONNECTIONS = 8


def variant(text: str) -> tuple[str, dict[str, str]]:
    """`NAME=A=1,B=2` -> ("NAME", {"A": "1", "B": "2"}); `NAME=` -> ("NAME", {})."""
    name, _, assignments = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=ENV expected")
    pairs = [item.split("=", 1) for item in assignments.split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: each variable as VAR=VALUE")
    return name, dict(pairs)


class Measured(NamedTuple):
    """One server's drive of a round: wrk's summary and the CPU µs a request of its process tree."""

    label: str
    wrk: dict[str, Any]
    cpu_us: float


Serve = Callable[[int, Path], Server]  # a server on this port, its files (the prediction log) in this folder


def one_round(servers: dict[str, Serve], work: Path, body: Path, duration: float) -> dict[str, Measured]:
    """Serve the servers at once, each from its folder under `work`, and drive them at once (single-row V2 at
    CONNECTIONS connections, a wrk each, WARMUP_SECONDS then `duration`): each one's drive and CPU a request."""
    running: dict[str, tuple[Running, Server]] = {}
    try:
        for name, serve in servers.items():
            folder = work / name
            folder.mkdir(parents=True)
            port = free_port()
            server = serve(port, folder)
            running[name] = (Running(server, port, folder / "server.log"), server)
        for process, _ in running.values():
            process.wait_ready()
        urls = {name: process.url(server.infer_path) for name, (process, server) in running.items()}
        drive_all(urls, body, WARMUP_SECONDS)
        before = {name: process.cpu_ticks() for name, (process, _) in running.items()}
        results = drive_all(urls, body, duration)
        after = {name: process.cpu_ticks() for name, (process, _) in running.items()}
    finally:
        for process, _ in running.values():
            process.stop()
    tick = os.sysconf("SC_CLK_TCK")
    return {
        name: Measured(running[name][1].label, result, (after[name] - before[name]) / tick / result["requests"] * 1e6)
        for name, result in results.items()
    }


def variant_server(env: dict[str, str], seed: Path | None, args: argparse.Namespace) -> Serve:
    """Our service with `env`, starting from a copy of the log in `seed` where given."""

    def serve(port: int, folder: Path) -> Server:
        if seed is not None:
            shutil.copytree(seed, folder / "ours-home")
        server = server_ours(port, folder, args.bentoml_home, args.ours_venv)
        server.env.update(env)
        return server

    return serve


def drive_all(urls: dict[str, str], body: Path, seconds: float) -> dict[str, dict[str, Any]]:
    """A wrk run against each URL, all at once; their summaries by name."""
    results: dict[str, dict[str, Any]] = {}

    def drive(name: str) -> None:
        results[name] = wrk(urls[name], body, CONNECTIONS, seconds)

    drivers = [threading.Thread(target=drive, args=(name,)) for name in urls]
    for driver in drivers:
        driver.start()
    for driver in drivers:
        driver.join()
    if len(results) != len(urls):
        raise RuntimeError(f"wrk failed against {sorted(set(urls) - set(results))}")
    return results


def main() -> None:
    """Run the rounds, print each and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs=2, type=variant, metavar="NAME=ENV")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured a round, after 2 s of warm-up")
    parser.add_argument("--log-rows", type=int, default=0, help="predictions in the log every variant starts from")
    parser.add_argument("--bentoml-home", type=Path, default=BENTOML_HOME, help="BentoML store with the model")
    parser.add_argument("--ours-venv", choices=contenders.OURS_VENVS, default="shipped", help="as bench/run.py's")
    args = parser.parse_args()
    (first, _), (second, _) = args.variants
    if first == second:
        parser.error("the two variants need different names")
    rows, _, _ = input_rows(1)
    with tempfile.TemporaryDirectory(prefix="bench-pair-") as folder:
        work = Path(folder)
        (work / "body.json").write_bytes(v2_body(rows))
        seed = None
        if args.log_rows:
            seed = work / "seed"
            seed.mkdir()
            write_log(seed / SQLITE_FILE, args.log_rows, 1000).close()
        servers = {name: variant_server(env, seed, args) for name, env in args.variants}
        ratios = []
        for number in range(args.rounds):
            order = list(servers) if number % 2 == 0 else list(servers)[::-1]
            measured = one_round({name: servers[name] for name in order}, work / f"round-{number}",
                                 work / "body.json", args.duration)  # fmt: skip
            ratios.append(measured[first].cpu_us / measured[second].cpu_us)
            shown = "  ".join(
                f"{name} {m.cpu_us:.1f} µs a request ({m.wrk['requests'] / (m.wrk['duration_us'] / 1e6):,.0f} req/s)"
                for name, m in measured.items()
            )
            print(f"round {number + 1}: {shown}  ratio {ratios[-1]:.3f}", flush=True)
    print(f"{first} / {second}, CPU a single-row request: median {statistics.median(ratios):.3f} "
          f"(rounds {', '.join(f'{r:.3f}' for r in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
