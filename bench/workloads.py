"""What is measured on each server, and one round of one server: start, check, run every workload, stop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench import pair
from bench.checks import check, check_grpc
from bench.contenders import Server
from bench.drivers import h2load, h2load_counts, wrk, wrk_counts
from bench.inputs import BATCH_ROWS, BINARY_BODY, GRPC_1, GRPC_BATCH_BODY, V2_1, V2_BATCH_BODY, Body, body_key
from bench.processes import MemorySampler, Running, status_kb


@dataclass
class Result:
    """One workload on one server: one round's run, or (round 0) the summary over `rounds` rounds."""

    server: str
    label: str
    workload: str
    rows_per_request: int
    connections: int
    seconds: float
    requests: int
    req_s: float
    rows_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    socket_errors: int
    peak_rss_mb: float
    hwm_sum_mb: float
    server_cpu_pct: float
    other_on_core_pct: float
    round: int = 0
    rounds: int = 1
    req_s_spread_pct: float = 0.0  # summary: (max - min) / median of req/s over the rounds
    cpu_us: float = 0.0  # PAIRED only: CPU µs a request of the server's process tree
    streams: int = 1  # concurrent requests per connection (h2load's -m; wrk: 1)
    wrong_size: int = 0  # gRPC: responses whose size is not that of the checked answer (counted in errors)


V2_1_8, V2_1_64 = "v2 1 row, 8 conn", "v2 1 row, 64 conn"
V2_BATCH = f"v2 {BATCH_ROWS:,} rows, 8 conn"
V2_BINARY = f"v2 {BATCH_ROWS:,} rows binary, 8 conn"
PREDICT = "/predict 1 row, 8 conn"
GRPC_1_8 = "grpc 1 row, 8 streams"
GRPC_BATCH = f"grpc {BATCH_ROWS:,} rows raw, 8 streams"
# single-row V2 on two servers served (both on the server core) and driven at once (bench/pair.py): the CPU a request
# of each under the same machine state, for differences of a few per cent that rounds of one server at a time (±10%)
# cannot show
PAIRED = "v2 1 row, 8 conn, two served at once"


class Workload(NamedTuple):
    """A wrk run (which body, how many connections, on which route) or an h2load run over gRPC (`grpc`:
    `connections` HTTP/2 connections with `streams` concurrent streams each, to ModelInfer)."""

    name: str
    body: str  # a key of the bodies (gRPC: without the output name, see body_key)
    connections: int
    route: str | None = None  # a key of Server.extra; None: the V2 infer route
    streams: int = 1
    grpc: bool = False

    def runs_on(self, server: Server) -> bool:
        """Whether `server` gets this workload (its route exists; binary only where the server takes it;
        gRPC where it serves gRPC)."""
        if self.grpc:
            return server.grpc_port is not None
        if self.route is not None and self.route not in server.extra:
            return False
        return self.body != BINARY_BODY or server.binary


# gRPC: one connection with 8 concurrent streams, as one gRPC channel multiplexes a client's calls.
WORKLOADS = [
    Workload(V2_1_8, V2_1, 8),
    Workload(V2_1_64, V2_1, 64),
    Workload(V2_BATCH, V2_BATCH_BODY, 8),
    Workload(V2_BINARY, BINARY_BODY, 8),
    Workload(PREDICT, "predict", 8, "predict"),
    Workload(GRPC_1_8, GRPC_1, 1, streams=8, grpc=True),
    Workload(GRPC_BATCH, GRPC_BATCH_BODY, 1, streams=8, grpc=True),
]


