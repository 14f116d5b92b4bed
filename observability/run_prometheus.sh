#!/usr/bin/env bash
# A local Prometheus next to the service, on 127.0.0.1 only (used by `make up`), and the Alertmanager it sends its
# alerts to (observability/run_alertmanager.sh) where Debian's prometheus-alertmanager is installed.
#
#   observability/run_prometheus.sh                    # Prometheus in the foreground (Alertmanager in the background)
#   observability/run_prometheus.sh CMD [ARGS...]      # both in the background while CMD runs, stopped after
#
# Without the `prometheus` binary (Debian: apt-get install prometheus) it says so and just runs CMD.
# Environment: METRICS_PORT (8082: the service's READMISSION_METRICS_PORT), LOCUST_PORT (9646), PROMETHEUS_PORT (9090),
# ALERTMANAGER_PORT (9093), PROMETHEUS_STATE (.readmission/prometheus: the generated configuration, the TSDB, the log);
# run_alertmanager.sh's ALERTMANAGER_WEBHOOK_URL and ALERTMANAGER_STATE.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
metrics_port="${METRICS_PORT:-8082}"
locust_port="${LOCUST_PORT:-9646}"
prometheus_port="${PROMETHEUS_PORT:-9090}"
alertmanager_port="${ALERTMANAGER_PORT:-9093}"
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
    -e "s#127.0.0.1:9093#127.0.0.1:${alertmanager_port}#" \
    -e "s#- rules/#- ${here}/prometheus/rules/#" \
    "$here/prometheus/prometheus.yml" >"$state/prometheus.yml"
promtool check config "$state/prometheus.yml" >/dev/null

# Processes started here, stopped when this script exits.
started=()
trap 'for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done' EXIT

# beside NAME URL LOG COMMAND...: start COMMAND in the background, its output in LOG, and wait (10 s at most) until
# URL answers; say where it is, or that it did not start.
beside() {
  local name="$1" url="$2" log="$3"
  shift 3
  "$@" >"$log" 2>&1 &
  local pid=$!
  started+=("$pid")
  for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name did not start (port busy?); see $log" >&2
      tail -5 "$log" >&2
      return 0
    fi
    if curl -fsS "$url/-/ready" >/dev/null 2>&1; then
      echo "$name: $url (log: $log)"
      return 0
    fi
    sleep 0.2
  done
  echo "$name is not ready after 10 s; see $log" >&2
}

if command -v prometheus-alertmanager >/dev/null 2>&1; then
  mkdir -p "${ALERTMANAGER_STATE:=$repo/.readmission/alertmanager}"
  export ALERTMANAGER_STATE ALERTMANAGER_PORT="$alertmanager_port"
  beside Alertmanager "http://127.0.0.1:${alertmanager_port}" "$ALERTMANAGER_STATE/alertmanager.log" \
    bash "$here/run_alertmanager.sh"
else
  echo "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager): alerts stay in Prometheus" >&2
fi

command=(prometheus "--config.file=$state/prometheus.yml" "--storage.tsdb.path=$state/data"
  "--storage.tsdb.retention.time=7d" "--web.listen-address=127.0.0.1:${prometheus_port}")
if [ "$#" -eq 0 ]; then
  "${command[@]}"
  exit
fi

beside Prometheus "http://127.0.0.1:${prometheus_port}" "$state/prometheus.log" "${command[@]}"
"$@"
