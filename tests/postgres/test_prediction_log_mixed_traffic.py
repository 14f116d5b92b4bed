"""The prediction log's invariant under mixed traffic, against a real `bentoml serve` (SQLite, then PostgreSQL).

For a bounded time, at once: two clients post /predict/batch, three post /feedback lists of up to
READMISSION_MAX_INFER_ROWS outcomes for predictions answered earlier, a hostile client posts lists holding ids
that look recent but were never issued (each waited for, then 404), and a client scrapes /metrics. Once the
log has settled, every answered prediction id is in the store, or is counted in
`readmission_prediction_log_rows_total{outcome="lost"|"dropped"}`; the store never fails here, so nothing may
be missing or counted: feedback must not cost the log a row. No answer is a 5xx, feedback never a 503.
The same service's log is readable by its user only.
"""

from __future__ import annotations

import random
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bento.core.ids import PredictionIds
from bento.predictionlog.sqlite import SQLITE_FILE
from bento.settings import ServiceSettings
from tests import servers
from tests.helpers import RECORD, copy_home, log_rows_counted, poll, postgres_ids, records, serve, sqlite_ids

pytestmark = pytest.mark.slow

LOAD_SECONDS = 15.0
BATCH_ROWS = 250
FEEDBACK_CLIENTS = 3
FEEDBACK_ITEMS = ServiceSettings.model_fields["max_infer_rows"].default  # the most one /feedback call takes
HOSTILE_REAL, HOSTILE_FAKE = 2_000, 20  # a hostile list: answered ids, then ids stamped now and never issued
SETTLE = 60.0


def outcome_of(prediction_id: str) -> bool:
    """The same outcome for an id whichever client sends it: feedback clients never conflict."""
    return int(prediction_id[-1], 16) % 2 == 1


