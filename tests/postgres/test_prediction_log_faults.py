"""The prediction log under faults of its store, with a real `bentoml serve` under a short, paced load.

Each test starts its own service on a private BentoML home and READMISSION_HOME, sends /predict/batch from one
client thread, keeps every prediction id it is answered, and compares them with the store, read behind the
service's back (SQLite read-only, PostgreSQL on its own connection). Whatever the store does, every prediction
answers 200: the log is off the request path. What the store missed is counted in
`readmission_prediction_log_rows_total{outcome="lost"|"dropped"}`, and logging resumes once the store is back.
Last, with the same machinery and no fault: the opted-in encoded rows are the rows the model scored.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx
import numpy as np
import pytest

from bento.core.ids import issued_at
from bento.predictionlog.sqlite import SQLITE_FILE
from tests import servers
from tests.helpers import (
    LOGGED,
    RECORD,
    copy_home,
    log_rows_counted,
    logged,
    matrix_of,
    poll,
    postgres_ids,
    records,
    serve,
    sqlite_ids,
    workers_of,
)

pytestmark = pytest.mark.slow

ROWS_PER_REQUEST = 10
PACE_SECONDS = 0.05  # one request this often: about 200 rows a second, well under what the writer keeps up with
QUEUE_ROWS = 200  # the queue bound of the kill -9 test
PASSWORD = "never-logged-4f1c"  # pragma: allowlist secret (a test value)
SETTLE = 30.0  # seconds to wait for what should happen within a few flushes


class Load:
    """One client sending /predict/batch every PACE_SECONDS until stopped; keeps each answer's ids and status."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, int, list[str]]] = []  # (answered at, status, prediction ids)
        self.transport_errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        body = [RECORD] * ROWS_PER_REQUEST
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.wait(PACE_SECONDS):  # the load's pace, not a synchronisation
                try:
                    answer = client.post("/predict/batch", json=body)
                except httpx.TransportError:
                    with self._lock:
                        self.transport_errors += 1
                    continue
                ids = [p["prediction_id"] for p in answer.json()["predictions"]] if answer.status_code == 200 else []
                with self._lock:
                    self.answers.append((time.time(), answer.status_code, ids))

    def ids(self, after: float = 0.0, before: float = float("inf")) -> set[str]:
        """The ids answered between two times."""
        with self._lock:
            return {i for done, _, ids in self.answers if after <= done < before for i in ids}

    def statuses(self) -> Counter:
        with self._lock:
            return Counter(status for _, status, _ in self.answers)


def start_service(bento_home: dict, tmp_path: Path, home: Path, **env: str) -> servers.Server:
    """A service of its own with its prediction log's home at `home`."""
    return serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_HOME=str(home), **env)


def settled_missing(server: servers.Server, load: Load, stored: Callable[[], set[str]], missed_before: float) -> int:
    """Once the load has stopped and the queue is written: how many answered predictions the store misses,
    after checking that they are exactly the rows counted lost or dropped since `missed_before`."""

    def accounted() -> tuple[int] | None:
        missing = len(load.ids() - stored())
        return (missing,) if missing == log_rows_counted(server, "lost", "dropped") - missed_before else None

    (missing,) = poll(accounted, SETTLE, "the rows missing from the store to be the rows counted lost or dropped")
    return missing


def issued_after(ids: set[str], moment: float) -> set[str]:
    return {i for i in ids if (issued_at(i) or 0.0) > moment}


def test_a_locked_sqlite_file_loses_rows_counted_and_logging_resumes(bento_home, tmp_path):
    """Another connection holds `BEGIN EXCLUSIVE` on the log's file: the writer tries again for RETRY_SECONDS
    and loses the batch, counted; once the lock is released, new predictions are written again."""
    home = tmp_path / "state"
    database = home / SQLITE_FILE
    server = start_service(bento_home, tmp_path, home)
    try:
        with Load(server.url) as load:
            poll(lambda: sqlite_ids(database) & load.ids(), SETTLE, "the first rows in the store")
            missed_before = log_rows_counted(server, "lost", "dropped")
            lock = sqlite3.connect(database, isolation_level=None)
            try:
                lock.execute("BEGIN EXCLUSIVE")
                poll(lambda: log_rows_counted(server, "lost", "dropped") > missed_before, SETTLE, "rows counted lost")
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            released = time.time()
            poll(lambda: issued_after(sqlite_ids(database), released), SETTLE, "rows issued after the release")
        missing = settled_missing(server, load, lambda: sqlite_ids(database), missed_before)
    finally:
        server.stop()
    assert missing > 0
    assert set(load.statuses()) == {200}, load.statuses()
    assert load.transport_errors == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs; skips where this process may not mount one."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s file system."""
    filler = folder / "filler"
    chunk = bytes(1 << 16)
    with filler.open("wb", buffering=0) as out:  # unbuffered: the last write is partial, then ENOSPC
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def test_a_full_disk_loses_rows_counted_and_logging_resumes_when_space_is_freed(bento_home, tmp_path, small_disk):
    home = small_disk / "state"
    database = home / SQLITE_FILE
    server = start_service(bento_home, tmp_path, home)
    try:
        with Load(server.url) as load:
            poll(lambda: sqlite_ids(database) & load.ids(), SETTLE, "the first rows in the store")
            lost_before = log_rows_counted(server, "lost", "dropped")
            filler = fill(small_disk)
            poll(lambda: log_rows_counted(server, "lost") > lost_before, SETTLE, "rows counted lost on the full disk")
            filler.unlink()
            freed = time.time()
            poll(lambda: issued_after(sqlite_ids(database), freed), SETTLE, "rows issued after the space was freed")
        missing = settled_missing(server, load, lambda: sqlite_ids(database), lost_before)
    finally:
        server.stop()
    assert missing > 0
    assert set(load.statuses()) == {200}, load.statuses()
    assert load.transport_errors == 0


