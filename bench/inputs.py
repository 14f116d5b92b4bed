"""What every server is given: the model file, the rows, the request bodies (V2 JSON, binary, gRPC frames)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2

from bento.settings import MODEL_NAME
from training.settings import data_file

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"  # default of --results
BENTOML_HOME = ROOT / ".readmission" / "bentoml"  # the project's BentoML store (`make up`); default of --bentoml-home
BATCH_ROWS = 1000
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"

V2_1, V2_BATCH_BODY, BINARY_BODY = "v2_1", f"v2_{BATCH_ROWS}", f"v2_{BATCH_ROWS}_binary"  # keys of the bodies
GRPC_1, GRPC_BATCH_BODY = "grpc_1", f"grpc_{BATCH_ROWS}"  # gRPC bodies: the key is f"{this}:{output name}"


def body_key(body: str, grpc_output: str) -> str:
    """The key of the body a server gets for `body`: gRPC frames ask for the server's output name."""
    return f"{body}:{grpc_output}" if body in (GRPC_1, GRPC_BATCH_BODY) else body


def model_file(home: Path = BENTOML_HOME) -> Path:
    """model.ubj of readmission:latest in the project's BentoML store."""
    store = home / "models" / MODEL_NAME
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


def shown(path: Path) -> str:
    """`path` relative to the project where it is inside it, else as it is."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def compiled_manifest(model: Path) -> dict[str, Any] | None:
    """What the manifest of the compiled trees beside the model says (None without one)."""
    try:
        manifest = json.loads((model.parent / "compiled" / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: manifest.get(k) for k in ("backend", "trees", "depth", "compiler", "cflags", "tl2cgen")}


def input_rows(count: int) -> tuple[np.ndarray, list[dict[str, Any]], str]:
    """`count` realistic encoded rows with no missing value (V2 JSON has no NaN), their records, the source.

    Real rows of the UCI test split when the data is at hand, else variations of a hand-written record.
    """
    from bento import features

    source = data_file()
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
