#!/usr/bin/env bash
# The test suite's own Kafka broker and PostgreSQL cluster: the same launchers as the platform's, in a work
# directory and on ports of their own, so a test run never sees what the platform's servers hold (and a
# `make up` platform on them keeps running). `make test` starts them fresh every time.
#   TEST_WORK                  default $ESCROW_WORK/test (kafka/ and pg/ below it)
#   TEST_KAFKA_PORT            default TEST_PORT_BASE+92 (TEST_PORT_BASE defaults to 18000, as in the tests)
#   TEST_KAFKA_CONTROLLER_PORT default TEST_PORT_BASE+93
#   TEST_PG_PORT               default TEST_PORT_BASE+32
# The broker's jars are the platform broker's ($KAFKA_WORK/lib, resolved once by maven), never resolved again.
# usage: test-servers.sh fresh|start|stop|status|env|addresses|stop-one SERVER|start-one SERVER
#   fresh: stop, wipe the data, format, start (then create the platform's databases and topics)
#   start: start when not running (data kept); env: `export` lines naming the servers, for eval
#   addresses: "kafka-host:port postgres-host:port"; stop-one/start-one kafka|postgres: one server, data kept
#   (the chaos run restarts them under load: tests/support/servers.py)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/env.sh"
ROOT=$(cd "$HERE/../.." && pwd)

base=${TEST_PORT_BASE:-18000}
export TEST_WORK=${TEST_WORK:-$ESCROW_WORK/test}
export TEST_KAFKA_PORT=${TEST_KAFKA_PORT:-$((base + 92))}
export TEST_KAFKA_CONTROLLER_PORT=${TEST_KAFKA_CONTROLLER_PORT:-$((base + 93))}
export TEST_PG_PORT=${TEST_PG_PORT:-$((base + 32))}
# What the launchers read, pointed at the test servers (the platform's values are replaced, not used).
export KAFKA_LIB=${KAFKA_LIB:-$KAFKA_WORK/lib}
export KAFKA_WORK=$TEST_WORK/kafka KAFKA_PORT=$TEST_KAFKA_PORT KAFKA_CONTROLLER_PORT=$TEST_KAFKA_CONTROLLER_PORT
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$TEST_KAFKA_PORT
export PG_WORK=$TEST_WORK/pg PG_PORT=$TEST_PG_PORT
# the superuser, with its password (the same secret as the platform cluster's): the harness sets up databases with it
export PG_BASE_URL=postgresql+asyncpg://postgres:$(secret pg-postgres)@127.0.0.1:$TEST_PG_PORT
KAFKA=$HERE/kafka/kafka-local.sh POSTGRES=$HERE/postgres.sh
# Longer than the launchers' own defaults: on a loaded machine (parallel test runs) a JVM start takes minutes.
export KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-600} PG_START_TIMEOUT=${PG_START_TIMEOUT:-180}

die() { echo "test-servers: $*" >&2; exit 1; }

# Both servers at once (they start in parallel: the broker's JVM is the slow one); fails if either fails.
start_both() {
  local pg kafka
  "$POSTGRES" start >"$TEST_WORK/postgres.start.log" 2>&1 & pg=$!
  "$KAFKA" start >"$TEST_WORK/kafka.start.log" 2>&1 & kafka=$!
  wait "$pg" || { cat "$TEST_WORK/postgres.start.log" >&2; wait "$kafka" || true; die "postgres did not start"; }
  wait "$kafka" || { cat "$TEST_WORK/kafka.start.log" >&2; die "kafka did not start"; }
  "$ROOT/.venv/bin/python" "$HERE/topics.py" >/dev/null
  echo "test servers ready: kafka $KAFKA_BOOTSTRAP_SERVERS, postgres 127.0.0.1:$PG_PORT (work dir $TEST_WORK)"
}

stop_both() { "$KAFKA" stop >/dev/null; "$POSTGRES" stop >/dev/null; }

fresh() {
  stop_both
  rm -rf "$KAFKA_WORK" "$PG_WORK"  # the jars live in KAFKA_LIB, outside
  mkdir -p "$TEST_WORK"
  start_both
}

one_server() {
  case $1 in kafka) echo "$KAFKA" ;; postgres) echo "$POSTGRES" ;; *) die "no server named '$1' (kafka|postgres)" ;; esac
}

env_lines() {
  echo "export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS POSTGRES_URL=$PG_BASE_URL KAFKA_SECURITY_PROTOCOL=$KAFKA_SECURITY_PROTOCOL"
}

case ${1:-} in
  fresh) [[ $KAFKA_LIB != "$KAFKA_WORK"/* ]] || die "KAFKA_LIB ($KAFKA_LIB) must be outside $KAFKA_WORK"; fresh ;;
  start) mkdir -p "$TEST_WORK"; start_both ;;
  stop) stop_both; echo "test servers stopped" ;;
  status) echo "kafka $("$KAFKA" status || true), $("$POSTGRES" status || true)"
    "$KAFKA" status >/dev/null && "$POSTGRES" status >/dev/null ;;
  env) env_lines ;;
  addresses) echo "127.0.0.1:$TEST_KAFKA_PORT 127.0.0.1:$TEST_PG_PORT" ;;
  stop-one|start-one) launcher=$(one_server "${2:-}") || exit 2; "$launcher" "${1%-one}" ;;
  *) echo "usage: $0 fresh|start|stop|status|env|addresses|stop-one|start-one" >&2; exit 2 ;;
esac
