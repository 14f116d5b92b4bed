"""The servers compared: how to start each (command, environment, routes), their venvs and versions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.inputs import BENCH, BENTOML_HOME, ROOT, shown
from bento.settings import MODEL_NAME
from loadtest.cli import free_port

# Separate venvs (the servers pin conflicting versions); created on first use.
MLSERVER_VENV = ROOT / ".venv-bench-mlserver"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-xgboost==1.7.1", "xgboost==3.2.0"]
KSERVE_VENV = ROOT / ".venv-bench-kserve"
KSERVE_PACKAGES = ["kserve==0.21.0", "xgboost-cpu==3.2.0"]
# Ours as the Bento image runs it: exactly bento/requirements.txt (the serve extra, hash-pinned), nothing of
# training or the tests. In the project's .venv, xgboost also imports pandas, scikit-learn and pyarrow (about 130 MB
# more resident memory per worker) because they are installed there; the image has none of them.
SHIPPED_VENV = ROOT / ".venv-bench-ours"
SHIPPED_REQUIREMENTS = ROOT / "bento" / "requirements.txt"
OURS_VENVS = ("shipped", "project")


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


def shipped_venv() -> Path:
    """SHIPPED_VENV's folder, (re)created when bento/requirements.txt changed since it was made."""
    stamp = SHIPPED_VENV / "requirements.sha256"
    wanted = hashlib.sha256(SHIPPED_REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return SHIPPED_VENV
    print(f"creating {SHIPPED_VENV.name} from {shown(SHIPPED_REQUIREMENTS)} (a few minutes) ...", flush=True)
    shutil.rmtree(SHIPPED_VENV, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(SHIPPED_VENV)], check=True)
    (SHIPPED_VENV / ".gitignore").write_text("*\n")
    pip = [str(SHIPPED_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes"]
    subprocess.run([*pip, "--requirement", str(SHIPPED_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return SHIPPED_VENV


def server_ours(port: int, work: Path, home: Path = BENTOML_HOME, venv: str = "shipped") -> Server:
    """Our BentoML service, from the project root and its model store; its gRPC server and Prometheus's port on spare
    loopback ports. `venv`: "shipped" (the image's packages, SHIPPED_VENV) or "project" (.venv, no install)."""
    bentoml = (shipped_venv() if venv == "shipped" else ROOT / ".venv") / "bin" / "bentoml"
    grpc_port = free_port()
    log_home = work / "ours-home"  # the prediction log of this run: starts empty, size reported after
    env = {
        "BENTOML_HOME": str(home),
        "READMISSION_GRPC_PORT": str(grpc_port),
        "READMISSION_GRPC_HOST": "127.0.0.1",
        "READMISSION_METRICS_PORT": str(free_port()),
        "READMISSION_METRICS_HOST": "127.0.0.1",
        "READMISSION_HOME": str(log_home),
        "PYTHONPATH": str(ROOT),  # the project is not installed in SHIPPED_VENV: bento/ is imported from the root
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


def server_ours_nolog(port: int, work: Path, home: Path = BENTOML_HOME, venv: str = "shipped") -> Server:
    """Ours with the prediction log off (READMISSION_PREDICTION_LOG=off): what the log costs."""
    server = server_ours(port, work, home, venv)
    server.env["READMISSION_PREDICTION_LOG"] = "off"
    server.name, server.label = "ours-nolog", "ours, prediction log off"
    return server


def server_ours_noshadow(port: int, work: Path, home: Path = BENTOML_HOME, venv: str = "shipped") -> Server:
    """Ours with shadow scoring off (READMISSION_SHADOW=off): what scoring a challenger in shadow costs (a store
    holding a champion imported with its challenger, `--bentoml-home`)."""
    server = server_ours(port, work, home, venv)
    server.env["READMISSION_SHADOW"] = "off"
    server.name, server.label = "ours-noshadow", "ours, shadow off"
    return server


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
        raise RuntimeError(f"no compiled/ folder beside {shown(model)}; import the model again")
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


def versions() -> dict[str, str]:
    """Versions of the serving packages in each venv."""
    found = {}
    for venv, packages in (
        (ROOT / ".venv", ["bentoml", "starlette", "uvicorn", "xgboost-cpu", "numpy", "orjson"]),
        (SHIPPED_VENV, ["bentoml", "starlette", "uvicorn", "xgboost-cpu", "numpy", "orjson"]),
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
