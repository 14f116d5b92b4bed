"""Profile our BentoML worker under load: where does a single-row V2 request spend its CPU?

    .venv/bin/python -m bench.profile_ours [--duration 10] [--rate 250] [--workload v2|predict] [--rows N]

Starts our service on core 0 (as bench/run.py does), drives it with wrk on core 1 (single-row V2 at 8
connections by default) and samples the busiest process of the service (the worker) with py-spy
(`pip install py-spy` into .venv). Writes bench/results/profile-ours.{txt,speedscope.json,collapsed}:
the hottest functions by own time and by inclusive time, as percentages of the CPU samples.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.checks import TOLERANCE, post, v2_probabilities
from bench.contenders import server_ours
from bench.drivers import wrk
from bench.inputs import RESULTS, ROOT, input_rows, model_file, v2_body
from bench.processes import Running, cpu_ticks
from loadtest.cli import free_port

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def busiest(running: Running) -> int:
    """The pid of the service's process that used the most CPU so far (the worker, not the supervisor)."""
    return max(running.pids(), key=cpu_ticks)


def short(frame: str) -> str:
    """'func (path/to/module.py:12)' -> 'func (module.py)' when grouped by function."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    if "site-packages" in parts:
        path = "/".join(parts[parts.index("site-packages") + 1 :])
    elif str(ROOT) in path:
        path = str(Path(path).relative_to(ROOT))
    else:
        path = "/".join(parts[-2:])
    return f"{name} ({path})"


def bucket(frame: str) -> str:
    """A coarse owner of a frame: which layer of the stack it belongs to."""
    f = frame.lower()
    rules = [
        ("opentelemetry", "OpenTelemetry"),
        ("prometheus", "prometheus_client"),
        ("bento/", "our code (bento/)"),
        ("xgboost", "xgboost"),
        ("numpy", "numpy"),
        ("bentoml", "BentoML"),
        ("_bentoml", "BentoML"),
        ("starlette", "Starlette"),
        ("uvicorn", "uvicorn"),
        ("httptools", "uvicorn"),
        ("uvloop", "uvloop/asyncio"),
        ("asyncio", "uvloop/asyncio"),
        ("logging", "logging"),
        ("json", "json"),
    ]
    return next((owner for key, owner in rules if key in f), "other")


# (label, substrings of which any in a stack's frames counts the sample): inclusive shares of the pieces
PIECES = [
    ("whole V2 handler (bento/v2/rest.py infer)", ["infer (bento/v2/rest.py"]),
    ("  JSON body parse (bento/http/parsing.py parse_json)", ["parse_json (bento/http/parsing.py"]),
    ("  V2 tensor decode (bento/v2/tensors.py decode_request)", ["decode_request (bento/v2/tensors.py"]),
    ("  matrix validation (bento/features/checks.py check_matrix)", ["check_matrix (bento/features/checks.py"]),
    ("  xgboost predict (Booster.inplace_predict)", ["inplace_predict ("]),
    ("  prediction metrics (bento/monitoring/metrics.py predictions)", ["predictions (bento/monitoring/metrics.py"]),
    ("  V2 response encode (bento/v2/tensors.py encode_response)", ["encode_response (bento/v2/tensors.py"]),
    ("sending the response (Starlette Response.__call__ and the send wrappers)", ["Response.__call__ (starlette/"]),
    ("our TrafficMiddleware (bento/server/app.py), incl. the route", ["TrafficMiddleware.__call__ ("]),
    ("OpenTelemetry (any frame)", ["opentelemetry"]),
    ("prometheus_client (any frame)", ["prometheus_client"]),
    ("logging (any frame)", ["(logging/"]),
    ("uvicorn protocol (httptools_impl)", ["httptools_impl.py"]),
]


def pieces(collapsed: Path) -> str:
    """Inclusive shares of the PIECES of a request in the collapsed stacks."""
    counts: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        total += int(count_text)
        stack = ";".join(short(frame) for frame in stack.split(";") if " (" in frame)
        for label, keys in PIECES:
            if any(key in stack for key in keys):
                counts[label] += int(count_text)
    if not total:
        return ""
    lines = ["", "inclusive share of named pieces (a sample counts once per piece):"]
    lines += [f"  {100 * counts[label] / total:5.1f}%  {label}" for label, _ in PIECES]
    return "\n".join(lines) + "\n"


def summarize(collapsed: Path, top: int) -> str:
    """Hottest functions by own and inclusive time, and own time by layer."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if " (" in f]  # drop the "process ..." / thread roots
        if not frames:
            continue
        total += count
        leaf = short(frames[-1])
        own[leaf] += count
        seen = set()
        for frame in frames:
            name = short(frame)
            if name not in seen:
                inclusive[name] += count
                seen.add(name)
        # a sample's layer: the innermost frame that is not stdlib glue
        layers[next((bucket(f) for f in reversed(frames) if bucket(f) != "other"), "other")] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples of the worker's Python stacks (idle excluded)", "", f"top {top} by own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", f"top {top} by inclusive time, below the server's entry frames (< 75%):"]
    below = [(name, n) for name, n in inclusive.most_common() if n < 0.75 * total][:top]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in below]
    lines += ["", "own time by layer (innermost non-stdlib frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in layers.most_common()]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Profile and summarize."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workload", choices=["v2", "predict"], default="v2")
    parser.add_argument("--rows", type=int, default=1, help="rows a V2 request (1,000: the large-request workload)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--summarize", type=Path, help="only summarize an existing .collapsed file")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize, args.top) + pieces(args.summarize))
        return 0
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} is missing: .venv/bin/pip install py-spy")
    RESULTS.mkdir(exist_ok=True)
    import numpy as np
    import xgboost as xgb

    rows, records, _ = input_rows(args.rows if args.workload == "v2" else 1)
    work = Path(tempfile.mkdtemp(prefix="readmission-profile-"))
    body = work / "body.json"
    if args.workload == "v2":
        body.write_bytes(v2_body(rows))
    else:
        body.write_text(json.dumps({k: v for k, v in records[0].items() if v is not None}))
    booster = xgb.Booster(model_file=str(model_file()))
    reference = booster.inplace_predict(rows, validate_features=False).astype(np.float64)

    port = free_port()
    server = server_ours(port, work)
    running = Running(server, port, RESULTS / "server-ours-profile.log")
    stem = RESULTS / f"profile-ours-{args.workload}{'' if args.rows == 1 else f'-{args.rows}'}"
    try:
        running.wait_ready()
        got = v2_probabilities(post(running.url(server.infer_path), v2_body(rows)))
        assert np.abs(np.asarray(got) - reference).max() <= TOLERANCE
        url = running.url(server.infer_path if args.workload == "v2" else "/predict")
        wrk(url, body, args.connections, 2)  # warm-up, and makes the worker the busiest process
        pid = busiest(running)
        stats: dict = {}
        load = threading.Thread(
            target=lambda: stats.update(wrk(url, body, args.connections, args.duration + 2)), daemon=True
        )
        load.start()
        time.sleep(1)
        # raw = collapsed stacks, what we summarize
        subprocess.run(
            [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(args.duration), "--rate", str(args.rate),
             "--full-filenames", "--format", "raw", "--output", str(stem) + ".collapsed", "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        load.join()
        # a second, shorter recording for a speedscope view (open in https://www.speedscope.app)
        load = threading.Thread(target=lambda: wrk(url, body, args.connections, 6), daemon=True)
        load.start()
        time.sleep(1)
        subprocess.run(
            [str(PY_SPY), "record", "--pid", str(pid), "--duration", "4", "--rate", str(args.rate),
             "--full-filenames", "--format", "speedscope", "--output", str(stem) + ".speedscope.json", "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        load.join()
    finally:
        running.stop()
        shutil.rmtree(work, ignore_errors=True)
    header = (
        f"py-spy record ({args.rate} Hz, {args.duration} s, --nonblocking) of our BentoML worker (pid {pid}) while wrk "
        f"drove {f'{args.rows}-row V2 infer' if args.workload == 'v2' else '/predict'} "
        f"at {args.connections} connections: "
        f"{stats.get('requests', 0) / max(stats.get('duration_us', 1) / 1e6, 1e-9):.0f} req/s under the profiler.\n"
    )
    collapsed = Path(str(stem) + ".collapsed")
    text = header + "\n" + summarize(collapsed, args.top) + pieces(collapsed)
    Path(str(stem) + ".txt").write_text(text)
    print(text)
    print(f"wrote {stem}.txt, .collapsed and .speedscope.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
