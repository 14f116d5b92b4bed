"""kserve/'s pods run for real with `podman kube play` (oci/kube_play.sh check) on the image oci/build.sh builds.

Offline, always: the pods oci/kube_pods.py renders are the manifests' (the predictor's container `kserve-container`
with the InferenceService's env, ports, probes, securityContext, resources and volumes; PostgreSQL's StatefulSet
pod), valid Kubernetes pods, selected by the manifests' Services, PDB and NetworkPolicies, and the Secrets' values
cover every reference, with deploy.sh's URL. With podman (root): oci/check_pods.py's report on both pods played (the
image shared with tests/deploy/test_oci.py through tests/conftest.py's oci_image; the stand-in PostgreSQL image takes
about 15 s): probes, users, read-only root, privileges, limits, a prediction logged through the Secret's URL, and
`podman kube down` under load losing no answered prediction.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess

import pytest

from oci import kube_pods
from tests.helpers import KSERVE, oci_script, render

STANDARD = KSERVE / "overlays" / "standard"
POSTGRES = KSERVE / "postgres"
ROLES = ("postgres", "predictor")
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def isvc() -> dict:
    return kube_pods.find(list(render(STANDARD)), "InferenceService")


def pods() -> dict[str, dict]:
    """Each role's pod as rendered from the manifests (before podman's adaptations)."""
    statefulset = kube_pods.find(list(render(POSTGRES)), "StatefulSet")
    return {"postgres": kube_pods.statefulset_pod(statefulset), "predictor": kube_pods.predictor_pod(isvc())}


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(\w*)", quantity).groups()
    return int(number) * UNITS.get(unit, 1)


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def effective(pod: dict, container: dict, field: str) -> int:
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    return container.get("securityContext", {}).get(field, pod["spec"].get("securityContext", {}).get(field))


# --- rendered, offline -----------------------------------------------------------------------------------------


def test_the_predictor_pod_runs_the_inference_services_container_as_kserve_container():
    predictor = isvc()["spec"]["predictor"]
    pod = pods()["predictor"]
    (container,) = pod["spec"]["containers"]
    (declared,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert {k: v for k, v in container.items() if k != "name"} == {k: v for k, v in declared.items() if k != "name"}
    for field in ("volumes", "serviceAccountName", "terminationGracePeriodSeconds"):
        assert pod["spec"][field] == predictor[field]
    assert not kube_pods.COMPONENT_FIELDS & set(pod["spec"]), "replicas and scaling belong to the Deployment and HPA"
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["metadata"]["annotations"] == isvc()["metadata"]["annotations"]


def selectors(folder) -> dict[str, dict]:
    """The pod selectors of a folder's Services, PodDisruptionBudgets and NetworkPolicies."""
    found = {}
    for doc in render(folder):
        spec = doc.get("spec", {})
        selector = {"Service": spec.get("selector"), "PodDisruptionBudget": spec.get("selector", {}).get("matchLabels"),
                    "NetworkPolicy": spec.get("podSelector", {}).get("matchLabels")}.get(doc["kind"])  # fmt: skip
        if selector:
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = selector
    return found


@pytest.mark.parametrize("role, folder", [("predictor", STANDARD), ("postgres", POSTGRES)])
def test_the_manifests_services_budget_and_policies_select_the_pod(role, folder):
    labels = pods()[role]["metadata"]["labels"]
    found = selectors(folder)
    assert found, f"nothing in {folder} selects pods"
    for name, selector in found.items():
        assert selector.items() <= labels.items(), f"{name} does not select the {role} pod"


def test_the_postgres_pod_is_the_statefulsets_pod_zero():
    statefulset = kube_pods.find(list(render(POSTGRES)), "StatefulSet")
    pod = pods()["postgres"]
    assert pod["metadata"]["name"] == "readmission-postgres-0"
    assert pod["spec"]["hostname"] == "readmission-postgres-0"
    assert pod["spec"]["subdomain"] == statefulset["spec"]["serviceName"]
    template = statefulset["spec"]["template"]["spec"]
    assert {k: v for k, v in pod["spec"].items() if k not in ("hostname", "subdomain", "restartPolicy")} == template


@pytest.mark.parametrize("role", ROLES)
def test_the_rendered_pods_are_valid_kubernetes_pods(role):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kubernetes_validate.validate(pods()[role], "1.34.0", strict=True)