def bench_server(
    server: Server,
    port: int,
    files: dict[str, Path],
    bodies: dict[str, Body],
    reference: np.ndarray,
    args: Any,
    round_no: int = 1,
    grpc_load: bool = True,
) -> tuple[list[Result], dict[str, Any]]:
    """Start, check, load and stop one server (one round); `grpc_load`: check and run the gRPC workloads."""
    running = Running(server, port, args.results / f"server-{server.name}.log")
    results, info = [], {}
    try:
        info["startup_s"] = round(running.wait_ready(), 2)
        info["max_abs_diff"], info["binary_probe"] = check(running, bodies, reference)
        if server.grpc_port is not None and grpc_load:
            grpc_diff, info["grpc_response_bytes"] = check_grpc(running, bodies, reference)
            info["max_abs_diff"] |= grpc_diff
        print(f"  ready in {info['startup_s']} s; answers match (max |diff| {max(info['max_abs_diff'].values()):.2g})")
        if not server.binary:
            print(f"  binary extension: {info['binary_probe']}")
        for workload in WORKLOADS:
            if not workload.runs_on(server) or (workload.grpc and not grpc_load):
                continue
            key = body_key(workload.body, server.grpc_output)
            body, file = bodies[key], files[key]
            if workload.grpc:
                size = info["grpc_response_bytes"][workload.body]
                log = args.results / f"h2load-{server.name}.log"
                if args.warmup > 0:
                    h2load(server.grpc_port or 0, file, workload.connections, workload.streams, args.warmup)
                with MemorySampler(running) as memory:
                    stats = h2load(
                        server.grpc_port or 0, file, workload.connections, workload.streams, args.duration, log
                    )
                counts = h2load_counts(stats, size)
                log.unlink(missing_ok=True)
            else:
                url = running.url(server.extra[workload.route] if workload.route else server.infer_path)
                if args.warmup > 0:
                    wrk(url, file, workload.connections, args.warmup, body.headers)
                with MemorySampler(running) as memory:
                    counts = wrk_counts(wrk(url, file, workload.connections, args.duration, body.headers))
            hwm = sum(status_kb(pid, "VmHWM") for pid in running.pids())
            result = Result(
                server=server.name,
                label=server.label,
                workload=workload.name,
                connections=workload.connections,
                **counted(counts, body.rows),
                peak_rss_mb=memory.peak_kb / 1024,
                hwm_sum_mb=hwm / 1024,
                server_cpu_pct=memory.server_cpu_pct,
                other_on_core_pct=memory.other_on_core_pct,
                round=round_no,
                streams=workload.streams,
            )
            results.append(result)
            wrong = f" (wrong size {result.wrong_size})" if result.wrong_size else ""
            print(
                f"  {workload.name:<30} {result.req_s:9.1f} req/s {result.rows_s:10.0f} rows/s"
                f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}{wrong}"
                f"  peak {result.peak_rss_mb:.0f} MB  cpu {result.server_cpu_pct:.0f}%"
                f" (other on core {result.other_on_core_pct:.0f}%)",
                flush=True,
            )
    finally:
        running.stop()
    return results, info


def counted(counts: dict[str, Any], rows: int) -> dict[str, Any]:
    """A driver's counts (drivers.py's wrk_counts, h2load_counts) as the Result's fields, `rows` a request."""
    seconds = counts["seconds"]
    return {
        "rows_per_request": rows,
        "seconds": round(seconds, 2),
        "requests": counts["requests"],
        "req_s": counts["requests"] / seconds,
        "rows_s": counts["requests"] * rows / seconds,
        "p50_ms": counts["p50_us"] / 1000,
        "p90_ms": counts["p90_us"] / 1000,
        "p99_ms": counts["p99_us"] / 1000,
        "max_ms": counts["max_us"] / 1000,
        "errors": counts["non_2xx"] + counts["socket_errors"] + counts["wrong_size"],
        "non_2xx": counts["non_2xx"],
        "socket_errors": counts["socket_errors"],
        "wrong_size": counts["wrong_size"],
    }


def bench_paired(
    servers: dict[str, pair.Serve], work: Path, body: Path, duration: float, round_no: int
) -> list[Result]:
    """PAIRED on `servers` (one round): each one's result, with its CPU µs a request."""
    results = []
    for name, measured in pair.one_round(servers, work, body, duration).items():
        shared = counted(wrk_counts(measured.wrk), 1)
        result = Result(
            server=name,
            label=measured.label,
            workload=PAIRED,
            connections=pair.CONNECTIONS,
            **shared,
            peak_rss_mb=0.0,
            hwm_sum_mb=0.0,
            server_cpu_pct=measured.cpu_us * shared["req_s"] / 1e4,
            other_on_core_pct=0.0,
            round=round_no,
            cpu_us=measured.cpu_us,
        )
        results.append(result)
        print(f"  {name:<12} {result.req_s:9.1f} req/s  {result.cpu_us:7.1f} µs of CPU a request"
              f"  errors {result.errors}", flush=True)  # fmt: skip
    return results
