#!/usr/bin/env bash
# A throwaway PostgreSQL server on this machine, for development and CI (the PostgreSQL state store's tests): Debian's
# PostgreSQL, one cluster initialised into a state directory, listening on 127.0.0.1 only, on its own port and its
# own socket directory, so it never meets a PostgreSQL the machine already runs. `down` stops exactly the server this
# script started (by the PID in its postmaster.pid, after checking that PID is a postgres of this data dir).
#
#   scripts/pg-dev.sh up       install PostgreSQL from Debian packages if missing, initialise the cluster the first
#                              time, start it (idempotent: a running server is left alone); prints the URL to export
#   scripts/pg-dev.sh status   whether the server runs; exit 1 when it does not
#   scripts/pg-dev.sh down     stop it (the state dir is kept: the next `up` starts it again without initdb)
#   scripts/pg-dev.sh env      prints `export TUTTI_TEST_POSTGRES_URL=...` (eval "$(scripts/pg-dev.sh env)")
#
# NOT FOR REAL DATA: authentication is `trust` (any local user may connect as any role, superuser included, without a
# password). That is tolerable only because the server is a throwaway that listens on 127.0.0.1 and a socket in its
# own directory; tests connect as the superuser `postgres` to CREATE DATABASE a fresh database per test.
# The cluster uses the C locale (byte-order text comparison, as SQLite's), UTF-8 encoding, and keeps fsync on, so
# commit costs are a real server's.
#
# Settings (environment): TUTTI_PG_DIR (state dir, default /tmp/tutti-pg), TUTTI_PG_PORT (default 16432).
# As root, the server runs as the `postgres` user the package creates (PostgreSQL refuses to run as root); as
# another user, as that user (PostgreSQL must be installed already).
set -euo pipefail

DIR=${TUTTI_PG_DIR:-/tmp/tutti-pg}
PORT=${TUTTI_PG_PORT:-16432}
DATA=$DIR/data
SOCKET_DIR=$DIR/run
LOG=$DIR/log/postgres.log
# `up` and `down` from several test files or a developer's shell at once must not race (two initdbs, a stop mid-start).
LOCK=${DIR%/}.lock

log() { echo "pg-dev: $*" >&2; }
die() { log "$*"; exit 1; }
url() { echo "postgres://postgres@127.0.0.1:$PORT/postgres"; }
print_env() { echo "export TUTTI_TEST_POSTGRES_URL=$(url)"; }

# Debian puts the server's programs in /usr/lib/postgresql/<major>/bin, off PATH; the newest installed major wins.
pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install_packages() {
  pg_bin >/dev/null && return
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
  log "installing postgresql from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start daemons of their own (Debian's postgresql would start a cluster on port 5432): this script
  # starts its server, in its state dir.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq postgresql >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
  pg_bin >/dev/null || die "apt-get install postgresql left no /usr/lib/postgresql/*/bin/initdb"
}

# Runs a PostgreSQL program as the user the server runs as.
as_server_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# The postmaster's PID when the server of this data dir runs, else nothing (a stale postmaster.pid is not a server).
server_pid() {
  local pid
  [ -f "$DATA/postmaster.pid" ] || return 1
  pid=$(head -n 1 "$DATA/postmaster.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A PID can be reused after a crash: it must be a postgres whose command line names this data dir.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "postgres.*-D $DATA" || return 1
  echo "$pid"
}

cmd_up() {
  install_packages
  local bin; bin=$(pg_bin)
  if server_pid >/dev/null; then
    print_env
    return
  fi
  mkdir -p "$DIR" "$SOCKET_DIR" "$(dirname "$LOG")"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR" "$SOCKET_DIR" "$(dirname "$LOG")"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    as_server_user "$bin/initdb" -D "$DATA" -U postgres --auth=trust --no-locale --encoding=UTF8 >"$DIR/log/initdb.log" 2>&1 ||
      die "initdb failed: see $DIR/log/initdb.log"
    # Written once into the cluster's own configuration, so that a server started by hand is the same server.
    cat >> "$DATA/postgresql.conf" <<EOF

# Written by scripts/pg-dev.sh: a throwaway server on loopback, its own port and socket directory.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
EOF
  fi
  # 9>&-: the server must not inherit the lock's descriptor, or it would hold the lock for as long as it runs.
  as_server_user "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PORT -k $SOCKET_DIR" start >/dev/null 9>&- ||
    die "the server did not start: see $LOG"
  log "up: $(url) (pid $(server_pid)), state in $DIR"
  print_env
}

cmd_down() {
  local pid
  if ! pid=$(server_pid); then
    log "down (was not running)"
    return
  fi
  # SIGINT is PostgreSQL's fast shutdown: sessions are ended, and the server stops cleanly.
  kill -INT "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "postmaster $pid still running after 10 s: SIGQUIT (immediate shutdown)"
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  log "down"
}

cmd_status() {
  local pid
  if pid=$(server_pid); then
    echo "postgres: running at $(url) (pid $pid), state in $DIR"
  else
    echo "postgres: not running (state in $DIR)"
    return 1
  fi
}

with_lock() {
  exec 9>"$LOCK"
  flock 9
  "$@"
}

case "${1:-}" in
  up) with_lock cmd_up ;;
  down) with_lock cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
