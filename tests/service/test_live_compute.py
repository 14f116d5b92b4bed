"""The live figures' child process (bento/monitoring/live_compute.py) in a real service: killed while it computes,
the service answers throughout, logs it once, counts it, keeps serving the figures it had, and computes again."""

from __future__ import annotations

import signal
import time

import httpx
import psutil

from tests.helpers import RECORD, copy_home, poll, scrape, serve

CHILD = "bento.monitoring.live_compute"


def child_of(pid: int) -> psutil.Process | None:
    """The live figures' child among the processes under `pid`, if one runs."""
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if CHILD in process.cmdline():
                return process
        except psutil.NoSuchProcess:
            continue
    return None


def failures(server) -> float:
    for line in scrape(server).splitlines():
        if line.startswith("readmission_live_compute_failures_total "):
            return float(line.split()[1])
    raise AssertionError("readmission_live_compute_failures_total is not exposed")


def test_a_child_killed_while_it_computes_never_reaches_serving(bento_home, tmp_path):
    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_MONITOR_SECONDS="1",
                   READMISSION_PREDICTION_LOG=str(tmp_path / "log.db"))  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = poll(lambda: client.get("/performance").json()["computed_at"], 60, "the first computation")
            assert failures(server) == 0

            def killed() -> bool:
                """A prediction (it moves the estimates' marker: a computation is due once the holder rested), and
                the child killed if one runs now."""
                assert client.post("/predict", json=RECORD).status_code == 200
                child = child_of(server.process.pid)
                if child is None:
                    return False
                child.send_signal(signal.SIGKILL)
                return True

            poll(killed, 120, "a child computing the live figures", interval=0.01)
            poll(lambda: "its computation failed (ended by signal 9)" in server.log_text(), 30, "the failure logged")
            assert server.log_text().count("its computation failed") == 1
            assert failures(server) == 1
            for _ in range(20):  # serving never saw it
                assert client.post("/predict", json=RECORD).status_code == 200
            assert client.get("/performance").json()["computed_at"] == first, "the figures it had, served on"
            since = time.time()
            poll(lambda: client.get("/performance").json()["computed_at"] >= since, 120, "the next computation")
            assert failures(server) == 1
    finally:
        server.stop()
