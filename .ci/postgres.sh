#!/usr/bin/env bash
# Install (Debian packages) and start a PostgreSQL server for the test suite.
# It listens on 127.0.0.1 only, has a role and database for the tests, and the last
# line printed is the URL to export as SENET_TEST_POSTGRES_URL. Safe to run again.
set -euo pipefail

PORT="${SENET_PG_PORT:-5432}"
ROLE="${SENET_PG_ROLE:-senet}"
PASSWORD="${SENET_PG_PASSWORD:-senet}"
DB="${SENET_PG_DB:-senet_test}"
CLUSTER=main

say() { echo "postgres.sh: $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
    say "installing postgresql from Debian packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

if ! pg_lsclusters -h | awk '{print $1 "/" $2}' | grep -qx "$VERSION/$CLUSTER"; then
    say "creating cluster $VERSION/$CLUSTER"
    pg_createcluster "$VERSION" "$CLUSTER" -p "$PORT" >/dev/null
fi

# Loopback only: the test server must never be reachable from another machine.
# A conf.d drop-in (read after postgresql.conf) keeps the package's file untouched.
CONF="/etc/postgresql/$VERSION/$CLUSTER/conf.d/senet-tests.conf"
WANT="listen_addresses = '127.0.0.1'
port = $PORT"
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$WANT" ]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$WANT" > "$CONF"
    changed=1
fi

status="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $4}')"
if [ "$status" != "online" ]; then
    say "starting cluster $VERSION/$CLUSTER on 127.0.0.1:$PORT"
    pg_ctlcluster "$VERSION" "$CLUSTER" start
elif [ "$changed" = 1 ]; then
    say "restarting cluster $VERSION/$CLUSTER for the new settings"
    pg_ctlcluster "$VERSION" "$CLUSTER" restart
fi

for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { say "server did not come up"; exit 1; }

psql_admin() { su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
    psql_admin "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
    psql_admin "CREATE DATABASE $DB OWNER $ROLE"
fi

echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
