"""Tests of observability: the alert and recording rules and the Grafana dashboard (promtool, Debian's
`prometheus`), the thresholds they share, the metrics helpers, a real Prometheus scraping the real service
(dashboard queries, alerts, feature drift firing), and the Prometheus Operator's resources (kustomize, the operator's
CRDs, promtool and amtool, Debian's `prometheus-alertmanager`, on what they hold).
"""
