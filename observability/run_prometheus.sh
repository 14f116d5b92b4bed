#!/usr/bin/env bash
# A local Prometheus next to the service, on 127.0.0.1 only (used by `make up`).
#
#   observability/run_prometheus.sh                    # Prometheus in the foreground
#   observability/run_prometheus.sh CMD [ARGS...]      # Prometheus in the background while CMD runs, stopped after
#
# Without the `prometheus` binary (Debian: apt-get install prometheus) it says so and just runs CMD.
# Environment: METRICS_PORT (8082: the service's READMISSION_METRICS_PORT), LOCUST_PORT (9646), PROMETHEUS_PORT (9090),
# PROMETHEUS_STATE (.readmission/prometheus: the generated configuration, the TSDB, the log).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
metrics_port="${METRICS_PORT:-8082}"
locust_port="${LOCUST_PORT:-9646}"
prometheus_port="${PROMETHEUS_PORT:-9090}"
state="${PROMETHEUS_STATE:-$repo/.readmission/prometheus}"

if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus is not installed (apt-get install prometheus): running without it" >&2
  if [ "$#" -gt 0 ]; then exec "$@"; fi
  exit 0
fi

mkdir -p "$state/data"
# the committed configuration, with this machine's ports and the rule files' absolute paths
sed -e "s#127.0.0.1:8082#127.0.0.1:${metrics_port}#" \
    -e "s#127.0.0.1:9646#127.0.0.1:${locust_port}#" \
    -e "s#127.0.0.1:9090#127.0.0.1:${prometheus_port}#" \
    -e "s#- rules/#- ${here}/prometheus/rules/#" \
    "$here/prometheus/prometheus.yml" >"$state/prometheus.yml"
promtool check config "$state/prometheus.yml" >/dev/null

command=(prometheus "--config.file=$state/prometheus.yml" "--storage.tsdb.path=$state/data"
  "--storage.tsdb.retention.time=7d" "--web.listen-address=127.0.0.1:${prometheus_port}")
if [ "$#" -eq 0 ]; then
  exec "${command[@]}"
fi

"${command[@]}" >"$state/prometheus.log" 2>&1 &
prometheus_pid=$!
trap 'kill "$prometheus_pid" 2>/dev/null || true; wait "$prometheus_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  if ! kill -0 "$prometheus_pid" 2>/dev/null; then
    echo "Prometheus did not start (port ${prometheus_port} busy?); see $state/prometheus.log" >&2
    tail -5 "$state/prometheus.log" >&2
    break
  fi
  if curl -fsS "http://127.0.0.1:${prometheus_port}/-/ready" >/dev/null 2>&1; then
    echo "Prometheus: http://127.0.0.1:${prometheus_port} (alerts: /alerts, log: $state/prometheus.log)"
    break
  fi
  sleep 0.2
done
"$@"
