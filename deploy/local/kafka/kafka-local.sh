#!/usr/bin/env bash
# Single-node Kafka 4.1 (KRaft broker+controller) on 127.0.0.1:9092 from Maven Central jars.
# usage: kafka-local.sh install|start|stop|status|reset|resolve|cluster-id [count]|topics <TopicCommand args>|
#        console-producer|console-consumer <args>
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../env.sh"
WORK=$KAFKA_WORK POM=${KAFKA_POM:-$HERE/pom.xml}
# KAFKA_LIB: the jars can be shared by several brokers (the test suite's broker uses the platform broker's)
LIB=${KAFKA_LIB:-$WORK/lib} CONF=$WORK/config DATA=$WORK/data LOG=$WORK/logs/server.log PIDFILE=$WORK/kafka.pid
PORT=${KAFKA_PORT:-9092} CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093} TIMEOUT=${KAFKA_START_TIMEOUT:-120} JAVA=${JAVA:-java}
HEAP=${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}
JVM="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"

die() { echo "kafka-local: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { local s; s=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null) && [[ ${s:0:1} != Z ]]; }
is_running() { [[ -f $PIDFILE ]] && alive "$(cat "$PIDFILE")" &&
  tr '\0' ' ' <"/proc/$(cat "$PIDFILE")/cmdline" | grep -q ' kafka\.Kafka '; }

java_version() { "$JAVA" -version 2>&1 | sed -E -n 's/.* version "([0-9]+).*/\1/p' | head -1; }

check_java() {
  local v; v=$(java_version || true)
  if [[ -z $v || $v -lt 17 ]]; then
    echo "kafka-local: installing openjdk-17-jre-headless (found Java '${v:-none}')" >&2
    apt_install openjdk-17-jre-headless
    v=$(java_version || true)
    if [[ -z $v || $v -lt 17 ]]; then  # an older JDK still holds the `java` alternative
      JAVA=$(ls /usr/lib/jvm/java-17-openjdk-*/bin/java | head -1); v=$(java_version || true)
    fi
  fi
  [[ -n $v && $v -ge 17 ]] || die "Kafka 4.x broker needs Java 17+ (found '${v:-none}')"
}

check_mvn() { command -v mvn >/dev/null || { echo "kafka-local: installing maven" >&2; apt_install maven; }; }

resolve() {  # once; again only when pom.xml changes
  local sum; sum=$(sha256sum "$POM" | cut -d' ' -f1)
  [[ -f $LIB/.resolved && $(cat "$LIB/.resolved") == "$sum" ]] && return 0
  check_mvn
  local tmp=$LIB.tmp.$$  # of this process only: two brokers sharing KAFKA_LIB may resolve at once
  mkdir -p "$WORK" "$(dirname "$LIB")"; echo "kafka-local: resolving the broker's jars with maven (log $WORK/maven.log)"
  mvn -B -ntp -f "$POM" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$WORK/maven.log" 2>&1 ||
    { tail -n 40 "$WORK/maven.log" >&2; rm -rf "$tmp"; die "maven resolution failed"; }
  ls "$tmp"/kafka_2.13-*.jar "$tmp"/log4j-slf4j-impl-*.jar >/dev/null || die "jars missing"
  echo "$sum" >"$tmp/.resolved"; rm -rf "$LIB"; mv "$tmp" "$LIB"
}

# A cluster id as `kafka-storage.sh random-uuid` makes it (Kafka's Uuid.randomUuid), without a JVM start:
# 16 random bytes in unpadded base64url (22 chars). Like Kafka's generator it draws again when the id begins
# with '-' (the storage tool would read it as an option: 1 id in 64) or is one of the two reserved ids.
new_cluster_id() {
  local id
  while true; do
    id=$(head -c16 /dev/urandom | base64)  # 24 chars, "==" at the end
    id=${id%==} id=${id//+/-} id=${id//\//_}
    [[ $id == -* || $id == AAAAAAAAAAAAAAAAAAAAA[AQ] ]] || break
  done
  echo "$id"
}

run_class() { "$JAVA" -Xmx256m -Dkafka.root.level=WARN -Dlog4j2.configurationFile="$CONF/log4j2.properties" -cp "$LIB/*" "$@"; }

configure() {
  mkdir -p "$CONF" "$DATA" "$(dirname "$LOG")"
  # regenerated every time, so edits to the templates apply at the next start
  # a second broker (KAFKA_WORK, KAFKA_PORT, KAFKA_CONTROLLER_PORT) can run beside the first, e.g. for parallel test runs
  sed -e "s#@DATA_DIR@#$DATA#" -e "s#:9092#:$PORT#g" -e "s#:9093#:$CONTROLLER_PORT#g" \
    "$HERE/config/server.properties.template" >"$CONF/server.properties"
  cp "$HERE/config/log4j2.properties" "$CONF/"
  if [[ ! -f $DATA/meta.properties ]]; then  # format once per data dir
    local cid=${KAFKA_CLUSTER_ID:-$(new_cluster_id)}
    [[ $cid != -* ]] || die "KAFKA_CLUSTER_ID must not begin with '-' (the storage tool reads it as an option)"
    run_class kafka.tools.StorageTool format --standalone -t "$cid" -c "$CONF/server.properties"
  fi
}

start() {
  is_running && { echo "kafka already running (pid $(cat "$PIDFILE"))"; return 0; }
  check_java; resolve; configure
  port_open $PORT && die "port $PORT already in use"
  [[ -f $LOG ]] && mv -f "$LOG" "$LOG.1"
  # shellcheck disable=SC2086
  nohup "$JAVA" $HEAP $JVM -Dlog4j2.configurationFile="$CONF/log4j2.properties" -cp "$LIB/*" \
    kafka.Kafka "$CONF/server.properties" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + TIMEOUT))
  # :9092 is bound only once the broker is unfenced with its first metadata image; then startup() logs this line
  until port_open $PORT && grep -q 'Kafka Server started' "$LOG"; do
    alive "$(cat "$PIDFILE")" || { tail -n 40 "$LOG" >&2; rm -f "$PIDFILE"; die "broker exited"; }
    ((SECONDS < deadline)) || { tail -n 40 "$LOG" >&2; stop; die "not ready after ${TIMEOUT}s"; }
    sleep 0.5
  done
  echo "kafka ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log $LOG)"
}

