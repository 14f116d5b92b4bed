"""The load generators: wrk over HTTP, h2load over gRPC, pinned to LOAD_CORE; their numbers as a Result's."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from bench.inputs import BENCH, GRPC_METHOD
from bench.processes import LOAD_CORE


def wrk(
    url: str, body_file: Path, connections: int, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One wrk run on LOAD_CORE; the summary its Lua `done()` hook printed. `headers`: extra request headers."""
    command = [
        "taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency", "-s", str(BENCH / "post.lua"), url, "--", str(body_file),
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
    stats = json.loads(line.split(" ", 1)[1])
    stats["stdout"] = done.stdout
    return stats


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def _us(text: str) -> float:
    """h2load's durations ("812us", "3.40ms", "10.00s") in microseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise RuntimeError(f"h2load: cannot read the duration {text!r}")
    return float(match[1]) * _UNITS_US[match[2]]


def parse_h2load(text: str) -> dict[str, Any]:
    """The numbers of h2load's summary: duration, request counts, status classes, bytes, request times."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text)
        if match is None:
            raise RuntimeError(f"h2load output without {pattern!r}: {text[-800:]}")
        return match

    requests = find(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout"
    )
    status = find(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    traffic = find(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data")
    times = find(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")
    names = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    return {
        "duration_us": _us(find(r"finished in (\S+?),")[1]),
        **{name: int(v) for name, v in zip(names, requests.groups(), strict=True)},
        **{f"status_{c}xx": int(v) for c, v in zip("2345", status.groups(), strict=True)},
        "bytes_total": int(traffic[1]),
        "bytes_headers": int(traffic[2]),
        "bytes_data": int(traffic[3]),
        **{f"{k}_us": _us(v) for k, v in zip(("min", "max", "mean", "sd"), times.groups(), strict=True)},
    }


def h2load(
    port: int, frame_file: Path, clients: int, streams: int, seconds: float, log: Path | None = None
) -> dict[str, Any]:
    """One h2load run on LOAD_CORE posting the gRPC frame to ModelInfer: `clients` HTTP/2 connections with
    `streams` concurrent streams each. The summary (`parse_h2load`); with `log`, also p50/p90/p99 of the
    per-request times of h2load's `--log-file` (start, status, microseconds to the end of the response)."""
    command = [
        "taskset", "-c", LOAD_CORE, "h2load", "-D", str(max(1, round(seconds))), "-c", str(clients),
        "-m", str(streams), "-d", str(frame_file), "-H", "content-type: application/grpc", "-H", "te: trailers",
        *(["--log-file", str(log)] if log else []), f"http://127.0.0.1:{port}{GRPC_METHOD}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
    stats = parse_h2load(done.stdout)
    stats["stdout"] = done.stdout
    if log is not None:
        times = np.loadtxt(log, dtype=np.float64, usecols=2, ndmin=1) if log.stat().st_size else np.zeros(0)
        stats["logged"] = len(times)
        if len(times):
            for q in (50, 90, 99):
                stats[f"p{q}_us"] = float(np.percentile(times, q))
            stats["max_us"] = float(times.max())
    return stats


def wrk_counts(stats: dict[str, Any]) -> dict[str, Any]:
    """A wrk summary as the Result's numbers."""
    return {
        "seconds": stats["duration_us"] / 1e6,
        "requests": stats["requests"],
        **{key: stats[key] for key in ("p50_us", "p90_us", "p99_us", "max_us")},
        "non_2xx": stats["status"],
        "socket_errors": stats["connect"] + stats["read"] + stats["write"] + stats["timeout"],
        "wrong_size": 0,
    }


def h2load_counts(stats: dict[str, Any], size: int) -> dict[str, Any]:
    """An h2load summary as the Result's numbers; `size`: the DATA bytes of one correct response.

    h2load counts a gRPC error as a success (HTTP 200, the gRPC status is in the trailers), but an error
    comes without the response message: DATA bytes other than `size` times the responses mean errors. Their
    number, at least 1 when the bytes do not add up, is `wrong_size`; they are not counted as requests (unlike
    wrk's non-2xx answers, which are). Latencies: of the per-request log, else h2load's mean."""
    responses = stats["succeeded"]
    missing = abs(responses * size - stats["bytes_data"])
    wrong = 0 if missing == 0 else min(responses, max(1, round(missing / size)))
    latency = {key: stats.get(key, stats["mean_us"]) for key in ("p50_us", "p90_us", "p99_us")}
    return {
        "seconds": stats["duration_us"] / 1e6,
        "requests": responses - wrong,
        **latency,
        "max_us": stats["max_us"],
        "non_2xx": stats["status_3xx"] + stats["status_4xx"] + stats["status_5xx"],
        "socket_errors": stats["errored"] + stats["timeout"],
        "wrong_size": wrong,
    }
