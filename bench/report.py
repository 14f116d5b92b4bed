"""The report: medians over rounds, ratios, the targets with PASS/MISS, markdown."""

from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from bench.inputs import BATCH_ROWS
from bench.processes import LOAD_CORE, SERVER_CORE
from bench.workloads import (
    GRPC_1_8,
    GRPC_BATCH,
    PAIRED,
    PREDICT,
    V2_1_8,
    V2_1_64,
    V2_BATCH,
    V2_BINARY,
    WORKLOADS,
    Result,
)
from bento.predictionlog.sqlite import SQLITE_FILE


def medians(raw: list[Result], order: list[str]) -> list[Result]:
    """One row per server and workload over the rounds: medians of req/s, rows/s and latencies; errors,
    requests and seconds summed; peak memory and CPU taken by others the maximum; server CPU the median."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in raw:
        groups.setdefault((result.server, result.workload), []).append(result)
    workloads = [*(w.name for w in WORKLOADS), PAIRED]
    summary = []
    for _, runs in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), workloads.index(item[0][1]))):

        def median(key: str, runs: list[Result] = runs) -> float:
            return statistics.median(getattr(r, key) for r in runs)

        req_s = [r.req_s for r in runs]
        summary.append(
            replace(
                runs[0],
                round=0,
                rounds=len(runs),
                seconds=round(sum(r.seconds for r in runs), 2),
                requests=sum(r.requests for r in runs),
                req_s=median("req_s"),
                rows_s=median("rows_s"),
                p50_ms=median("p50_ms"),
                p90_ms=median("p90_ms"),
                p99_ms=median("p99_ms"),
                max_ms=max(r.max_ms for r in runs),
                errors=sum(r.errors for r in runs),
                non_2xx=sum(r.non_2xx for r in runs),
                socket_errors=sum(r.socket_errors for r in runs),
                wrong_size=sum(r.wrong_size for r in runs),
                peak_rss_mb=max(r.peak_rss_mb for r in runs),
                hwm_sum_mb=max(r.hwm_sum_mb for r in runs),
                server_cpu_pct=median("server_cpu_pct"),
                other_on_core_pct=max(r.other_on_core_pct for r in runs),
                req_s_spread_pct=100 * (max(req_s) - min(req_s)) / median("req_s") if median("req_s") else 0.0,
                cpu_us=median("cpu_us"),
            )
        )
    return summary


ALL = "*"  # Metric.workload: summed over all the server's workloads
PEAK = "peak"  # Metric.workload: the largest over the workloads MLServer runs too (SHARED)
SHARED = (V2_1_8, V2_1_64, V2_BATCH, GRPC_1_8, GRPC_BATCH)  # every server's workloads: no binary REST, no /predict


class Metric(NamedTuple):
    """One number of the summary: a field of one server's result on one workload."""

    server: str
    workload: str
    field: str


def value(summary: list[Result], metric: Metric) -> float | None:
    """The metric's value in the summary; None when that server or workload did not run."""
    if metric.workload == PEAK:
        peaks = [getattr(r, metric.field) for r in summary if r.server == metric.server and r.workload in SHARED]
        return float(max(peaks)) if peaks else None
    found = [r for r in summary if r.server == metric.server and metric.workload in (ALL, r.workload)]
    if not found:
        return None
    return float(sum(getattr(r, metric.field) for r in found))


OTHERS = ("ours-nolog", "ours-noshadow", "mlserver", "kserve", "floor", "floor-orjson", "floor-compiled")


