"""A server process pinned to its core: start, wait until ready, its process tree, stop; memory and CPU."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.contenders import Server
from loadtest.cli import wait_ready

SERVER_CORE, LOAD_CORE = "0", "1"

# Every server: one inference thread (our Predictor sets nthread=1; the others would otherwise size
# their OpenMP pool by the core count) and no telemetry home calls.
COMMON_ENV = {
    "OMP_NUM_THREADS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


class Running:
    """A server process group pinned to SERVER_CORE, with its log in `log`."""

    def __init__(self, server: Server, port: int, log: Path) -> None:
        self.server, self.port, self.log = server, port, log
        env = {**os.environ, **COMMON_ENV, **server.env}
        env.pop("VIRTUAL_ENV", None)
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *server.command],
            cwd=server.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def url(self, path: str) -> str:
        """The URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds until the readiness route answers 200; raises if the server exits or times out."""

        def alive() -> None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited with {self.proc.returncode}")

        try:
            return wait_ready(self.url(self.server.ready_path), timeout, alive)
        except RuntimeError as error:
            raise RuntimeError(f"{self.server.name}: {error}; see {self.log}") from None

    def pids(self) -> list[int]:
        """The server's process tree (the group leader is taskset, exec'd into the server)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        tree, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def cpu_ticks(self) -> int:
        """CPU clock ticks of the server's process tree so far."""
        return sum(cpu_ticks(pid) for pid in self.pids())

    def stop(self) -> None:
        """SIGTERM the process group (and any stray child), SIGKILL what is left."""
        pids = self.pids()
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            for pid in pids:  # any child that left the group
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            try:
                self.proc.wait(timeout=wait)
                deadline = time.monotonic() + wait
                while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not any(_alive(p) for p in pids):
                    break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def status_kb(pid: int, key: str) -> int:
    """A field of /proc/PID/status in kB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid: int) -> int:
    """User and system CPU time of a process in clock ticks; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _core_busy_ticks(core: str) -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            return sum(values) - values[3] - values[4]  # all but idle and iowait
    return 0


class MemorySampler:
    """Peak of the summed RSS of the server's process tree, sampled every 100 ms while running."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(status_kb(pid, "VmRSS") for pid in self.running.pids())
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(0.1)

    def _cpu(self) -> tuple[float, int, int]:
        return time.monotonic(), self.running.cpu_ticks(), _core_busy_ticks(SERVER_CORE)

    def __enter__(self) -> MemorySampler:
        self._start = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
        end = self._cpu()
        hz, wall = os.sysconf("SC_CLK_TCK"), end[0] - self._start[0]
        server = (end[1] - self._start[1]) / hz
        core = (end[2] - self._start[2]) / hz
        self.server_cpu_pct = 100 * server / wall  # CPU the server's processes used (of one core)
        self.other_on_core_pct = max(0.0, 100 * (core - server) / wall)  # anything else busy on the server's core
