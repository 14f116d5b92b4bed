"""The V2 protocol with real third-party clients: Triton's tritonclient[http] and the KServe SDK.

The KServe SDK pins pandas<3, psutil<6 and protobuf<7, which clash with this project's environment, so it
runs from its own virtualenv (.venv-kserve, made on first use) through tests/kserve_client_check.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from bento import features
from bento.model.predictor import Predictor
from tests.helpers import FIELD_DATATYPES, MODEL, RECORD, SEED_EXAMPLE, matrix_of, records

REPO = Path(__file__).resolve().parents[2]
KSERVE_VENV = REPO / ".venv-kserve"
KSERVE_VERSION = "0.21.0"
KSERVE_SCRIPT = Path(__file__).resolve().parents[1] / "kserve_client_check.py"


@pytest.fixture(scope="module")
def local(bento_home):
    return Predictor.load(bento_home["model_dir"], bento_home["tag"])


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rows = [features.vector_from_encoded(SEED_EXAMPLE)[None, :], matrix_of([RECORD, *records(30, seed=21)])]
    return np.vstack(rows).astype(np.float32)


# --- tritonclient[http] ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton(service):
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(url=urlsplit(service.url).netloc, network_timeout=30)
    yield http, client
    client.close()


def test_triton_health_and_readiness(triton, local):
    _, client = triton
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, local.info.version)
    assert not client.is_model_ready("no-such-model")


def test_triton_server_and_model_metadata(triton, local):
    _, client = triton
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and local.info.version in metadata["versions"]
    assert metadata["inputs"][0] == {"name": "input-0", "datatype": "FP32", "shape": [-1, len(features.COLUMNS)]}
    assert client.get_model_metadata(MODEL, local.info.version)["name"] == MODEL


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_triton_infer_equals_in_process_predictions(triton, local, matrix, binary):
    http, client = triton
    tensor = http.InferInput("input-0", list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix, binary_data=binary)
    if binary:
        result = client.infer(MODEL, [tensor], request_id="triton-1")  # outputs as binary tensors by default
    else:
        outputs = [http.InferRequestedOutput(name, binary_data=False) for name in ("probability", "label")]
        result = client.infer(MODEL, [tensor], outputs=outputs, request_id="triton-1")
    expected = local.probabilities(matrix)
    np.testing.assert_allclose(result.as_numpy("probability"), expected, atol=1e-6)
    assert result.as_numpy("label").tolist() == local.labels(expected).tolist()
    response = result.get_response()
    assert response["id"] == "triton-1" and response["model_version"] == local.info.version


def test_triton_output_selection(triton, local, matrix):
    http, client = triton
    tensor = http.InferInput("input-0", list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix)
    result = client.infer(
        MODEL, [tensor], outputs=[http.InferRequestedOutput("label")], model_version=local.info.version
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("probability") is None
    assert result.as_numpy("label").tolist() == local.labels(local.probabilities(matrix)).tolist()


def test_triton_pd_form_with_binary_bytes(triton, local):
    http, client = triton
    patients = [RECORD, *records(5, seed=4)]
    tensors = []
    for f in features.FIELDS:
        values = [p.get(f.name) for p in patients]
        datatype = FIELD_DATATYPES[f.kind]
        if datatype == "BYTES":
            array = np.array([(v or "").encode() for v in values], dtype=np.object_)
        else:
            array = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float64 if datatype == "FP64" else np.int64
            )
        tensor = http.InferInput(f.name, [len(values)], datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(MODEL, tensors, parameters={"content_type": "pd"})
    np.testing.assert_allclose(result.as_numpy("probability"), local.probabilities(matrix_of(patients)), atol=1e-6)


def test_triton_reports_a_refusal_as_an_exception_with_the_message(triton, matrix):
    http, client = triton
    bad = matrix.copy()
    bad[0, features.COLUMN_INDEX["race_Caucasian"]] = 0.5
    tensor = http.InferInput("input-0", list(bad.shape), "FP32")
    tensor.set_data_from_numpy(bad)
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="race_Caucasian"):
        client.infer(MODEL, [tensor])


# --- the KServe SDK (own venv) -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def kserve_python() -> Path:
    """The python of .venv-kserve with kserve installed; made on first use, skips where pip cannot reach PyPI."""
    python = KSERVE_VENV / "bin" / "python"
    probe = [
        str(python),
        "-c",
        f'import importlib.metadata as m, kserve; assert m.version("kserve") == {KSERVE_VERSION!r}',
    ]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    made = subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create {KSERVE_VENV}: {made.stderr[-500:]}")
    install = [str(python), "-m", "pip", "install", "-q", f"kserve=={KSERVE_VERSION}", "httpx"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.skip(f"kserve=={KSERVE_VERSION} could not be installed (no network?): {done.stderr[-500:]}")
    return python


@pytest.mark.package_index  # the kserve SDK's venv is installed from PyPI on first use
def test_kserve_sdk_rest_and_grpc_clients_v2(kserve_python, service, local, matrix):
    patients = [RECORD, *records(4, seed=8)]
    request = {
        "matrix": [[None if np.isnan(v) else float(v) for v in row] for row in matrix.tolist()],
        "fields": [
            {"name": f.name, "datatype": FIELD_DATATYPES[f.kind], "values": [p.get(f.name) for p in patients]}
            for f in features.FIELDS
        ],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(kserve_python), str(KSERVE_SCRIPT), service.url, MODEL, service.grpc],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["server_live"] is True and report["server_ready"] is True and report["model_ready"] is True
    expected = local.probabilities(matrix)
    for mode in ("json", "binary"):
        answer = report[mode]
        assert answer["id"] == f"kserve-{mode}" and answer["model_name"] == MODEL
        np.testing.assert_allclose(answer["outputs"]["probability"], expected, atol=1e-6)
        assert answer["outputs"]["label"] == local.labels(expected).tolist()
    assert list(report["binary_output"]["outputs"]) == ["probability"]
    np.testing.assert_allclose(report["binary_output"]["outputs"]["probability"], expected, atol=1e-6)
    np.testing.assert_allclose(
        report["pd"]["outputs"]["probability"], local.probabilities(matrix_of(patients)), atol=1e-6
    )
    grpc = report["grpc"]  # the SDK's InferenceGRPCClient, raw and typed contents
    assert grpc["server_live"] is True and grpc["server_ready"] is True and grpc["model_ready"] is True
    assert grpc["infer"]["id"] == "kserve-grpc" and grpc["infer"]["model_name"] == MODEL
    assert grpc["typed"]["id"] == "kserve-grpc-typed"
    for mode in ("infer", "typed"):
        np.testing.assert_allclose(grpc[mode]["outputs"]["probability"], expected, atol=1e-6)
        assert grpc[mode]["outputs"]["label"] == local.labels(expected).tolist()
