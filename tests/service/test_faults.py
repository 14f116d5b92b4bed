"""Faults of a real `bentoml serve`: a worker killed under load, the model missing or corrupt at start, SIGTERM.

Each test starts its own server, on a copy of the BentoML home where it damages something.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bento import features
from tests.helpers import INFER, MODEL, copy_home, grpc_env, matrix_request, poll, records, serve, workers_of

# serial: recovery and drain times are measured under load: alone, not beside another worker
pytestmark = [pytest.mark.slow, pytest.mark.serial]

RECOVERY_BOUND = 60.0  # seconds: circus looks at its workers every 10 s, a worker starts in a few
PATIENT = features.EXAMPLE_PATIENT
PATIENT_ROW = features.encode([features.validate(PATIENT)])
INFER_FEW = matrix_request(np.repeat(PATIENT_ROW, 3, axis=0))
THOUSAND = records(1000, seed=5)
INFER_THOUSAND = matrix_request(features.encode([features.validate(r) for r in THOUSAND]))


@dataclass
class Outcome:
    """One request: when it was sent and answered, and what came back (an HTTP status or a transport error)."""

    sent: float
    done: float
    result: int | str


def classify(error: httpx.TransportError) -> str:
    """`refused` (nothing listened), `timeout`, or `reset` (the connection broke once the request was sent)."""
    if isinstance(error, httpx.ConnectError):
        return "refused"
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    return "reset"  # ReadError, WriteError, RemoteProtocolError: accepted, then the connection went away


def post(client: httpx.Client, path: str, body: Any) -> int | str:
    """POST and return the status (200 only with a prediction in the body), or the class of transport error."""
    try:
        answer = client.post(path, json=body)
    except httpx.TransportError as error:
        return classify(error)
    if answer.status_code == 200:
        payload = answer.json()
        assert "probability" in payload or "predictions" in payload or "outputs" in payload, payload
    return answer.status_code


@dataclass
class Load:
    """Client threads sending (path, body) requests in turn, each on a new connection, until stopped."""

    url: str
    requests: list[tuple[str, Any]]
    clients: int
    timeout: float = 5.0
    stop_on_refused: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, index: int) -> None:
        # no keep-alive: every request is a new connection, so a failure is this request's, not an idle socket's
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, timeout=self.timeout, limits=limits) as client:
            turn = index
            while not self._stop.is_set():
                path, body = self.requests[turn % len(self.requests)]
                turn += 1
                sent = time.monotonic()
                result = post(client, path, body)
                with self._lock:
                    self.outcomes.append(Outcome(sent, time.monotonic(), result))
                if result == "refused":
                    if self.stop_on_refused:
                        return
                    time.sleep(0.1)  # pacing: no busy loop of refusals while nothing listens

    def start(self) -> Load:
        """Start the client threads."""
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """Stop the clients (each finishes its request in progress) and return every outcome, by send time."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 30)
        with self._lock:
            return sorted(self.outcomes, key=lambda o: o.sent)

    def snapshot(self) -> list[Outcome]:
        """The outcomes so far."""
        with self._lock:
            return list(self.outcomes)


def since(start: float, **conditions: Callable[[], bool]) -> dict[str, float | None]:
    """For each named condition, seconds from `start` (monotonic) until it first held; None after RECOVERY_BOUND."""
    marks: dict[str, float | None] = dict.fromkeys(conditions)
    while time.monotonic() - start < RECOVERY_BOUND and None in marks.values():
        for name, condition in conditions.items():
            if marks[name] is None and condition():
                marks[name] = time.monotonic() - start
        time.sleep(0.2)  # the poll's interval
    return marks


def status_of(url: str, timeout: float = 2.0) -> int | str:
    """GET status, or the class of transport error."""
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.TransportError as error:
        return classify(error)


