"""The prediction log in the cluster, checked offline: kserve/postgres (PostgreSQL as a StatefulSet on a PVC,
reachable from the predictor only), the predictor's READMISSION_PREDICTION_LOG from the Secret deploy.sh creates,
its SQLite fallback on an emptyDir, and deploy.sh's order. tests/deploy/test_hardening.py holds the pod policy for
kserve/postgres too.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import KSERVE, OVERLAYS, render

POSTGRES = KSERVE / "postgres"
LOG_SECRET = "readmission-prediction-log"  # pragma: allowlist secret (the Secret's name)
PREDICTOR_LABEL = {"serving.kserve.io/inferenceservice": "readmission"}


def postgres_docs() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in render(POSTGRES)}


def predictor_container(overlay: str) -> tuple[dict, dict]:
    (isvc,) = [doc for doc in render(KSERVE / "overlays" / overlay) if doc["kind"] == "InferenceService"]
    (container,) = isvc["spec"]["predictor"]["containers"]
    return isvc["spec"]["predictor"], container


def test_postgres_renders_valid_core_resources_in_the_service_namespace():
    docs = postgres_docs()
    assert set(docs) == {"PersistentVolumeClaim", "StatefulSet", "Service", "NetworkPolicy"}
    assert {doc["metadata"]["namespace"] for doc in docs.values()} == {"readmission"}
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_postgres_keeps_its_data_on_the_claim_and_is_served_on_5432():
    docs = postgres_docs()
    pod = docs["StatefulSet"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    (container,) = pod["spec"]["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    claim = volumes[mounts["/var/lib/postgresql/data"]]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]
    env = {item["name"]: item for item in container["env"]}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": LOG_SECRET, "key": "password"}
    service = docs["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert [port["port"] for port in service["ports"]] == [5432]
    assert [port["containerPort"] for port in container["ports"]] == [5432]


def test_only_the_predictor_pods_reach_postgres_and_postgres_reaches_nothing():
    docs = postgres_docs()
    policy = docs["NetworkPolicy"]["spec"]
    assert (
        policy["podSelector"]["matchLabels"].items()
        <= docs["StatefulSet"]["spec"]["template"]["metadata"]["labels"].items()
    )
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and not policy.get("egress")
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": PREDICTOR_LABEL}}]  # this namespace's predictor pods
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_predictor_logs_to_the_secret_url_and_falls_back_to_sqlite_on_an_empty_dir(overlay):
    predictor, container = predictor_container(overlay)
    env = {item["name"]: item for item in container["env"]}
    log = env["READMISSION_PREDICTION_LOG"]
    assert "value" not in log, "the URL holds the password: never a literal"
    assert {key: log["valueFrom"]["secretKeyRef"][key] for key in ("name", "key")} == {"name": LOG_SECRET, "key": "url"}
    home = env["READMISSION_HOME"]["value"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in predictor["volumes"]}
    assert "emptyDir" in volumes[mounts[home]]


def dry_run(*args: str) -> list[str]:
    """deploy.sh --dry-run's commands, with a PATH that has no cluster tools."""
    bash = shutil.which("bash")
    assert bash is not None
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "BUILDER": "docker"}
    result = subprocess.run(
        [bash, str(KSERVE / "deploy.sh"), *args, "--dry-run"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def positions(commands: list[str], *fragments: str) -> list[int]:
    return [next(i for i, command in enumerate(commands) if fragment in command) for fragment in fragments]


@pytest.mark.parametrize("command", [(), ("restore", "--dir", "/tmp/readmission-backup")])
def test_deploy_creates_the_log_secret_then_postgres_before_the_predictor(command):
    commands = dry_run(*command)
    secret, postgres, ready = positions(
        commands,
        f"create secret generic {LOG_SECRET}",
        f"apply -k {POSTGRES}",
        "rollout status statefulset/readmission-postgres",
    )
    assert secret < postgres < ready
    (create,) = [c for c in commands if f"create secret generic {LOG_SECRET}" in c]
    assert "--from-file=password=" in create and "--from-file=url=" in create, "values from files, never arguments"
    if not command:
        (predictor,) = positions(commands, f"apply -k {KSERVE / 'overlays' / 'knative'}")
        assert ready < predictor
