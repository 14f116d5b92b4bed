#!/usr/bin/env bash
# Build the Bento (readmission:latest, or $READMISSION_BENTO) into an OCI image readmission:<version> + :latest.
#
# With a Docker engine: `bentoml containerize`, as a user expects. Without one: `bentoml containerize
# --backend buildah` into a container store of our own under .readmission/containers. The Bento's
# Dockerfile starts FROM python:3.11-slim ($READMISSION_BASE_IMAGE overrides it); where no registry
# answers, that base is assembled here from a Debian bookworm root filesystem (debootstrap, Python 3.11),
# once, and reused. See oci/README.md.
#
# Environment: READMISSION_BENTO, READMISSION_IMAGE (name, default readmission), READMISSION_BASE_IMAGE,
# READMISSION_OCI_BACKEND (auto | docker | buildah), READMISSION_DEBIAN_MIRROR, READMISSION_CA_BUNDLE,
# BENTOML_HOME. Exit status 77: cannot run here (no Docker, and buildah cannot be installed).
set -euo pipefail
# shellcheck source=oci/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# The Debian mirror apt already uses (debootstrap needs one; the internet may not be reachable otherwise).
debian_mirror() {
	if [[ -n ${READMISSION_DEBIAN_MIRROR:-} ]]; then
		echo "$READMISSION_DEBIAN_MIRROR"
		return
	fi
	local uri
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | head -n 1 | tr -d ' ' || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

# A stand-in for python:3.11-slim: Debian bookworm minbase + python3.11 (as python), pip and venv.
build_local_base() {
	ensure_tools debootstrap
	local rootfs=$OCI_STATE/rootfs tarball=$OCI_STATE/rootfs.tar mirror ctr
	mirror=$(debian_mirror)
	rm -rf "$rootfs" "$tarball"
	say "debootstrap bookworm (minbase + python3.11) from $mirror into $rootfs: 2-3 minutes, once"
	if ! debootstrap --variant=minbase --include=python3.11,python3-pip,python3-venv,ca-certificates \
		bookworm "$rootfs" "$mirror" >"$OCI_STATE/debootstrap.log" 2>&1; then
		tail -n 20 "$OCI_STATE/debootstrap.log" >&2
		die "debootstrap failed (log: $OCI_STATE/debootstrap.log)"
	fi
	# Smaller, and like the official image: no package caches or device nodes, `python`, pip may install.
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
	find "$rootfs/dev" -mindepth 1 -delete
	rm -f "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
	ln -sf python3.11 "$rootfs/usr/bin/python"
	# tar keeps owners (`buildah copy` of a folder would make every file root's).
	tar --numeric-owner -C "$rootfs" -cf "$tarball" .
	ctr=$(buildah from scratch)
	buildah add --quiet "$ctr" "$tarball" / >/dev/null
	buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
		--cmd python3 --label org.opencontainers.image.description="Debian bookworm minbase + Python 3.11" "$ctr"
	buildah commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
	rm -rf "$rootfs" "$tarball"
	say "base image $LOCAL_BASE built"
}

# $BASE_IMAGE if it is in the store or can be pulled; else (for the default) the local stand-in.
resolve_base() {
	if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
		echo "$BASE_IMAGE"
		return
	fi
	say "pulling $BASE_IMAGE"
	if timeout "${READMISSION_PULL_TIMEOUT:-600}" buildah pull --quiet --retry 0 "$BASE_IMAGE" >/dev/null 2>"$OCI_STATE/pull.log"; then
		echo "$BASE_IMAGE"
		return
	fi
	if [[ $BASE_IMAGE != "$DEFAULT_BASE_IMAGE" ]]; then
		cat "$OCI_STATE/pull.log" >&2
		die "cannot pull $BASE_IMAGE"
	fi
	say "cannot pull it ($(tail -n 1 "$OCI_STATE/pull.log")): using $LOCAL_BASE instead"
	buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1 || build_local_base
	echo "$LOCAL_BASE"
}

# The base plus PIP_CERT / SSL_CERT_FILE (pip, uv) pointing at the host's CA bundle, which the build
# mounts read-only on /mnt (an existing empty folder: a new mount point would stay in the image).
# buildah 1.28 passes no other environment to RUN steps; the build's --unsetenv drops both again.
ensure_build_base() {
	local base=$1 key stamp=$OCI_STATE/build-base.from ctr cert
	cert=/mnt/$(basename "$CA_BUNDLE")
	key="$(buildah inspect --type image --format '{{.FromImageID}}' "$base") $cert"
	if [[ -f $stamp && $(<"$stamp") == "$key" ]] && buildah inspect --type image "$BUILD_BASE" >/dev/null 2>&1; then
		return
	fi
	ctr=$(buildah from --pull=false "$base")
	buildah config --env "PIP_CERT=$cert" --env "SSL_CERT_FILE=$cert" "$ctr"
	buildah commit --quiet --rm "$ctr" "$BUILD_BASE" >/dev/null
	echo "$key" >"$stamp"
}

build_with_docker() {
	local version=$1 args=()
	if [[ $BASE_IMAGE != "$DEFAULT_BASE_IMAGE" ]]; then
		args+=(--opt "build-context=$DEFAULT_BASE_IMAGE=docker-image://$BASE_IMAGE")
	fi
	"$BENTOML" containerize "$BENTO" -t "$IMAGE:$version" "${args[@]}"
	docker tag "$IMAGE:$version" "$IMAGE:latest"
}

build_with_buildah() {
	local version=$1 base
	ensure_tools buildah podman skopeo runc
	write_container_config
	[[ -f $CA_BUNDLE ]] || die "no CA bundle at $CA_BUNDLE (set READMISSION_CA_BUNDLE)"
	base=$(resolve_base)
	ensure_build_base "$base"
	say "building $IMAGE:$version FROM $base with bentoml containerize --backend buildah"
	"$BENTOML" containerize --backend buildah "$BENTO" -t "$IMAGE:$version" \
		--opt "from=$BUILD_BASE" --opt "volume=$(dirname "$CA_BUNDLE"):/mnt:ro" \
		--opt unsetenv=PIP_CERT --opt unsetenv=SSL_CERT_FILE --opt network=host >"$OCI_STATE/build.log" 2>&1 ||
		{
			tail -n 40 "$OCI_STATE/build.log" >&2
			die "bentoml containerize failed (log: $OCI_STATE/build.log)"
		}
	buildah inspect --type image "localhost/$IMAGE:$version" >/dev/null || die "no image localhost/$IMAGE:$version after the build"
	buildah tag "localhost/$IMAGE:$version" "localhost/$IMAGE:latest"
	podman image prune --force >/dev/null # untagged leftovers only: the layer cache and the bases stay
}

main() {
	mkdir -p "$OCI_STATE"
	[[ -x $BENTOML ]] || die "no $BENTOML: run make venv first"
	local version backend=${READMISSION_OCI_BACKEND:-auto} started=$SECONDS size ref
	if [[ $backend == auto ]]; then
		if docker_works; then backend=docker; else backend=buildah; fi
	fi
	if [[ $backend == buildah && $(id -u) != 0 ]]; then
		skip "no Docker engine, and buildah here needs root (chroot isolation, runc)"
	fi
	version=$(bento_version) || die "no Bento $BENTO in $BENTOML_HOME: run make build first"
	case $backend in
	docker)
		build_with_docker "$version"
		ref=$IMAGE:$version
		size=$(docker image inspect --format '{{.Size}}' "$ref")
		;;
	buildah)
		build_with_buildah "$version"
		ref=localhost/$IMAGE:$version
		size=$(podman image inspect --format '{{.Size}}' "$ref")
		;;
	*) die "READMISSION_OCI_BACKEND must be auto, docker or buildah, not $backend" ;;
	esac
	printf 'BACKEND=%s\nIMAGE_REF=%s\nVERSION=%s\nSIZE_BYTES=%s\nBUILD_SECONDS=%s\n' \
		"$backend" "$ref" "$version" "$size" "$((SECONDS - started))" >"$OCI_STATE/image.env"
	say "built $ref (and :latest) with $backend in $((SECONDS - started)) s: $((size / 1000000)) MB"
}

main "$@"
