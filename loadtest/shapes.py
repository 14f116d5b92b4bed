"""The four load scenarios as Locust `LoadTestShape` classes, selectable by name.

    constant  fixed users for a duration
    step      users ramp up in equal steps to a maximum (watch the autoscaler follow)
    stress    users grow step by step until the failure ratio or p95 of a step passes a bound, then stop
              and report the breaking point (users and req/s); also stops at the user cap or the duration
    soak      fixed users for a long, parameterised duration (default one hour), measured window by window
              (`--soak-window`, 60 s: requests, failures, req/s, p50 and p99 of each window)

The locustfile exposes only `Scenario`, which runs the class named by `--scenario` (env LOADTEST_SCENARIO),
so one locustfile serves all four, headless or from the web UI. Every scenario ends by itself: its tick
returns None at its duration, and the locustfile adds a hard backstop (`--hard-limit`).
Shapes run on the master (or the single local process) only.
"""

from __future__ import annotations

import logging
import time
from copy import copy
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from locust import LoadTestShape
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

log = logging.getLogger(__name__)

DEFAULT_DURATIONS = {"constant": 60.0, "step": 300.0, "stress": 600.0, "soak": 3600.0}


def add_arguments(parser: Any) -> None:
    """Register the scenario options on Locust's argument parser (each also an environment variable)."""
    group = parser.add_argument_group("scenario", "load shape (loadtest/shapes.py)")
    group.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="constant",
        env_var="LOADTEST_SCENARIO",
        help="constant | step | stress | soak (default constant)",
    )
    group.add_argument(
        "--scenario-users",
        type=int,
        default=10,
        env_var="LOADTEST_USERS",
        help="constant and soak hold this many users, step ramps to it, stress stops at it",
    )
    group.add_argument(
        "--scenario-spawn-rate",
        type=float,
        default=5.0,
        env_var="LOADTEST_SPAWN_RATE",
        help="users started per second when the user count changes",
    )
    group.add_argument(
        "--scenario-duration",
        type=float,
        default=0.0,
        env_var="LOADTEST_DURATION",
        help="seconds; 0: the default (constant 60, step 300, stress 600, soak 3600)",
    )
    group.add_argument(
        "--step-count",
        type=int,
        default=5,
        env_var="LOADTEST_STEP_COUNT",
        help="step: number of equal steps up to --scenario-users",
    )
    group.add_argument(
        "--stress-step-users",
        type=int,
        default=5,
        env_var="LOADTEST_STRESS_STEP_USERS",
        help="stress: users added per step",
    )
    group.add_argument(
        "--stress-step-time",
        type=float,
        default=20.0,
        env_var="LOADTEST_STRESS_STEP_TIME",
        help="stress: seconds per step (the bounds are checked over each step)",
    )
    group.add_argument(
        "--stress-max-p95-ms",
        type=float,
        default=1000.0,
        env_var="LOADTEST_STRESS_MAX_P95_MS",
        help="stress: a step whose p95 exceeds this is the breaking point",
    )
    group.add_argument(
        "--stress-max-failure-ratio",
        type=float,
        default=0.05,
        env_var="LOADTEST_STRESS_MAX_FAILURE_RATIO",
        help="stress: a step whose failure ratio exceeds this is the breaking point",
    )
    group.add_argument(
        "--soak-window",
        type=float,
        default=60.0,
        env_var="LOADTEST_SOAK_WINDOW",
        help="soak: seconds per measurement window (requests, failures, req/s, p50, p99 of each)",
    )