def deploy_sh_url() -> str:
    """The prediction log's URL as kserve/deploy.sh --dry-run describes the Secret it creates."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "BUILDER": "docker"}
    done = subprocess.run(["bash", str(KSERVE / "deploy.sh"), "--dry-run"], capture_output=True, text=True, env=env,
                          timeout=60, check=True)  # fmt: skip
    (url,) = re.findall(r"url: (postgresql://\S+)", done.stdout)
    return url


def test_the_secrets_cover_every_reference_with_deploy_shs_url():
    postgres = list(render(POSTGRES))
    url = kube_pods.prediction_log_url(postgres, "<password>")
    assert url == deploy_sh_url()
    values = {"password": "<password>", "token": "t", "url": url}
    assert kube_pods.secrets(list(pods().values()), values) == {
        "readmission-api-token": {"token": "t"},
        "readmission-prediction-log": {"password": "<password>", "url": url},
    }
    with pytest.raises(KeyError):  # a referenced key without a value is an error, not an empty variable
        kube_pods.secrets(list(pods().values()), {"token": "t"})


def test_a_podman_secret_holds_the_secrets_data_base64_in_json():
    data = {"url": "postgresql://u:p@h:5432/d", "password": "p"}
    decoded = {
        key: base64.b64decode(value).decode() for key, value in json.loads(kube_pods.podman_secret(data)).items()
    }
    assert decoded == data


def test_for_podman_changes_only_images_empty_dirs_and_host_aliases(tmp_path):
    pod = pods()["predictor"]
    played = kube_pods.for_podman(pod, {"kserve-container": "localhost/readmission:x"}, tmp_path, {"a.svc": "10.0.0.9"})
    assert played["spec"]["containers"][0]["image"] == "localhost/readmission:x"
    assert played["spec"]["hostAliases"] == [{"ip": "10.0.0.9", "hostnames": ["a.svc"]}]
    folders = kube_pods.scratch_folders(pod, tmp_path)
    assert set(folders) == {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v} != set()
    for volume in played["spec"]["volumes"]:
        assert volume["hostPath"] == {"path": str(folders[volume["name"]]), "type": "Directory"}
    back = copy.deepcopy(played)
    del back["spec"]["hostAliases"]
    back["spec"]["containers"][0]["image"] = pod["spec"]["containers"][0]["image"]
    back["spec"]["volumes"] = pod["spec"]["volumes"]
    assert back == pod


# --- played with podman ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(oci_image, oci_env, tmp_path_factory):
    """oci/check_pods.py's report (`oci/kube_play.sh check`) on the image oci_image built."""
    path = tmp_path_factory.mktemp("kube-play") / "report.json"
    oci_script("kube_play.sh", ["check", "--report", str(path)], oci_env, timeout=600)
    return json.loads(path.read_text())


@pytest.mark.package_index  # the image's build installs the Bento's requirements from PyPI
@pytest.mark.parametrize("role", ROLES)
def test_the_probes_pass_readiness_as_the_kubelet_runs_it_liveness_as_podman_does(report, role):
    container = report["containers"][role]
    assert container["readiness_passes"]
    assert container["liveness_healthy"], container["liveness_output"]
    (declared,) = pods()[role]["spec"]["containers"]
    if "httpGet" in declared["livenessProbe"]:  # podman runs it as curl in the container: the image carries curl
        path = declared["livenessProbe"]["httpGet"]["path"]
        assert any("curl" in word for word in container["healthcheck"]) and path in " ".join(container["healthcheck"])
    else:
        assert " ".join(declared["livenessProbe"]["exec"]["command"]) in " ".join(container["healthcheck"])


@pytest.mark.package_index
@pytest.mark.parametrize("role", ROLES)
def test_each_process_runs_as_the_manifests_non_root_user(report, role):
    pod = pods()[role]
    (declared,) = pod["spec"]["containers"]
    container = report["containers"][role]
    user = effective(pod, declared, "runAsUser")
    assert user != 0 and effective(pod, declared, "runAsNonRoot")
    assert container["uid"] == user and container["process_uids"] == [user]
    assert container["gid"] == effective(pod, declared, "runAsGroup")


@pytest.mark.package_index
@pytest.mark.parametrize("role", ROLES)
def test_the_root_filesystem_is_read_only_and_privileges_are_dropped(report, role):
    (declared,) = pods()[role]["spec"]["containers"]
    security = declared["securityContext"]
    container = report["containers"][role]
    assert security["readOnlyRootFilesystem"] and container["read_only_rootfs"] and container["root_write_refused"]
    assert security["capabilities"]["drop"] == ["ALL"] and int(container["proc_status"]["CapEff"], 16) == 0
    assert security["allowPrivilegeEscalation"] is False and container["proc_status"]["NoNewPrivs"] == "1"
    assert (
        container["proc_status"]["Seccomp"] == "2"
    )  # filtered: podman's default profile, the RuntimeDefault asked for


@pytest.mark.package_index
@pytest.mark.parametrize("role", ROLES)
def test_limits_and_restart_policy_are_the_manifests(report, role):
    pod = pods()[role]
    (declared,) = pod["spec"]["containers"]
    container = report["containers"][role]
    assert container["memory_limit_bytes"] == memory_bytes(declared["resources"]["limits"]["memory"])
    assert container["memory_reservation_bytes"] == memory_bytes(declared["resources"]["requests"]["memory"])
    assert container["cpu_limit_cores"] == cpu_cores(declared["resources"]["limits"]["cpu"])
    assert container["restart_policy"] == "always"
    for mount in declared["volumeMounts"]:
        assert mount["mountPath"] in container["mounts"]


@pytest.mark.package_index
def test_a_prediction_is_logged_to_postgres_through_the_secrets_url(report):
    assert report["unauthorized_status"] == 401  # the token comes from its Secret
    assert report["predict_status"] == 200
    assert report["log_seconds"] < 30  # found in PostgreSQL (check_pods waits for it)
    env = report["containers"]["predictor"]["env_names"]
    assert {"READMISSION_PREDICTION_LOG", "READMISSION_API_TOKEN"} <= set(env)
    aliases = report["pods"]["predictor"]["spec"]["hostAliases"]
    assert aliases[0]["hostnames"] == ["readmission-postgres.readmission.svc"]


@pytest.mark.package_index
def test_kube_down_under_load_loses_no_answered_prediction(report, figure):
    drain = report["drain"]
    grace = pods()["predictor"]["spec"]["terminationGracePeriodSeconds"]
    assert drain["answered"] >= 20
    assert drain["answered_after_down_began"] > 0, "SIGTERM stopped the service without a drain"
    assert drain["down_seconds"] < grace, "podman killed the pod at the end of its grace period"
    assert drain["exit_codes"] == {"readmission-predictor-kserve-container": 0}, "not a clean exit after SIGTERM"
    assert drain["missing"] == []
    figure("pods up (s)", report["up_seconds"])
    figure("kube down under load (s)", drain["down_seconds"])
    figure("answered during the down", drain["answered_after_down_began"])