def ratios(summary: list[Result]) -> list[dict[str, Any]]:
    """Ratios of medians: ours / each other server, the issue's cross comparisons, p99/p50 of every server."""
    rows = []

    def add(comparison: str, metric: str, numerator: Metric, denominator: Metric) -> None:
        a, b = value(summary, numerator), value(summary, denominator)
        if a is not None and b:
            rows.append({"comparison": comparison, "metric": metric, "ratio": a / b})

    for other in OTHERS:
        for label, workload, key in (
            ("single-row V2 req/s, 8 conn", V2_1_8, "req_s"),
            ("single-row V2 req/s, 64 conn", V2_1_64, "req_s"),
            (f"{BATCH_ROWS:,}-row V2 JSON rows/s, 8 conn", V2_BATCH, "rows_s"),
            (f"{BATCH_ROWS:,}-row V2 binary rows/s, 8 conn", V2_BINARY, "rows_s"),
            ("single-row gRPC req/s, 8 streams", GRPC_1_8, "req_s"),
            (f"{BATCH_ROWS:,}-row raw gRPC rows/s, 8 streams", GRPC_BATCH, "rows_s"),
        ):
            add(f"ours / {other}", label, Metric("ours", workload, key), Metric(other, workload, key))
    add(
        "ours / ours",
        f"gRPC {BATCH_ROWS:,}-row raw rows/s vs REST binary {BATCH_ROWS:,}-row rows/s",
        Metric("ours", GRPC_BATCH, "rows_s"),
        Metric("ours", V2_BINARY, "rows_s"),
    )
    add(
        "ours / mlserver",
        "ours /predict 1 row req/s vs MLServer single-row V2 req/s, 8 conn",
        Metric("ours", PREDICT, "req_s"),
        Metric("mlserver", V2_1_8, "req_s"),
    )
    add(
        "ours / mlserver",
        f"ours binary {BATCH_ROWS:,} rows/s vs MLServer JSON {BATCH_ROWS:,} rows/s, 8 conn",
        Metric("ours", V2_BINARY, "rows_s"),
        Metric("mlserver", V2_BATCH, "rows_s"),
    )
    for workload, connections in ((V2_1_8, 8), (V2_1_64, 64)):
        add(
            "floor-compiled / ours",
            f"single-row V2 req/s, {connections} conn",
            Metric("floor-compiled", workload, "req_s"),
            Metric("ours", workload, "req_s"),
        )
    for server in ("ours", *OTHERS):
        for workload, label in (
            (V2_1_8, "single-row V2, 8 conn"),
            (V2_1_64, "single-row V2, 64 conn"),
            (GRPC_1_8, "single-row gRPC, 8 streams"),
        ):
            add(
                server,
                f"p99/p50, {label}",
                Metric(server, workload, "p99_ms"),
                Metric(server, workload, "p50_ms"),
            )
    return rows


@dataclass(frozen=True)
class Target:
    """A goal of the issue: numerator / denominator (numerator alone without one) `op` bound; or, with `per_row`,
    the µs a row the numerator's rate costs over the denominator's (1/numerator - 1/denominator, in µs)."""

    name: str
    numerator: Metric
    denominator: Metric | None
    op: str  # ">=" or "<="
    bound: float
    unit: str = "x"
    per_row: bool = False


