"""Observability without a running service: promtool checks and unit tests of the rules, the dashboard JSON
(generated, structurally valid for Grafana's file provisioning), the provisioning files, the Kubernetes
ConfigMaps (generated from the same files) and the Grafana admin Secret. promtool: Debian's `prometheus`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability import dashboard, k8s_config
from tests.helpers import PROMQL_COMPARISON

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA = OBSERVABILITY / "grafana"
K8S = OBSERVABILITY / "k8s"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS_DIR / "rules" / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]  # fmt: skip


def k8s_docs() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


# promtool


def test_local_configuration_passes_promtool():
    result = run(promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_kubernetes_configuration_passes_promtool(tmp_path):
    """Debian builds Prometheus without Kubernetes discovery: then every kubernetes_sd_configs becomes a
    static target, so the rest (relabelling regexes, TLS and auth files aside) is still checked."""
    tool = promtool()
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())
    config["rule_files"] = [str(path) for path in RULE_FILES]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run(tool, "check", "config", str(path))
    if "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None):
                job["static_configs"] = [{"targets": ["127.0.0.1:3000"]}]
            job.pop("tls_config", None)
            job.pop("authorization", None)
        path.write_text(yaml.safe_dump(config))
        result = run(tool, "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"readmission", "locust", "prometheus", "kubelet-cadvisor"} <= jobs


def test_rules_pass_promtool_check():
    result = run(promtool(), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    tool = promtool()
    assert UNIT_TESTS
    result = run(tool, "test", "rules", *(path.name for path in UNIT_TESTS), cwd=PROMETHEUS_DIR / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


# the rules themselves


def test_recording_rules_cover_rate_errors_and_latency_quantiles_per_endpoint():
    records = {rule["record"]: rule["expr"] for group in yaml.safe_load(RULE_FILES[-1].read_text())["groups"]
               for rule in group["rules"]}  # fmt: skip
    for name in (
        "endpoint:bentoml_service_request:rate1m",
        "endpoint:bentoml_service_request_errors:ratio_rate1m",
        "endpoint:bentoml_service_request_duration_seconds:p50_1m",
        "endpoint:bentoml_service_request_duration_seconds:p95_1m",
        "endpoint:bentoml_service_request_duration_seconds:p99_1m",
    ):
        assert name in records
        assert "by (endpoint" in records[name]


def test_every_alert_has_severity_category_summary_runbook_url_and_a_measure():
    names = [rule["alert"] for rule in alerts()]
    assert set(names) == {
        "ReadmissionServiceDown",
        "ReadmissionNotReady",
        "ReadmissionHighErrorRatio",
        "ReadmissionLatencyP99OverSLO",
        "ReadmissionNoPredictions",
        "ReadmissionScoreDrift",
        "ReadmissionModelVersionChanged",
        "FeatureDrift",
        "LiveRocAucBelowTraining",
        "FeedbackStopped",
    }
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["labels"]["category"] in ("service", "model"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["runbook_url"], rule["alert"]  # its section: test_runbooks.py
        # `<measure> <comparison> <number>`: the live test queries the measure with a bool comparison
        assert PROMQL_COMPARISON.search(rule["expr"]), rule["alert"]


def test_every_alert_has_unit_tests_firing_and_not_firing():
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"


# Grafana


def test_dashboard_json_is_the_generators_output():
    assert dashboard.OUTPUT.read_text() == dashboard.render(), "run: python -m observability.dashboard"


def test_dashboard_is_valid_for_grafana_file_provisioning():
    model = json.loads(dashboard.OUTPUT.read_text())
    assert model["uid"] == "readmission" and model["title"]
    assert isinstance(model["schemaVersion"], int) and model["schemaVersion"] >= 36
    assert model.get("id") is None  # provisioned dashboards must not carry a database id
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    ids, cells = set(), set()
    for panel in model["panels"]:
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        assert panel["type"] in ("stat", "timeseries", "bargauge"), panel["title"]
        assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}, panel["title"]
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"} and grid["x"] + grid["w"] <= 24 and grid["w"] > 0 < grid["h"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for target in panel["targets"]:
            assert target["expr"].strip() and "$" not in target["expr"], panel["title"]
            assert target["datasource"]["uid"] == source["uid"]
    titles = " | ".join(panel["title"] for panel in model["panels"]).lower()
    for needed in ("up", "ready", "model version", "request rate", "p99", "error", "predictions by outcome",
                   "score distribution", "cpu", "memory", "locust"):  # fmt: skip
        assert needed in titles, f"no panel about {needed}"


def test_provisioning_files_point_at_each_other():
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["uid"] == dashboard.DATASOURCE["uid"] and source["type"] == "prometheus"
    assert source["url"] == "${PROMETHEUS_URL}"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "readmission.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    (grafana,) = [doc for doc in k8s_docs() if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "grafana"]
    mounts = {m["name"]: m["mountPath"] for m in grafana["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["dashboards"] == provider["options"]["path"]
    assert mounts["datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["dashboard-providers"] == "/etc/grafana/provisioning/dashboards"


# Kubernetes


def test_kubernetes_configmaps_are_generated_from_the_sources():
    assert (K8S / "configmaps.yaml").read_text() == k8s_config.render(), "run: python -m observability.k8s_config"
    maps = {doc["metadata"]["name"]: doc for doc in k8s_docs() if doc["kind"] == "ConfigMap"}
    assert json.loads(maps["grafana-dashboards"]["data"]["readmission.json"])["uid"] == "readmission"
    assert set(maps["prometheus-rules"]["data"]) == {path.name for path in RULE_FILES}


def test_grafana_admin_comes_from_a_secret_that_is_not_shipped():
    docs = k8s_docs()
    assert not [doc for doc in docs if doc["kind"] == "Secret"], "no Secret in the repository"
    (grafana,) = [doc for doc in docs if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "grafana"]
    env = {item["name"]: item for item in grafana["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "grafana-admin"
    assert "kubectl -n observability create secret generic grafana-admin" in (OBSERVABILITY / "README.md").read_text()


def test_workloads_are_unprivileged_with_resources_and_probes():
    workloads = [doc for doc in k8s_docs() if doc["kind"] == "Deployment"]
    assert {doc["metadata"]["name"] for doc in workloads} == {"prometheus", "grafana"}
    for doc in workloads:
        assert doc["metadata"]["namespace"] == "observability"
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert container["readinessProbe"] and container["livenessProbe"]
    node_ports = {port["nodePort"]: doc["metadata"]["name"] for doc in k8s_docs() if doc["kind"] == "Service"
                  for port in doc["spec"]["ports"] if "nodePort" in port}  # fmt: skip
    assert node_ports == {30090: "prometheus", 30030: "grafana"}
    assert any(doc["kind"] == "PersistentVolumeClaim" for doc in k8s_docs())


# make up's helper


def test_run_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(OBSERVABILITY.glob("*.sh"))
    assert {path.name for path in scripts} >= {"run_prometheus.sh", "run_alertmanager.sh"}
    result = run(shellcheck, *map(str, scripts))
    assert result.returncode == 0, result.stdout


def test_run_prometheus_script_runs_the_command_without_prometheus(tmp_path):
    """On a machine without the binary `make up` still serves: the helper runs the command alone."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env", "true"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    command = [str(bin_dir / "bash"), str(OBSERVABILITY / "run_prometheus.sh"), "true"]
    env = {"PATH": str(bin_dir)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "prometheus is not installed" in result.stderr


def test_readme_documents_alerts_and_shows_the_dashboard():
    readme = (OBSERVABILITY / "README.md").read_text()
    for rule in alerts():
        assert rule["alert"] in readme
    assert "](../docs/dashboard.png)" in readme
