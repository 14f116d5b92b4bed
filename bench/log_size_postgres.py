"""The prediction log's size in PostgreSQL: bytes a row, table and primary key (the README's figure).

`.venv/bin/python -m bench.log_size_postgres [ROWS]` starts a throwaway PostgreSQL from Debian's packages (as the
tests do), appends ROWS rows (200,000) through `PostgresStore` in batches of 1,000, with probabilities as varied as the
model's (so PostgreSQL's compression of the columns is not flattered) and their labels, and prints
`pg_total_relation_size` per row and for a day at the benchmark's single-row rate.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import psycopg

from bento import features
from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.predictionlog.postgres import PostgresStore
from bento.predictionlog.store import LoggedBatch
from tests.postgres_server import start_server

BATCH = 1000
DAY_REQ_S = 3623  # single-row V2 req/s of the README's benchmark run


def main(rows: int = 200_000) -> None:
    """Append `rows` rows and print the size."""
    server = start_server()
    try:
        url = server.database()
        store = PostgresStore(url)
        ids, rng = PredictionIds(), np.random.default_rng(0)
        matrix = np.zeros((BATCH, len(features.COLUMNS)), dtype=np.float32)
        for _ in range(rows // BATCH):
            now = time.time()
            probabilities = rng.beta(2.0, 12.0, BATCH).astype(np.float32)  # mean about 0.14, as served
            labels = (probabilities >= 0.149).astype(np.int64)
            batch = ScoredBatch(ids.take(BATCH, now), now, "1", probabilities, labels, matrix)
            store.append([LoggedBatch.of(batch)], keep_features=False)
        store.close()
        with psycopg.connect(url) as connection:
            count = connection.execute("SELECT sum(rows) FROM prediction_batches").fetchone()[0]
            size = connection.execute("SELECT pg_total_relation_size('prediction_batches')").fetchone()[0]
        per_row = size / count
        print(f"{count:,} rows, {size / 1e6:.1f} MB, {per_row:.0f} B a row; a day at {DAY_REQ_S:,} req/s: "
              f"{per_row * DAY_REQ_S * 86400 / 1e9:.1f} GB")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
