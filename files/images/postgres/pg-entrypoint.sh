#!/bin/sh
# Offline postgres image entrypoint: same contract as the official image
# (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; data in $PGDATA), initialised once.
# Any other command (psql, pg_dump, ...) runs as given, like the official image's entrypoint.
set -eu
# The swarm engine passes the password as a Docker secret file, like the official image's *_FILE.
if [ -z "${POSTGRES_PASSWORD:-}" ] && [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
fi
if [ "${1:-}" = "postgres" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user="${POSTGRES_USER:-postgres}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    db="${POSTGRES_DB:-$user}"
    if [ "$db" != "postgres" ]; then
        createdb -U "$user" -O "$user" "$db"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "pg-entrypoint: initialised $PGDATA for user $user, database $db"
fi
exec "$@"
