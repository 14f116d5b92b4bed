"""The memory of the live figures' child process (bento/monitoring/live_compute.py) over a large log (issue 23).

`.venv/bin/python -m bench.live_compute_memory [--rows 2000000] [--per-call 1000]` writes a SQLite prediction log of
`rows` predictions made a day ago in calls of `per-call` rows each (single-row calls are the log's worst case: a
batch a row), runs the child the lease holder runs on it and on an empty log, and prints each child's peak RSS and
the bytes a row between the two. The peak is the child's maximum resident set, read from a process whose only
child it is (`child_peak_bytes`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.monitoring import live_compute
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import LoggedBatch
from bento.quality.windows import DAY

VERSION = "5"
APPEND_ROWS = 100_000  # rows a call of SQLiteStore.append writes
MEASURE = """
import json, resource, sys, time
from pathlib import Path
from bento.monitoring.live_compute import Job, Place, run
path = Path(sys.argv[1])
outcome = run(Place(str(path), path.parent), Job(time.time(), [sys.argv[2]], "m", {}), 900, lambda: True, 0.5)
print(json.dumps([outcome.problem, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
"""


def write_log(path: Path, rows: int, per_call: int, seed: int = 3) -> SQLiteStore:
    """A SQLite log at `path` of `rows` predictions of VERSION made a day ago, `per_call` rows a batch."""
    store, ids = SQLiteStore(path), PredictionIds()
    probability = np.random.default_rng(seed).beta(2.0, 6.0, rows).astype(np.float32)
    when, width = time.time() - DAY, np.zeros((per_call, 1), np.float32)
    for start in range(0, rows, APPEND_ROWS):
        batches = []
        for first in range(start, min(start + APPEND_ROWS, rows), per_call):
            p = probability[first : first + per_call]
            batches.append(
                LoggedBatch.of(ScoredBatch(ids.take(len(p), when), when, VERSION, p, (p >= 0.3) * 1, width[: len(p)]))
            )
        store.append(batches, keep_features=False)
    return store


def child_peak_bytes(path: Path) -> int:
    """The peak RSS of the child computing the live figures over the log at `path`."""
    env = {**os.environ, "PYTHONPATH": str(live_compute.SOURCE)}
    printed = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), VERSION], env=env, capture_output=True, text=True
    )
    problem, kib = json.loads(printed.stdout)
    if problem is not None:
        raise RuntimeError(f"the child failed: {problem}")
    return kib * 1024


def main() -> None:
    """Write the log, measure both children, print their peaks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--per-call", type=int, default=1000, help="rows a call of the model (a batch of the log)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        write_log(Path(folder) / "full.db", args.rows, args.per_call).close()
        SQLiteStore(Path(folder) / "empty.db").close()
        full, empty = child_peak_bytes(Path(folder) / "full.db"), child_peak_bytes(Path(folder) / "empty.db")
    print(f"child's peak RSS: {full / 2**20:.0f} MiB over {args.rows:,} rows in calls of {args.per_call:,}, "
          f"{empty / 2**20:.0f} MiB over an empty log: {(full - empty) / args.rows:.0f} bytes a row")  # fmt: skip


if __name__ == "__main__":
    main()
