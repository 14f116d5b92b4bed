"""Operational thresholds, endpoint patterns and the runbooks' address, defined once.

The dashboard (dashboard.py) reads them from here; the rule files (prometheus/rules/*.yml) are plain YAML
that Prometheus loads as committed, and tests/observability/test_thresholds.py checks that they carry exactly
these values.
"""

from __future__ import annotations

# Endpoint labels are bento/server/app.py's route templates (BentoML answers /livez, /readyz and /healthz outside
# the application, so those never reach its metrics). Patterns are PromQL regexes (fully anchored).
SCORING_ENDPOINTS = "/predict.*|/v2/models/.+/infer"  # the endpoints that score patients
PROBE_ENDPOINTS = "/health|/v2/health/.+"  # health checks: not API traffic (/metrics is never counted)

SLO_P99_SECONDS = 0.5  # ReadmissionLatencyP99OverSLO: p99 of the scoring endpoints over 5 minutes
SLO_ERROR_RATIO = 0.05  # ReadmissionHighErrorRatio: share of 5xx over 5 minutes
SCORE_DRIFT_THRESHOLD = 0.1  # ReadmissionScoreDrift: largest CDF gap between served and training scores
FEATURE_PSI_THRESHOLD = 0.2  # FeatureDrift: population stability index of one clinical field
PSI_EPSILON = 0.0001  # served and training shares are clamped to this before the PSI's logarithm
FEATURE_MIN_ROWS = 1000  # FeatureDrift: rows in the hour before a PSI counts (sampling noise of 70 buckets ~ 0.07)
LIVE_MIN_LABELLED_ROWS = 200  # LiveRocAucBelowTraining: labelled rows before the live interval counts
ESTIMATE_MIN_ROWS = 1000  # EstimatedRocAucBelowTraining: predictions of 30 days before the estimate counts

# Every alert's `runbook_url` annotation is this page's address, "#" and the GitHub-style anchor of the alert's
# section in observability/runbooks.md (tests/observability/test_runbooks.py checks both). Where the repository is
# browsed from elsewhere, change it here and in the rule file's annotations (the test names any that differ).
RUNBOOK_BASE_URL = "https://git.example.com/readmission/readmission/blob/main/observability/runbooks.md"