@dataclass(frozen=True)
class ScenarioSettings:
    """The scenario options as parsed (see `add_arguments`)."""

    scenario: str = "constant"
    users: int = 10
    spawn_rate: float = 5.0
    duration: float = 60.0
    step_count: int = 5
    stress_step_users: int = 5
    stress_step_time: float = 20.0
    stress_max_p95_ms: float = 1000.0
    stress_max_failure_ratio: float = 0.05
    soak_window: float = 60.0

    @classmethod
    def from_options(cls, options: Any) -> ScenarioSettings:
        """Read Locust's parsed options (missing ones take the defaults)."""
        scenario = getattr(options, "scenario", None) or "constant"
        duration = float(getattr(options, "scenario_duration", 0) or 0) or DEFAULT_DURATIONS[scenario]
        return cls(
            scenario=scenario,
            users=max(1, int(getattr(options, "scenario_users", cls.users))),
            spawn_rate=max(0.1, float(getattr(options, "scenario_spawn_rate", cls.spawn_rate))),
            duration=duration,
            step_count=max(1, int(getattr(options, "step_count", cls.step_count))),
            stress_step_users=max(1, int(getattr(options, "stress_step_users", cls.stress_step_users))),
            stress_step_time=max(1.0, float(getattr(options, "stress_step_time", cls.stress_step_time))),
            stress_max_p95_ms=float(getattr(options, "stress_max_p95_ms", cls.stress_max_p95_ms)),
            stress_max_failure_ratio=float(getattr(options, "stress_max_failure_ratio", cls.stress_max_failure_ratio)),
            soak_window=max(1.0, float(getattr(options, "soak_window", cls.soak_window))),
        )


class _Shape(LoadTestShape):
    """Common parts: settings from the runner's options, a report for the summary."""

    abstract: ClassVar[bool] = True
    name: ClassVar[str] = ""

    def __init__(self, settings: ScenarioSettings | None = None) -> None:
        super().__init__()
        self._settings = settings

    @property
    def settings(self) -> ScenarioSettings:
        """Explicit settings, else the runner's parsed options."""
        if self._settings is None:
            options = self.runner.environment.parsed_options if self.runner is not None else None
            self._settings = ScenarioSettings.from_options(options)
        return self._settings

    def report(self) -> dict[str, Any]:
        """What the summary shows about this scenario."""
        return {"scenario": self.name, "settings": asdict(self.settings)}


class ConstantShape(_Shape):
    """Fixed users (`--scenario-users`) for `--scenario-duration` seconds."""

    abstract: ClassVar[bool] = False
    name: ClassVar[str] = "constant"

    def tick(self) -> tuple[int, float] | None:
        """Hold the user count until the duration."""
        s = self.settings
        if self.get_run_time() >= s.duration:
            return None
        return s.users, s.spawn_rate


