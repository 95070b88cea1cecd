#!/usr/bin/env bash
# The services Swarm talks to, as its defaults and its tests expect them:
#   RabbitMQ   at 127.0.0.1:5672, user guest/guest (RabbitMQ's own default, from localhost);
#   PostgreSQL at 127.0.0.1:5432, role `root` (superuser) with trust auth over TCP, database `swarm`.
# What is missing is installed from Debian's packages (apt-get), what is stopped is started, and
# what is already there is left alone, so running it again changes nothing. Needs root, or sudo.
# Usage: bash scripts/services.sh
set -euo pipefail

log() { printf '==> %s\n' "$*"; }

# as_root COMMAND...: run COMMAND as root (directly when we are root, else through sudo).
as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

# as_postgres COMMAND...: run COMMAND as the `postgres` system user (peer auth on the socket), from
# `/`: in a directory it cannot enter (root's or a user's home), psql warns that it could not.
as_postgres() (
  cd /
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
)

# wait_for SECONDS WHAT COMMAND...: run COMMAND (which bounds its own time) every second until it
# succeeds, or fail after SECONDS.
wait_for() {
  local seconds=$1 what=$2
  local deadline=$((SECONDS + seconds))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "error: $what is not ready after $seconds s" >&2
      return 1
    fi
    sleep 1
  done
}

# With systemd as init, services are started through it; in a container without it, directly.
has_systemd() { [ -d /run/systemd/system ]; }

apt_updated=false
# install PACKAGE...: install Debian packages, without questions.
install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $* missing and no apt-get to install it; install it by hand" >&2
    return 1
  fi
  log "installing $*"
  if ! $apt_updated; then
    as_root apt-get update -qq
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- RabbitMQ ---
rabbitmq_up() { as_root timeout 60 rabbitmqctl -q status >/dev/null 2>&1; }
rabbitmq_started() { as_root timeout 30 rabbitmqctl -q await_startup; }

if ! rabbitmq_up; then
  command -v rabbitmq-server >/dev/null 2>&1 || install rabbitmq-server
  # The package's own start (systemd) may already have brought it up.
  if ! rabbitmq_up; then
    log "starting RabbitMQ"
    if has_systemd; then
      as_root systemctl start rabbitmq-server
    else
      as_root rabbitmq-server -detached
    fi
  fi
  wait_for 120 "RabbitMQ" rabbitmq_started
  wait_for 60 "RabbitMQ" rabbitmq_up
fi
log "RabbitMQ is up"

# --- PostgreSQL ---
export PGCONNECT_TIMEOUT=10
root_connects() { psql -h 127.0.0.1 -U root -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; }

if ! root_connects; then
  command -v pg_lsclusters >/dev/null 2>&1 || install postgresql
  # Debian's package creates a cluster `main`; use the first cluster there is.
  read -r version cluster _ < <(pg_lsclusters --no-header | head -n 1) || {
    echo "error: PostgreSQL is installed but has no cluster (pg_createcluster)" >&2
    exit 1
  }
  if ! pg_isready -q -h 127.0.0.1; then
    log "starting PostgreSQL $version/$cluster"
    if has_systemd; then
      as_root systemctl start "postgresql@$version-$cluster"
    else
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
    fi
    wait_for 60 "PostgreSQL" pg_isready -q -t 5 -h 127.0.0.1
  fi
  # The role `root`, a superuser (the tests create databases and roles).
  if [ "$(as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'root'")" != 1 ]; then
    log "creating the role root"
    as_postgres psql -q -c 'CREATE ROLE root SUPERUSER LOGIN'
  fi
  # Trust for `root` over loopback TCP: prepended, because the first matching line wins.
  hba=$(as_postgres psql -tAc 'SHOW hba_file')
  if ! as_root grep -Eq '^host[[:space:]]+all[[:space:]]+root[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    log "trusting root over 127.0.0.1 in $hba"
    as_root sed -i -e '1i host all root 127.0.0.1/32 trust' -e '1i host all root ::1/128 trust' "$hba"
    as_postgres psql -tAc 'SELECT pg_reload_conf()' >/dev/null
  fi
  wait_for 30 "PostgreSQL as root" root_connects
fi
# The default DATABASE_URL (postgres://root@127.0.0.1:5432/swarm) names the database `swarm`.
if [ "$(psql -h 127.0.0.1 -U root -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'swarm'")" != 1 ]; then
  log "creating the database swarm"
  createdb -h 127.0.0.1 -U root swarm
fi
log "PostgreSQL is up"
