"""Real servers for tests: start a process on a free loopback port and wait until it is ready."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range.

    A port the kernel hands out for binding port 0 comes from the same range as the source ports of
    outgoing connections: with load tests running, one of those can take it before the server binds it.
    """
    low, _ = _ephemeral_range()
    for _ in range(50):
        candidate = random.randint(20000, max(20001, low - 1))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{command[0]} was not ready within {timeout} s:\n{server.log_text()[-3000:]}")
