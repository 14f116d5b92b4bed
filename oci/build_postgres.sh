#!/usr/bin/env bash
# Build the stand-in for kserve/postgres's `postgres:17.6-bookworm` (no registry answers here):
# $POSTGRES_IMAGE, Debian bookworm's PostgreSQL 15 installed with apt-get (http, no certificates needed) on the
# Debian base oci/build.sh already made, the `postgres` user as uid/gid 999 like the official image, and
# oci/postgres/entrypoint.sh for the official entrypoint's first-start set-up (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA). Skipped when the image in the store was built from this script and that entrypoint.
# Run oci/build.sh first. Exit status 77: cannot run here (not root).
set -euo pipefail
# shellcheck source=oci/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ENTRYPOINT=$REPO/oci/postgres/entrypoint.sh
PG_MAJOR=15 # Debian bookworm's
INPUTS_LABEL=io.readmission.inputs

[[ $(id -u) == 0 ]] || skip "buildah here needs root (chroot isolation, runc)"
ensure_tools buildah
write_container_config

inputs=$(cat "${BASH_SOURCE[0]}" "$ENTRYPOINT" | sha256sum | cut -d' ' -f1)
built=$(buildah inspect --type image --format "{{index .ImageAnnotations \"$INPUTS_LABEL\"}}" "$POSTGRES_IMAGE" 2>/dev/null || true)
if [[ $built == "$inputs" ]]; then
	say "$POSTGRES_IMAGE is up to date"
	exit 0
fi

base=
for candidate in "$LOCAL_BASE" "$BASE_IMAGE"; do
	if buildah inspect --type image "$candidate" >/dev/null 2>&1; then
		base=$candidate
		break
	fi
done
[[ -n $base ]] || { echo "error: neither $LOCAL_BASE nor $BASE_IMAGE is in the store: run oci/build.sh first" >&2; exit 1; }

started=$SECONDS
say "building $POSTGRES_IMAGE (PostgreSQL $PG_MAJOR from Debian) on $base"
ctr=$(buildah from --pull=false "$base")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
# The package must not create a cluster of its own: the entrypoint initialises $PGDATA on the volume.
buildah run "$ctr" -- sh -ec "
	groupadd --system --gid 999 postgres
	useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres
	mkdir -p /etc/postgresql-common/createcluster.d
	echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main-cluster.conf
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends postgresql-$PG_MAJOR >/dev/null
	rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
	mkdir -p /var/lib/postgresql/data /var/run/postgresql
	chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
	chmod 700 /var/lib/postgresql/data
	chmod 2775 /var/run/postgresql
" >"$OCI_STATE/build-postgres.log" 2>&1 || {
	tail -n 30 "$OCI_STATE/build-postgres.log" >&2
	exit 1
}
buildah copy --quiet --chmod 755 "$ctr" "$ENTRYPOINT" /usr/local/bin/docker-entrypoint.sh
buildah config --user 999:999 --port 5432/tcp --stop-signal SIGINT --workingdir /var/lib/postgresql \
	--env "PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	--env PGDATA=/var/lib/postgresql/data --entrypoint '["docker-entrypoint.sh"]' --cmd postgres \
	--annotation "$INPUTS_LABEL=$inputs" \
	--label "org.opencontainers.image.description=Debian bookworm's PostgreSQL $PG_MAJOR: a stand-in for postgres:17.6-bookworm" \
	"$ctr"
buildah commit --quiet --rm "$ctr" "$POSTGRES_IMAGE" >/dev/null
trap - EXIT
say "built $POSTGRES_IMAGE in $((SECONDS - started)) s"
