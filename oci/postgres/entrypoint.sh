#!/bin/bash
# The stand-in PostgreSQL image's entrypoint (oci/build_postgres.sh), for what kserve/postgres/statefulset.yaml
# asks of the official image's docker-entrypoint.sh: on the first start initialise $PGDATA with POSTGRES_USER as
# the superuser and POSTGRES_PASSWORD as its password (scram-sha-256 over TCP, from any address), create
# POSTGRES_DB; then run the command (`postgres`). Writes only to $PGDATA's volume (the server also to its socket
# folder), so it runs on a read-only root filesystem.
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required: the password key of the Secret}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [[ ${1:-} == postgres && ! -s $PGDATA/PG_VERSION ]]; then
	new=$PGDATA.new # made aside, then renamed: a first start stopped half-way leaves no half-made $PGDATA
	rm -rf "$new"
	initdb --pgdata="$new" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
	printf 'host all all all scram-sha-256\n' >>"$new/pg_hba.conf"
	printf "listen_addresses = '*'\n" >>"$new/postgresql.conf"
	if [[ $POSTGRES_DB != postgres ]]; then # single-user mode: no server, no socket
		printf 'CREATE DATABASE "%s"\n' "${POSTGRES_DB//\"/\"\"}" | postgres --single -D "$new" postgres >/dev/null
	fi
	rmdir "$PGDATA" 2>/dev/null || true
	mv "$new" "$PGDATA"
	echo "initialised $PGDATA: user $POSTGRES_USER, database $POSTGRES_DB" >&2
fi
exec "$@"
