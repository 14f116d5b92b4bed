"""Run the built image with podman and check it: readiness, answers, user, size, start-up; export it.

Run by oci/test.sh (which sets up the container store) as `python -m oci.check_image` from the project root;
prints a JSON report and writes it to --report.
The answers are compared with the same model loaded in-process from $BENTOML_HOME (the source tree's
Predictor), to 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bento import features
from bento.model.predictor import Predictor
from bento.settings import MODEL_NAME
from loadtest import cli

REPO = Path(__file__).resolve().parents[1]

BENTO_PATH = "/home/bentoml/bento"
# podman here: runc (crun fails on this cgroup setup) and explicit limits.
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000"]
PREDICTOR_MANIFEST = REPO / "kserve" / "base" / "inferenceservice.yaml"
RECORD = features.EXAMPLE_PATIENT
OTHER = RECORD | {"number_inpatient": 6, "age": "[80-90)", "race": None, "diag_1": "250.83"}


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; raise with that output if it fails and `check`."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def v2_request() -> dict[str, Any]:
    """A V2 infer request: RECORD and OTHER encoded as a [2, width] FP32 tensor."""
    matrix = features.encode([features.validate(p) for p in (RECORD, OTHER)])
    data = [None if np.isnan(v) else float(v) for v in matrix.ravel().tolist()]
    return {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": list(matrix.shape), "data": data}]}


def wait_ready(url: str, container: str, timeout: float) -> None:
    """Poll /readyz until it answers 200; fail early with the logs if the container stops."""

    def alive() -> None:
        state = run("podman", "inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
        if state not in ("running", "created", "configured"):
            raise RuntimeError(f"the container is {state}")

    try:
        cli.wait_ready(url + "/readyz", timeout, alive, every=0.2)
    except RuntimeError as error:  # stopped, or not ready in time
        raise RuntimeError(f"{error}:\n{logs(container)}") from None


def logs(container: str) -> str:
    """The end of what the container printed."""
    done = run("podman", "logs", container, check=False)
    return (done.stdout + done.stderr)[-4000:]


def remove(container: str) -> None:
    """Stop (SIGTERM, then SIGKILL after 10 s) and remove the container."""
    run("podman", "rm", "--force", "--time", "10", container, check=False)


def pod_flags(manifest: Path = PREDICTOR_MANIFEST) -> list[str]:
    """podman flags that run the container as the KServe predictor's securityContext does.

    Read-only root, every capability dropped, no privilege escalation, the pod's user, and a tmpfs for
    each emptyDir the manifest mounts (with the environment that points there): the image must work so.
    """
    predictor = yaml.safe_load(manifest.read_text())["spec"]["predictor"]
    container = predictor["containers"][0]
    security = container["securityContext"]
    flags = ["--user", str(security["runAsUser"])]
    if security.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    flags += [f"--cap-drop={c.lower()}" for c in security.get("capabilities", {}).get("drop", [])]
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    scratch = {v["name"] for v in predictor.get("volumes", []) if "emptyDir" in v}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in scratch:
            flags += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
    flags += [f"--env={e['name']}={e['value']}" for e in container.get("env", []) if "value" in e]
    return flags


def offline_start(image: str, timeout: float) -> float:
    """Start with no network at all (--network none) and wait for /readyz from inside: seconds to ready."""
    name = f"readmission-oci-offline-{os.getpid()}"
    probe = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:3000/readyz', timeout=2).status)"

    def ready() -> bool:
        return run("podman", "exec", name, "python", "-c", probe, check=False).stdout.strip() == "200"

    run("podman", "run", "--detach", "--name", name, "--network", "none", *RUN_FLAGS, image)
    try:
        return cli.wait_until(ready, timeout, every=0.3)
    except TimeoutError:
        raise RuntimeError(f"not ready without a network within {timeout} s:\n{logs(name)}") from None
    finally:
        remove(name)


def check(image: str, store: str, archive: Path, timeout: float) -> dict[str, Any]:
    """Everything measured and answered; the verdicts are computed in `main`."""
    report: dict[str, Any] = {"image": image}
    inspect = json.loads(run("podman", "image", "inspect", image).stdout)[0]
    report["size_bytes"] = int(inspect["Size"])
    report["size_mb"] = round(report["size_bytes"] / 1e6)
    report["config_user"] = inspect["Config"].get("User", "")
    report["exposed_ports"] = sorted(inspect["Config"].get("ExposedPorts") or {})
    report["env"] = inspect["Config"].get("Env", [])

    port, grpc_port, metrics_port = cli.free_port(), cli.free_port(), cli.free_port()
    name = f"readmission-oci-{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    report["pod_flags"] = pod_flags()
    ports_env = [
        "--env",
        f"READMISSION_GRPC_PORT={grpc_port}",
        "--env",
        "READMISSION_GRPC_HOST=127.0.0.1",
        "--env",
        f"READMISSION_METRICS_PORT={metrics_port}",
        "--env",
        "READMISSION_METRICS_HOST=127.0.0.1",
    ]
    run("podman", "run", "--detach", "--name", name, "--network", "host", *RUN_FLAGS, *report["pod_flags"], *ports_env,
        image, "--host", "127.0.0.1", "--port", str(port))  # fmt: skip
    try:
        wait_ready(url, name, timeout)
        report["startup_seconds"] = round(time.monotonic() - started, 2)
        report["uid"] = int(run("podman", "exec", name, "id", "-u").stdout)
        touch = run("podman", "exec", name, "touch", f"{BENTO_PATH}/written", check=False)
        report["root_filesystem_writable"] = touch.returncode == 0
        report["user"] = run("podman", "exec", name, "id", "-un").stdout.strip()
        top = run("podman", "top", name, "user", "args").stdout.splitlines()[1:]
        report["process_users"] = sorted({line.split()[0] for line in top if line.strip()})
        report["models"] = run("podman", "exec", name, "ls", f"{BENTO_PATH}/models/{MODEL_NAME}").stdout.split()
        mlflow = run("podman", "exec", name, "python", "-c", "import mlflow", check=False)
        report["mlflow_installed"] = mlflow.returncode == 0
        with httpx.Client(base_url=url, timeout=30) as client:
            predict = client.post("/predict", json=RECORD)
            predict.raise_for_status()
            infer = client.post(f"/v2/models/{MODEL_NAME}/infer", json=v2_request())
            infer.raise_for_status()
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
            report["backends"] = scoring_backends(metrics.text)
        report["grpc_probabilities"] = grpc_probabilities(f"127.0.0.1:{grpc_port}")
        report["predict_request"], report["predict"] = RECORD, predict.json()
        report["infer_request"], report["infer"] = v2_request(), infer.json()
    except Exception:
        print(logs(name), file=sys.stderr)
        raise
    finally:
        remove(name)
    report["offline_startup_seconds"] = round(offline_start(image, timeout), 2)

    tag = report["predict"]["model"]["bento_tag"]
    model_name, model_version = tag.split(":")
    local = Predictor.load(Path(os.environ["BENTOML_HOME"]) / "models" / model_name / model_version, tag)
    expected = local.probabilities(features.encode([features.validate(p) for p in (RECORD, OTHER)]))
    outputs = {o["name"]: o for o in report["infer"]["outputs"]}
    report["expected_probabilities"] = [float(p) for p in expected]
    report["predict_matches"] = abs(report["predict"]["probability"] - float(expected[0])) <= 1e-6
    report["infer_matches"] = bool(np.allclose(outputs["probability"]["data"], expected, rtol=0, atol=1e-6))
    report["grpc_matches"] = bool(np.allclose(report["grpc_probabilities"], expected, rtol=0, atol=1e-6))

    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    started = time.monotonic()
    run("skopeo", "copy", "--quiet", f"{store}{image}", f"oci-archive:{archive}:{image}", timeout=600)
    report["export_seconds"] = round(time.monotonic() - started, 1)
    report["archive"] = str(archive)
    report["archive_bytes"] = archive.stat().st_size
    manifest = json.loads(run("skopeo", "inspect", "--raw", f"oci-archive:{archive}").stdout)
    report["layers"] = [{"digest": layer["digest"], "size": layer["size"]} for layer in manifest["layers"]]
    return report


def grpc_probabilities(address: str) -> list[float]:
    """The probabilities of RECORD and OTHER through the image's gRPC port (tritonclient, raw contents)."""
    import tritonclient.grpc as triton

    matrix = features.encode([features.validate(p) for p in (RECORD, OTHER)])
    tensor = triton.InferInput("input-0", list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix)
    client = triton.InferenceServerClient(address)
    try:
        return client.infer(MODEL_NAME, [tensor]).as_numpy("probability").tolist()
    finally:
        client.close()


