"""Benchmark our BentoML service against the servers a user would pick instead, on the same model.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--quick] [--rounds 3] [--servers ours,mlserver,...]

Every server runs pinned to CPU core 0 (`taskset -c 0`), the load generator (wrk over HTTP, h2load over
gRPC) on core 1, both on 127.0.0.1 only. For each server: start it, wait until ready, check that one row and
1,000 rows (JSON, binary where the server takes the binary extension, and gRPC where it serves the Open
Inference Protocol over gRPC) get the reference probabilities (within 1e-5 of the booster in this process),
run the workloads, stop the whole process group. All servers run `--rounds` times,
interleaved; the report holds the medians over rounds, ratios of medians and the TARGETS with PASS/MISS.
Prints markdown tables; writes bench/results/latest.{json,md}. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))

MODEL_NAME = "readmission"
TOLERANCE = 1e-5
SERVER_CORE, LOAD_CORE = "0", "1"
BATCH_ROWS = 1000
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
GRPC_MAX_MESSAGE = 64 * 1024 * 1024  # the checking client's limits (the servers keep their own)

# Separate venvs (the servers pin conflicting versions); created on first use.
MLSERVER_VENV = ROOT / ".venv-bench-mlserver"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-xgboost==1.7.1", "xgboost==3.2.0"]
KSERVE_VENV = ROOT / ".venv-bench-kserve"
KSERVE_PACKAGES = ["kserve==0.21.0", "xgboost-cpu==3.2.0"]

# Every server: one inference thread (our Predictor sets nthread=1; the others would otherwise size
# their OpenMP pool by the core count) and no telemetry home calls.
COMMON_ENV = {
    "OMP_NUM_THREADS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


# ----------------------------------------------------------------------------------------------------------
# model and request bodies


def model_file() -> Path:
    """model.ubj of readmission:latest in the project's BentoML store."""
    store = ROOT / ".readmission" / "bentoml" / "models" / MODEL_NAME
    latest = store / "latest"
    if latest.is_file():
        folder = store / latest.read_text().strip()
    else:
        folders = sorted((p for p in store.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if not folders:
            sys.exit(f"no model in {store}; train and import one first (make up)")
        folder = folders[-1]
    path = folder / "model.ubj"
    if not path.is_file():
        sys.exit(f"{path} does not exist")
    return path


def _data_zip() -> Path | None:
    for candidate in (
        os.environ.get("READMISSION_DATA"),
        str(ROOT.parent / "shared" / "data" / "dataset_diabetes.zip"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def input_rows(count: int) -> tuple[np.ndarray, list[dict[str, Any]], str]:
    """`count` realistic encoded rows with no missing value (V2 JSON has no NaN), their records, the source.

    Real rows of the UCI test split when the data is at hand, else variations of a hand-written record.
    """
    from bento import features

    source = _data_zip()
    if source is not None:
        from training import data

        test = data.split(data.clean(data.load(source))).test
        records = data.records(test)
        matrix = features.encode(records)
        complete = np.flatnonzero(~np.isnan(matrix).any(axis=1))[:count]
        if len(complete) == count:
            return matrix[complete], [records[i] for i in complete], f"UCI test split ({source.name})"
    base = features.EXAMPLE_PATIENT | {"diag_3": "401"}  # a numeric code: no missing value in the row
    rng = np.random.default_rng(7)
    ages = ["[40-50)", "[50-60)", "[60-70)", "[70-80)", "[80-90)"]
    records = []
    for _ in range(count):
        record = dict(base)
        record["time_in_hospital"] = int(rng.integers(1, 15))
        record["num_lab_procedures"] = int(rng.integers(1, 100))
        record["num_medications"] = int(rng.integers(1, 60))
        record["number_inpatient"] = int(rng.integers(0, 6))
        record["age"] = ages[int(rng.integers(0, len(ages)))]
        records.append(features.validate(record))
    return features.encode(records), records, "generated from a sample record"


def v2_body(rows: np.ndarray) -> bytes:
    """The V2 request every server gets: one FP32 tensor "input-0" [N, F], JSON data (row-major, flat)."""
    values = ",".join(str(v) for v in rows.astype(np.float32).ravel())  # shortest float32 round-trip text
    head = json.dumps({"name": "input-0", "shape": list(rows.shape), "datatype": "FP32"})[:-1]
    return f'{{"inputs":[{head},"data":[{values}]}}]}}'.encode()


def v2_binary_body(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The same tensor with the binary tensor data extension: body and headers.

    A JSON header (input-0 with its `binary_data_size`; output "probability" asked as JSON) followed by the
    raw little-endian float32 bytes, row-major; `Inference-Header-Content-Length` gives the header's length.
    Content-Type application/octet-stream: the body is not JSON (KServe parses it as JSON otherwise).
    """
    data = np.ascontiguousarray(rows, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + data, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}


def grpc_frame(rows: np.ndarray, output: str) -> bytes:
    """The gRPC request h2load sends: a length-prefixed message (flag 0, 4-byte big-endian length) of a
    `ModelInferRequest` for MODEL_NAME with one FP32 input "input-0" [N, F] as little-endian float32 bytes in
    `raw_input_contents`, asking for the output `output`."""
    request = service_pb2.ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name="input-0", datatype="FP32", shape=list(rows.shape))
    request.outputs.add(name=output)
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype="<f4").tobytes())
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass
class Body:
    """One request: its bytes, the rows it holds, the headers it needs beyond Content-Type: application/json.

    For gRPC (`grpc`), the bytes are the length-prefixed frame (`grpc_frame`) and there are no headers."""

    data: bytes
    rows: int
    headers: dict[str, str] = field(default_factory=dict)
    grpc: bool = False


# ----------------------------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    """How to start one server and where its routes are."""

    name: str
    label: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    ready_path: str
    infer_path: str
    extra: dict[str, str] = field(default_factory=dict)  # route key -> path (ours: /predict)
    binary: bool = False  # takes the binary tensor data extension: gets the binary workload
    grpc_port: int | None = None  # serves inference.GRPCInferenceService there: gets the gRPC workloads
    grpc_output: str = "probability"  # the output the gRPC request asks for (MLServer's xgboost: "predict")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_venv(venv: Path, packages: list[str], check_import: str) -> Path:
    """The venv's python, creating the venv with the pinned packages when missing or broken."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", f"import {check_import}"], capture_output=True).returncode == 0
    ):
        return python
    print(f"creating {venv.name} with {' '.join(packages)} (a few minutes) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    (venv / ".gitignore").write_text("*\n")  # as `python -m venv` does from 3.13 on: never commit it
    subprocess.run([python, "-m", "pip", "install", "--quiet", *packages], check=True)
    return python


def server_ours(port: int, work: Path) -> Server:
    """Our BentoML service, from the project root and its model store; its gRPC server on a spare loopback port."""
    bentoml = ROOT / ".venv" / "bin" / "bentoml"
    grpc_port = free_port()
    env = {
        "BENTOML_HOME": str(ROOT / ".readmission" / "bentoml"),
        "READMISSION_GRPC_PORT": str(grpc_port),
        "READMISSION_GRPC_HOST": "127.0.0.1",
    }
    return Server(
        name="ours",
        label="ours (BentoML)",
        command=[str(bentoml), "serve", "bento.service:ReadmissionService", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        ready_path="/readyz",
        infer_path=f"/v2/models/{MODEL_NAME}/infer",
        extra={"predict": "/predict"},
        binary=True,
        grpc_port=grpc_port,
    )


def server_mlserver(port: int, work: Path, model: Path) -> Server:
    """MLServer with mlserver_xgboost, a model repository in `work` holding a copy of the booster."""
    python = ensure_venv(MLSERVER_VENV, MLSERVER_PACKAGES, "mlserver_xgboost")
    models = work / "mlserver"
    folder = models / MODEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / "model.ubj")  # a well-known name of mlserver_xgboost
    grpc_port = free_port()
    (models / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": grpc_port,  # on "host" too
                "metrics_endpoint": None,  # no /metrics server, no Prometheus middleware
                "parallel_workers": 0,  # inference in the HTTP process, as the others do
                "load_models_at_startup": True,
                "debug": False,
            }
        )
    )
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_xgboost.XGBoostModel",
                "parameters": {"uri": "./model.ubj"},
            }
        )
    )
    return Server(
        name="mlserver",
        label="MLServer",
        command=[str(python.parent / "mlserver"), "start", str(models)],
        env={},
        cwd=models,
        ready_path=f"/v2/models/{MODEL_NAME}/ready",
        infer_path=f"/v2/models/{MODEL_NAME}/infer",
        grpc_port=grpc_port,
        grpc_output="predict",  # mlserver_xgboost names its outputs "predict" and "predict_proba" only
    )


