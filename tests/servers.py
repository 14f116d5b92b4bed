"""Real servers for tests: start a process on a free loopback port and wait until it is ready.

`free_port` and `wait_ready` are loadtest/cli.py's, the one copy the load tests, the benchmark and the OCI check
use too.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.cli import free_port as free_port  # servers.free_port() in the tests
from loadtest.cli import wait_ready


@dataclass
class Server:
    """A running server process and where it answers."""

    process: subprocess.Popen
    url: str
    log: Path
    grpc: str | None = None  # host:port of its gRPC server, where one was asked for

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_text(self) -> str:
        """Everything the server printed."""
        return self.log.read_text(errors="replace")


def start(
    command: Sequence[str], port: int, env: dict[str, str], log: Path, ready_path: str = "/readyz", timeout: float = 90
) -> Server:
    """Start `command` and poll `ready_path` until it answers 200 (or fail with the log)."""
    handle = log.open("wb")
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(process, f"http://127.0.0.1:{port}", log)

    def alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}")

    try:
        wait_ready(server.url + ready_path, timeout, alive, every=0.3)
    except RuntimeError as error:  # exited, or not ready in time
        server.stop()
        raise RuntimeError(f"{error}:\n{server.log_text()[-3000:]}") from None
    return server
