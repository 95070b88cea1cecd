#!/bin/sh
# Applies Swarm's Postgres roles to a migrated database, then sets the worker roles' passwords:
#
#     PGHOST=… PGUSER=<owner> PGDATABASE=swarm SWARM_INGEST_DB_PASSWORD=… sh deploy/postgres/apply.sh
#
# roles.sql (which applies analyst.sql too) runs as the connecting user, the database owner;
# for each worker kind whose SWARM_<KIND>_DB_PASSWORD is set, `ALTER ROLE swarm_<kind> PASSWORD`
# (a role without one cannot log in with a password). Idempotent: run it after every migration.
# Connection settings are psql's own (PG* variables). Used by compose.yaml and the Kubernetes
# migrate Job.
set -eu
here=$(dirname "$0")
psql -X -q -v ON_ERROR_STOP=1 -f "$here/roles.sql"
for kind in ingest features train report; do
  var="SWARM_$(echo "$kind" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password=$(printenv "$var" || true)
  if [ -n "$password" ]; then
    # psql quotes the values (:"role" as an identifier, :'password' as a literal).
    printf '%s\n' "ALTER ROLE :\"role\" PASSWORD :'password';" |
      psql -X -q -v ON_ERROR_STOP=1 -v role="swarm_$kind" -v password="$password"
    echo "swarm_$kind: password set"
  fi
done
