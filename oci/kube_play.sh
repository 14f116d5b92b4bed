#!/usr/bin/env bash
# kserve/'s pods (the predictor as KServe's Standard mode makes it, PostgreSQL's StatefulSet pod) run with
# `podman kube play` on the image oci/build.sh built last and a stand-in PostgreSQL image (oci/build_postgres.sh).
#
#   oci/kube_play.sh up      # play both, wait until ready; prints the pods' addresses (the API on port 3000)
#   oci/kube_play.sh down    # podman kube down both (--volumes: the data volume too)
#   oci/kube_play.sh check   # up, the checks of oci/check_pods.py, a `podman kube down` under load, down: a JSON report
#
# The rendered YAML and the Secrets' test values go to .readmission/oci/kube/. See kserve/README.md, "Run with
# podman". Exit status 77: cannot run here (not root, or the tools cannot be installed).
set -euo pipefail
# shellcheck source=oci/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

command=${1:-}
[[ $command =~ ^(up|down|check)$ ]] || { echo "usage: $0 up|down|check [options]" >&2; exit 2; }
shift
[[ $(id -u) == 0 ]] || skip "podman here needs root (runc, the pods' network)"
ensure_tools podman runc catatonit # catatonit: podman builds the pods' infra image from it
write_container_config
folder=$OCI_STATE/kube
cd "$REPO"
if [[ $command == down ]]; then
	exec "$PYTHON" -m oci.kube_play down --folder "$folder" "$@"
fi

image=localhost/$IMAGE:latest
if [[ -f $OCI_STATE/image.env ]]; then
	# shellcheck disable=SC1091
	source "$OCI_STATE/image.env"
	image=localhost/$IMAGE:$VERSION
fi
podman image exists "$image" || { echo "error: no image $image: run oci/build.sh first" >&2; exit 1; }
bash "$REPO/oci/build_postgres.sh"
images=(--image "kserve-container=$image" --image "postgres=$POSTGRES_IMAGE")
if [[ $command == up ]]; then
	exec "$PYTHON" -m oci.kube_play up --folder "$folder" "${images[@]}" "$@"
fi
exec "$PYTHON" -m oci.check_pods --folder "$folder" "${images[@]}" "$@"
