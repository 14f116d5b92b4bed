"""The live figures computed in a process of their own, at the lowest priority, off the serving workers' GIL.

The lease holder of bento/monitoring/live_performance.py calls `run`: it starts `python -m
bento.monitoring.live_compute` (the worker's interpreter), writes it the `Job` on stdin (JSON: where the log is, the
time, the versions served, the change marker, the figures of the last computation's rows) and waits, without the GIL,
for the child to exit. The child lowers itself to the lowest priority (SCHED_IDLE where allowed, else nice 19),
pins itself to READMISSION_MONITOR_CPUS where set, opens its own store (bento/predictionlog/factory.py), reads the
labelled, paired and scored rows, computes the figures, the comparison and the estimates (the code
`readmission monitor` runs too), saves them with `store.save_figures` and writes back the memo of the figures per
rows (windows.Memo: unchanged rows are not computed again next time). The worker then reads the stored figures as
every worker does. A child that fails, or outlives its timeout (killed), is an `Outcome` with a problem that names
no patient: the caller logs it; serving never sees it.

The job goes on stdin, never on the command line: the log's location may hold a PostgreSQL password.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the child imports these only once it runs at the lowest priority (see `main`)
    from bento.predictionlog.store import LogStore
    from bento.quality.windows import Memo

COMMAND = (sys.executable, "-m", "bento.monitoring.live_compute")
SOURCE = Path(__file__).resolve().parents[2]  # the folder holding `bento`: the child imports it from there


@dataclass(frozen=True)
class Place:
    """Where the child finds the log (READMISSION_PREDICTION_LOG, READMISSION_HOME, as open_store reads them) and the
    cores it is pinned to (READMISSION_MONITOR_CPUS; None: the worker's)."""

    location: str = field(repr=False)  # may hold a password: never shown
    home: Path
    cpus: frozenset[int] | None = None


@dataclass(frozen=True)
class Job:
    """One computation: at `now`, for the `versions` served (shown even without rows), stored under `marker`."""

    now: float
    versions: list[str]
    marker: str
    memo: Memo


@dataclass(frozen=True)
class Outcome:
    """What a child did: the memo of the figures it stored (None: it failed), its CPU seconds, why it failed."""

    memo: Memo | None
    cpu_seconds: float
    problem: str | None = None  # no patient data: an exit status, a timeout, an exception's type and place


def run(place: Place, job: Job, timeout: float, waiting: Callable[[], bool], step: float) -> Outcome:
    """Compute `job` in a child process and wait for it, holding no GIL: every `step` seconds `waiting()` is asked
    whether to go on (False: the child is killed); a child still running after `timeout` seconds is killed."""
    before = children_cpu()
    path = os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))
    child = subprocess.Popen(
        COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path}, text=True
    )
    try:
        output, problem = _waited(child, _encoded(place, job), timeout, waiting, step)
    finally:
        if child.returncode is None:  # `waiting` raised
            child.kill()
            child.communicate()
    cpu = children_cpu() - before  # the child's, now that it has been waited for
    if problem is None:
        answer = _answer(output)
        if child.returncode == 0 and "memo" in answer:
            return Outcome(_memo_of(answer["memo"]), cpu)
        ended = f"ended by signal {-child.returncode}" if child.returncode < 0 else f"exited {child.returncode}"
        problem = answer.get("error", ended)
    return Outcome(None, cpu, problem)


def _waited(
    child: subprocess.Popen[str], sent: str | None, timeout: float, waiting: Callable[[], bool], step: float
) -> tuple[str, str | None]:
    """The child's output once it exited, or why it was killed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return child.communicate(sent, timeout=step)[0], None
        except subprocess.TimeoutExpired:
            sent = None  # written already: communicate goes on from where it was
        if time.monotonic() >= deadline:
            problem = f"still running after {timeout:g} s"
        elif not waiting():
            problem = "no longer wanted"
        else:
            continue
        child.kill()
        child.communicate()
        return "", f"{problem}: killed"


def children_cpu() -> float:
    """CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _encoded(place: Place, job: Job) -> str:
    return json.dumps(
        {
            "location": place.location,
            "home": str(place.home),
            "cpus": None if place.cpus is None else sorted(place.cpus),
            "now": job.now,
            "versions": job.versions,
            "marker": job.marker,
            "memo": _memo_rows(job.memo),
        }
    )


def _memo_rows(memo: Memo) -> list[list[Any]]:
    """A memo as JSON: [version, window, digest in hex, figures] (floats survive JSON exactly)."""
    return [[version, window, digest.hex(), figures] for (version, window), (digest, figures) in memo.items()]


def _memo_of(rows: list[list[Any]]) -> Memo:
    return {(version, window): (bytes.fromhex(digest), figures) for version, window, digest, figures in rows}


def _answer(output: str) -> dict[str, Any]:
    """The child's one line of JSON, or nothing where it died before writing it."""
    try:
        answer = json.loads(output)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def lower(cpus: list[int] | None) -> None:
    """This process at the lowest priority (SCHED_IDLE: it runs only on a core nothing else wants; else nice 19),
    on `cpus` where given."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    if cpus is not None:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as error:
            raise OSError(f"READMISSION_MONITOR_CPUS: cannot run on cores {cpus}: {error.strerror}") from None


def compute(store: LogStore, job: Job) -> Memo:
    """What the lease holder computes: the figures, the comparison and the estimates of the last 90 days' rows,
    saved in the store under `job.marker`; the memo of the figures per rows."""
    from bento.predictionlog.store import StoredFigures
    from bento.quality import comparison, estimates
    from bento.quality.windows import DAY, WINDOWS, measure

    memo = dict(job.memo)
    since = job.now - max(WINDOWS.values()) * DAY
    live = measure(store.labelled(since), job.now, job.versions, memo)
    compared = comparison.measure(store.paired(since), job.now)
    estimated = estimates.measure(store.scored(since), job.now, job.versions)
    store.save_figures(
        StoredFigures(job.now, job.marker, json.dumps(live), json.dumps(compared), json.dumps(estimated))
    )
    return memo


def _described(error: BaseException) -> str:
    """An error as the worker logs it: a store's or the pinning's message (no patient data in them), else the type
    and the line where it was raised (an exception's message may quote values)."""
    from bento.predictionlog.store import StoreError

    if isinstance(error, (StoreError, OSError)):
        return f"{type(error).__name__}: {error}"
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = "" if frame is None else f" at {Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno}"
    return f"{type(error).__name__}{where}"


def main() -> int:
    """The child: read the job, lower itself, compute, answer one line of JSON on stdout."""
    job = json.load(sys.stdin)
    try:
        lower(job["cpus"])
        # imported now, not at the top: threads numpy starts on import inherit this process's priority and cores
        from bento.predictionlog.factory import open_store

        store = open_store(job["location"], Path(job["home"]))
        if store is None:
            raise ValueError("the prediction log is off")
        try:
            memo = compute(store, Job(job["now"], job["versions"], job["marker"], _memo_of(job["memo"])))
        finally:
            store.close()
    except Exception as error:  # the worker logs it and tries again at its next interval
        print(json.dumps({"error": _described(error)}))
        return 1
    print(json.dumps({"memo": _memo_rows(memo)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
