"""Command-line pieces shared by run.py and soak.py, free of Locust (importing Locust patches the process).

Durations ("90", "90s", "5m", "1h30m"), the options after `--` that go to Locust unchanged; and, for every
program here that starts or waits for a local server (the load and soak tests, `make soak`, the benchmark,
the OCI check, the tests), a free loopback port and waiting until a server is ready. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import random
import socket
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def duration_seconds(text: str) -> float:
    """Seconds from "90", "90s", "5m", "1h30m"."""
    text = text.strip().lower()
    if not text:
        return 0.0
    if text.replace(".", "", 1).isdigit():
        return float(text)
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total, number = total + float(number) * units[char], ""
        else:
            raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 90, 90s, 5m, 1h30m)")
    if number:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (a number needs a unit after another unit)")
    return total


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(this script's arguments, the ones after `--` that go to Locust unchanged)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range.

    A port the kernel hands out for binding port 0 comes from the same range as the source ports of
    outgoing connections: with load running, one of those can take it before the server binds it.
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


# no proxy for loopback, whatever http_proxy says
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until(
    condition: Callable[[], bool], timeout: float, alive: Callable[[], None] | None = None, every: float = 0.25
) -> float:
    """Poll `condition` until it holds; the seconds that took.

    `alive`, called between tries, raises when what is awaited is gone (its process exited, its container
    stopped), so a dead server fails at once rather than after `timeout`. TimeoutError after `timeout`.
    """
    started = time.monotonic()
    while not condition():
        if alive is not None:
            alive()
        if time.monotonic() - started >= timeout:
            raise TimeoutError(f"not within {timeout:g} s")
        time.sleep(every)  # the poll's interval
    return time.monotonic() - started


def answers_200(url: str) -> bool:
    """Whether `url` answers 200 now (refused, reset, timed out, another status or garbage: no)."""
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # not 2xx is an HTTPError, an OSError
        return False


def wait_ready(url: str, timeout: float, alive: Callable[[], None] | None = None, every: float = 0.25) -> float:
    """Poll `url` until it answers 200; the seconds that took. RuntimeError after `timeout`, or from `alive`."""
    try:
        return wait_until(lambda: answers_200(url), timeout, alive, every)
    except TimeoutError:
        raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s") from None
