"""One hardening policy for every pod the repository deploys, checked on the rendered manifests.

The KServe predictor (each overlay), the Streamlit UI, the Locust master and workers, Prometheus and
Grafana: non-root, no privilege escalation, every capability dropped, the runtime's seccomp profile,
a read-only root filesystem with only declared scratch volumes writable, CPU and memory requests and
limits, probes on every long-running server, no service-account token unless the pod talks to the API,
and no secret value in any manifest. The service's namespace has a PodDisruptionBudget and a default-deny
NetworkPolicy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import KSERVE, OVERLAYS, load_folder, render, stack_folders

# Pods that need to talk to the Kubernetes API (Prometheus discovers its scrape targets there).
API_CLIENTS = {"prometheus"}
# Workloads that serve nothing a probe could ask (a Locust worker only connects out to its master).
NO_SERVER = {"Deployment/locust-worker"}


def _workloads() -> list[tuple[str, dict]]:
    """(where, pod template or InferenceService predictor) for every workload rendered from the repo."""
    found: list[tuple[str, dict]] = []
    accounts.clear()
    sources: list[tuple[str, list[dict]]] = [(f"kserve/{o}", list(render(KSERVE / "overlays" / o))) for o in OVERLAYS]
    sources += [(str(folder.relative_to(folder.parents[1])), load_folder(folder)) for folder in stack_folders()]
    sources.append(("kserve/postgres", list(render(KSERVE / "postgres"))))  # the prediction log's database
    for where, docs in sources:
        for doc in docs:
            name = f"{where}: {doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "ServiceAccount":
                accounts[doc["metadata"]["name"]] = doc
            if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                found.append((name, doc["spec"]["template"]["spec"]))
            elif doc["kind"] == "InferenceService":
                found.append((name, doc["spec"]["predictor"]))
    return found


accounts: dict[str, dict] = {}
WORKLOADS = _workloads()


def _containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_every_stack_is_covered():
    names = " ".join(name for name, _ in WORKLOADS)
    for expected in (
        "InferenceService/readmission",
        "readmission-ui",
        "locust-master",
        "locust-worker",
        "grafana",
        "StatefulSet/readmission-postgres",
    ):
        assert expected in names, names
    assert sum("prometheus" in name for name, _ in WORKLOADS) >= 1


@pytest.mark.parametrize(("where", "pod"), WORKLOADS, ids=[name for name, _ in WORKLOADS])
def test_pod_runs_unprivileged_and_bounded(where, pod):
    pod_security = pod.get("securityContext", {})
    for container in _containers(pod):
        security = container.get("securityContext", {})
        setting = {**pod_security, **security}.get
        label = f"{where} container {container['name']}"
        assert setting("runAsNonRoot") is True, label
        assert setting("runAsUser") not in (0, None), label
        assert security.get("allowPrivilegeEscalation") is False, label
        assert security.get("privileged", False) is False, label
        assert security.get("capabilities", {}).get("drop") == ["ALL"], label
        assert not security.get("capabilities", {}).get("add"), label
        assert setting("seccompProfile") == {"type": "RuntimeDefault"}, label
        assert security.get("readOnlyRootFilesystem") is True, label
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), f"{label}: {kind}"
        if not where.endswith(tuple(NO_SERVER)):
            assert container.get("readinessProbe") and container.get("livenessProbe"), f"{label}: probes"


@pytest.mark.parametrize(("where", "pod"), WORKLOADS, ids=[name for name, _ in WORKLOADS])
def test_writable_paths_are_declared_scratch_or_data_volumes(where, pod):
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for container in _containers(pod):
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if mount.get("readOnly"):
                continue
            kinds = set(volume) - {"name"}
            assert kinds <= {"emptyDir", "persistentVolumeClaim"}, f"{where}: {mount['mountPath']} is {kinds}"


@pytest.mark.parametrize(("where", "pod"), WORKLOADS, ids=[name for name, _ in WORKLOADS])
def test_service_account_token_only_where_the_api_is_used(where, pod):
    if any(client in where for client in API_CLIENTS):
        return
    account = accounts.get(pod.get("serviceAccountName", "default"), {})
    automount = pod.get("automountServiceAccountToken", account.get("automountServiceAccountToken"))
    assert automount is False, where


@pytest.mark.parametrize(("where", "pod"), WORKLOADS, ids=[name for name, _ in WORKLOADS])
def test_secrets_come_from_secret_references_never_literals(where, pod):
    for container in _containers(pod):
        for item in container.get("env", []):
            sensitive = any(word in item["name"].upper() for word in ("PASSWORD", "TOKEN", "SECRET", "KEY"))
            if sensitive:
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{where}: {item['name']} is not from a Secret"


def test_no_manifest_carries_a_secret_value():
    folders = [KSERVE, *stack_folders()]
    for folder in folders:
        for path in [*folder.rglob("*.yaml"), *folder.rglob("*.yml")]:
            text = path.read_text()
            assert "kind: Secret" not in text, f"{path} declares a Secret: create it at deploy time instead"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_namespace_has_a_disruption_budget_and_default_deny_ingress(overlay):
    docs = render(KSERVE / "overlays" / overlay)
    (pdb,) = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"].get("minAvailable") or pdb["spec"].get("maxUnavailable")
    policies = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
    assert policies and all("Ingress" in policy["spec"]["policyTypes"] for policy in policies)
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: an ingress rule open to every source"


def test_the_repository_root_is_what_the_folders_say():
    # the folders that ship manifests: a new one must be added to this policy's sources
    shipped = {path.parent.name for path in Path(KSERVE.parent).glob("*/k8s")} | {"kserve"}
    assert shipped == {"kserve", "ui", "loadtest", "observability"}, shipped


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_drain_and_the_longest_request(overlay):
    from bento.settings import ServiceSettings

    (isvc,) = [doc for doc in render(KSERVE / "overlays" / overlay) if doc["kind"] == "InferenceService"]
    request_timeout = 30  # bento/service.py traffic timeout
    assert (
        isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] >= ServiceSettings().drain_seconds + request_timeout
    )
