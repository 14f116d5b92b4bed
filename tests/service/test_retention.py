"""Retention end to end: a real service on a log holding predictions past READMISSION_PREDICTION_LOG_KEEP_DAYS
erases them in batches of the store's ERASE_ROWS, with their outcomes, while it answers; nothing inside the period
is erased."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import httpx

from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import ERASE_ROWS
from tests.helpers import ID_RUNS, INFER, copy_home, matrix_of, matrix_request, queued, records, run_ids, serve
from tests.unit.predictionlog.store_contract import DAY, batch

OLD_BATCHES = 12  # ERASE_ROWS each: the writer erases one batch per flush, so this takes some seconds


def _rows(database, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def _count(database, sql: str) -> int:
    return _rows(database, sql)[0][0]


def test_old_predictions_are_erased_in_batches_while_the_service_answers(bento_home, tmp_path):
    database = tmp_path / "log.db"
    now = time.time()
    store = SQLiteStore(database)
    old = [batch(ERASE_ROWS, when=now - (200 - n) * DAY, seed=n) for n in range(OLD_BATCHES)]
    inside = batch(500, when=now - 119 * DAY, seed=99)
    store.append(queued(*old, inside), keep_features=False)
    store.record_outcomes({i: 1 for i in old[0].ids[:100] + inside.ids[:50]}, now)
    store.close()
    total, cut_off = (
        OLD_BATCHES * ERASE_ROWS,
        f"SELECT COALESCE(SUM(rows), 0) FROM prediction_batches WHERE time < {now - 120 * DAY}",
    )

    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_PREDICTION_LOG=str(database),
                   READMISSION_PREDICTION_LOG_KEEP_DAYS="120")  # fmt: skip
    seen, answered = {total}, 0
    body = matrix_request(matrix_of(records(20)))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while (left := _count(database, cut_off)) > 0:
                seen.add(left)
                answer = client.post(INFER, json=body)
                assert answer.status_code == 200, answer.text
                answered += 1
                assert time.monotonic() < deadline, f"old predictions left: {left}"
    finally:
        server.stop()
    between = sorted(count for count in seen if 0 < count < total)
    assert len(between) >= 2, f"no erasure in batches seen: {sorted(seen)}"
    assert all(count % ERASE_ROWS == 0 for count in seen), sorted(seen)  # whole batches, never part of one
    assert answered >= len(between)
    assert _count(database, f"SELECT SUM(rows) FROM prediction_batches WHERE time >= {now - 120 * DAY}") >= 500 + 20
    assert run_ids(_rows(database, ID_RUNS)) >= set(inside.ids)
    assert sorted(i for (i,) in _rows(database, "SELECT prediction_id FROM outcomes")) == sorted(inside.ids[:50])
