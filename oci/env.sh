# shellcheck shell=bash disable=SC2034 # variables used by the scripts that source this file
# Shared by oci/build.sh and oci/test.sh (sourced, not run): paths, image names, and the settings that
# let buildah, podman and skopeo work here without a Docker engine, a registry or writes to /var/lib.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${READMISSION_STATE:-$REPO/.readmission}
OCI_STATE=$STATE/oci
export BENTOML_HOME=${BENTOML_HOME:-$STATE/bentoml}
export BENTOML_DO_NOT_TRACK=true
BENTOML=${BENTOML:-$REPO/.venv/bin/bentoml}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
BENTO=${READMISSION_BENTO:-readmission:latest}
IMAGE=${READMISSION_IMAGE:-readmission}
DEFAULT_BASE_IMAGE=python:3.11-slim
BASE_IMAGE=${READMISSION_BASE_IMAGE:-$DEFAULT_BASE_IMAGE}
# The base assembled with debootstrap when $BASE_IMAGE cannot be pulled (kept, so later builds reuse it).
LOCAL_BASE=localhost/readmission-base:bookworm-python3.11
# The stand-in for kserve/postgres's PostgreSQL image (oci/build_postgres.sh; oci/kube_play.sh runs it).
POSTGRES_IMAGE=localhost/readmission-postgres:bookworm
# $BASE_IMAGE plus the build-only certificate settings (removed again from the final image).
BUILD_BASE=localhost/readmission-build-base:latest
# The host's CA bundle (its folder is mounted read-only on /mnt in RUN steps) so pip and uv trust this network.
CA_BUNDLE=${READMISSION_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SKIP=77 # exit status meaning "cannot run here" (the test skips on it)

# Container storage and configuration of our own, under .readmission/ (git ignores it).
CONTAINERS=$STATE/containers
export CONTAINERS_STORAGE_CONF=$CONTAINERS/storage.conf
export CONTAINERS_CONF=$CONTAINERS/containers.conf
export CONTAINERS_REGISTRIES_CONF=$CONTAINERS/registries.conf
export BUILDAH_ISOLATION=chroot # the default (oci via crun) fails here: "cgroups in hybrid mode not supported"
export BUILDAH_LAYERS=true      # cache the apt/uv steps: a rebuild with the same requirements takes seconds
export BUILDAH_FORMAT=oci
STORE="containers-storage:[overlay@$CONTAINERS/storage+$CONTAINERS/run]"

say() { printf '[oci] %s\n' "$*" >&2; }
skip() {
	printf 'SKIP: %s\n' "$*" >&2
	exit "$SKIP"
}

# Write stdin to file $1 by a rename, so a podman or buildah started meanwhile (another test's, in parallel) reads
# either the old file or the new one, never a half-written one ("The storage 'driver' option must be set").
write_atomically() {
	local temporary
	temporary=$(mktemp "$1.XXXXXX")
	cat >"$temporary"
	mv -f "$temporary" "$1"
}

write_container_config() {
	mkdir -p "$CONTAINERS"/{storage,run,libpod,volumes,tmp}
	write_atomically "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$CONTAINERS/storage"
runroot = "$CONTAINERS/run"
EOF
	write_atomically "$CONTAINERS_CONF" <<EOF
[containers]
netns = "host"
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
static_dir = "$CONTAINERS/libpod"
volume_path = "$CONTAINERS/volumes"
tmp_dir = "$CONTAINERS/tmp"
EOF
	write_atomically "$CONTAINERS_REGISTRIES_CONF" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
}

# Install the missing ones of the given commands with apt-get (their packages have the same names).
ensure_tools() {
	local missing=() tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
	done
	((${#missing[@]} == 0)) && return 0
	[[ $(id -u) == 0 ]] || skip "${missing[*]} missing and not root to apt-get install them"
	command -v apt-get >/dev/null 2>&1 || skip "${missing[*]} missing and no apt-get"
	say "installing ${missing[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
		skip "apt-get could not install ${missing[*]}"
	fi
}

docker_works() {
	command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1
}

# The version of $BENTO in $BENTOML_HOME (readmission:latest -> its version).
bento_version() {
	"$BENTOML" get "$BENTO" -o json 2>/dev/null | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["version"])'
}