class Traffic:
    """The clients, each a thread, until `stop`; every answer's status by kind of client, the ids answered."""

    def __init__(self, url: str, metrics: str) -> None:
        self.url = url
        self.metrics = metrics  # the service's Prometheus port
        self.answered: list[str] = []  # prediction ids, in the order they were answered
        self.statuses: dict[str, Counter] = {}
        self.errors: list[str] = []  # transport errors, and answers that broke a rule, for the failure message
        self._lock = threading.Lock()
        self._stop = threading.Event()
        kinds = {"predict": 2, "feedback": FEEDBACK_CLIENTS, "hostile": 1, "metrics": 1}
        runs: dict[str, Callable[[httpx.Client, random.Random], None]] = {
            "predict": self._predict,
            "feedback": self._feedback,
            "hostile": self._hostile,
            "metrics": self._scrape,
        }
        self._threads = [
            threading.Thread(target=self._run, args=(kind, runs[kind], n), daemon=True)
            for kind, count in kinds.items()
            for n in range(count)
        ]

    def run_for(self, seconds: float) -> None:
        for thread in self._threads:
            thread.start()
        self._stop.wait(seconds)  # the load's duration, not a synchronisation
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
            assert not thread.is_alive(), "a client is still waiting for an answer"

    def _run(self, kind: str, step: Callable[[httpx.Client, random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                try:
                    step(client, rng)
                except httpx.TransportError as error:
                    self._note(kind, f"transport error: {error!r}")

    def _note(self, kind: str, status: int | str) -> None:
        with self._lock:
            self.statuses.setdefault(kind, Counter())[status if isinstance(status, int) else "error"] += 1
            if isinstance(status, str):
                self.errors.append(f"{kind}: {status}")

    def _predict(self, client: httpx.Client, rng: random.Random) -> None:
        body = records(BATCH_ROWS, seed=rng.randrange(1_000)) if rng.random() < 0.2 else [RECORD] * BATCH_ROWS
        answer = client.post("/predict/batch", json=body)
        self._note("predict", answer.status_code)
        if answer.status_code == 200:
            with self._lock:
                self.answered.extend(p["prediction_id"] for p in answer.json()["predictions"])

    def _earlier(self, rng: random.Random, count: int) -> list[str]:
        with self._lock:
            answered = list(self.answered)
        return rng.sample(answered, min(count, len(answered)))

    def _feedback(self, client: httpx.Client, rng: random.Random) -> None:
        ids = self._earlier(rng, rng.randint(FEEDBACK_ITEMS // 2, FEEDBACK_ITEMS))
        if not ids:
            self._stop.wait(0.1)  # nothing answered yet to give an outcome for: the load's pace
            return
        body = [{"prediction_id": i, "readmitted_within_30_days": outcome_of(i)} for i in ids]
        answer = client.post("/feedback", json=body)
        self._note("feedback", answer.status_code)
        if answer.status_code != 200:
            with self._lock:
                self.errors.append(f"feedback: {answer.status_code} {answer.text[:200]}")

    def _hostile(self, client: httpx.Client, rng: random.Random) -> None:
        never_issued = PredictionIds().take(HOSTILE_FAKE, time.time())
        ids = self._earlier(rng, HOSTILE_REAL) + never_issued
        answer = client.post("/feedback", json=[{"prediction_id": i, "readmitted_within_30_days": True} for i in ids])
        self._note("hostile", answer.status_code)

    def _scrape(self, client: httpx.Client, rng: random.Random) -> None:
        self._note("metrics", client.get(self.metrics).status_code)


def run_and_settle(server: servers.Server, stored: Callable[[], set[str]], figure, name: str) -> None:
    """Run the traffic, wait until the missing rows are the rows counted, then check the invariant."""
    traffic = Traffic(server.url, server.metrics)
    traffic.run_for(LOAD_SECONDS)
    answered = set(traffic.answered)

    def accounted() -> tuple[int, float, float] | None:
        missing = len(answered - stored())
        lost, dropped = log_rows_counted(server, "lost"), log_rows_counted(server, "dropped")
        return (missing, lost, dropped) if missing == lost + dropped else None

    missing, lost, dropped = poll(accounted, SETTLE, "the rows missing from the store to be the rows counted")
    figure(f"{name}: answered, missing, lost, dropped", f"{len(answered)}, {missing}, {lost:.0f}, {dropped:.0f}")
    figure(f"{name}: answers by client", {kind: dict(counts) for kind, counts in traffic.statuses.items()})
    assert (missing, lost, dropped) == (0, 0, 0), f"{missing} of {len(answered)} answered predictions missing"
    assert len(answered) >= 4 * BATCH_ROWS, "too little traffic to mean anything"
    assert set(traffic.statuses["predict"]) == {200}, traffic.statuses
    assert set(traffic.statuses["metrics"]) == {200}, traffic.statuses
    assert set(traffic.statuses["feedback"]) == {200}, (traffic.statuses, traffic.errors[:5])
    assert set(traffic.statuses["hostile"]) == {404}, traffic.statuses
    assert traffic.statuses["feedback"][200] >= FEEDBACK_CLIENTS, "too little feedback to mean anything"


@pytest.fixture(scope="module")
def sqlite_service(bento_home, tmp_path_factory) -> tuple[servers.Server, Path]:
    """A service of its own whose READMISSION_HOME does not exist yet: the log creates it; and the log's file."""
    tmp_path = tmp_path_factory.mktemp("sqlite-log")
    home = tmp_path / "state"
    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_HOME=str(home))
    yield server, home / SQLITE_FILE
    server.stop()


def test_feedback_never_costs_the_sqlite_log_a_prediction(sqlite_service, figure):
    server, database = sqlite_service
    run_and_settle(server, lambda: sqlite_ids(database), figure, "SQLite")


def test_the_log_is_readable_by_the_services_user_only(sqlite_service):
    """The folder the log created 0700, the database and its WAL and shared-memory files 0600."""
    server, database = sqlite_service
    answer = httpx.post(server.url + "/predict/batch", json=[RECORD], timeout=30)
    (prediction_id,) = (p["prediction_id"] for p in answer.json()["predictions"])
    poll(lambda: prediction_id in sqlite_ids(database), SETTLE, "the prediction in the log")
    files = [database, *(database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))]
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in [database.parent, *files]}
    assert modes == {database.parent.name: "0o700", **{path.name: "0o600" for path in files}}


def test_feedback_never_costs_the_postgresql_log_a_prediction(bento_home, tmp_path, postgres, figure):
    url = postgres.database()
    home = str(tmp_path / "state")
    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_HOME=home, READMISSION_PREDICTION_LOG=url)
    try:
        run_and_settle(server, lambda: postgres_ids(url), figure, "PostgreSQL")
    finally:
        server.stop()
