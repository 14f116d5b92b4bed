"""Locust load test of the readmission service: realistic clinical systems calling every prediction route.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:3000 --headless --scenario constant ...

(`python loadtest/run.py` wraps this: results folder, CSV and HTML reports, local workers, SLO exit code.)

Each user is a clinical system sending real encounters (see loadtest/encounters.py), with a think time
between calls. Tasks, by weight:

    8  POST /predict                      one clinical record
    3  POST /predict                      the same kind of record in the original encoded flat form
    4  POST /v2/models/{model}/infer      one row, FP32 tensor [1, 263]
    2  POST /v2/models/{model}/infer      a batch of --batch-rows rows
    1  GET  /v2/models/{model}            model metadata
    2  POST /feedback                     the outcomes of earlier predictions (when some are waiting)

For a share of its predictions (--feedback-share, default 0.2) a user sends the true outcome 3 s later, as a
hospital would 30 days after discharge: drawn with the predicted probability, so the model is calibrated on
them and the service's live performance (GET /performance) has labelled rows to work on.

Every response is checked (status 200 and a well-formed body); anything else counts as a failure.
The target is Locust's `--host`; the V2 model name is `--v2-model` (env READMISSION_V2_MODEL_NAME).
With READMISSION_API_TOKEN set, every request carries `Authorization: Bearer <token>`.
At the end the master prints a summary, writes `summary.json` next to the CSV, and sets the exit code
from the SLO check (loadtest/slo.py): 0 when met, 1 when violated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.runners import MasterRunner, WorkerRunner

from loadtest import encounters, metrics, shapes, slo
from loadtest.shapes import Scenario  # noqa: F401  (the one shape Locust sees: --scenario picks)

log = logging.getLogger("loadtest")
POOL: encounters.Encounters | None = None
WORKER_REQUESTS: dict[str, int] = {}
_LOADER: gevent.Greenlet | None = None
SUMMARY: list[str] = []  # printed last, after Locust's own tables
# an outcome is sent this long after its prediction: later than the prediction log's writes (so never waited for)
FEEDBACK_DELAY_SECONDS = 3.0


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("readmission", "the readmission load test (loadtest/)")
    group.add_argument(
        "--v2-model",
        default="readmission",
        env_var="READMISSION_V2_MODEL_NAME",
        help="model name in the V2 paths (default readmission)",
    )
    group.add_argument(
        "--encounters",
        default="",
        env_var="LOADTEST_ENCOUNTERS",
        help="JSON-lines file of clinical records (default: held-out split, else distributions)",
    )
    group.add_argument(
        "--batch-rows",
        type=int,
        default=32,
        env_var="LOADTEST_BATCH_ROWS",
        help="rows per V2 batch request (default 32)",
    )
    group.add_argument(
        "--think-min",
        type=float,
        default=0.5,
        env_var="LOADTEST_THINK_MIN",
        help="shortest pause between a user's requests, seconds",
    )
    group.add_argument(
        "--think-max",
        type=float,
        default=1.5,
        env_var="LOADTEST_THINK_MAX",
        help="longest pause between a user's requests, seconds",
    )
    group.add_argument(
        "--feedback-share",
        type=float,
        default=0.2,
        env_var="LOADTEST_FEEDBACK_SHARE",
        help="share of the predictions whose (synthetic) outcome is sent to /feedback later (default 0.2)",
    )
    group.add_argument(
        "--hard-limit",
        type=float,
        default=0.0,
        env_var="LOADTEST_HARD_LIMIT",
        help="stop after this many seconds whatever the scenario (0: duration + 60)",
    )
    group.add_argument(
        "--summary-file",
        default="",
        env_var="LOADTEST_SUMMARY_FILE",
        help="the JSON summary (default summary.json next to the --csv files)",
    )
    shapes.add_arguments(parser)
    metrics.add_arguments(parser)
    slo_group = parser.add_argument_group("slo", "the SLO check at the end of the run (loadtest/slo.py)")
    slo.add_threshold_arguments(slo_group, prefix="slo-", env=True)


def _pool(options: Any) -> encounters.Encounters:
    """The encounter pool of this process, loaded once (concurrent callers wait for the same load).

    Loaded in a native thread: a worker keeps answering the master's heartbeats meanwhile.
    """
    global POOL, _LOADER
    if POOL is None:
        if _LOADER is None:
            explicit = getattr(options, "encounters", "") or None
            _LOADER = gevent.spawn(gevent.get_hub().threadpool.apply, encounters.load, (explicit,))
        pool = _LOADER.get()
        if POOL is None:
            POOL = pool
            log.info("encounters: %d records from %s", len(POOL.records), POOL.source)
    return POOL


@events.init.add_listener
def _init(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_pool, options)  # load now, not in the first user's request; heartbeats go on
    elif not isinstance(environment.runner, MasterRunner):
        _pool(options)  # a single local process: load before the test (and its clock) starts
    if isinstance(environment.runner, WorkerRunner):
        return
    if options is not None:
        metrics.start(environment, options.prometheus_host, options.prometheus_port)
    if isinstance(environment.runner, MasterRunner):

        @environment.events.worker_report.add_listener
        def _count(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
            total = data.get("stats_total") or {}
            WORKER_REQUESTS[client_id] = WORKER_REQUESTS.get(client_id, 0) + int(total.get("num_requests", 0))


@events.test_start.add_listener
def _backstop(environment: Any, **_kwargs: Any) -> None:
    """Whatever happens to the shape, stop the test after --hard-limit seconds."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    limit = float(getattr(options, "hard_limit", 0) or 0)
    if not limit:
        limit = shapes.ScenarioSettings.from_options(options).duration + 60
    runner = environment.runner

    def stop() -> None:
        if runner.state not in ("stopped", "cleanup"):
            log.warning("hard limit of %g s reached: stopping the test", limit)
            runner.quit() if getattr(options, "headless", False) else runner.stop()

    gevent.spawn_later(limit, stop)


