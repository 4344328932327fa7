#!/usr/bin/env bash
# The platform's own PostgreSQL cluster: 127.0.0.1:$PG_PORT, durable (fsync, synchronous_commit on).
# Over TCP every role logs in with a SCRAM-SHA-256 password (secret pg-<role>); only the superuser may use the
# unix socket, which lives in $PG_WORK (mode 0700: the server's OS account alone reaches it), without one.
# At every start: one owner role and one DML-only role per database (platform_runtime.database_roles).
# usage: postgres.sh install|start|stop|status|reset|url [db]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/env.sh"
ROOT=$(cd "$HERE/../.." && pwd)
DATA=$PG_WORK/data LOG=$PG_WORK/postgres.log TIMEOUT=${PG_START_TIMEOUT:-60}

die() { echo "postgres: $*" >&2; exit 1; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true; }
# The server refuses to run as root.
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

installed() { [[ -n $(bindir) && -x $(bindir)/initdb ]]; }

ensure_installed() {
  installed && return 0
  echo "postgres: installing Debian's postgresql" >&2
  apt_install postgresql-common
  # no default cluster on :5432; this script makes its own
  sed -i -E 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  apt_install postgresql
}

is_running() { [[ -n $BIN && -f $DATA/PG_VERSION ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init() {
  [[ -f $DATA/PG_VERSION ]] && return 0
  install -d -m 755 "$ESCROW_WORK"  # postgres must be able to traverse it
  install -d -m 700 "$PG_WORK"
  [[ $EUID -ne 0 ]] || chown postgres:postgres "$PG_WORK"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 >"$PG_WORK/initdb.log" 2>&1 || { cat "$PG_WORK/initdb.log" >&2; die "initdb failed"; }
  echo "include = 'platform.conf'" >>"$DATA/postgresql.conf"
}

configure() {  # rewritten at every start so PG_PORT and these settings always apply
  as_pg tee "$DATA/platform.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_WORK'
max_connections = 300
# Sized for the bonus batch's tables (a batch of 1,000,000 bonuses writes about 1.6 GB of rows and indexes in
# billing alone): with 256MB and the default 1GB of WAL between checkpoints, a checkpoint came every 10-15 s
# during that batch, each followed by a full-page image in the WAL of every page written again, and the backends
# evicted and wrote pages themselves (README, issue 10's sixth step). Memory is only taken as it is used.
shared_buffers = 1GB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 15min
fsync = on
synchronous_commit = on
# The outboxes are queues: the relay deletes each published row at once and its next read walks the dead index
# entries until vacuum removes them (a bonus batch's relay read: 28 ms a pass at 5 s, 35-90 ms at the default 1 min).
autovacuum_naptime = 5s
password_encryption = scram-sha-256
# Statements counted by database: the benchmark reports them per saga (bench/database_work.py). Read at start
# only: a cluster started before this line counts transactions alone until its next restart.
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track_utility = on
# And the plans made: a prepared statement planned again at every execution shows as about as many plans as
# statements (issue 10's twenty-second step found six such hot statements). Only planning is timed more.
pg_stat_statements.track_planning = on
CONF
  as_pg tee "$DATA/pg_hba.conf" >/dev/null <<HBA
# Written by deploy/local/postgres.sh at every start.
local all postgres                trust
host  all all      127.0.0.1/32   scram-sha-256
host  all all      ::1/128        scram-sha-256
HBA
}

# The superuser's password, and each database's owner and DML roles with theirs (made at first use), through
# the socket; the passwords go to the script in its environment (exported by the shell), never on a command line.
provision_roles() {
  local py=$ROOT/.venv/bin/python db role passwords=(POSTGRES_PASSWORD="$(secret pg-postgres)")
  [[ -x $py ]] || die "$py missing: run 'make bootstrap'"
  for db in "${DATABASES[@]}"; do
    for role in "${db}_owner" "${db}_app"; do passwords+=("${role^^}_PASSWORD=$(secret "pg-$role")"); done
  done
  (
    export "${passwords[@]}" DATABASE_ROLES_ADMIN_URL="postgresql://postgres@/postgres?host=$PG_WORK&port=$PG_PORT"
    exec "$py" -m platform_runtime.database_roles "${DATABASES[@]}"
  ) >"$PG_WORK/roles.log" 2>&1 || { cat "$PG_WORK/roles.log" >&2; die "roles and grants failed"; }
}

# After a SIGKILL or a reboot the pid in postmaster.pid may belong to some other process by now.
drop_stale_pidfile() {
  local pid; pid=$(head -n1 "$DATA/postmaster.pid" 2>/dev/null) || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $DATA" || rm -f "$DATA/postmaster.pid"
}

start() {
  drop_stale_pidfile
  if ! is_running; then
    init; configure
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$TIMEOUT" start >/dev/null ||
      { tail -n 30 "$LOG" >&2; die "pg_ctl start failed"; }
  else  # started by an older version of this script, perhaps with other authentication rules
    configure; as_pg "$BIN/pg_ctl" -D "$DATA" reload >/dev/null
  fi
  local deadline=$((SECONDS + TIMEOUT))
  until "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
    ((SECONDS < deadline)) || { tail -n 30 "$LOG" >&2; die "not ready after ${TIMEOUT}s"; }
    sleep 0.2
  done
  provision_roles
  echo "postgres ready on 127.0.0.1:$PG_PORT (data $DATA, log $LOG)"
}

stop() {
  is_running || { echo "postgres not running"; return 0; }
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  echo "postgres stopped"
}

case ${1:-} in
  install) ensure_installed ;;
  url) echo "$PG_BASE_URL${2:+/$2}" ;;
  start) ensure_installed; BIN=$(bindir); start ;;
  stop) BIN=$(bindir); stop ;;
  status) BIN=$(bindir)
    if is_running; then echo "postgres running on 127.0.0.1:$PG_PORT"; else echo "postgres stopped"; exit 3; fi ;;
  reset) BIN=$(bindir); stop; rm -rf "$PG_WORK" ;;
  *) echo "usage: $0 install|start|stop|status|reset|url [db]" >&2; exit 2 ;;
esac