def server_kserve(port: int, work: Path, model: Path) -> Server:
    """KServe ModelServer with the xgbserver-like model of bench/servers/kserve_xgb.py, gRPC on a spare port."""
    python = ensure_venv(KSERVE_VENV, KSERVE_PACKAGES, "kserve, xgboost")
    grpc_port = free_port()
    return Server(
        name="kserve",
        label="KServe ModelServer",
        command=[
            str(python),
            str(BENCH / "servers" / "kserve_xgb.py"),
            "--model_name",
            MODEL_NAME,
            "--model_file",
            str(model),
            "--http_port",
            str(port),
            "--grpc_port",
            str(grpc_port),
            "--workers",
            "1",
        ],
        env={},
        cwd=work,
        ready_path=f"/v2/models/{MODEL_NAME}/ready",
        infer_path=f"/v2/models/{MODEL_NAME}/infer",
        binary=True,  # KServe decodes the extension (InferRequest.from_bytes) when the body is not declared JSON
        grpc_port=grpc_port,
    )


def server_floor(port: int, work: Path, model: Path) -> Server:
    """The bare Starlette floor of bench/servers/floor_app.py (stdlib json), in the main venv."""
    return Server(
        name="floor",
        label="floor (bare Starlette)",
        command=[
            str(ROOT / ".venv" / "bin" / "uvicorn"),
            "floor_app:app",
            "--app-dir",
            str(BENCH / "servers"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={"BENCH_MODEL": str(model), "BENCH_MODEL_NAME": MODEL_NAME},
        cwd=work,
        ready_path="/v2/health/ready",
        infer_path=f"/v2/models/{MODEL_NAME}/infer",
    )


def server_floor_orjson(port: int, work: Path, model: Path) -> Server:
    """The same floor app with orjson, run by the MLServer venv (it has starlette, uvicorn, orjson, xgboost)."""
    python = ensure_venv(MLSERVER_VENV, MLSERVER_PACKAGES, "mlserver_xgboost")
    server = server_floor(port, work, model)
    server.command[0] = str(python.parent / "uvicorn")
    server.name, server.label = "floor-orjson", "floor + orjson"
    server.env["BENCH_JSON"] = "orjson"
    return server


def server_floor_compiled(port: int, work: Path, model: Path) -> Server:
    """The honest floor: the floor app with orjson (as ours) scoring with the same compiled trees ours loads."""
    if not (model.parent / "compiled").is_dir():
        raise RuntimeError(f"no compiled/ folder beside {model.relative_to(ROOT)}; import the model again")
    server = server_floor(port, work, model)
    server.name, server.label = "floor-compiled", "floor + orjson + compiled"
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    from bento import features

    columns = str(len(features.COLUMNS))
    server.env |= {
        "BENCH_JSON": "orjson",
        "BENCH_BACKEND": "compiled",
        "BENCH_COLUMNS": columns,
        "PYTHONPATH": pythonpath,
    }
    server.binary = True
    return server


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
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(self.url(self.server.ready_path), timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.server.name} not ready after {timeout:.0f} s; see {self.log}")

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


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
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
            total = sum(_status_kb(pid, "VmRSS") for pid in self.running.pids())
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(0.1)

    def _cpu(self) -> tuple[float, int, int]:
        return time.monotonic(), sum(_cpu_ticks(pid) for pid in self.running.pids()), _core_busy_ticks(SERVER_CORE)

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


# ----------------------------------------------------------------------------------------------------------
# checks and load


def post(url: str, body: bytes, timeout: float = 30, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a body (JSON unless `headers` say otherwise), the decoded JSON answer."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"POST {url}: {error.code} {error.read()[:500]!r}") from error


def v2_probabilities(answer: dict[str, Any]) -> np.ndarray:
    """The probability output of a V2 response ("probability" ours/floor/KServe, "predict" MLServer)."""
    outputs = {o["name"]: o for o in answer["outputs"]}
    chosen = next((outputs[n] for n in ("probability", "predict", "output-0") if n in outputs), answer["outputs"][0])
    return np.asarray(chosen["data"], dtype=np.float64).ravel()


V2_1, V2_BATCH_BODY, BINARY_BODY = "v2_1", f"v2_{BATCH_ROWS}", f"v2_{BATCH_ROWS}_binary"  # keys of the bodies
GRPC_1, GRPC_BATCH_BODY = "grpc_1", f"grpc_{BATCH_ROWS}"  # gRPC bodies: the key is f"{this}:{output name}"


def body_key(body: str, server: Server) -> str:
    """The key of the body `server` gets for `body`: gRPC frames ask for the server's output name."""
    return f"{body}:{server.grpc_output}" if body in (GRPC_1, GRPC_BATCH_BODY) else body


def _worst(running: Running, body: Body, reference: np.ndarray) -> float:
    got = v2_probabilities(post(running.url(running.server.infer_path), body.data, headers=body.headers))
    if got.shape != (body.rows,):
        raise AssertionError(f"{running.server.name}: {body.rows} rows gave {got.shape[0]} probabilities")
    return float(np.max(np.abs(got - reference[: body.rows])))


def check(running: Running, bodies: dict[str, Body], reference: np.ndarray) -> tuple[dict[str, float], str]:
    """Every answer within TOLERANCE of the reference probabilities: the worst differences, the binary probe.

    The binary request is checked on servers with `binary`; the others get it once as a probe, whose
    outcome ("ok ..." or why not) is returned and never fails the server.
    """
    server = running.server
    worst = {name: _worst(running, bodies[name], reference) for name in (V2_1, V2_BATCH_BODY)}
    probe = "benchmarked"
    if server.binary:
        worst[BINARY_BODY] = _worst(running, bodies[BINARY_BODY], reference)
    else:
        try:
            diff = _worst(running, bodies[BINARY_BODY], reference)
            probe = f"ok (max |diff| {diff:.2g}), not benchmarked" if diff <= TOLERANCE else f"wrong answers ({diff})"
        except Exception as error:  # any refusal or garbage answer: recorded, not fatal
            probe = f"refused: {type(error).__name__}: {error}"[:300]
    if "predict" in server.extra:
        got = float(post(running.url(server.extra["predict"]), bodies["predict"].data)["probability"])
        worst["predict"] = abs(got - float(reference[0]))
    for name, diff in worst.items():
        if not diff <= TOLERANCE:
            raise AssertionError(f"{server.name} {name}: differs from the reference by {diff:.3g}")
    return worst, probe


def grpc_infer(port: int, frame: bytes, timeout: float = 30) -> bytes:
    """One ModelInfer call with grpcio sending the frame's message as is: the serialized response.

    Waits for the channel to connect (within `timeout`); RuntimeError with the gRPC status unless OK."""
    options = [
        ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
        ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(GRPC_METHOD)  # no (de)serializers: bytes in, bytes out
        try:
            return call(frame[5:], timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as error:
            raise RuntimeError(f"gRPC ModelInfer on port {port}: {error.code().name}: {error.details()}") from error


def grpc_probabilities(data: bytes) -> np.ndarray:
    """The probability output of a serialized ModelInferResponse ("probability", MLServer "predict"), raw or typed."""
    response = service_pb2.ModelInferResponse.FromString(data)
    names = [o.name for o in response.outputs]
    if not names:
        raise AssertionError("gRPC response without outputs")
    index = next((names.index(n) for n in ("probability", "predict", "output-0") if n in names), 0)
    output = response.outputs[index]
    if output.datatype not in ("FP32", "FP64"):
        raise AssertionError(f"gRPC output {output.name} is {output.datatype}, not FP32 or FP64")
    if response.raw_output_contents:
        dtype = "<f4" if output.datatype == "FP32" else "<f8"
        return np.frombuffer(response.raw_output_contents[index], dtype=dtype).astype(np.float64)
    contents = output.contents.fp32_contents if output.datatype == "FP32" else output.contents.fp64_contents
    return np.asarray(contents, dtype=np.float64)


def check_grpc(
    running: Running, bodies: dict[str, Body], reference: np.ndarray
) -> tuple[dict[str, float], dict[str, int]]:
    """Each gRPC request once with grpcio: the worst differences and each response's size as h2load counts it.

    A status other than OK raises RuntimeError (the server fails the round), probabilities beyond TOLERANCE
    AssertionError. The size is that of the length-prefixed response message (5 + its length): h2load's DATA
    bytes of one successful call; a call that fails comes back with no DATA (trailers only), so it shows.
    """
    server = running.server
    worst, sizes = {}, {}
    for name in (GRPC_1, GRPC_BATCH_BODY):
        body = bodies[body_key(name, server)]
        answer = grpc_infer(server.grpc_port or 0, body.data)
        got = grpc_probabilities(answer)
        if got.shape != (body.rows,):
            raise AssertionError(f"{server.name} gRPC: {body.rows} rows gave {got.shape[0]} probabilities")
        worst[name] = float(np.max(np.abs(got - reference[: body.rows])))
        sizes[name] = 5 + len(answer)
        if not worst[name] <= TOLERANCE:
            raise AssertionError(f"{server.name} {name}: differs from the reference by {worst[name]:.3g}")
    return worst, sizes


def wrk(
    url: str, body_file: Path, connections: int, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One wrk run on LOAD_CORE; the summary its Lua `done()` hook printed. `headers`: extra request headers."""
    command = [
        "taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency", "-s", str(BENCH / "post.lua"), url, "--", str(body_file),
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
    stats = json.loads(line.split(" ", 1)[1])
    stats["stdout"] = done.stdout
    return stats


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def _us(text: str) -> float:
    """h2load's durations ("812us", "3.40ms", "10.00s") in microseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise RuntimeError(f"h2load: cannot read the duration {text!r}")
    return float(match[1]) * _UNITS_US[match[2]]


def parse_h2load(text: str) -> dict[str, Any]:
    """The numbers of h2load's summary: duration, request counts, status classes, bytes, request times."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text)
        if match is None:
            raise RuntimeError(f"h2load output without {pattern!r}: {text[-800:]}")
        return match

    requests = find(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout"
    )
    status = find(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    traffic = find(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data")
    times = find(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")
    names = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    return {
        "duration_us": _us(find(r"finished in (\S+?),")[1]),
        **{name: int(v) for name, v in zip(names, requests.groups(), strict=True)},
        **{f"status_{c}xx": int(v) for c, v in zip("2345", status.groups(), strict=True)},
        "bytes_total": int(traffic[1]),
        "bytes_headers": int(traffic[2]),
        "bytes_data": int(traffic[3]),
        **{f"{k}_us": _us(v) for k, v in zip(("min", "max", "mean", "sd"), times.groups(), strict=True)},
    }


def h2load(
    port: int, frame_file: Path, clients: int, streams: int, seconds: float, log: Path | None = None
) -> dict[str, Any]:
    """One h2load run on LOAD_CORE posting the gRPC frame to ModelInfer: `clients` HTTP/2 connections with
    `streams` concurrent streams each. The summary (`parse_h2load`); with `log`, also p50/p90/p99 of the
    per-request times of h2load's `--log-file` (start, status, microseconds to the end of the response)."""
    command = [
        "taskset", "-c", LOAD_CORE, "h2load", "-D", str(max(1, round(seconds))), "-c", str(clients),
        "-m", str(streams), "-d", str(frame_file), "-H", "content-type: application/grpc", "-H", "te: trailers",
        *(["--log-file", str(log)] if log else []), f"http://127.0.0.1:{port}{GRPC_METHOD}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
    stats = parse_h2load(done.stdout)
    stats["stdout"] = done.stdout
    if log is not None:
        times = np.loadtxt(log, dtype=np.float64, usecols=2, ndmin=1) if log.stat().st_size else np.zeros(0)
        stats["logged"] = len(times)
        if len(times):
            for q in (50, 90, 99):
                stats[f"p{q}_us"] = float(np.percentile(times, q))
            stats["max_us"] = float(times.max())
    return stats


@dataclass
class Result:
    """One workload on one server: one round's run, or (round 0) the summary over `rounds` rounds."""

    server: str
    label: str
    workload: str
    rows_per_request: int
    connections: int
    seconds: float
    requests: int
    req_s: float
    rows_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    socket_errors: int
    peak_rss_mb: float
    hwm_sum_mb: float
    server_cpu_pct: float
    other_on_core_pct: float
    round: int = 0
    rounds: int = 1
    req_s_spread_pct: float = 0.0  # summary: (max - min) / median of req/s over the rounds
    streams: int = 1  # concurrent requests per connection (h2load's -m; wrk: 1)
    wrong_size: int = 0  # gRPC: responses whose size is not that of the checked answer (counted in errors)


V2_1_8, V2_1_64 = "v2 1 row, 8 conn", "v2 1 row, 64 conn"
V2_BATCH = f"v2 {BATCH_ROWS:,} rows, 8 conn"
V2_BINARY = f"v2 {BATCH_ROWS:,} rows binary, 8 conn"
PREDICT = "/predict 1 row, 8 conn"
GRPC_1_8 = "grpc 1 row, 8 streams"
GRPC_BATCH = f"grpc {BATCH_ROWS:,} rows raw, 8 streams"


class Workload(NamedTuple):
    """A wrk run (which body, how many connections, on which route) or an h2load run over gRPC (`grpc`:
    `connections` HTTP/2 connections with `streams` concurrent streams each, to ModelInfer)."""

    name: str
    body: str  # a key of the bodies (gRPC: without the output name, see body_key)
    connections: int
    route: str | None = None  # a key of Server.extra; None: the V2 infer route
    streams: int = 1
    grpc: bool = False

    def runs_on(self, server: Server) -> bool:
        """Whether `server` gets this workload (its route exists; binary only where the server takes it;
        gRPC where it serves gRPC)."""
        if self.grpc:
            return server.grpc_port is not None
        if self.route is not None and self.route not in server.extra:
            return False
        return self.body != BINARY_BODY or server.binary


# gRPC: one connection with 8 concurrent streams, as one gRPC channel multiplexes a client's calls.
WORKLOADS = [
    Workload(V2_1_8, V2_1, 8),
    Workload(V2_1_64, V2_1, 64),
    Workload(V2_BATCH, V2_BATCH_BODY, 8),
    Workload(V2_BINARY, BINARY_BODY, 8),
    Workload(PREDICT, "predict", 8, "predict"),
    Workload(GRPC_1_8, GRPC_1, 1, streams=8, grpc=True),
    Workload(GRPC_BATCH, GRPC_BATCH_BODY, 1, streams=8, grpc=True),
]


def _wrk_counts(stats: dict[str, Any]) -> dict[str, Any]:
    """A wrk summary as the Result's numbers."""
    return {
        "seconds": stats["duration_us"] / 1e6,
        "requests": stats["requests"],
        **{key: stats[key] for key in ("p50_us", "p90_us", "p99_us", "max_us")},
        "non_2xx": stats["status"],
        "socket_errors": stats["connect"] + stats["read"] + stats["write"] + stats["timeout"],
        "wrong_size": 0,
    }


def _h2load_counts(stats: dict[str, Any], size: int) -> dict[str, Any]:
    """An h2load summary as the Result's numbers; `size`: the DATA bytes of one correct response.

    h2load counts a gRPC error as a success (HTTP 200, the gRPC status is in the trailers), but an error
    comes without the response message: DATA bytes other than `size` times the responses mean errors. Their
    number, at least 1 when the bytes do not add up, is `wrong_size`; they are not counted as requests (unlike
    wrk's non-2xx answers, which are). Latencies: of the per-request log, else h2load's mean."""
    responses = stats["succeeded"]
    missing = abs(responses * size - stats["bytes_data"])
    wrong = 0 if missing == 0 else min(responses, max(1, round(missing / size)))
    latency = {key: stats.get(key, stats["mean_us"]) for key in ("p50_us", "p90_us", "p99_us")}
    return {
        "seconds": stats["duration_us"] / 1e6,
        "requests": responses - wrong,
        **latency,
        "max_us": stats["max_us"],
        "non_2xx": stats["status_3xx"] + stats["status_4xx"] + stats["status_5xx"],
        "socket_errors": stats["errored"] + stats["timeout"],
        "wrong_size": wrong,
    }


def bench_server(
    server: Server,
    port: int,
    files: dict[str, Path],
    bodies: dict[str, Body],
    reference: np.ndarray,
    args: Any,
    round_no: int = 1,
    grpc_load: bool = True,
) -> tuple[list[Result], dict[str, Any]]:
    """Start, check, load and stop one server (one round); `grpc_load`: check and run the gRPC workloads."""
    running = Running(server, port, RESULTS / f"server-{server.name}.log")
    results, info = [], {}
    try:
        info["startup_s"] = round(running.wait_ready(), 2)
        info["max_abs_diff"], info["binary_probe"] = check(running, bodies, reference)
        if server.grpc_port is not None and grpc_load:
            grpc_diff, info["grpc_response_bytes"] = check_grpc(running, bodies, reference)
            info["max_abs_diff"] |= grpc_diff
        print(f"  ready in {info['startup_s']} s; answers match (max |diff| {max(info['max_abs_diff'].values()):.2g})")
        if not server.binary:
            print(f"  binary extension: {info['binary_probe']}")
        for workload in WORKLOADS:
            if not workload.runs_on(server) or (workload.grpc and not grpc_load):
                continue
            body, file = bodies[body_key(workload.body, server)], files[body_key(workload.body, server)]
            if workload.grpc:
                size = info["grpc_response_bytes"][workload.body]
                log = RESULTS / f"h2load-{server.name}.log"
                if args.warmup > 0:
                    h2load(server.grpc_port or 0, file, workload.connections, workload.streams, args.warmup)
                with MemorySampler(running) as memory:
                    stats = h2load(
                        server.grpc_port or 0, file, workload.connections, workload.streams, args.duration, log
                    )
                counts = _h2load_counts(stats, size)
                log.unlink(missing_ok=True)
            else:
                url = running.url(server.extra[workload.route] if workload.route else server.infer_path)
                if args.warmup > 0:
                    wrk(url, file, workload.connections, args.warmup, body.headers)
                with MemorySampler(running) as memory:
                    counts = _wrk_counts(wrk(url, file, workload.connections, args.duration, body.headers))
            hwm = sum(_status_kb(pid, "VmHWM") for pid in running.pids())
            seconds = counts["seconds"]
            result = Result(
                server=server.name,
                label=server.label,
                workload=workload.name,
                rows_per_request=body.rows,
                connections=workload.connections,
                seconds=round(seconds, 2),
                requests=counts["requests"],
                req_s=counts["requests"] / seconds,
                rows_s=counts["requests"] * body.rows / seconds,
                p50_ms=counts["p50_us"] / 1000,
                p90_ms=counts["p90_us"] / 1000,
                p99_ms=counts["p99_us"] / 1000,
                max_ms=counts["max_us"] / 1000,
                errors=counts["non_2xx"] + counts["socket_errors"] + counts["wrong_size"],
                non_2xx=counts["non_2xx"],
                socket_errors=counts["socket_errors"],
                peak_rss_mb=memory.peak_kb / 1024,
                hwm_sum_mb=hwm / 1024,
                server_cpu_pct=memory.server_cpu_pct,
                other_on_core_pct=memory.other_on_core_pct,
                round=round_no,
                streams=workload.streams,
                wrong_size=counts["wrong_size"],
            )
            results.append(result)
            wrong = f" (wrong size {result.wrong_size})" if result.wrong_size else ""
            print(
                f"  {workload.name:<30} {result.req_s:9.1f} req/s {result.rows_s:10.0f} rows/s"
                f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}{wrong}"
                f"  peak {result.peak_rss_mb:.0f} MB  cpu {result.server_cpu_pct:.0f}%"
                f" (other on core {result.other_on_core_pct:.0f}%)",
                flush=True,
            )
    finally:
        running.stop()
    return results, info


# ----------------------------------------------------------------------------------------------------------
# report


def medians(raw: list[Result], order: list[str]) -> list[Result]:
    """One row per server and workload over the rounds: medians of req/s, rows/s and latencies; errors,
    requests and seconds summed; peak memory and CPU taken by others the maximum; server CPU the median."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in raw:
        groups.setdefault((result.server, result.workload), []).append(result)
    workloads = [w.name for w in WORKLOADS]
    summary = []
    for _, runs in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), workloads.index(item[0][1]))):

        def median(key: str, runs: list[Result] = runs) -> float:
            return statistics.median(getattr(r, key) for r in runs)

        req_s = [r.req_s for r in runs]
        summary.append(
            replace(
                runs[0],
                round=0,
                rounds=len(runs),
                seconds=round(sum(r.seconds for r in runs), 2),
                requests=sum(r.requests for r in runs),
                req_s=median("req_s"),
                rows_s=median("rows_s"),
                p50_ms=median("p50_ms"),
                p90_ms=median("p90_ms"),
                p99_ms=median("p99_ms"),
                max_ms=max(r.max_ms for r in runs),
                errors=sum(r.errors for r in runs),
                non_2xx=sum(r.non_2xx for r in runs),
                socket_errors=sum(r.socket_errors for r in runs),
                wrong_size=sum(r.wrong_size for r in runs),
                peak_rss_mb=max(r.peak_rss_mb for r in runs),
                hwm_sum_mb=max(r.hwm_sum_mb for r in runs),
                server_cpu_pct=median("server_cpu_pct"),
                other_on_core_pct=max(r.other_on_core_pct for r in runs),
                req_s_spread_pct=100 * (max(req_s) - min(req_s)) / median("req_s") if median("req_s") else 0.0,
            )
        )
    return summary


ALL = "*"  # Metric.workload: summed over all the server's workloads


class Metric(NamedTuple):
    """One number of the summary: a field of one server's result on one workload."""

    server: str
    workload: str
    field: str


def value(summary: list[Result], metric: Metric) -> float | None:
    """The metric's value in the summary; None when that server or workload did not run."""
    found = [r for r in summary if r.server == metric.server and metric.workload in (ALL, r.workload)]
    if not found:
        return None
    return float(sum(getattr(r, metric.field) for r in found))


OTHERS = ("mlserver", "kserve", "floor", "floor-orjson", "floor-compiled")


def ratios(summary: list[Result]) -> list[dict[str, Any]]:
    """Ratios of medians: ours / each other server, the issue's cross comparisons, p99/p50 of every server."""
    rows = []

    def add(comparison: str, metric: str, numerator: Metric, denominator: Metric) -> None:
        a, b = value(summary, numerator), value(summary, denominator)
        if a is not None and b:
            rows.append({"comparison": comparison, "metric": metric, "ratio": a / b})

    for other in OTHERS:
        for label, workload, key in (
            ("single-row V2 req/s, 8 conn", V2_1_8, "req_s"),
            ("single-row V2 req/s, 64 conn", V2_1_64, "req_s"),
            (f"{BATCH_ROWS:,}-row V2 JSON rows/s, 8 conn", V2_BATCH, "rows_s"),
            (f"{BATCH_ROWS:,}-row V2 binary rows/s, 8 conn", V2_BINARY, "rows_s"),
            ("single-row gRPC req/s, 8 streams", GRPC_1_8, "req_s"),
            (f"{BATCH_ROWS:,}-row raw gRPC rows/s, 8 streams", GRPC_BATCH, "rows_s"),
        ):
            add(f"ours / {other}", label, Metric("ours", workload, key), Metric(other, workload, key))
    add(
        "ours / ours",
        f"gRPC {BATCH_ROWS:,}-row raw rows/s vs REST binary {BATCH_ROWS:,}-row rows/s",
        Metric("ours", GRPC_BATCH, "rows_s"),
        Metric("ours", V2_BINARY, "rows_s"),
    )
    add(
        "ours / mlserver",
        "ours /predict 1 row req/s vs MLServer single-row V2 req/s, 8 conn",
        Metric("ours", PREDICT, "req_s"),
        Metric("mlserver", V2_1_8, "req_s"),
    )
    add(
        "ours / mlserver",
        f"ours binary {BATCH_ROWS:,} rows/s vs MLServer JSON {BATCH_ROWS:,} rows/s, 8 conn",
        Metric("ours", V2_BINARY, "rows_s"),
        Metric("mlserver", V2_BATCH, "rows_s"),
    )
    for workload, connections in ((V2_1_8, 8), (V2_1_64, 64)):
        add(
            "floor-compiled / ours",
            f"single-row V2 req/s, {connections} conn",
            Metric("floor-compiled", workload, "req_s"),
            Metric("ours", workload, "req_s"),
        )
    for server in ("ours", *OTHERS):
        for workload, label in (
            (V2_1_8, "single-row V2, 8 conn"),
            (V2_1_64, "single-row V2, 64 conn"),
            (GRPC_1_8, "single-row gRPC, 8 streams"),
        ):
            add(
                server,
                f"p99/p50, {label}",
                Metric(server, workload, "p99_ms"),
                Metric(server, workload, "p50_ms"),
            )
    return rows


@dataclass(frozen=True)
class Target:
    """A goal of the issue: numerator / denominator (numerator alone without one) `op` bound."""

    name: str
    numerator: Metric
    denominator: Metric | None
    op: str  # ">=" or "<="
    bound: float
    unit: str = "x"


# The targets, checked on the medians; PASS/MISS (n/a when a server or workload did not run).
TARGETS = [
    Target(
        "single-row V2 req/s, 8 conn: ours / MLServer",
        Metric("ours", V2_1_8, "req_s"),
        Metric("mlserver", V2_1_8, "req_s"),
        ">=",
        2.5,
    ),
    Target(
        "single-row V2 req/s, 8 conn: ours / KServe",
        Metric("ours", V2_1_8, "req_s"),
        Metric("kserve", V2_1_8, "req_s"),
        ">=",
        2.5,
    ),
    Target(
        "single-row V2 req/s, 8 conn: floor-compiled / ours (ours within 1.5x of the compiled floor)",
        Metric("floor-compiled", V2_1_8, "req_s"),
        Metric("ours", V2_1_8, "req_s"),
        "<=",
        1.5,
    ),
    Target(
        "ours /predict 1 row req/s / MLServer single-row V2 req/s, 8 conn",
        Metric("ours", PREDICT, "req_s"),
        Metric("mlserver", V2_1_8, "req_s"),
        ">=",
        2.0,
    ),
    Target(
        f"{BATCH_ROWS:,}-row V2 JSON rows/s: ours / MLServer",
        Metric("ours", V2_BATCH, "rows_s"),
        Metric("mlserver", V2_BATCH, "rows_s"),
        ">=",
        1.5,
    ),
    Target(
        f"ours binary {BATCH_ROWS:,}-row rows/s / MLServer JSON {BATCH_ROWS:,}-row rows/s",
        Metric("ours", V2_BINARY, "rows_s"),
        Metric("mlserver", V2_BATCH, "rows_s"),
        ">=",
        3.0,
    ),
    Target(
        "single-row gRPC req/s, 8 streams: ours / MLServer",
        Metric("ours", GRPC_1_8, "req_s"),
        Metric("mlserver", GRPC_1_8, "req_s"),
        ">=",
        2.0,
    ),
    Target(
        f"{BATCH_ROWS:,}-row raw gRPC rows/s, 8 streams: ours / MLServer",
        Metric("ours", GRPC_BATCH, "rows_s"),
        Metric("mlserver", GRPC_BATCH, "rows_s"),
        ">=",
        2.0,
    ),
    Target(
        f"ours gRPC {BATCH_ROWS:,}-row rows/s / ours REST binary {BATCH_ROWS:,}-row rows/s (not slower than its own "
        "REST binary path)",
        Metric("ours", GRPC_BATCH, "rows_s"),
        Metric("ours", V2_BINARY, "rows_s"),
        ">=",
        1.0,
    ),
    Target(
        "ours p99 / p50, single-row V2, 8 conn",
        Metric("ours", V2_1_8, "p99_ms"),
        Metric("ours", V2_1_8, "p50_ms"),
        "<=",
        3.0,
    ),
    Target(
        "ours p99 / p50, single-row V2, 64 conn",
        Metric("ours", V2_1_64, "p99_ms"),
        Metric("ours", V2_1_64, "p50_ms"),
        "<=",
        3.0,
    ),
    Target(
        "ours errors: non-2xx + socket/stream errors + wrong-size gRPC responses over all workloads and rounds, "
        "+ failed rounds",
        Metric("ours", ALL, "errors"),
        None,
        "<=",
        0,
        unit="",
    ),
]


def evaluate(summary: list[Result], failures: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each of TARGETS with its measured value and PASS, MISS or n/a."""
    rows = []
    for target in TARGETS:
        measured = value(summary, target.numerator)
        if target.denominator is None:  # a count: failed rounds of the server count too
            failed = len(failures.get(target.numerator.server, []))
            if measured is not None or failed:
                measured = (measured or 0) + failed
        else:
            denominator = value(summary, target.denominator)
            measured = measured / denominator if measured is not None and denominator else None
        if measured is None:
            status = "n/a"
        else:
            status = "PASS" if (measured >= target.bound if target.op == ">=" else measured <= target.bound) else "MISS"
        rows.append(
            {
                "target": target.name,
                "measured": measured,
                "op": target.op,
                "bound": target.bound,
                "unit": target.unit,
                "status": status,
            }
        )
    return rows


def markdown(
    summary: list[Result],
    ratio_rows: list[dict[str, Any]],
    target_rows: list[dict[str, Any]],
    meta: dict[str, Any],
) -> str:
    """The results, ratio and target tables as markdown."""
    lines = [
        "| server | workload | req/s | spread % | rows/s | p50 ms | p99 ms | errors | peak MB | server CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r.label} | {r.workload} | {r.req_s:,.1f} | {r.req_s_spread_pct:.0f} | {r.rows_s:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.peak_rss_mb:.0f} | {r.server_cpu_pct:.0f} |"
        )
    lines += ["", "| comparison | metric | ratio |", "|---|---|---:|"]
    lines += [f"| {r['comparison']} | {r['metric']} | {r['ratio']:.2f} |" for r in ratio_rows]
    lines += [
        "",
        f"Median of {meta['rounds']} round(s) (servers interleaved; spread % = (max - min) / median of req/s over "
        f"the rounds; errors summed; peak MB the maximum). {meta['duration_s']} s per workload after a "
        f"{meta['warmup_s']} s warm-up; servers on core {SERVER_CORE}, wrk (1 thread) and h2load (gRPC: 1 "
        f"connection, 8 concurrent streams; errors include responses of the wrong size) on core {LOAD_CORE}; rows: "
        f"{meta['rows_source']}; peak MB = max summed RSS of the server's process tree during the measured run; "
        "server CPU % = CPU time of that tree / wall time (100 = one core saturated). ratio > 1 on throughput = "
        "the first named faster. Binary extension: "
        + "; ".join(f"{name}: {probe}" for name, probe in meta["binary_probe"].items())
        + ".",
    ]
    if meta["failures"]:
        lines.append("")
        for name, failed in meta["failures"].items():
            for failure in failed:
                lines.append(f"FAILED: {name}, round {failure['round']}: {failure['error'][:300]}")
    busy = [r for r in summary if r.other_on_core_pct > 10]
    if busy:
        lines.append(
            f"\nWARNING: other processes used core {SERVER_CORE} during {len(busy)} run(s) (up to "
            f"{max(r.other_on_core_pct for r in busy):.0f}% of it): throughput is understated; "
            "rerun on an idle machine."
        )
    lines += ["", "| target | measured | required | status |", "|---|---:|---:|---|"]
    for t in target_rows:
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}{t['unit']}".replace(".00", "")
        bound = "0" if t["bound"] == 0 else f"{'≥' if t['op'] == '>=' else '≤'} {t['bound']:g}{t['unit']}"
        lines.append(f"| {t['target']} | {measured} | {bound} | {t['status']} |")
    counts = {s: sum(t["status"] == s for t in target_rows) for s in ("PASS", "MISS", "n/a")}
    lines += ["", "targets: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    """Versions of the serving packages in each venv."""
    found = {}
    for venv, packages in (
        (ROOT / ".venv", ["bentoml", "starlette", "uvicorn", "xgboost-cpu", "numpy", "orjson"]),
        (MLSERVER_VENV, ["mlserver", "mlserver-xgboost", "xgboost", "fastapi", "uvicorn", "numpy"]),
        (KSERVE_VENV, ["kserve", "xgboost-cpu", "fastapi", "uvicorn", "numpy"]),
    ):
        python = venv / "bin" / "python"
        if not python.exists():
            continue
        code = (
            "import importlib.metadata as m, json\n"
            f"out = {{}}\nfor p in {packages!r}:\n"
            "    try: out[p] = m.version(p)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))"
        )
        done = subprocess.run([python, "-c", code], capture_output=True, text=True)
        if done.returncode == 0:
            found[venv.name] = json.loads(done.stdout)
    return found


def _compiled_manifest(model: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((model.parent / "compiled" / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: manifest.get(k) for k in ("backend", "trees", "compiler", "cflags", "tl2cgen")}


def main() -> int:
    """Run the benchmark; 1 if a server failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured workload (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each workload (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 s warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="run every server this many times, interleaved (3)")
    parser.add_argument(
        "--servers",
        default="ours,mlserver,kserve,floor,floor-orjson,floor-compiled",
        help="comma-separated subset",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    grpc_load = shutil.which("h2load") is not None
    if not grpc_load:
        print(
            "warning: h2load is not installed (apt-get install -y nghttp2-client): no gRPC workloads", file=sys.stderr
        )
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 cores; server and load generator share one", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CORE)})  # keep this harness (memory sampling) off the server's core
    started = time.monotonic()

    import xgboost as xgb

    model = model_file()
    rows, records, source = input_rows(BATCH_ROWS)
    booster = xgb.Booster(model_file=str(model))
    booster.set_param({"nthread": 1})
    reference = booster.inplace_predict(rows, validate_features=False).astype(np.float64)
    predict_record = {k: v for k, v in records[0].items() if v is not None}
    binary, binary_headers = v2_binary_body(rows)
    bodies = {
        V2_1: Body(v2_body(rows[:1]), 1),
        V2_BATCH_BODY: Body(v2_body(rows), BATCH_ROWS),
        BINARY_BODY: Body(binary, BATCH_ROWS, binary_headers),
        "predict": Body(json.dumps(predict_record).encode(), 1),
    }
    for output in ("probability", "predict"):  # the output names the servers' gRPC requests ask for
        for key, count in ((GRPC_1, 1), (GRPC_BATCH_BODY, BATCH_ROWS)):
            bodies[f"{key}:{output}"] = Body(grpc_frame(rows[:count], output), count, grpc=True)
    work = Path(tempfile.mkdtemp(prefix="readmission-bench-"))
    files = {}
    for name, body in bodies.items():
        suffix = "grpc" if body.grpc else "bin" if body.headers else "json"
        files[name] = work / f"{name.replace(':', '-')}.{suffix}"
        files[name].write_bytes(body.data)
    print(
        f"model {model.relative_to(ROOT)}; rows: {source}; bodies: 1 row {len(bodies[V2_1].data):,} B, "
        f"{BATCH_ROWS:,} rows {len(bodies[V2_BATCH_BODY].data):,} B JSON, "
        f"{len(bodies[BINARY_BODY].data):,} B binary, {len(bodies[GRPC_BATCH_BODY + ':probability'].data):,} B gRPC",
        flush=True,
    )

    factories = {
        "ours": lambda p: server_ours(p, work),
        "mlserver": lambda p: server_mlserver(p, work, model),
        "kserve": lambda p: server_kserve(p, work, model),
        "floor": lambda p: server_floor(p, work, model),
        "floor-orjson": lambda p: server_floor_orjson(p, work, model),
        "floor-compiled": lambda p: server_floor_compiled(p, work, model),
    }
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in names:
        if name not in factories:
            sys.exit(f"unknown server {name!r}; choose from {', '.join(factories)}")
    raw: list[Result] = []
    meta: dict[str, Any] = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "rows_source": source,
        "model": str(model.relative_to(ROOT)),
        "compiled": _compiled_manifest(model),
        "tolerance": TOLERANCE,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "grpc_load": "h2load" if grpc_load else "none (h2load missing)",
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "servers": {},  # name -> per round: startup, largest differences, binary probe
        "binary_probe": {},
        "failures": {},  # name -> [{"round", "error"}]
    }
    unusable: set[str] = set()  # could not even be set up (venv): not retried
    stop = False
    for round_no in range(1, args.rounds + 1):
        for name in names:
            if name in unusable:
                continue
            print(f"{name} (round {round_no}/{args.rounds}):", flush=True)
            try:
                port = free_port()
                try:
                    server = factories[name](port)
                except (subprocess.SubprocessError, OSError, RuntimeError):
                    unusable.add(name)
                    raise
                server_results, info = bench_server(server, port, files, bodies, reference, args, round_no, grpc_load)
            except (RuntimeError, AssertionError, subprocess.SubprocessError, OSError) as error:
                print(f"  FAILED: {error}", file=sys.stderr, flush=True)
                meta["failures"].setdefault(name, []).append({"round": round_no, "error": str(error)})
                if isinstance(error, AssertionError):  # wrong answers: no point measuring anything
                    print("  wrong answers: the run stops", file=sys.stderr, flush=True)
                    stop = True
                    break
                continue
            raw.extend(server_results)
            meta["servers"].setdefault(name, []).append({"round": round_no, **info})
            meta["binary_probe"][name] = info["binary_probe"]
        if stop:
            break
    meta["versions"] = versions()
    meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["wall_s"] = round(time.monotonic() - started, 1)
    shutil.rmtree(work, ignore_errors=True)

    summary = medians(raw, names)
    ratio_rows = ratios(summary)
    target_rows = evaluate(summary, meta["failures"])
    table = markdown(summary, ratio_rows, target_rows, meta)
    print()
    print(table)
    print(f"total {meta['wall_s']} s")
    (RESULTS / "latest.md").write_text(table)
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "results": [asdict(r) for r in summary],
                "ratios": ratio_rows,
                "targets": target_rows,
                "rounds": [asdict(r) for r in raw],
            },
            indent=2,
            default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v),
        )
        + "\n"
    )
    return 1 if meta["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