# --- a worker killed under load ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "containerized"),
    [(2, False), (1, True)],
    ids=["2-workers", "1-worker-as-in-the-image"],
)
def test_a_worker_killed_under_load_is_replaced_and_requests_succeed_again(
    bento_home, local, tmp_path, figure, workers, containerized
):
    """SIGKILL one worker while 4 clients send /predict and V2 infer; the arbiter starts a new one.

    `1-worker-as-in-the-image` sets BENTOML_CONTAINERIZED as BentoML's Dockerfile does (and the KServe
    manifest runs one worker): BentoML would then not respawn, and the server would exit with its last worker;
    bento/service.py turns respawn back on. With one worker, requests during the gap wait in the listen
    queue and fail only on the clients' 5 s timeout; with two, the other worker takes the new connections.
    """
    env = {"READMISSION_WORKERS": str(workers)} | ({"BENTOML_CONTAINERIZED": "true"} if containerized else {})
    server = serve(copy_home(bento_home, tmp_path), tmp_path, **env)
    try:
        poll(lambda: len(workers_of(server)) == workers, 30, f"{workers} worker(s) (now {workers_of(server)})")
        before = workers_of(server)
        load = Load(server.url, [("/predict", PATIENT), (INFER, INFER_FEW)], clients=4).start()
        poll(lambda: len(load.snapshot()) >= 8, 30, "the load's first 8 answers")  # requests in flight at the kill
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        # seconds from the kill until a new worker runs, and until /readyz answers 200, watched together
        marks = since(
            killed,
            respawned=lambda: len(workers_of(server) - before) == 1 and len(workers_of(server)) == workers,
            ready=lambda: status_of(server.url + "/readyz") == 200,
            served=lambda: any(o.sent > killed and o.result == 200 for o in load.snapshot()),
        )
        time.sleep(3)  # holds the load 3 s more: the steady state after recovery, when every request must succeed
        steady_from = time.monotonic() - 2.5
        outcomes = load.stop()
        # the new worker serves the same model
        answer = httpx.post(server.url + "/predict", json=PATIENT, timeout=10).json()
    finally:
        server.stop()

    respawned, ready = marks["respawned"], marks["ready"]
    assert respawned is not None, f"no new worker within {RECOVERY_BOUND} s of the kill:\n{server.log_text()[-3000:]}"
    assert ready is not None, f"/readyz not 200 within {RECOVERY_BOUND} s of the kill:\n{server.log_text()[-3000:]}"
    successes = [o.done - killed for o in outcomes if o.sent > killed and o.result == 200]
    assert successes, f"no request succeeded within {RECOVERY_BOUND} s of the kill"
    first_success = min(successes)
    failures = Counter(o.result for o in outcomes if o.result != 200)
    name = f"{workers} worker(s)"
    figure(f"{name}: requests during the test", len(outcomes))
    figure(f"{name}: failed requests", f"{sum(failures.values())} {dict(failures)}")
    figure(f"{name}: new worker after (s)", f"{respawned:.1f}")
    figure(f"{name}: /readyz 200 after (s)", f"{ready:.1f}")
    figure(f"{name}: first success of a request sent after the kill (s)", f"{first_success:.1f}")
    assert first_success < RECOVERY_BOUND
    # the only failures are transport errors of the kill, never an HTTP error
    assert set(failures) <= {"reset", "timeout", "refused"}, failures
    if workers > 1:
        # at most the requests the killed worker had in flight: one per client
        assert sum(failures.values()) <= load.clients, failures
    steady = [o for o in outcomes if o.sent >= steady_from]
    assert steady and all(o.result == 200 for o in steady), Counter(o.result for o in steady)
    assert answer["probability"] == pytest.approx(float(local.probabilities(PATIENT_ROW)[0]), abs=1e-6)


# --- the model missing or corrupt at start -------------------------------------------------------------


def _garble(model_dir: Path) -> None:
    (model_dir / "model.ubj").write_bytes(os.urandom(4096))


