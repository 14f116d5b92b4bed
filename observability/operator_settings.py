"""The cluster's Prometheus Operator as observability/operator/ expects it: the one place for its selection labels.

MicroK8s's `observability` add-on (canonical/microk8s-core-addons, addons/observability/enable) installs
kube-prometheus-stack as the Helm release `kube-prom-stack` in namespace `observability`. With the chart's defaults:

- its Prometheus selects PodMonitors and PrometheusRules labelled `release: <release>` (`podMonitorSelector` and
  `ruleSelector` from `...SelectorNilUsesHelmValues: true`) in every namespace (`...NamespaceSelector: {}`);
- its Alertmanager takes every AlertmanagerConfig of every namespace (`alertmanagerConfigSelector: {}`,
  `alertmanagerConfigNamespaceSelector: {}`) and, by the operator's default matcher strategy `OnNamespace`, routes
  through one only the alerts labelled `namespace: <the AlertmanagerConfig's namespace>`;
- its Grafana's sidecar loads dashboards from ConfigMaps labelled `grafana_dashboard: "1"` in every namespace,
  with the Prometheus datasource's uid `prometheus`.

Another release name (kube-prometheus-stack installed by hand): change ADDON_RELEASE, then
`python -m observability.operator_resources`.
"""

from __future__ import annotations

ADDON_RELEASE = "kube-prom-stack"  # the add-on's Helm release of kube-prometheus-stack
ADDON_NAMESPACE = "observability"  # where the add-on runs Prometheus, Alertmanager and Grafana
# The labels the add-on's Prometheus selects PodMonitors and PrometheusRules by.
SELECTOR_LABELS = {"release": ADDON_RELEASE}
# The labels the add-on's Grafana sidecar loads dashboards by (grafana.sidecar.dashboards.label / labelValue).
DASHBOARD_LABELS = {"grafana_dashboard": "1"}
ADDON_DATASOURCE_UID = "prometheus"  # grafana.sidecar.datasources.uid: the uid the dashboard's panels name
# The labels the operator gives the add-on's Prometheus pods (pkg/prometheus/server/statefulset.go): the
# kserve NetworkPolicy's peer on the metrics port must match them.
ADDON_PROMETHEUS_POD_LABELS = {
    "app.kubernetes.io/name": "prometheus",
    "app.kubernetes.io/managed-by": "prometheus-operator",
    "app.kubernetes.io/instance": "kube-prom-stack-kube-prome-prometheus",
    "prometheus": "kube-prom-stack-kube-prome-prometheus",
    "operator.prometheus.io/name": "kube-prom-stack-kube-prome-prometheus",
    "operator.prometheus.io/shard": "0",
}
# The Secret (in the InferenceService's namespace, made by kserve/deploy.sh, never in the repository) holding the
# webhook URLs of the AlertmanagerConfig's receivers, one key per webhook.
WEBHOOK_SECRET = "readmission-alert-webhooks"  # pragma: allowlist secret (the Secret's name, not a secret)
