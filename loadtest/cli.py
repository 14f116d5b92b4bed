"""Command-line pieces shared by run.py and soak.py, free of Locust (importing Locust patches the process).

Durations ("90", "90s", "5m", "1h30m"), the options after `--` that go to Locust unchanged, a free port.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