class StepShape(_Shape):
    """Users ramp in `--step-count` equal steps up to `--scenario-users` over `--scenario-duration` seconds."""

    abstract: ClassVar[bool] = False
    name: ClassVar[str] = "step"

    def tick(self) -> tuple[int, float] | None:
        """The user count of the current step."""
        s = self.settings
        run_time = self.get_run_time()
        if run_time >= s.duration:
            return None
        step = min(int(run_time // (s.duration / s.step_count)), s.step_count - 1)
        return max(1, round(s.users * (step + 1) / s.step_count)), s.spawn_rate


@dataclass
class StepResult:
    """Measured over one stress step (its window of the cumulative statistics)."""

    users: int
    seconds: float
    requests: int
    failures: int
    rps: float
    p95_ms: float | None
    failure_ratio: float
    broken: bool = False
    reasons: list[str] = field(default_factory=list)


class StressShape(_Shape):
    """Add `--stress-step-users` every `--stress-step-time` seconds until a step breaks a bound.

    A step breaks when its failure ratio exceeds `--stress-max-failure-ratio` or its p95 exceeds
    `--stress-max-p95-ms` (both measured over that step only). The test then stops; `breaking_point`
    holds the users and req/s of the breaking step, `capacity` those of the last good one.
    It also stops at `--scenario-users` or `--scenario-duration` without a breaking point.
    """

    abstract: ClassVar[bool] = False
    name: ClassVar[str] = "stress"

    def __init__(self, settings: ScenarioSettings | None = None) -> None:
        super().__init__(settings)
        self.steps: list[StepResult] = []
        self.breaking_point: StepResult | None = None
        self.stop_reason = ""
        self._step_index = -1
        self._snapshot: Snapshot | None = None

    def reset_time(self) -> None:
        """A new run starts: forget earlier steps."""
        super().reset_time()
        self.steps, self.breaking_point, self.stop_reason = [], None, ""
        self._step_index, self._snapshot = -1, None

    def _users(self, index: int) -> int:
        return min(self.settings.users, self.settings.stress_step_users * (index + 1))

    def _measure(self, users: int) -> StepResult:
        assert self._snapshot is not None
        window = self._snapshot.since(self.runner.stats.total, self.get_run_time())
        count, failed, p95 = window.requests, window.failures, window.percentile(0.95)
        ratio = failed / count if count else (1.0 if failed else 0.0)
        result = StepResult(users, round(window.seconds, 1), count, failed, window.rps, p95, round(ratio, 4))
        s = self.settings
        if ratio > s.stress_max_failure_ratio:
            result.reasons.append(f"failure ratio {ratio:.2%} > {s.stress_max_failure_ratio:.2%}")
        if p95 is not None and p95 > s.stress_max_p95_ms:
            result.reasons.append(f"p95 {p95:.0f} ms > {s.stress_max_p95_ms:.0f} ms")
        if count == 0 and failed == 0:
            result.reasons.append("no request completed during the step")
        result.broken = bool(result.reasons)
        return result

    def tick(self) -> tuple[int, float] | None:
        """Ramp step by step; after each step check the bounds."""
        s = self.settings
        run_time = self.get_run_time()
        index = int(run_time // s.stress_step_time)
        if index != self._step_index:
            if self._step_index >= 0:
                result = self._measure(self._users(self._step_index))
                self.steps.append(result)
                log.info("stress step: %s", asdict(result))
                if result.broken:
                    self.breaking_point = result
                    self.stop_reason = "breaking point: " + "; ".join(result.reasons)
                    log.warning(
                        "stress: breaking point at %d users, %.1f req/s (%s)",
                        result.users,
                        result.rps,
                        "; ".join(result.reasons),
                    )
                    return None
                if self._users(self._step_index) >= s.users:
                    self.stop_reason = f"user cap {s.users} reached without a breaking point"
                    return None
            if run_time >= s.duration:
                self.stop_reason = f"duration {s.duration:g} s reached without a breaking point"
                return None
            self._step_index = index
            self._snapshot = Snapshot.take(self.runner.stats.total, run_time)
        return self._users(self._step_index), s.spawn_rate

    def report(self) -> dict[str, Any]:
        """The steps, the breaking point (users, req/s) and the last good step."""
        good = [step for step in self.steps if not step.broken]
        return {
            **super().report(),
            "stop_reason": self.stop_reason,
            "breaking_point": asdict(self.breaking_point) if self.breaking_point else None,
            "capacity": asdict(good[-1]) if good else None,
            "steps": [asdict(step) for step in self.steps],
        }


@dataclass
class WindowResult:
    """Measured over one soak window (its slice of the cumulative statistics)."""

    index: int
    started: float  # wall clock (epoch seconds), to line up with samples taken outside Locust
    ended: float
    seconds: float
    users: int
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    partial: bool = False  # shorter than --soak-window (the run ended or was stopped inside it)


class SoakShape(ConstantShape):
    """Fixed users for a long time (default one hour): leaks, drift, slow degradation.

    Every `--soak-window` seconds the window just ended is measured (requests, failures, req/s, p50, p99
    over that window only) and kept for the report, so the first and the last window can be compared.
    """

    name: ClassVar[str] = "soak"

    def __init__(self, settings: ScenarioSettings | None = None) -> None:
        super().__init__(settings)
        self.windows: list[WindowResult] = []
        self._window_index = -1
        self._snapshot: Snapshot | None = None

    def reset_time(self) -> None:
        """A new run starts: forget earlier windows."""
        super().reset_time()
        self.windows, self._window_index, self._snapshot = [], -1, None

    def _measure(self) -> WindowResult | None:
        """The window open now, from its snapshot to this moment (None when none is open)."""
        if self._snapshot is None or self.runner is None:
            return None
        window = self._snapshot.since(self.runner.stats.total, self.get_run_time())
        return WindowResult(
            index=self._window_index,
            started=round(self._snapshot.wall, 3),
            ended=round(self._snapshot.wall + window.seconds, 3),
            seconds=round(window.seconds, 1),
            users=self.runner.user_count,
            requests=window.requests,
            failures=window.failures,
            rps=window.rps,
            p50_ms=window.percentile(0.50),
            p99_ms=window.percentile(0.99),
            partial=window.seconds < 0.9 * self.settings.soak_window,
        )

    def tick(self) -> tuple[int, float] | None:
        """Hold the user count; at each window boundary measure the window that ended."""
        s = self.settings
        run_time = self.get_run_time()
        index = int(run_time // s.soak_window)
        finished = run_time >= s.duration
        if index != self._window_index or finished:
            result = self._measure()  # the last one is partial when the duration is not a multiple
            if result is not None:
                self.windows.append(result)
                log.info("soak window: %s", asdict(result))
            self._snapshot = None
            if finished:
                return None
            self._window_index = index
            self._snapshot = Snapshot.take(self.runner.stats.total, run_time)
        return s.users, s.spawn_rate

    def report(self) -> dict[str, Any]:
        """Every window (a window still open, e.g. after a hard stop, is measured as partial)."""
        open_window = self._measure()
        windows = [*self.windows, *([open_window] if open_window is not None else [])]
        return {**super().report(), "windows": [asdict(window) for window in windows]}


@dataclass(frozen=True)
class Window:
    """What happened between a snapshot of Locust's cumulative statistics and a later moment."""

    seconds: float
    requests: int
    failures: int
    timed: int  # requests with a response time (Locust leaves some without one)
    response_times: dict[int, int]

    @property
    def rps(self) -> float:
        """Requests per second over the window."""
        return round(self.requests / self.seconds, 2)

    def percentile(self, fraction: float) -> float | None:
        """Response-time percentile of the window in ms (None without a timed request)."""
        return calculate_response_time_percentile(self.response_times, self.timed, fraction) if self.timed else None


@dataclass(frozen=True)
class Snapshot:
    """Locust's cumulative statistics at one moment: stress steps and soak windows are differences of two."""

    response_times: dict[int, int]
    requests: int
    none_requests: int
    failures: int
    wall: float  # epoch seconds, to line up with samples taken outside Locust
    run_time: float

    @classmethod
    def take(cls, total: Any, run_time: float) -> Snapshot:
        """Snapshot of `runner.stats.total` at `run_time` seconds into the run."""
        times = copy(total.response_times)
        return cls(times, total.num_requests, total.num_none_requests, total.num_failures, time.time(), run_time)

    def since(self, total: Any, run_time: float) -> Window:
        """The window from this snapshot to `run_time`."""
        count = total.num_requests - self.requests
        timed = count - (total.num_none_requests - self.none_requests)
        times = diff_response_time_dicts(total.response_times, self.response_times) if timed > 0 else {}
        seconds = max(run_time - self.run_time, 1e-9)
        return Window(seconds, count, total.num_failures - self.failures, max(timed, 0), times)


SCENARIOS: dict[str, type[_Shape]] = {shape.name: shape for shape in (ConstantShape, StepShape, StressShape, SoakShape)}


class Scenario(LoadTestShape):
    """Runs the scenario named by `--scenario`; chosen again at each start (web UI restarts included)."""

    def __init__(self) -> None:
        super().__init__()
        self.selected: _Shape | None = None

    def reset_time(self) -> None:
        """Locust calls this when a run starts (the master once more after its first tick)."""
        super().reset_time()
        if self.selected is not None:
            self.selected.reset_time()

    def _select(self) -> _Shape:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        settings = ScenarioSettings.from_options(options)
        if self.selected is None or self.selected.settings != settings:  # first run, or options changed in the UI
            self.selected = SCENARIOS[settings.scenario](settings)
            self.selected.runner = self.runner
            log.info("scenario %s: %s", settings.scenario, asdict(settings))
        return self.selected

    def tick(self) -> tuple[int, float] | None:
        """Delegate to the selected scenario."""
        return self._select().tick()

    def report(self) -> dict[str, Any]:
        """The selected scenario's report (empty before a run)."""
        return self.selected.report() if self.selected is not None else {}