def _truncate(model_dir: Path) -> None:
    booster = model_dir / "model.ubj"
    booster.write_bytes(booster.read_bytes()[: booster.stat().st_size // 2])


def _other_spec(model_dir: Path) -> None:
    metadata_file = model_dir / "model_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["spec_hash"] = "0123456789abcdef"
    metadata_file.write_text(json.dumps(metadata))


def _drop_threshold(model_dir: Path) -> None:
    metadata_file = model_dir / "model_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    del metadata["threshold"]
    metadata_file.write_text(json.dumps(metadata))


DAMAGES = {
    # what is wrong: (damage to the copied model folder or None, extra environment, what the log must say)
    "empty-home": (None, {}, "is not in the BentoML model store"),
    "unknown-tag": (None, {"READMISSION_MODEL_TAG": "readmission:doesnotexist"}, "is not in the BentoML model store"),
    "garbled-booster": (_garble, {}, "cannot be read"),
    "truncated-booster": (_truncate, {}, "cannot be read"),
    "other-feature-spec": (_other_spec, {}, "was trained on feature spec 0123456789abcdef"),
    "metadata-key-missing": (_drop_threshold, {}, "has incomplete metadata: KeyError 'threshold'"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_missing_or_corrupt_model_leaves_the_server_up_not_ready_and_refusing_predictions(
    bento_home, tmp_path, damage
):
    """The server comes up (/livez) but never claims readiness nor answers a prediction; the log says why."""
    change, env, needle = DAMAGES[damage]
    if damage == "empty-home":
        home = tmp_path / "empty-home"
        home.mkdir()
    else:
        home = copy_home(bento_home, tmp_path)
        if change is not None:
            change(home / bento_home["model_dir"].relative_to(bento_home["home"]))
    server = serve(home, tmp_path, ready_path="/livez", **env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(3):  # and it stays so
                for path in ("/readyz", "/v2/health/ready", "/health", "/v2/models/readmission/ready"):
                    assert client.get(path).status_code == 503, path
                for path, body in (("/predict", PATIENT), ("/predict/batch", [PATIENT]), (INFER, INFER_FEW)):
                    answer = client.post(path, json=body)
                    assert answer.status_code == 503, (path, answer.text)
                    payload = answer.json()
                    assert "not loaded" in payload["error"], payload
                    assert not {"probability", "predictions", "outputs"} & set(payload), payload
                time.sleep(1)  # the point: it stays refusing over time, not just at the first look
            assert client.get("/livez").status_code == 200
    finally:
        server.stop()
    log = server.log_text()
    assert "not ready: the model cannot be loaded" in log and needle in log, log[-3000:]


# --- graceful shutdown ---------------------------------------------------------------------------------


def test_sigterm_under_load_lets_every_request_sent_before_it_finish(bento_home, tmp_path, figure):
    """SIGTERM to the serve process (what Kubernetes sends PID 1) while 6 clients keep sending.

    Slow requests are in flight: /predict/batch and V2 infer with 1000 patients, beside single /predict.
    Every request opens a new connection, so no failure can be an idle keep-alive connection the server
    closed at shutdown (that is not an accepted request; a client reusing connections retries such an
    idempotent failure on a fresh connection, as HTTP clients ordinarily do). Every request sent before
    the SIGTERM must get its 200. After it, the worker drains (bento/server/drain.py: not ready, still serving,
    at most READMISSION_DRAIN_SECONDS, 4 here): those requests get 200 too; once the drain ends, new ones are
    refused, or reset when they reached the listen queue in the last moment (counted, not failed: a request
    sent after SIGTERM to a pod Kubernetes is removing from its endpoints).
    """
    drain_seconds = 4
    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_DRAIN_SECONDS=str(drain_seconds))
    batch = [("/predict/batch", THOUSAND), (INFER, INFER_THOUSAND), ("/predict", PATIENT)]
    load = Load(server.url, batch, clients=6, timeout=60, stop_on_refused=True).start()
    try:
        poll(lambda: len(load.snapshot()) >= 6, 60, "the load's first 6 answers")  # slow requests in flight now
        os.kill(server.process.pid, signal.SIGTERM)
        term = time.monotonic()
        ready = server.url + "/readyz"
        poll(lambda: status_of(ready, timeout=5) != 200, drain_seconds, "/readyz not 200 during the drain", 0.1)
        v2_not_ready = status_of(server.url + "/v2/health/ready", timeout=5)
        poll(lambda: server.process.poll() is not None, drain_seconds + 60, "the server's exit after SIGTERM")
        exited = time.monotonic() - term
        outcomes = load.stop()
    finally:
        server.stop()
    before = Counter(o.result for o in outcomes if o.sent < term)
    after = Counter(o.result for o in outcomes if o.sent >= term)
    figure("requests sent before SIGTERM", dict(before))
    figure("requests sent after SIGTERM", dict(after))
    figure("exit after SIGTERM (s)", f"{exited:.1f}")
    assert server.process.returncode == 0, server.log_text()[-3000:]
    assert before and set(before) == {200}, before
    assert v2_not_ready != 200, "/v2/health/ready stayed 200 during the drain"
    assert "SIGTERM: not ready, draining" in server.log_text()
    # during the drain the service answers as usual; after it, nothing but refusals and late resets
    assert set(after) <= {200, "refused", "reset"}, after


# --- the gRPC port under SIGTERM and after a worker is killed ---------------------------------------------


@dataclass
class GrpcLoad:
    """Client threads calling ModelInfer (1,000 rows, raw contents) through tritonclient until stopped."""

    address: str
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        import tritonclient.grpc as triton
        from tritonclient.utils import InferenceServerException

        matrix = features.encode([features.validate(r) for r in THOUSAND])
        tensor = triton.InferInput("input-0", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix)
        client = triton.InferenceServerClient(self.address)
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                client.infer(MODEL, [tensor], client_timeout=30)
                result: int | str = "OK"
            except InferenceServerException as error:
                result = str(error.status())
            with self._lock:
                self.outcomes.append(Outcome(sent, time.monotonic(), result))
            if result != "OK":
                time.sleep(0.1)  # pacing: no busy loop of failed calls
        client.close()

    def start(self) -> GrpcLoad:
        """Start the client threads."""
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def snapshot(self) -> list[Outcome]:
        """The outcomes so far."""
        with self._lock:
            return list(self.outcomes)

    def stop(self) -> list[Outcome]:
        """Stop the clients and return every outcome."""
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return sorted(self.outcomes, key=lambda o: o.sent)


def grpc_health(address: str) -> int | str:
    """The grpc.health.v1 status of the server, or the status code of the failed check."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError as error:
            return error.code().name


def test_sigterm_turns_grpc_health_not_serving_and_lets_calls_sent_before_it_finish(bento_home, tmp_path, figure):
    grpc, address = grpc_env()
    server = serve(copy_home(bento_home, tmp_path), tmp_path, READMISSION_DRAIN_SECONDS="4", **grpc)
    assert grpc_health(address) == 1  # SERVING
    load = GrpcLoad(address, clients=4).start()
    try:
        poll(lambda: len(load.snapshot()) >= 8, 30, "the gRPC load's first 8 answers")
        os.kill(server.process.pid, signal.SIGTERM)
        term = time.monotonic()
        poll(lambda: grpc_health(address) == 2, 4, "gRPC health NOT_SERVING during the drain", 0.1)
        poll(lambda: server.process.poll() is not None, 60, "the server's exit after SIGTERM")
        outcomes = load.stop()
    finally:
        server.stop()
    before = Counter(o.result for o in outcomes if o.sent < term)
    figure("gRPC calls sent before SIGTERM", dict(before))
    assert server.process.returncode == 0, server.log_text()[-3000:]
    assert before and set(before) == {"OK"}, before


def test_grpc_serves_again_after_its_worker_is_killed(bento_home, tmp_path, figure):
    grpc, address = grpc_env()
    server = serve(copy_home(bento_home, tmp_path), tmp_path, BENTOML_CONTAINERIZED="true", **grpc)
    try:
        (worker,) = workers_of(server)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        marks = since(
            killed,
            new_worker=lambda: bool(workers_of(server) - {worker}),
            serving=lambda: bool(workers_of(server) - {worker}) and grpc_health(address) == 1,
        )
        load = GrpcLoad(address, clients=2).start()
        poll(lambda: sum(o.result == "OK" for o in load.snapshot()) >= 4, 30, "4 gRPC calls answered OK")
        load.stop()
    finally:
        server.stop()
    figure("gRPC serving again after a worker SIGKILL (s)", marks)
    assert marks["serving"] is not None, marks
