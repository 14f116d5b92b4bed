"""The Bento as a real OCI image: built without a Docker engine (oci/build.sh), run with podman (oci/test.sh).

Slow the first time (a Debian root filesystem for the base image, then apt and PyPI inside the build:
about 6 minutes on 2 cores); the base image and the build's layers are cached under .readmission/, so
a second run takes about a minute. Skips where buildah or podman cannot run (not root, no apt-get).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import REPO, oci_script

pytestmark = pytest.mark.package_index  # the image's build installs the Bento's requirements from PyPI

OCI_STATE = REPO / ".readmission" / "oci"
MAX_SIZE_BYTES = 2_000_000_000
MAX_STARTUP_SECONDS = 60


@pytest.fixture(scope="module")
def report(oci_image, oci_env, tmp_path_factory):
    """What oci/test.sh measured and answered (its JSON report), on the image tests/conftest.py's oci_image built."""
    path = tmp_path_factory.mktemp("oci") / "report.json"
    output = oci_script("test.sh", ["--report", str(path)], oci_env, timeout=300)
    result = json.loads(path.read_text())
    with open(OCI_STATE / "test-output.txt", "w") as handle:  # for quoting; the test prints it too
        handle.write(output)
    return result | {"output": output}


def test_image_is_built_and_tagged(oci_image, report):
    assert report["image"].endswith(f"readmission:{oci_image['VERSION']}")
    assert int(oci_image["SIZE_BYTES"]) == report["size_bytes"]
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
    assert report["backends"] == {
        "branchless": 1.0,
        "tl2cgen": 0.0,
        "xgboost": 0.0,
    }  # the compiled model runs in the image


def test_image_size_startup_and_oci_archive(report, oci_image, capsys):
    assert 0 < report["size_bytes"] < MAX_SIZE_BYTES
    assert report["startup_seconds"] < MAX_STARTUP_SECONDS
    assert Path(report["archive"]).is_file() and report["archive_bytes"] > 0
    assert len(report["layers"]) >= 2 and all(layer["digest"].startswith("sha256:") for layer in report["layers"])
    with capsys.disabled():
        print(
            f"\n[oci] {report['image']} ({oci_image['BACKEND']}): {report['size_mb']} MB, "
            f"ready in {report['startup_seconds']} s (without a network {report['offline_startup_seconds']} s), "
            f"{len(report['layers'])} layers, OCI archive {report['archive_bytes'] // 1_000_000} MB, "
            f"build {oci_image['BUILD_SECONDS']} s"
        )