def scoring_backends(exposition: str) -> dict[str, float]:
    """`readmission_model_backend{backend}` of a /metrics answer: 1 for the backend that scores."""
    return {
        sample.labels["backend"]: sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "readmission_model_backend"
        for sample in family.samples
    }


def main() -> None:
    """Check the image, write the report, exit non-zero on any failed check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="localhost/readmission:latest")
    parser.add_argument("--store", default=os.environ.get("READMISSION_OCI_STORE", "containers-storage:"))
    parser.add_argument("--archive", type=Path, default=REPO / ".readmission" / "oci" / "readmission.oci.tar")
    parser.add_argument("--report", type=Path, default=REPO / ".readmission" / "oci" / "report.json")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for /readyz")
    args = parser.parse_args()
    report = check(args.image, args.store, args.archive, args.timeout)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: v for k, v in report.items() if not k.endswith(("request", "infer", "predict", "env"))}
    print(json.dumps(summary, indent=2))
    failures = [
        message
        for ok, message in [
            (report["uid"] != 0 and "root" not in report["process_users"], "the service runs as root"),
            (not report["root_filesystem_writable"], "the root filesystem is writable under the pod's flags"),
            (bool(report["models"]), "no model in the image"),
            (not report["mlflow_installed"], "mlflow is installed in the image"),
            (report["predict_matches"], "/predict differs from the source tree's model"),
            (report["infer_matches"], "V2 infer differs from the source tree's model"),
            (report["grpc_matches"], "V2 gRPC infer differs from the source tree's model"),
            (
                report["backends"].get("branchless") == 1,
                f"the image does not score with the compiled model: {report['backends']}",
            ),
            (bool(report["layers"]), "the OCI archive lists no layers"),
        ]
        if not ok
    ]
    print(
        f"image {report['image']}: {report['size_mb']} MB, ready in {report['startup_seconds']} s "
        f"(offline {report['offline_startup_seconds']} s), {len(report['layers'])} layers, uid {report['uid']}"
    )
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