@events.quitting.add_listener
def _verdict(environment: Any, **_kwargs: Any) -> None:
    """Check the SLO, write summary.json, set the exit code (the summary is printed at `quit`)."""
    if isinstance(environment.runner, WorkerRunner) or environment.runner is None:
        return
    options = environment.parsed_options
    thresholds = slo.Thresholds(options.slo_max_p95_ms, options.slo_max_failure_ratio, options.slo_min_rps)
    total, endpoints = slo.from_stats(environment.runner.stats)
    result = slo.check(total, endpoints, thresholds)
    shape = environment.shape_class
    extra: dict[str, Any] = {
        "scenario": shape.report() if shape is not None and hasattr(shape, "report") else {},
        "workers": [{"id": k, "requests": v} for k, v in sorted(WORKER_REQUESTS.items())],
        "host": environment.host,
    }
    SUMMARY.append(slo.format_summary(result, extra))
    target = options.summary_file or (
        str(Path(options.csv_prefix).parent / "summary.json") if getattr(options, "csv_prefix", None) else ""
    )
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps({**result.as_dict(), **extra}, indent=2) + "\n")
    environment.process_exit_code = result.exit_code


@events.quit.add_listener
def _print_summary(**_kwargs: Any) -> None:
    for text in SUMMARY:
        print(text, flush=True)


# ----------------------------------------------------------------------------------------------------------
# the user


