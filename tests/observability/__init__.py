"""Tests of observability: the alert and recording rules and the Grafana dashboard (promtool, Debian's
`prometheus`), the thresholds they share, the runbooks, Alertmanager's routing (Debian's `prometheus-alertmanager` and
`amtool`), the metrics helpers, a real Prometheus scraping the real service (dashboard queries, alerts, feature drift
firing) and sending to a real Alertmanager (notifications, silences, inhibition), and the Prometheus Operator's
resources (kustomize, the operator's CRDs, promtool and amtool on what they hold).
"""