# The targets, checked on the medians; PASS/MISS (n/a when a server or workload did not run).
TARGETS = [
    Target(
        "single-row V2 req/s, 8 conn: ours / MLServer",
        Metric("ours", V2_1_8, "req_s"),
        Metric("mlserver", V2_1_8, "req_s"),
        ">=",
        2.5,
    ),
    Target(
        "single-row V2 req/s, 8 conn: ours / KServe",
        Metric("ours", V2_1_8, "req_s"),
        Metric("kserve", V2_1_8, "req_s"),
        ">=",
        2.5,
    ),
    Target(
        "single-row V2, 8 conn, ours and ours-nolog served at once: CPU µs a request, ours / ours with the prediction "
        "log off (the log costs at most 5%)",
        Metric("ours", PAIRED, "cpu_us"),
        Metric("ours-nolog", PAIRED, "cpu_us"),
        "<=",
        1.05,
    ),
    Target(
        "single-row V2 req/s, 8 conn: ours / ours with shadow scoring off (a challenger in shadow costs at most 5%; "
        "a store holding a challenger, --bentoml-home)",
        Metric("ours", V2_1_8, "req_s"),
        Metric("ours-noshadow", V2_1_8, "req_s"),
        ">=",
        0.95,
    ),
    Target(
        "single-row V2 req/s, 8 conn: floor-compiled / ours (ours within 1.5x of the compiled floor)",
        Metric("floor-compiled", V2_1_8, "req_s"),
        Metric("ours", V2_1_8, "req_s"),
        "<=",
        1.5,
    ),
    Target(
        "ours /predict 1 row req/s / MLServer single-row V2 req/s, 8 conn",
        Metric("ours", PREDICT, "req_s"),
        Metric("mlserver", V2_1_8, "req_s"),
        ">=",
        2.0,
    ),
    Target(
        f"{BATCH_ROWS:,}-row V2 JSON rows/s: ours / MLServer",
        Metric("ours", V2_BATCH, "rows_s"),
        Metric("mlserver", V2_BATCH, "rows_s"),
        ">=",
        1.3,
    ),
    Target(
        f"ours binary {BATCH_ROWS:,}-row rows/s / MLServer JSON {BATCH_ROWS:,}-row rows/s",
        Metric("ours", V2_BINARY, "rows_s"),
        Metric("mlserver", V2_BATCH, "rows_s"),
        ">=",
        2.5,
    ),
    Target(
        f"the prediction log's cost, {BATCH_ROWS:,}-row binary: µs of the worker a row, ours against ours-nolog",
        Metric("ours", V2_BINARY, "rows_s"),
        Metric("ours-nolog", V2_BINARY, "rows_s"),
        "<=",
        0.5,
        unit=" µs",
        per_row=True,
    ),
    Target(
        "peak memory over the workloads MLServer runs too: ours / MLServer",
        Metric("ours", PEAK, "peak_rss_mb"),
        Metric("mlserver", PEAK, "peak_rss_mb"),
        "<=",
        1.5,
    ),
    Target(
        "single-row gRPC req/s, 8 streams: ours / MLServer",
        Metric("ours", GRPC_1_8, "req_s"),
        Metric("mlserver", GRPC_1_8, "req_s"),
        ">=",
        2.0,
    ),
    Target(
        f"{BATCH_ROWS:,}-row raw gRPC rows/s, 8 streams: ours / MLServer",
        Metric("ours", GRPC_BATCH, "rows_s"),
        Metric("mlserver", GRPC_BATCH, "rows_s"),
        ">=",
        2.0,
    ),
    Target(
        f"ours gRPC {BATCH_ROWS:,}-row rows/s / ours REST binary {BATCH_ROWS:,}-row rows/s (not slower than its own "
        "REST binary path)",
        Metric("ours", GRPC_BATCH, "rows_s"),
        Metric("ours", V2_BINARY, "rows_s"),
        ">=",
        1.0,
    ),
    Target(
        "ours p99 / p50, single-row V2, 8 conn",
        Metric("ours", V2_1_8, "p99_ms"),
        Metric("ours", V2_1_8, "p50_ms"),
        "<=",
        3.0,
    ),
    Target(
        "ours p99 / p50, single-row V2, 64 conn",
        Metric("ours", V2_1_64, "p99_ms"),
        Metric("ours", V2_1_64, "p50_ms"),
        "<=",
        3.0,
    ),
    Target(
        "ours errors: non-2xx + socket/stream errors + wrong-size gRPC responses over all workloads and rounds, "
        "+ failed rounds",
        Metric("ours", ALL, "errors"),
        None,
        "<=",
        0,
        unit="",
    ),
]


