#!/usr/bin/env bash
# Installs PostgreSQL from Debian's packages (when missing), starts a
# cluster, creates a test user and database, and prints the line that
# points the store tests at it:
#
#   eval "$(bash .ci/postgres.sh)"
#
# Everything else goes to stderr. Runs as root; safe to run twice.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
	log "installing postgresql"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq postgresql >&2
fi

ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main"' | grep -q .; then
	log "creating cluster $ver/main"
	pg_createcluster "$ver" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
	log "starting cluster $ver/main"
	pg_ctlcluster "$ver" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')

# Wait until it accepts connections.
for _ in $(seq 1 30); do
	if su postgres -c "psql -p $port -tAc 'SELECT 1'" >/dev/null 2>&1; then
		break
	fi
	sleep 1
done

user=porthole
pass=porthole
db=porthole_test
psql_admin() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -tAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
	psql_admin "CREATE ROLE $user LOGIN PASSWORD '$pass'" >&2
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
	psql_admin "CREATE DATABASE $db OWNER $user" >&2
fi
log "ready on 127.0.0.1:$port, database $db"
echo "export PORTHOLE_TEST_POSTGRES='postgres://$user:$pass@127.0.0.1:$port/$db?sslmode=disable'"
