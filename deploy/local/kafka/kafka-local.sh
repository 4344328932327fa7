#!/usr/bin/env bash
# Single-node Kafka 4.1 (KRaft broker+controller) on 127.0.0.1:9092 from Maven Central jars.
# usage: kafka-local.sh install|start|stop|status|reset|resolve|cluster-id [count]|config|topics <TopicCommand args>|
#        console-producer|console-consumer <args>|scram-users NAME...|tls
# Security (KAFKA_SECURITY_PROTOCOL, env.sh): SASL_PLAINTEXT (default) or SASL_SSL on the client listener,
# SCRAM-SHA-512 users, the standard authorizer with allow.everyone.if.no.acl.found=false and the super user
# `broker` (this broker and the local setup scripts only). The users and ACLs come from
# schemas/platform_schemas/acls.py, applied by acls.py at every start. PLAINTEXT: no authentication, no ACLs
# (a developer's escape hatch, never the default).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../env.sh"
ROOT=$(cd "$HERE/../../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python} SUPER_USER=$KAFKA_SUPER_USER
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

# The super user's password reaches the broker through its config file (mode 0600, rewritten at each start).
security_config() {
  local password; password=$(secret "kafka-$SUPER_USER")
  if [[ $KAFKA_SECURITY_PROTOCOL == PLAINTEXT ]]; then
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT"; return
  fi
  cat <<EOT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:$KAFKA_SECURITY_PROTOCOL
# Every principal of the ACL table logs in with SCRAM-SHA-512 (users in the metadata log). The super user alone
# logs in with PLAIN, against this file (user_$SUPER_USER is its only user): it exists before any metadata does,
# so the broker (inter-broker and controller links) and acls.py work on a data dir formatted before the SCRAM
# users existed; it never leaves 127.0.0.1.
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SUPER_USER" password="$password" user_$SUPER_USER="$password";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SUPER_USER" password="$password" user_$SUPER_USER="$password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$SUPER_USER
EOT
  if [[ $KAFKA_SECURITY_PROTOCOL == SASL_SSL ]]; then
    cat <<EOT
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS_DIR/ca.crt
EOT
  fi
}

# A local CA and the broker's certificate (127.0.0.1 and localhost), made once in $KAFKA_TLS_DIR with openssl.
# Clients trust ca.crt (credentials.sh prints it as ssl.ca.location).
make_tls() {
  local dir=$KAFKA_TLS_DIR
  [[ -s $dir/ca.crt && -s $dir/broker.pem ]] && return 0
  command -v openssl >/dev/null || apt_install openssl
  install -d -m 700 "$dir"
  (
    umask 077; cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=escrow-platform local CA" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out broker.crt -days 3650 \
      -extfile broker.ext 2>/dev/null
    # Kafka's PEM keystore: an unencrypted PKCS#8 key, then the chain
    openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
    cat broker.pk8 broker.crt ca.crt >broker.pem.tmp && mv broker.pem.tmp broker.pem
    rm -f broker.csr broker.ext broker.key broker.pk8
  )
  chmod 644 "$dir/ca.crt"
  echo "kafka-local: made a local CA and the broker's certificate in $dir"
}

# SCRAM credentials for NAME..., on the running broker (ConfigCommand as the super user). acls.py calls it for the principals that cannot log in yet: a data dir formatted before a
# principal existed (new data dirs get every user at format time).
scram_users() {
  local config; config=$(java_client_config); trap 'rm -f "$config"' RETURN
  for name in "$@"; do
    # On argv for the tool's few seconds, like the format step's --add-scram (its file option does not parse
    # SCRAM values); its output is dropped because its error messages repeat the value.
    run_class kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$PORT" --command-config "$config" \
      --alter --entity-type users --entity-name "$name" \
      --add-config "SCRAM-SHA-512=[iterations=8192,password=$(secret "kafka-$name")]" >/dev/null 2>&1 ||
      die "could not create the SCRAM user $name (ConfigCommand on 127.0.0.1:$PORT failed)"
    echo "kafka-local: SCRAM user $name created"
  done
}

scram_format_args() {  # every principal of the ACL table, for `StorageTool format --add-scram`
  local name
  for name in $("$PY" -c 'from platform_schemas.acls import PRINCIPALS; print(*PRINCIPALS)'); do
    printf -- '--add-scram\nSCRAM-SHA-512=[name=%s,iterations=8192,password=%s]\n' "$name" "$(secret "kafka-$name")"
  done
}

# A Java client's properties for principal $1 (the super user by default), in a new file of mode 0600.
java_client_config() {
  local file; file=$(mktemp)
  echo "security.protocol=$KAFKA_SECURITY_PROTOCOL" >"$file"
  local name=${1:-$SUPER_USER} mechanism=SCRAM-SHA-512 module=scram.ScramLoginModule
  [[ $name == "$SUPER_USER" ]] && mechanism=PLAIN module=plain.PlainLoginModule
  if [[ $KAFKA_SECURITY_PROTOCOL != PLAINTEXT ]]; then
    printf 'sasl.mechanism=%s\nsasl.jaas.config=org.apache.kafka.common.security.%s required username="%s" password="%s";\n' \
      "$mechanism" "$module" "$name" "$(secret "kafka-$name")" >>"$file"
  fi
  [[ $KAFKA_SECURITY_PROTOCOL == SASL_SSL ]] &&
    printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$KAFKA_TLS_DIR/ca.crt" >>"$file"
  echo "$file"
}

run_class() { "$JAVA" -Xmx256m -Dkafka.root.level=WARN -Dlog4j2.configurationFile="$CONF/log4j2.properties" -cp "$LIB/*" "$@"; }

# The broker's properties from the template, in $CONF (printed: its path).
render_config() {
  mkdir -p "$CONF"
  # regenerated every time, so edits to the templates apply at the next start
  # a second broker (KAFKA_WORK, KAFKA_PORT, KAFKA_CONTROLLER_PORT) can run beside the first, e.g. for parallel test runs
  local retention=${KAFKA_LOCAL_RETENTION_BYTES:-268435456}  # bytes a partition keeps at least; -1: everything
  [[ $retention =~ ^(-1|[0-9]+)$ ]] || die "KAFKA_LOCAL_RETENTION_BYTES must be a number of bytes or -1, not '$retention'"
  sed -e "s#@DATA_DIR@#$DATA#" -e "s#@RETENTION_BYTES@#$retention#" -e "s#:9092#:$PORT#g" -e "s#:9093#:$CONTROLLER_PORT#g" \
    "$HERE/config/server.properties.template" >"$CONF/server.properties.tmp"
  [[ $KAFKA_SECURITY_PROTOCOL == SASL_SSL ]] && make_tls
  security_config >>"$CONF/server.properties.tmp"
  chmod 600 "$CONF/server.properties.tmp"; mv "$CONF/server.properties.tmp" "$CONF/server.properties"
  echo "$CONF/server.properties"
}

configure() {
  mkdir -p "$CONF" "$DATA" "$(dirname "$LOG")"
  render_config >/dev/null
  cp "$HERE/config/log4j2.properties" "$CONF/"
  if [[ ! -f $DATA/meta.properties ]]; then  # format once per data dir
    local cid=${KAFKA_CLUSTER_ID:-$(new_cluster_id)}
    [[ $cid != -* ]] || die "KAFKA_CLUSTER_ID must not begin with '-' (the storage tool reads it as an option)"
    local scram=()
    [[ $KAFKA_SECURITY_PROTOCOL == PLAINTEXT ]] || mapfile -t scram < <(scram_format_args)
    run_class kafka.tools.StorageTool format --standalone -t "$cid" -c "$CONF/server.properties" "${scram[@]}"
  fi
}

start() {
  if is_running; then  # the ACL table is applied again all the same (it may have changed since)
    grep -q "^listener.security.protocol.map=.*CLIENT:$KAFKA_SECURITY_PROTOCOL\$" "$CONF/server.properties" 2>/dev/null ||
      die "the running broker (pid $(cat "$PIDFILE")) was not started with KAFKA_SECURITY_PROTOCOL=$KAFKA_SECURITY_PROTOCOL: stop it first (make down; its data is kept)"
    echo "kafka already running (pid $(cat "$PIDFILE"))"; apply_acls; return 0
  fi
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
  echo "kafka ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log $LOG, $KAFKA_SECURITY_PROTOCOL)"
  apply_acls
}

# The ACL table (schemas/platform_schemas/acls.py): missing SCRAM users, then the ACLs; idempotent.
apply_acls() {
  [[ $KAFKA_SECURITY_PROTOCOL == PLAINTEXT ]] && return 0
  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$PORT KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT "$PY" "$HERE/acls.py"
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
  config) render_config ;;
  scram-users) shift; check_java; resolve; scram_users "$@" ;;
  acls) apply_acls ;;
  tls) make_tls ;;
  topics) shift; check_java; resolve; configure
    config=$(java_client_config); trap 'rm -f "$config"' EXIT
    run_class org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$PORT --command-config "$config" "$@" ;;
  # The console clients that ship in the broker's jars (kafka-tools), against $KAFKA_BOOTSTRAP_SERVERS.
  console-producer|console-consumer) tool=$1; shift; check_java; resolve; mkdir -p "$CONF"
    cp "$HERE/config/log4j2.properties" "$CONF/"
    class=org.apache.kafka.tools.ConsoleProducer
    [[ $tool == console-consumer ]] && class=org.apache.kafka.tools.consumer.ConsoleConsumer
    # as KAFKA_PRINCIPAL: by default integrator (writes the public command topics), admin to read
    kind=producer principal=integrator; [[ $tool == console-consumer ]] && kind=consumer principal=admin
    config=$(java_client_config "${KAFKA_PRINCIPAL:-$principal}"); trap 'rm -f "$config"' EXIT
    run_class $class --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" "--$kind.config" "$config" "$@" ;;
  *) echo "usage: $0 install|start|stop|status|reset|resolve|cluster-id [count]|config|topics|console-producer|console-consumer <args>|scram-users NAME...|acls|tls" >&2
    exit 2 ;;
esac
