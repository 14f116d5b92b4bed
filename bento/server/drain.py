"""Graceful shutdown: after SIGTERM a worker keeps serving until the requests stop coming, then stops.

Uvicorn alone stops accepting at once on SIGTERM: connections the kernel had already queued on the shared
listening socket (the circus arbiter holds it until every worker is gone) are then reset, and so are
connections accepted but not yet read while the event loop was busy predicting. Both are requests a client
sent before the SIGTERM. Here the worker first drains: it stays not ready (/readyz 503, so Kubernetes and
KServe stop routing to it) and serves on until no request has been in flight for QUIET_SECONDS, at most
READMISSION_DRAIN_SECONDS; then uvicorn's own graceful shutdown lets the requests in flight finish. Every
answer of the drain closes its connection (bento/server/connections.py): keep-alive clients reconnect, elsewhere.
The pod's terminationGracePeriodSeconds must cover the drain plus the longest request.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from bento.core.scoring import ScoringCore

logger = logging.getLogger("readmission")
QUIET_SECONDS = 1.0


class Drain:
    """Delays the worker's SIGTERM handler (uvicorn's) until the drain is over."""

    def __init__(self, max_seconds: float, core: ScoringCore) -> None:
        self.max_seconds = max_seconds
        self.core = core  # `core.draining` turns every readiness answer to 503; `core.in_flight` is waited on
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Wrap the SIGTERM handler: call in the worker's event loop (main thread) once uvicorn has installed it."""
        previous = signal.getsignal(signal.SIGTERM)
        if self.max_seconds <= 0 or threading.current_thread() is not threading.main_thread() or not callable(previous):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a server
            return

        def on_sigterm(sig: int, frame: Any) -> None:
            if not self.core.draining:  # a second SIGTERM (the process group's and the arbiter's) changes nothing
                self.core.draining = True
                loop.call_soon_threadsafe(self._start, previous, sig)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _start(self, stop: Callable[[int, Any], Any], sig: int) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(stop, sig))

    async def _run(self, stop: Callable[[int, Any], Any], sig: int) -> None:
        began = time.monotonic()
        logger.warning("SIGTERM: not ready, draining (at most %s s)", self.max_seconds)
        while time.monotonic() - began < self.max_seconds:
            in_flight = self.core.in_flight
            if in_flight.count == 0 and time.monotonic() - in_flight.last_start >= QUIET_SECONDS:
                break
            await asyncio.sleep(0.1)
        logger.warning("drained after %.1f s; stopping", time.monotonic() - began)
        stop(sig, None)
