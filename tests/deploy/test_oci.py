"""The Bento as a real OCI image: built without a Docker engine (oci/build.sh), run with podman (oci/test.sh).

Slow the first time (a Debian root filesystem for the base image, then apt and PyPI inside the build:
about 6 minutes on 2 cores); the base image and the build's layers are cached under .readmission/, so
a second run takes about a minute. Skips where buildah or podman cannot run (not root, no apt-get).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.package_index  # the image's build installs the Bento's requirements from PyPI

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OCI_STATE = REPO / ".readmission" / "oci"
SKIP = 77  # what oci/*.sh exit with where they cannot run
MAX_SIZE_BYTES = 2_000_000_000
MAX_STARTUP_SECONDS = 60


def _script(name: str, args: list[str], env: dict[str, str], timeout: float) -> str:
    """Run oci/<name>; skip on its "cannot run here" status, fail with its output otherwise."""
    if sys.platform != "linux":
        pytest.skip("buildah and podman need Linux")
    done = subprocess.run(["bash", str(REPO / "oci" / name), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode == SKIP:
        reasons = [line for line in done.stderr.splitlines() if line.startswith("SKIP:")]
        pytest.skip(f"oci/{name}: {reasons[-1] if reasons else done.stderr[-500:]}")
    assert done.returncode == 0, f"oci/{name} exited with {done.returncode}:\n{done.stdout}\n{done.stderr[-6000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def oci_env(bento_home):
    """The environment of oci/*.sh: the test's BentoML home, the venv's bentoml, no telemetry."""
    return {**os.environ, "BENTOML_HOME": str(bento_home["home"]), "BENTOML_DO_NOT_TRACK": "true",
            "BENTOML": str(BIN / "bentoml"), "PYTHON": sys.executable}  # fmt: skip


@pytest.fixture(scope="module")
def built_image(bento_home, oci_env):
    """The Bento built in the test's BentoML home, then built into an image by oci/build.sh."""
    done = subprocess.run([str(BIN / "bentoml"), "build", "--output", "tag"], env=oci_env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    output = _script("build.sh", [], {**oci_env, "READMISSION_BENTO": tag}, timeout=720)
    image = dict(line.split("=", 1) for line in (OCI_STATE / "image.env").read_text().splitlines() if "=" in line)
    assert image["VERSION"] == tag.split(":")[1], output
    return image | {"bento_tag": tag, "output": output}


@pytest.fixture(scope="module")
def report(built_image, oci_env, tmp_path_factory):
    """What oci/test.sh measured and answered (its JSON report)."""
    path = tmp_path_factory.mktemp("oci") / "report.json"
    output = _script("test.sh", ["--report", str(path)], oci_env, timeout=300)
    result = json.loads(path.read_text())
    with open(OCI_STATE / "test-output.txt", "w") as handle:  # for quoting; the test prints it too
        handle.write(output)
    return result | {"output": output}


def test_image_is_built_and_tagged(built_image, report):
    assert report["image"].endswith(f"readmission:{built_image['VERSION']}")
    assert int(built_image["SIZE_BYTES"]) == report["size_bytes"]
    assert "3000/tcp" in report["exposed_ports"]


def test_image_runs_as_a_non_root_user(report):
    assert report["config_user"] == "bentoml"
    assert report["uid"] != 0 and report["user"] == "bentoml"
    assert report["process_users"] == ["bentoml"]


def test_image_holds_the_model_and_no_mlflow(report, bento_home):
    assert bento_home["tag"].split(":")[1] in report["models"]
    assert not report["mlflow_installed"]
    assert not any(v.startswith(("PIP_CERT=", "SSL_CERT_FILE=")) for v in report["env"])  # build-only settings


def test_image_serves_under_the_pods_security_context(report):
    # the KServe manifest's read-only root, dropped capabilities and emptyDir scratch, applied by podman
    flags = report["pod_flags"]
    assert "--read-only" in flags and "--cap-drop=all" in flags and "no-new-privileges" in flags
    assert sum(flag == "--tmpfs" for flag in flags) >= 2
    assert not report["root_filesystem_writable"]
    assert report["predict"]["probability"] > 0


def test_image_starts_without_a_network(report):
    assert report["offline_startup_seconds"] < MAX_STARTUP_SECONDS


def test_image_answers_like_the_source_tree(report, service, bento_home):
    assert report["predict"]["model"]["bento_tag"] == bento_home["tag"]
    with httpx.Client(base_url=service.url, timeout=30) as client:
        predict = client.post("/predict", json=report["predict_request"]).json()
        infer = client.post("/v2/models/readmission/infer", json=report["infer_request"]).json()
    assert report["predict"]["probability"] == pytest.approx(predict["probability"], abs=1e-6)
    assert report["predict"]["label"] == predict["label"]
    ours = {o["name"]: o["data"] for o in report["infer"]["outputs"]}
    theirs = {o["name"]: o["data"] for o in infer["outputs"]}
    np.testing.assert_allclose(ours["probability"], theirs["probability"], rtol=0, atol=1e-6)
    assert ours["label"] == theirs["label"]
    assert report["predict_matches"] and report["infer_matches"]  # and the in-process Predictor's
    assert report["grpc_matches"]  # the image serves gRPC too
    assert report["backends"] == {"tl2cgen": 1.0, "xgboost": 0.0}  # the compiled model runs in the image


def test_image_size_startup_and_oci_archive(report, built_image, capsys):
    assert 0 < report["size_bytes"] < MAX_SIZE_BYTES
    assert report["startup_seconds"] < MAX_STARTUP_SECONDS
    assert Path(report["archive"]).is_file() and report["archive_bytes"] > 0
    assert len(report["layers"]) >= 2 and all(layer["digest"].startswith("sha256:") for layer in report["layers"])
    with capsys.disabled():
        print(
            f"\n[oci] {report['image']} ({built_image['BACKEND']}): {report['size_mb']} MB, "
            f"ready in {report['startup_seconds']} s (without a network {report['offline_startup_seconds']} s), "
            f"{len(report['layers'])} layers, OCI archive {report['archive_bytes'] // 1_000_000} MB, "
            f"build {built_image['BUILD_SECONDS']} s"
        )
