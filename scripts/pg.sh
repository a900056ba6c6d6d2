#!/usr/bin/env bash
# pg.sh runs a throwaway PostgreSQL 15 cluster for the tests, on 127.0.0.1 only.
#
#   scripts/pg.sh start [DIR]   install PostgreSQL 15 from apt when missing, initdb a cluster in
#                               DIR/data, start it on a random free port, create database s3t,
#                               and print its URL (postgres://s3t@127.0.0.1:PORT/s3t?sslmode=disable)
#   scripts/pg.sh url [DIR]     print the URL of the cluster running in DIR
#   scripts/pg.sh stop [DIR]    stop the cluster (immediate shutdown) and remove DIR
#
# DIR defaults to $S3T_PG_DIR, else ${TMPDIR:-/tmp}/s3t-pg-$UID. Both subcommands are idempotent:
# start on a running cluster prints its URL again; stop on a stopped or missing one does nothing.
# Authentication is trust, on loopback TCP and a Unix socket inside DIR; fsync is off (the data
# is thrown away). PostgreSQL refuses to run as root: as root the cluster runs as the `postgres`
# user that the Debian package creates (through runuser), and DIR is handed to that user.
set -euo pipefail

PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"

log() { printf 'pg: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

cmd="${1:-}"
dir="${2:-${S3T_PG_DIR:-${TMPDIR:-/tmp}/s3t-pg-$(id -u)}}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# as_pg runs a command as the cluster's owner: this user, or `postgres` when root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$dir" && runuser -u postgres -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

install_pg() {
  [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && return 0
  local had_main=0
  [ -e "/etc/postgresql/$PG_VERSION/main/postgresql.conf" ] && had_main=1
  log "apt-get update"
  $SUDO apt-get update -qq
  log "apt-get install postgresql-$PG_VERSION"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "postgresql-$PG_VERSION" >/dev/null
  [ -x "$PG_BIN/initdb" ] || die "postgresql-$PG_VERSION installed but $PG_BIN/initdb is missing"
  # The package creates (and may start) a "main" cluster on port 5432; the tests never use it.
  if [ "$had_main" -eq 0 ] && command -v pg_ctlcluster >/dev/null; then
    $SUDO pg_ctlcluster "$PG_VERSION" main stop >/dev/null 2>&1 || true
  fi
}

running() { [ -f "$dir/url" ] && as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

start() {
  if running; then
    cat "$dir/url"
    return 0
  fi
  install_pg
  if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null || die "no postgres user (the postgresql-$PG_VERSION package creates it)"
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
    runuser -u postgres -- test -w "$dir" ||
      die "the postgres user cannot write $dir (is a parent folder private to root? set TMPDIR or S3T_PG_DIR)"
  fi
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U s3t --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  local port="" try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
          -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      >/dev/null 2>&1; then
      break
    fi
    # Most likely the port was taken; try another one.
    port=""
  done
  [ -n "$port" ] || { tail -n 20 "$dir/server.log" >&2 || true; die "could not start PostgreSQL"; }
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U s3t s3t
  echo "postgres://s3t@127.0.0.1:$port/s3t?sslmode=disable" >"$dir/url"
  log "PostgreSQL $PG_VERSION running in $dir on 127.0.0.1:$port"
  cat "$dir/url"
}

stop() {
  [ -d "$dir" ] || return 0
  if [ -d "$dir/data" ] && [ -x "$PG_BIN/pg_ctl" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  url) running || die "no cluster running in $dir"; cat "$dir/url" ;;
  *) die "usage: $0 start|url|stop [DIR]" ;;
esac
