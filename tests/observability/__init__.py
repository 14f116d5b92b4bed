"""Tests of observability: the alert and recording rules and the Grafana dashboard (promtool, Debian's
`prometheus`), the thresholds they share, the metrics helpers, and a real Prometheus scraping the real service
(dashboard queries, alerts, feature drift firing).
"""