stop() {
  is_running || { rm -f "$PIDFILE"; echo "not running"; return 0; }
  local pid; pid=$(cat "$PIDFILE")
  kill -TERM "$pid"  # shutdown hook: controlled shutdown, then controller
  for _ in $(seq 120); do alive "$pid" || break; sleep 0.5; done
  alive "$pid" && { echo "forcing kill of $pid" >&2; kill -KILL "$pid"; }
  rm -f "$PIDFILE"; echo "kafka stopped"
}

case ${1:-} in
  install) check_java; check_mvn ;;
  start) start ;;
  stop) stop ;;
  status) if is_running; then echo "running (pid $(cat "$PIDFILE"))"; else echo stopped; exit 3; fi ;;
  reset) stop; rm -rf "$DATA" ;;
  resolve) resolve ;;
  cluster-id) for _ in $(seq "${2:-1}"); do new_cluster_id; done ;;
  topics) shift; check_java; resolve; configure
    run_class org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$PORT "$@" ;;
  # The console clients that ship in the broker's jars (kafka-tools), against $KAFKA_BOOTSTRAP_SERVERS.
  console-producer|console-consumer) tool=$1; shift; check_java; resolve; mkdir -p "$CONF"
    cp "$HERE/config/log4j2.properties" "$CONF/"
    class=org.apache.kafka.tools.ConsoleProducer
    [[ $tool == console-consumer ]] && class=org.apache.kafka.tools.consumer.ConsoleConsumer
    run_class $class --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" "$@" ;;
  *) echo "usage: $0 install|start|stop|status|reset|resolve|cluster-id [count]|topics|console-producer|console-consumer <args>" >&2
    exit 2 ;;
esac