def evaluate(summary: list[Result], failures: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each of TARGETS with its measured value and PASS, MISS or n/a."""
    rows = []
    for target in TARGETS:
        measured = value(summary, target.numerator)
        if target.denominator is None:  # a count: failed rounds of the server count too
            failed = len(failures.get(target.numerator.server, []))
            if measured is not None or failed:
                measured = (measured or 0) + failed
        else:
            denominator = value(summary, target.denominator)
            if measured is None or not denominator or (target.per_row and not measured):
                measured = None
            elif target.per_row:
                measured = (1 / measured - 1 / denominator) * 1e6
            else:
                measured = measured / denominator
        if measured is None:
            status = "n/a"
        else:
            status = "PASS" if (measured >= target.bound if target.op == ">=" else measured <= target.bound) else "MISS"
        rows.append(
            {
                "target": target.name,
                "measured": measured,
                "op": target.op,
                "bound": target.bound,
                "unit": target.unit,
                "status": status,
            }
        )
    return rows


def log_size(home: Path, req_s: float | None) -> dict[str, float] | None:
    """Rows and bytes of the prediction log ours wrote under `home`, and a day of it at `req_s` single rows/s."""
    database = home / SQLITE_FILE
    if not database.exists() or not req_s:
        return None
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT coalesce(sum(rows), 0) FROM prediction_batches").fetchone()[0]
    size = sum(path.stat().st_size for path in home.glob(SQLITE_FILE + "*"))
    if not rows:
        return None
    per_row = size / rows
    day_gb = per_row * req_s * 86400 / 1e9
    return {"rows": rows, "bytes": size, "bytes_per_row": per_row, "req_s": req_s, "day_gb": day_gb}


def markdown(
    summary: list[Result],
    ratio_rows: list[dict[str, Any]],
    target_rows: list[dict[str, Any]],
    meta: dict[str, Any],
) -> str:
    """The results, ratio and target tables as markdown."""
    lines = [
        "| server | workload | req/s | spread % | rows/s | p50 ms | p99 ms | errors | peak MB | server CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r.label} | {r.workload} | {r.req_s:,.1f} | {r.req_s_spread_pct:.0f} | {r.rows_s:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.peak_rss_mb:.0f} | {r.server_cpu_pct:.0f} |"
        )
    lines += ["", "| comparison | metric | ratio |", "|---|---|---:|"]
    lines += [f"| {r['comparison']} | {r['metric']} | {r['ratio']:.2f} |" for r in ratio_rows]
    lines += [
        "",
        f"Median of {meta['rounds']} round(s) (servers interleaved; spread % = (max - min) / median of req/s over "
        f"the rounds; errors summed; peak MB the maximum). {meta['duration_s']} s per workload after a "
        f"{meta['warmup_s']} s warm-up; servers on core {SERVER_CORE}, wrk (1 thread) and h2load (gRPC: 1 "
        f"connection, 8 concurrent streams; errors include responses of the wrong size) on core {LOAD_CORE}; rows: "
        f"{meta['rows_source']}; peak MB = max summed RSS of the server's process tree during the measured run; "
        "server CPU % = CPU time of that tree / wall time (100 = one core saturated); ours from "
        + {"shipped": "the image's packages only", "project": "the project's .venv"}.get(meta.get("ours_venv", ""), "?")
        + ". ratio > 1 on throughput = "
        "the first named faster. Binary extension: "
        + "; ".join(f"{name}: {probe}" for name, probe in meta["binary_probe"].items())
        + ".",
    ]
    if any(r.workload == PAIRED for r in summary):
        lines.append(
            f"\n{PAIRED}: the two servers served on core {SERVER_CORE} and driven at once from core {LOAD_CORE} "
            "(bench/pair.py), each round after the others; their CPU µs a request is compared (the same machine state "
            "for both: rounds within about ±2%, where the rounds of one server at a time spread ±10%)."
        )
    if meta.get("prediction_log"):
        log = meta["prediction_log"]
        lines.append(
            f"\nPrediction log (ours, SQLite): {log['rows']:,} rows in {log['bytes'] / 1e6:,.1f} MB = "
            f"{log['bytes_per_row']:.0f} B a row; a day at {log['req_s']:,.0f} single-row req/s: "
            f"{log['day_gb']:,.1f} GB."
        )
    if meta["failures"]:
        lines.append("")
        for name, failed in meta["failures"].items():
            for failure in failed:
                lines.append(f"FAILED: {name}, round {failure['round']}: {failure['error'][:300]}")
    busy = [r for r in summary if r.other_on_core_pct > 10]
    if busy:
        lines.append(
            f"\nWARNING: other processes used core {SERVER_CORE} during {len(busy)} run(s) (up to "
            f"{max(r.other_on_core_pct for r in busy):.0f}% of it): throughput is understated; "
            "rerun on an idle machine."
        )
    lines += ["", "| target | measured | required | status |", "|---|---:|---:|---|"]
    for t in target_rows:
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}{t['unit']}".replace(".00", "")
        bound = "0" if t["bound"] == 0 else f"{'≥' if t['op'] == '>=' else '≤'} {t['bound']:g}{t['unit']}"
        lines.append(f"| {t['target']} | {measured} | {bound} | {t['status']} |")
    counts = {s: sum(t["status"] == s for t in target_rows) for s in ("PASS", "MISS", "n/a")}
    lines += ["", "targets: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines) + "\n"
