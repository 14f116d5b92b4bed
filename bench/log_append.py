"""What the prediction log's store costs the writer a row (the README's figure; issue 23, the log's cost).

`.venv/bin/python -m bench.log_append [--rows 1000] [--batches 400] [--per-flush 4]` appends `batches` scored
batches of `rows` rows to a new SQLite log in a temporary folder, `per-flush` batches a transaction as the log's
writer does, and prints the CPU µs a row of `SQLiteStore.append` (encoded rows not kept: the default) and the
bytes a row of the file, checkpointed and vacuumed.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np

from bento import features
from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import LoggedBatch


def main() -> None:
    """Append the batches, print the CPU a row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows a batch (one call of the model)")
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--per-flush", type=int, default=4, help="batches a transaction")
    arguments = parser.parse_args()
    rows, ids = arguments.rows, PredictionIds()
    matrix = np.zeros((rows, len(features.COLUMNS)), np.float32)
    probabilities = np.random.default_rng(0).random(rows, dtype=np.float32)
    labels = (probabilities >= 0.5).astype(np.int64)
    batches = []
    for _ in range(arguments.batches):
        now = time.time()
        batches.append(LoggedBatch.of(ScoredBatch(ids.take(rows, now), now, "1", probabilities, labels, matrix)))
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "predictions.db")
        started = time.process_time()
        for start in range(0, len(batches), arguments.per_flush):
            store.append(batches[start : start + arguments.per_flush], keep_features=False)
        spent = time.process_time() - started
        store.close()
        path = Path(folder) / "predictions.db"
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
        size = path.stat().st_size
    total = rows * len(batches)
    print(
        f"{spent / total * 1e6:.3f} µs of CPU a row, {size / total:.1f} bytes a row ({len(batches):,} batches of "
        f"{rows:,} rows)"
    )


if __name__ == "__main__":
    main()
