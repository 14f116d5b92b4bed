"""Benchmark our BentoML service against the servers a user would pick instead, on the same model.

    .venv/bin/python -m bench.run [--duration 10] [--warmup 2] [--quick] [--rounds 3] [--servers ours,mlserver,...]

Every server runs pinned to CPU core 0 (`taskset -c 0`), the load generator (wrk over HTTP, h2load over
gRPC) on core 1, both on 127.0.0.1 only. For each server: start it, wait until ready, check that one row and
1,000 rows (JSON, binary where the server takes the binary extension, and gRPC where it serves the Open
Inference Protocol over gRPC) get the reference probabilities (within 1e-5 of the booster in this process),
run the workloads, stop the whole process group. All servers run `--rounds` times,
interleaved; where ours and ours-nolog both run, each round ends with the two served and driven at once
(workloads.PAIRED, bench/pair.py: the prediction log's single-row cost as CPU a request, which rounds of one server at
a time cannot resolve). The report holds the medians over rounds, ratios of medians and the TARGETS with PASS/MISS.
Prints markdown tables; writes bench/results/latest.{json,md}. See bench/README.md.

The parts: inputs.py (the model, the rows, the request bodies), contenders.py (the servers and how each
starts), processes.py (a server pinned to its core, its memory and CPU), checks.py (the answers are right),
drivers.py (wrk and h2load), workloads.py (what is measured; one round of one server), report.py (medians,
ratios, targets, markdown); this file is the command line and the rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import contenders, pair, report
from bench.checks import TOLERANCE
from bench.inputs import (
    BATCH_ROWS,
    BENTOML_HOME,
    BINARY_BODY,
    GRPC_1,
    GRPC_BATCH_BODY,
    RESULTS,
    V2_1,
    V2_BATCH_BODY,
    Body,
    compiled_manifest,
    grpc_frame,
    input_rows,
    model_file,
    shown,
    v2_binary_body,
    v2_body,
)
from bench.processes import LOAD_CORE
from bench.workloads import PAIRED, V2_1_8, Result, bench_paired, bench_server
from loadtest.cli import free_port

PAIRED_SERVERS = ("ours", "ours-nolog")  # also served at once every round where both run: the log's single-row cost


def main() -> int:
    """Run the benchmark; 1 if a server failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured workload (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each workload (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 s warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="run every server this many times, interleaved (3)")
    parser.add_argument(
        "--servers",
        default="ours,mlserver,kserve,floor,floor-orjson,floor-compiled",
        help="comma-separated subset",
    )
    parser.add_argument(
        "--bentoml-home", type=Path, default=BENTOML_HOME, help="BentoML store with the model (.readmission/bentoml)"
    )
    parser.add_argument(
        "--ours-venv",
        choices=contenders.OURS_VENVS,
        default="shipped",
        help="ours from the image's packages only (shipped, default: made on first use) or the project's .venv",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the report and logs go (bench/results)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    grpc_load = shutil.which("h2load") is not None
    if not grpc_load:
        print(
            "warning: h2load is not installed (apt-get install -y nghttp2-client): no gRPC workloads", file=sys.stderr
        )
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 cores; server and load generator share one", file=sys.stderr)
    args.results.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CORE)})  # keep this harness (memory sampling) off the server's core
    started = time.monotonic()

    import xgboost as xgb

    model = model_file(args.bentoml_home)
    rows, records, source = input_rows(BATCH_ROWS)
    booster = xgb.Booster(model_file=str(model))
    booster.set_param({"nthread": 1})
    reference = booster.inplace_predict(rows, validate_features=False).astype(np.float64)
    predict_record = {k: v for k, v in records[0].items() if v is not None}
    binary, binary_headers = v2_binary_body(rows)
    bodies = {
        V2_1: Body(v2_body(rows[:1]), 1),
        V2_BATCH_BODY: Body(v2_body(rows), BATCH_ROWS),
        BINARY_BODY: Body(binary, BATCH_ROWS, binary_headers),
        "predict": Body(json.dumps(predict_record).encode(), 1),
    }
    for output in ("probability", "predict"):  # the output names the servers' gRPC requests ask for
        for key, count in ((GRPC_1, 1), (GRPC_BATCH_BODY, BATCH_ROWS)):
            bodies[f"{key}:{output}"] = Body(grpc_frame(rows[:count], output), count, grpc=True)
    work = Path(tempfile.mkdtemp(prefix="readmission-bench-"))
    files = {}
    for name, body in bodies.items():
        suffix = "grpc" if body.grpc else "bin" if body.headers else "json"
        files[name] = work / f"{name.replace(':', '-')}.{suffix}"
        files[name].write_bytes(body.data)
    print(
        f"model {shown(model)}; rows: {source}; bodies: 1 row {len(bodies[V2_1].data):,} B, "
        f"{BATCH_ROWS:,} rows {len(bodies[V2_BATCH_BODY].data):,} B JSON, "
        f"{len(bodies[BINARY_BODY].data):,} B binary, {len(bodies[GRPC_BATCH_BODY + ':probability'].data):,} B gRPC",
        flush=True,
    )

    factories: dict[str, pair.Serve] = {  # a server on a port, its files in a folder (the paired step: one each)
        "ours": lambda p, f: contenders.server_ours(p, f, args.bentoml_home, args.ours_venv),
        "ours-nolog": lambda p, f: contenders.server_ours_nolog(p, f, args.bentoml_home, args.ours_venv),
        "ours-noshadow": lambda p, f: contenders.server_ours_noshadow(p, f, args.bentoml_home, args.ours_venv),
        "mlserver": lambda p, f: contenders.server_mlserver(p, f, model),
        "kserve": lambda p, f: contenders.server_kserve(p, f, model),
        "floor": lambda p, f: contenders.server_floor(p, f, model),
        "floor-orjson": lambda p, f: contenders.server_floor_orjson(p, f, model),
        "floor-compiled": lambda p, f: contenders.server_floor_compiled(p, f, model),
    }
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in names:
        if name not in factories:
            sys.exit(f"unknown server {name!r}; choose from {', '.join(factories)}")
    raw: list[Result] = []
    meta: dict[str, Any] = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "ours_venv": args.ours_venv,
        "rows_source": source,
        "model": shown(model),
        "compiled": compiled_manifest(model),
        "tolerance": TOLERANCE,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "grpc_load": "h2load" if grpc_load else "none (h2load missing)",
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "servers": {},  # name -> per round: startup, largest differences, binary probe
        "binary_probe": {},
        "failures": {},  # name -> [{"round", "error"}]
    }
    unusable: set[str] = set()  # could not even be set up (venv): not retried
    stop = False
    for round_no in range(1, args.rounds + 1):
        for name in names:
            if name in unusable:
                continue
            print(f"{name} (round {round_no}/{args.rounds}):", flush=True)
            try:
                port = free_port()
                try:
                    server = factories[name](port, work)
                except (subprocess.SubprocessError, OSError, RuntimeError):
                    unusable.add(name)
                    raise
                server_results, info = bench_server(server, port, files, bodies, reference, args, round_no, grpc_load)
            except (RuntimeError, AssertionError, subprocess.SubprocessError, OSError) as error:
                print(f"  FAILED: {error}", file=sys.stderr, flush=True)
                meta["failures"].setdefault(name, []).append({"round": round_no, "error": str(error)})
                if isinstance(error, AssertionError):  # wrong answers: no point measuring anything
                    print("  wrong answers: the run stops", file=sys.stderr, flush=True)
                    stop = True
                    break
                continue
            raw.extend(server_results)
            meta["servers"].setdefault(name, []).append({"round": round_no, **info})
            meta["binary_probe"][name] = info["binary_probe"]
        if stop:
            break
        if set(PAIRED_SERVERS) <= set(names) - unusable:
            print(f"{' and '.join(PAIRED_SERVERS)}, {PAIRED} (round {round_no}/{args.rounds}):", flush=True)
            order = PAIRED_SERVERS if round_no % 2 else PAIRED_SERVERS[::-1]
            try:
                raw += bench_paired({name: factories[name] for name in order}, work / f"paired-{round_no}",
                                    files[V2_1], args.duration, round_no)  # fmt: skip
            except (RuntimeError, subprocess.SubprocessError, OSError) as error:
                print(f"  FAILED: {error}", file=sys.stderr, flush=True)
                meta["failures"].setdefault(PAIRED_SERVERS[0], []).append({"round": round_no, "error": str(error)})
    meta["versions"] = contenders.versions()
    single_row = report.value(report.medians(raw, names), report.Metric("ours", V2_1_8, "req_s"))
    meta["prediction_log"] = report.log_size(work / "ours-home", single_row)
    meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["wall_s"] = round(time.monotonic() - started, 1)
    shutil.rmtree(work, ignore_errors=True)

    summary = report.medians(raw, names)
    ratio_rows = report.ratios(summary)
    target_rows = report.evaluate(summary, meta["failures"])
    table = report.markdown(summary, ratio_rows, target_rows, meta)
    print()
    print(table)
    print(f"total {meta['wall_s']} s")
    (args.results / "latest.md").write_text(table)
    (args.results / "latest.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "results": [asdict(r) for r in summary],
                "ratios": ratio_rows,
                "targets": target_rows,
                "rounds": [asdict(r) for r in raw],
            },
            indent=2,
            default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v),
        )
        + "\n"
    )
    return 1 if meta["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
