"""bento/monitoring/live_compute.py with real child processes: the child stores exactly the figures the holder's
thread computed before, at the lowest priority and on the cores asked for; a child that crashes, hangs or cannot
be pinned is killed, logged once, counted, and the next computation goes on; stopping kills it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import psutil
from prometheus_client import REGISTRY

from bench import live_compute_memory
from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.monitoring import live_compute, live_performance
from bento.monitoring.live_compute import Job, Place
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import ShadowBatch
from bento.quality import comparison, estimates
from bento.quality.windows import DAY, measure
from tests.helpers import poll, queued
from tests.unit.monitoring.test_live import live_of

FAILURES = "readmission_live_compute_failures_total"


def logged(store: SQLiteStore, rows: int, seed: int) -> None:
    """`rows` predictions of the champion "5" spread over the last 80 days, scored in shadow by the challenger "6",
    with outcomes for three quarters of them."""
    rng, ids = np.random.default_rng(seed), PredictionIds()
    for days in np.linspace(79, 1, 8):
        when = time.time() - days * DAY
        probability = rng.beta(2.0, 6.0, rows // 8).astype(np.float32)
        labels, matrix = (probability >= 0.3).astype(np.int64), np.zeros((len(probability), 1), np.float32)
        batch = ScoredBatch(ids.take(len(probability), when), when, "5", probability, labels, matrix)
        challenger = np.clip(probability + rng.normal(0, 0.05, len(probability)), 0, 1).astype(np.float32)
        shadow = [ShadowBatch(batch.ids[0], "6", challenger, (challenger >= 0.3).astype(np.int64))]
        store.append(queued(batch), keep_features=False, shadow=shadow)
        outcome = (rng.random(len(probability)) < probability).astype(int)
        labelled = {i: int(o) for i, o in zip(batch.ids, outcome, strict=True) if rng.random() < 0.75}
        store.record_outcomes(labelled, time.time())


def computing() -> list[psutil.Process]:
    """This process's children running live_compute.COMMAND (the child, or a test's stand-in for it): not the
    services other tests of this worker may have left running."""
    found = []
    for child in psutil.Process().children():
        try:
            if tuple(child.cmdline()[: len(live_compute.COMMAND)]) == live_compute.COMMAND:
                found.append(child)
        except psutil.Error:  # ended meanwhile
            continue
    return found


def failures() -> float:
    return REGISTRY.get_sample_value(FAILURES) or 0.0


def test_the_child_stores_exactly_what_the_holder_computed_in_its_thread(tmp_path):
    path = tmp_path / "log.db"
    store = SQLiteStore(path)
    logged(store, 4000, seed=1)
    now, versions = time.time(), ["5", "7"]  # 7: served here, no rows yet
    place = Place(str(path), tmp_path)
    first = live_compute.run(place, Job(now, versions, "m1", {}), 60, lambda: True, 0.5)
    assert first.problem is None and first.memo is not None and first.cpu_seconds > 0
    stored = store.stored_figures()
    since = now - 90 * DAY
    in_thread = measure(store.labelled(since), now, versions)  # what LivePerformance._compute ran before
    assert (stored.computed_at, stored.marker) == (now, "m1")
    assert stored.figures == json.dumps(in_thread)
    assert stored.comparison == json.dumps(comparison.measure(store.paired(since), now))
    assert stored.estimated == json.dumps(estimates.measure(store.scored(since), now, versions))
    assert json.loads(stored.comparison)[0]["challenger_version"] == "6", "the comparison has rows"
    assert json.loads(stored.figures)["5"]["90d"]["labelled_rows"] > 2000

    # the memo comes back exactly: the same rows again are taken from it, and give the same figures
    assert first.memo[("5", "90d")][1] == in_thread["5"]["90d"]
    again = live_compute.run(place, Job(now, versions, "m2", first.memo), 60, lambda: True, 0.5)
    assert again.memo == first.memo and store.stored_figures().figures == stored.figures
    store.close()


def test_the_child_runs_at_the_lowest_priority_on_the_cores_asked_for():
    core = max(os.sched_getaffinity(0))
    program = (
        f"import os; from bento.monitoring.live_compute import lower; lower([{core}]); "
        "print(os.sched_getscheduler(0), sorted(os.sched_getaffinity(0)))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(live_compute.SOURCE)},
    ).stdout.split(maxsplit=1)  # fmt: skip
    assert (int(shown[0]), json.loads(shown[1])) == (os.SCHED_IDLE, [core])


def test_a_core_the_machine_lacks_is_a_failure_naming_the_setting(tmp_path):
    outcome = live_compute.run(Place(str(tmp_path / "log.db"), tmp_path, frozenset({4095})),
                               Job(time.time(), ["5"], "m", {}), 60, lambda: True, 0.5)  # fmt: skip
    assert outcome.memo is None
    assert outcome.problem.startswith("OSError: READMISSION_MONITOR_CPUS: cannot run on cores [4095]"), outcome


def test_a_child_that_crashes_is_logged_once_counted_and_the_next_computation_goes_on(tmp_path, monkeypatch, caplog):
    store = SQLiteStore(tmp_path / "log.db")
    logged(store, 800, seed=2)
    live = live_of(store)
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)  # no rest to speak of
    monkeypatch.setattr(live_compute, "COMMAND", (sys.executable, "-c", "import os; os.abort()"))
    counted = failures()
    with caplog.at_level(logging.WARNING, logger="readmission"):
        live.refresh()
    (record,) = [r for r in caplog.records if "computation failed" in r.getMessage()]
    assert "ended by signal 6" in record.getMessage() and record.levelname == "WARNING"
    assert failures() == counted + 1
    assert (live.computations, live.latest().computed_at) == (0, None), "nothing stored, nothing served"
    assert not computing(), "no child left behind"

    monkeypatch.undo()  # the real child again
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)
    live.refresh()
    assert live.computations == 1 and live.latest().live["5"]["90d"]["labelled_rows"] > 400
    store.close()


def test_a_child_that_hangs_is_killed_at_its_timeout(tmp_path, monkeypatch, caplog):
    store = SQLiteStore(tmp_path / "log.db")
    live = live_of(store)
    monkeypatch.setattr(live_performance, "TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(live_compute, "COMMAND", (sys.executable, "-c", "import time; time.sleep(600)"))
    counted, started = failures(), time.monotonic()
    with caplog.at_level(logging.WARNING, logger="readmission"):
        live.refresh()
    assert time.monotonic() - started < 30
    assert "its computation failed (still running after 1 s: killed)" in caplog.text
    assert failures() == counted + 1 and not computing()
    store.close()


def test_stopping_kills_the_child_it_waits_for(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "log.db")
    live = live_of(store, 0.05)
    monkeypatch.setattr(live_compute, "COMMAND", (sys.executable, "-c", "import time; time.sleep(600)"))
    counted = failures()
    live.start()
    poll(computing, 10, "the child", interval=0.02)
    live.stop(10)
    assert not live._thread.is_alive() and not computing()
    assert failures() == counted, "a child stopped with its worker is no failure"
    store.close()


def test_the_child_reads_a_log_of_many_single_row_calls_in_bounded_memory(tmp_path):
    """Single-row calls make as many batches as rows (the log's worst case): over 200,000 of them the child's peak
    RSS stays within 150 bytes a row above a child's over an empty log (read as Python objects all at once: 451)."""
    rows = 200_000
    full = live_compute_memory.write_log(tmp_path / "full.db", rows, per_call=1)
    SQLiteStore(tmp_path / "empty.db").close()
    grown = live_compute_memory.child_peak_bytes(tmp_path / "full.db")
    grown -= live_compute_memory.child_peak_bytes(tmp_path / "empty.db")
    assert grown / rows < 150, f"{grown / rows:.0f} bytes a row"
    assert json.loads(full.stored_figures().estimated)["5"]["30d"]["scored_rows"] == rows
    full.close()
