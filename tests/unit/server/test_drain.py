"""bento/server/drain.py in-process: a real SIGTERM (signal.raise_signal) to this process, whose handler before the
drain's is a stand-in for uvicorn's that records the call. The worker turns not ready at once, serves on while calls
are in flight, stops once they have been quiet (or at the drain's limit), once for two signals; nothing is installed
where the drain is off, outside an event loop or off the main thread."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bento.server import drain
from bento.server.drain import Drain

QUIET = 0.05


@pytest.fixture
def stops(monkeypatch) -> Iterator[list[int]]:
    """The signals the stand-in for uvicorn's SIGTERM handler received; the original handler is restored after."""
    monkeypatch.setattr(drain, "QUIET_SECONDS", QUIET)
    original = signal.getsignal(signal.SIGTERM)
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, frame: received.append(sig))
    yield received
    signal.signal(signal.SIGTERM, original)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the event loop run until `check` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_sigterm_turns_the_worker_not_ready_and_stops_it_once_calls_are_quiet(core, stops):
    async def scenario() -> float:
        Drain(10, core).install()
        core.in_flight.begin()
        signal.raise_signal(signal.SIGTERM)
        assert core.draining and not core.ready()
        await asyncio.sleep(4 * QUIET + 0.2)  # longer than quiet and than one drain check (0.1 s): the call goes on
        assert stops == [], "stopped with a call in flight"
        core.in_flight.end()
        core.in_flight.begin()  # one more short call, which the drain serves too
        core.in_flight.end()
        last_start = core.in_flight.last_start
        await until(lambda: stops == [signal.SIGTERM], 5, "the stop after the quiet")
        return time.monotonic() - last_start

    assert QUIET <= asyncio.run(scenario()) < 2


def test_the_drain_stops_at_its_limit_with_calls_still_in_flight_and_a_second_sigterm_changes_nothing(core, stops):
    async def scenario() -> float:
        Drain(0.3, core).install()
        core.in_flight.begin()  # never ends
        began = time.monotonic()
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        await until(lambda: bool(stops), 5, "the stop at the drain's limit")
        took = time.monotonic() - began
        await asyncio.sleep(0.3)  # a second drain would stop a second time by now
        assert stops == [signal.SIGTERM]
        return took

    assert 0.3 <= asyncio.run(scenario()) < 2


def test_nothing_is_installed_when_off_outside_an_event_loop_or_off_the_main_thread(core, stops):
    stand_in = signal.getsignal(signal.SIGTERM)

    async def in_loop(seconds: float) -> None:
        Drain(seconds, core).install()

    asyncio.run(in_loop(0))
    Drain(10, core).install()  # no running loop: not in a server
    errors: list[BaseException] = []

    def off_the_main_thread() -> None:
        try:
            asyncio.run(in_loop(10))
        except BaseException as error:  # signal.signal refuses other threads: install must not try
            errors.append(error)

    thread = threading.Thread(target=off_the_main_thread)
    thread.start()
    thread.join(5)
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) is stand_in
    assert not core.draining