def test_postgresql_stopped_under_load_loses_rows_counted_and_is_written_again_after_restart(
    bento_home, tmp_path, postgres
):
    url = postgres.database().replace("postgres@", f"postgres:{PASSWORD}@", 1)  # trust: any password is taken
    server = start_service(bento_home, tmp_path, tmp_path / "state", READMISSION_PREDICTION_LOG=url)
    try:
        with Load(server.url) as load:
            poll(lambda: postgres_ids(url) & load.ids(), SETTLE, "the first rows in PostgreSQL")
            lost_before = log_rows_counted(server, "lost", "dropped")
            postgres.stop()
            try:
                down = "rows counted lost while PostgreSQL is down"
                poll(lambda: log_rows_counted(server, "lost") > lost_before, SETTLE, down)
            finally:
                postgres.start()
            restarted = time.time()
            poll(lambda: issued_after(postgres_ids(url), restarted), SETTLE, "rows issued after the restart")
        missing = settled_missing(server, load, lambda: postgres_ids(url), lost_before)
    finally:
        server.stop()
    assert missing > 0
    assert set(load.statuses()) == {200}, load.statuses()
    assert load.transport_errors == 0
    assert PASSWORD not in server.log_text()


def test_a_worker_killed_under_load_leaves_an_intact_store_missing_at_most_what_it_held(bento_home, tmp_path):
    """kill -9 of the worker: the SQLite file passes `PRAGMA integrity_check` (every write is one transaction),
    and the rows missing are at most what the dead worker held in memory: its queue (at most
    READMISSION_PREDICTION_LOG_QUEUE_ROWS) and the batch it was writing (at most as many)."""
    home = tmp_path / "state"
    database = home / SQLITE_FILE
    server = start_service(bento_home, tmp_path, home, READMISSION_PREDICTION_LOG_QUEUE_ROWS=str(QUEUE_ROWS))
    try:
        with Load(server.url) as load:
            poll(lambda: sqlite_ids(database) & load.ids(), SETTLE, "the first rows in the store")
            (victim,) = workers_of(server)
            os.kill(victim, signal.SIGKILL)
            killed = time.time()
            poll(lambda: load.ids(after=killed), 60, "an answer from the new worker")
        server.stop()  # the new worker writes its queue at SIGTERM
        answered_before = load.ids(before=killed)
        # an answer of the dead worker may still be read after the kill: its ids carry that process's random bits
        dead = {prediction_id[14:23] for prediction_id in answered_before}
        late = {i for i in load.ids(after=killed) if i[14:23] in dead}
        answered_before, answered_after = answered_before | late, load.ids(after=killed) - late
    finally:
        server.stop()
    stored = sqlite_ids(database)
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert len(answered_before - stored) <= 2 * QUEUE_ROWS, len(answered_before - stored)
    assert answered_after <= stored
    assert set(load.statuses()) == {200}, load.statuses()  # the kill cuts requests in flight (transport errors)


def test_sigterm_under_load_writes_every_answered_prediction(bento_home, tmp_path):
    """SIGTERM while the client keeps sending: the worker drains (2 s here, the load never pauses, so rows are
    still queued when it stops) and close() writes the queue; every prediction answered is in the store."""
    home = tmp_path / "state"
    database = home / SQLITE_FILE
    server = start_service(bento_home, tmp_path, home, READMISSION_DRAIN_SECONDS="2")
    try:
        with Load(server.url) as load:
            poll(lambda: sqlite_ids(database) & load.ids(), SETTLE, "the first rows in the store")
            os.kill(server.process.pid, signal.SIGTERM)
            poll(lambda: server.process.poll() is not None, 60, "the server's exit after SIGTERM")
    finally:
        server.stop()
    answered = load.ids()
    assert server.process.returncode == 0, server.log_text()[-3000:]
    assert len(answered) > 100
    assert answered <= sqlite_ids(database), len(answered - sqlite_ids(database))
    assert set(load.statuses()) == {200}, load.statuses()


def test_the_encoded_rows_are_kept_where_opted_in_and_equal_what_was_scored(bento_home, tmp_path):
    """READMISSION_PREDICTION_LOG_FEATURES=true: each prediction's encoded row (float32) is in the log, the very
    row the model scored. (The writer erases such rows after READMISSION_PREDICTION_LOG_RETENTION_DAYS:
    tests/test_log_store.py tests the purge.)"""
    home = tmp_path / "state"
    database = home / SQLITE_FILE
    patients = records(5, seed=23)
    server = start_service(bento_home, tmp_path, home, READMISSION_PREDICTION_LOG_FEATURES="true")
    try:
        answer = httpx.post(server.url + "/predict/batch", json=patients, timeout=30)
        assert answer.status_code == 200, answer.text
        ids = [p["prediction_id"] for p in answer.json()["predictions"]]
        poll(lambda: set(ids) <= sqlite_ids(database), SETTLE, "the batch in the store")
    finally:
        server.stop()
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        stored = {prediction_id: row[4] for prediction_id, row in logged(db.execute(LOGGED).fetchall()).items()}
    for prediction_id, row in zip(ids, matrix_of(patients), strict=True):
        np.testing.assert_array_equal(np.frombuffer(stored[prediction_id], dtype=np.float32), row)
