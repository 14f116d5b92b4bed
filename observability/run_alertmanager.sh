#!/usr/bin/env bash
# The local Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1 only, in the foreground (`make alertmanager`;
# `make up` starts it through observability/run_prometheus.sh, beside Prometheus, which sends it the alerts).
#
# It runs the committed alertmanager/alertmanager.yml with the local webhook receiver's address replaced by
# $ALERTMANAGER_WEBHOOK_URL (each receiver posts to <url>/pages, /tickets, /notices), checked by amtool first.
# Environment: ALERTMANAGER_PORT (9093), ALERTMANAGER_WEBHOOK_URL (http://127.0.0.1:5001: `make alert-receiver`),
# ALERTMANAGER_STATE (.readmission/alertmanager: the generated configuration, silences, the notification log).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
port="${ALERTMANAGER_PORT:-9093}"
webhook="${ALERTMANAGER_WEBHOOK_URL:-http://127.0.0.1:5001}"
state="${ALERTMANAGER_STATE:-$repo/.readmission/alertmanager}"

if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  echo "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)" >&2
  exit 1
fi

mkdir -p "$state/data"
sed -e "s|http://127.0.0.1:5001/|${webhook%/}/|" "$here/alertmanager/alertmanager.yml" >"$state/alertmanager.yml"
amtool check-config "$state/alertmanager.yml" >/dev/null

# --cluster.listen-address= : a single instance, no gossip port (Debian's default would listen on every interface)
exec prometheus-alertmanager "--config.file=$state/alertmanager.yml" "--storage.path=$state/data" \
  "--web.listen-address=127.0.0.1:${port}" "--web.external-url=http://127.0.0.1:${port}" "--cluster.listen-address="
