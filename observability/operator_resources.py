"""observability/operator/: the Prometheus Operator's resources, generated from the files the standalone stack uses.

    .venv/bin/python -m observability.operator_resources          # writes observability/operator/
    .venv/bin/python -m observability.operator_resources --check  # exit 1 when a committed file is not current

- PodMonitor `readmission-predictor`: the predictor pods (the kserve NetworkPolicy's podSelector) scraped as the
  `readmission` job of prometheus-k8s.yml scrapes them (its relabelling, in camelCase, then `job="readmission"`,
  the job the rules and the dashboard name), at its scrape interval; both KServe modes and the gRPC overlay;
- PrometheusRule `readmission`: the groups of prometheus/rules/*.yml, each alert labelled `namespace` (below);
- AlertmanagerConfig `readmission`: alertmanager/alertmanager.yml's routes, inhibition and receivers
  (crd_convert.py), the webhook URLs read from Secret operator_settings.WEBHOOK_SECRET;
- ConfigMap `readmission-dashboard`: grafana/dashboards/readmission.json, labelled for Grafana's sidecar.

All in the InferenceService's namespace (kserve/base). The operator's default matcher strategy routes through an
AlertmanagerConfig only the alerts labelled with its namespace, and most of these alerts aggregate that label away
(`absent(...)`, `min by (job, instance)`, recording rules by endpoint): so every alert carries it as a static label.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from observability import dashboard
from observability.crd_convert import alertmanager_config_spec, camel_keys, webhook_keys
from observability.generated import Literal, dump_all, write_or_check
from observability.operator_settings import DASHBOARD_LABELS, SELECTOR_LABELS, WEBHOOK_SECRET

HERE = Path(__file__).resolve().parent
KSERVE_BASE = HERE.parent / "kserve" / "base"
PROMETHEUS_K8S = HERE / "prometheus" / "prometheus-k8s.yml"
RULE_FILES = sorted((HERE / "prometheus" / "rules").glob("*.yml"))
ALERTMANAGER = HERE / "alertmanager" / "alertmanager.yml"
OUTPUT = HERE / "operator"
JOB = "readmission"  # prometheus-k8s.yml's job of the predictor pods: the `job` the rules and the dashboard select
NAME = "readmission"
PART_OF = {"app.kubernetes.io/part-of": "readmission"}
COMMAND = "python -m observability.operator_resources"


def kserve_namespace() -> str:
    """The namespace of the InferenceService (kserve/base/kustomization.yaml)."""
    return yaml.safe_load((KSERVE_BASE / "kustomization.yaml").read_text())["namespace"]


def predictor_selector() -> dict[str, str]:
    """The predictor pods' labels, as the kserve NetworkPolicy (which admits Prometheus to them) selects them."""
    return yaml.safe_load((KSERVE_BASE / "networkpolicy.yaml").read_text())["spec"]["podSelector"]["matchLabels"]


def _metadata(name: str, namespace: str, labels: dict[str, str]) -> dict:
    return {"name": name, "namespace": namespace, "labels": {**labels, **PART_OF}}


def pod_monitor(namespace: str) -> dict:
    """The predictor pods, scraped as prometheus-k8s.yml's `readmission` job scrapes them."""
    config = yaml.safe_load(PROMETHEUS_K8S.read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    (discovery,) = job["kubernetes_sd_configs"]
    if discovery["role"] != "pod":
        raise ValueError(f"{PROMETHEUS_K8S}: job {JOB} discovers {discovery['role']}s; a PodMonitor needs pods")
    endpoint = {
        "path": job.get("metrics_path", "/metrics"),
        "interval": config["global"]["scrape_interval"],
        "scrapeTimeout": config["global"]["scrape_timeout"],
        # the operator names the job <namespace>/<PodMonitor> before these: the last one renames it
        "relabelings": [*camel_keys(job["relabel_configs"]), {"targetLabel": "job", "replacement": JOB}],
    }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(f"{NAME}-predictor", namespace, SELECTOR_LABELS),
        "spec": {
            "selector": {"matchLabels": predictor_selector()},
            "namespaceSelector": {"matchNames": discovery["namespaces"]["names"]},
            "podMetricsEndpoints": [endpoint],
        },
    }


def rule_groups(namespace: str) -> list[dict]:
    """The groups of the rule files, every alert labelled `namespace: <namespace>`."""
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["labels"] = {**rule.get("labels", {}), "namespace": namespace}
    return groups


def prometheus_rule(namespace: str) -> dict:
    """The recording and alert rules."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _metadata(NAME, namespace, SELECTOR_LABELS),
        "spec": {"groups": rule_groups(namespace)},
    }


def alertmanager_config(namespace: str) -> dict:
    """alertmanager.yml's routing, its webhook URLs in Secret WEBHOOK_SECRET."""
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": _metadata(NAME, namespace, SELECTOR_LABELS),
        "spec": alertmanager_config_spec(yaml.safe_load(ALERTMANAGER.read_text()), WEBHOOK_SECRET),
    }


def dashboard_configmap(namespace: str) -> dict:
    """The dashboard, for Grafana's sidecar."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{NAME}-dashboard", namespace, DASHBOARD_LABELS),
        "data": {dashboard.OUTPUT.name: Literal(dashboard.OUTPUT.read_text())},
    }


def _header(source: str, *notes: str) -> str:
    lines = [f"Generated by `{COMMAND}` from {source}: do not edit.", *notes]
    return "".join(f"# {line}\n" for line in lines)


def render() -> dict[Path, str]:
    """The folder's files as committed: path -> text."""
    namespace = kserve_namespace()
    routing = alertmanager_config(namespace)
    secret_note = (
        f"The webhook URLs: keys {', '.join(webhook_keys(routing['spec']))} of Secret {WEBHOOK_SECRET} in namespace "
        f"{namespace}, made by kserve/deploy.sh --monitoring operator --alert-webhooks FILE (never in the repository)."
    )
    files = {
        "podmonitor.yaml": (pod_monitor(namespace), _header("prometheus/prometheus-k8s.yml (job readmission)")),
        "prometheusrule.yaml": (prometheus_rule(namespace), _header("prometheus/rules/*.yml")),
        "alertmanagerconfig.yaml": (routing, _header("alertmanager/alertmanager.yml", secret_note)),
        "dashboard.yaml": (dashboard_configmap(namespace), _header("grafana/dashboards/readmission.json")),
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    texts = {OUTPUT / name: dump_all([document], header) for name, (document, header) in files.items()}
    apply = "kubectl apply -k observability/operator (kserve/deploy.sh --monitoring operator)"
    texts[OUTPUT / "kustomization.yaml"] = dump_all([kustomization], _header("its own list", apply))
    return texts


def main(argv: list[str] | None = None) -> int:
    """Write observability/operator/, or with --check report whether the committed files are current."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    return write_or_check(render(), args.check, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