class ReadmissionClient(FastHttpUser):
    """A clinical system asking for readmission risk at discharge."""

    network_timeout = 30.0
    connection_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        token = os.environ.get("READMISSION_API_TOKEN", "").strip()  # the service's bearer token, if it has one
        self.default_headers = {"Authorization": f"Bearer {token}"} if token else None  # read by super().__init__
        super().__init__(*args, **kwargs)
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        options = self.environment.parsed_options
        self.model = getattr(options, "v2_model", None) or os.environ.get("READMISSION_V2_MODEL_NAME", "readmission")
        self.batch_rows = max(1, int(getattr(options, "batch_rows", 32) or 32))
        self.think = (float(getattr(options, "think_min", 0.5)), float(getattr(options, "think_max", 1.5)))
        self.pool = _pool(options)
        self.feedback_share = float(getattr(options, "feedback_share", 0.2))
        self.outcomes: list[tuple[float, str, bool]] = []  # (when due, prediction id, outcome), sent by `feedback`

    def wait_time(self) -> float:
        """Think time between two requests of this user."""
        low, high = self.think
        return self.rng.uniform(low, max(low, high))

    @staticmethod
    def _refused(response: Any) -> bool:
        """Mark a non-200 response (or a connection error) as a failure; True when it was one."""
        if response.status_code == 200:
            return False
        if response.status_code == 0:
            response.failure(f"no response: {response.error!r}"[:200])
        else:
            response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
        return True

    def _check_prediction(self, response: Any) -> None:
        if self._refused(response):
            return
        body = response.json()
        probability = body.get("probability")
        if not isinstance(probability, float | int) or not 0.0 <= probability <= 1.0 or body.get("label") not in (0, 1):
            response.failure(f"malformed prediction: {str(body)[:200]}")
            return
        self._outcome_later([body.get("prediction_id")], [probability])

    def _outcome_later(self, ids: list[Any], probabilities: list[float]) -> None:
        """For a share of the predictions, an outcome drawn with the predicted probability, sent by `feedback`."""
        for prediction_id, probability in zip(ids, probabilities, strict=True):
            if isinstance(prediction_id, str) and self.rng.random() < self.feedback_share:
                due = time.monotonic() + FEEDBACK_DELAY_SECONDS
                self.outcomes.append((due, prediction_id, self.rng.random() < probability))

    def _check_infer(self, response: Any, rows: int, request_id: str) -> None:
        if self._refused(response):
            return
        body = response.json()
        outputs = {o.get("name"): o for o in body.get("outputs", [])}
        probability = outputs.get("probability") or {}
        data = probability.get("data") or []
        if probability.get("shape") != [rows] or len(data) != rows or body.get("id") != request_id:
            response.failure(f"malformed infer response: {str(body)[:200]}")
        elif not all(isinstance(p, float | int) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in data):
            response.failure("probabilities outside [0, 1]")
        else:
            ids = (outputs.get("prediction_id") or {}).get("data") or []
            if len(ids) != rows:
                response.failure(f"{len(ids)} prediction ids for {rows} rows")
            else:
                self._outcome_later(ids, data)

    @task(8)
    def predict_clinical(self) -> None:
        """POST /predict with one clinical record."""
        record = self.pool.sample(self.rng)
        with self.client.post("/predict", json=record, name="/predict [clinical]", catch_response=True) as response:
            self._check_prediction(response)

    @task(3)
    def predict_encoded(self) -> None:
        """POST /predict with the encoded flat form of the original design."""
        body = encounters.encoded_form(self.pool.sample(self.rng))
        with self.client.post("/predict", json=body, name="/predict [encoded]", catch_response=True) as response:
            self._check_prediction(response)

    def _infer(self, rows: int, name: str) -> None:
        request_id = uuid.uuid4().hex
        body = encounters.v2_infer_body(self.pool.batch(self.rng, rows), request_id)
        path = f"/v2/models/{self.model}/infer"
        with self.client.post(path, json=body, name=name, catch_response=True) as response:
            self._check_infer(response, rows, request_id)

    @task(4)
    def v2_infer_one(self) -> None:
        """V2 infer with one row."""
        self._infer(1, "/v2/models/[model]/infer [1 row]")

    @task(2)
    def v2_infer_batch(self) -> None:
        """V2 infer with a batch of rows."""
        self._infer(self.batch_rows, "/v2/models/[model]/infer [batch]")

    @task(1)
    def model_metadata(self) -> None:
        """GET the V2 model metadata now and then."""
        with self.client.get(f"/v2/models/{self.model}", name="/v2/models/[model]", catch_response=True) as response:
            if self._refused(response):
                return
            if response.json().get("name") != self.model:
                response.failure(f"metadata names another model: {response.text[:200]}")

    @task(2)
    def feedback(self) -> None:
        """POST /feedback with the outcomes that are due, if any."""
        now = time.monotonic()
        due = [(i, outcome) for when, i, outcome in self.outcomes if when <= now]
        if not due:
            return
        self.outcomes = [entry for entry in self.outcomes if entry[0] > now]
        body = [{"prediction_id": i, "readmitted_within_30_days": outcome} for i, outcome in due]
        with self.client.post("/feedback", json=body, name="/feedback", catch_response=True) as response:
            if self._refused(response):
                return
            answer = response.json()
            if answer.get("recorded", 0) + answer.get("unchanged", 0) != len(body):
                response.failure(f"feedback not recorded: {response.text[:200]}")
