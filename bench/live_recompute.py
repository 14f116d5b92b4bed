"""What a recomputation of the live figures costs at scale (issue 22, item 5; the README's figures).

`.venv/bin/python -m bench.live_recompute [--rows 1000000] [--versions 2] [--core 0]` builds a SQLite prediction
log in a temporary folder holding, for each of `versions` model versions, `rows / versions` labelled predictions
in the last 30 days and as many 30 to 90 days old, so each window of the deployment holds at least `rows`
labelled rows (the 30-day window `rows`, the 90-day window twice that). It then times, in this process and on one
core, what one worker of the deployment (the lease holder) does every READMISSION_MONITOR_SECONDS:

- `unchanged`: a refresh when no outcome arrived since, or while the holder rests (the lease, the stored figures);
- `marker`: the change marker the holder reads once rested;
- `recompute`: a refresh after new outcomes: the child process that reads the labelled rows, computes the figures
  of every version and window (DeLong's interval) and writes them to the store (bento/monitoring/live_compute.py),
  and what the worker's thread does meanwhile (start it, wait, read the stored figures); and the child's parts, in
  this process: `read` (the store's labelled rows), `figures`;
- `follower`: a refresh of a worker that does not hold the lease (reads the stored figures).

CPU seconds of this process (the worker's part), of its children (the child's) and wall seconds, the minimum of
`--repeats`. Divide by READMISSION_MONITOR_SECONDS for the share of a core. Writing the log takes about a minute at
the default size: a shared machine notices.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.model.predictor import ModelInfo
from bento.monitoring.live_compute import Place, children_cpu
from bento.monitoring.live_performance import LivePerformance
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import INSERT_OUTCOME, INSERT_SCORES, LoggedBatch, StoredFigures
from bento.quality.windows import DAY, WINDOWS, measure

CHUNK = 100_000  # rows per write
WIDTH = 1  # the encoded rows are not kept: their width does not matter


def build(store: SQLiteStore, rows: int, versions: int, now: float) -> None:
    """`rows / versions` labelled predictions per version in the last 30 days and as many 30 to 90 days old (the
    outcomes inserted directly: feedback's lookups would only slow the writing down)."""
    ids, rng = PredictionIds(), np.random.default_rng(0)
    direct = sqlite3.connect(store.path)
    per_version = rows // versions
    for version in range(versions):
        for low, high in ((1, 29), (31, 89)):
            for start in range(0, per_version, CHUNK):
                count = min(CHUNK, per_version - start)
                when = now - rng.uniform(low, high) * DAY
                outcome = (rng.random(count) < 0.11).astype(np.int64)
                probability = np.clip(0.1 + 0.08 * outcome + rng.normal(0, 0.08, count), 0, 1).astype(np.float32)
                labels = (probability >= 0.3).astype(np.int64)
                matrix = np.zeros((count, WIDTH), np.float32)
                batch = ScoredBatch(ids.take(count, when), when, str(version + 1), probability, labels, matrix)
                store.append([LoggedBatch.of(batch)], keep_features=False)
                with direct:
                    outcomes = zip(batch.ids, outcome.tolist(), [now] * count, strict=True)
                    direct.executemany(INSERT_OUTCOME.format("?"), outcomes)
                    scores = ((i, batch.model_version, when, float(p), int(flag), 1)
                              for i, p, flag in zip(batch.ids, probability, labels, strict=True))  # fmt: skip
                    direct.executemany(INSERT_SCORES.format("?"), scores)
    direct.close()


def timed(
    work: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None
) -> tuple[float, float, float]:
    """The minimum CPU seconds of `work` in this process and in its children, and its wall seconds, over `repeats`
    (`before` runs untimed before each)."""
    cpu, children, wall = [], [], []
    for _ in range(repeats):
        before()
        started_cpu, started_children, started_wall = time.process_time(), children_cpu(), time.perf_counter()
        work()
        cpu.append(time.process_time() - started_cpu)
        children.append(children_cpu() - started_children)
        wall.append(time.perf_counter() - started_wall)
    return min(cpu), min(children), min(wall)


def main() -> None:
    """Write the log, time the refreshes, print CPU and wall seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="labelled rows per window (at least)")
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=None, help="pin to this core")
    args = parser.parse_args()
    if args.core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    info = ModelInfo(name="readmission", version="2", run_id="", tag="readmission:bench", threshold=0.3,
                     prevalence=0.11, spec_hash="", test_metrics={}, score_reference=[])  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path, now = Path(folder) / "log.db", time.time()
        store = SQLiteStore(path)
        started = time.perf_counter()
        build(store, args.rows, args.versions, now)
        print(f"log: {2 * args.rows:,} labelled rows, {args.versions} versions, written in "
              f"{time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e6:.0f} MB")  # fmt: skip
        place = Place(str(path), Path(folder))
        holder = LivePerformance(store, lambda: info, 60, place)
        follower = LivePerformance(SQLiteStore(path), lambda: info, 60, place)
        holder.refresh()
        counts = {v: {w: f["labelled_rows"] for w, f in ws.items()} for v, ws in holder.latest().live.items()}
        print(f"labelled rows per version and window: {counts}")

        fresh = [holder]

        def changed() -> None:  # outcomes arrived: the marker moved; a new holder (no memo) redoes every figure
            fresh[0].stop(0)
            fresh[0] = LivePerformance(store, lambda: info, 60, place)
            store.save_figures(StoredFigures(computed_at=0.0, marker="", figures="{}", comparison="[]", estimated="{}"))

        results = {
            "unchanged": timed(holder.refresh, args.repeats),
            "marker": timed(store.labelled_marker, args.repeats),
            "recompute": timed(lambda: fresh[0].refresh(), args.repeats, before=changed),
            "read": timed(lambda: store.labelled(now - max(WINDOWS.values()) * DAY), args.repeats),
            "follower": timed(follower.refresh, args.repeats),
        }
        labelled = store.labelled(now - max(WINDOWS.values()) * DAY)
        results["figures"] = timed(lambda: measure(labelled, now, [info.version]), args.repeats)
        for name, (cpu, children, wall) in results.items():
            print(f"{name:>10}: {cpu:8.3f} s CPU ({100 * cpu / 60:.2f}% of a core over 60 s), {children:8.3f} s in "
                  f"children, {wall:8.3f} s wall")  # fmt: skip
        store.close()
        follower.store.close()


if __name__ == "__main__":
    main()
