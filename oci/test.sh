#!/usr/bin/env bash
# Run the image built by oci/build.sh with podman and check it (oci/check_image.py): /readyz, a /predict
# and a V2 infer equal to the source tree's model, a non-root process, image size, start-up time (also
# with no network), then export it as an OCI archive (skopeo) and list its layers.
# Arguments go to oci/check_image.py (--image, --archive, --report, --timeout). Exit status 77: cannot run here.
set -euo pipefail
# shellcheck source=oci/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

[[ $(id -u) == 0 ]] || skip "podman here needs root (runc, host network)"
ensure_tools podman skopeo runc
write_container_config
export READMISSION_OCI_STORE=$STORE

# The image oci/build.sh built last (localhost/readmission:latest where it has not run).
image=localhost/$IMAGE:latest
if [[ -f $OCI_STATE/image.env ]]; then
	# shellcheck disable=SC1091
	source "$OCI_STATE/image.env"
	image=localhost/$IMAGE:$VERSION
	if [[ $BACKEND == docker ]]; then # built by Docker: copy it into podman's store
		skopeo copy --quiet "docker-daemon:$IMAGE_REF" "$STORE$image"
	fi
fi
cd "$REPO"
exec "$PYTHON" -m oci.check_image --image "$image" "$@"
