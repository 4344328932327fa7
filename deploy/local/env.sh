# Sourced by the Makefile and deploy/local/*.sh: the one place for local ports, URLs and work dirs.
# Everything can be overridden from the environment.
export ESCROW_WORK=${ESCROW_WORK:-/var/tmp/escrow-platform}
export PG_WORK=${PG_WORK:-$ESCROW_WORK/pg}
# Below the ephemeral range (32768-60999): a port inside it can be taken by a client socket, or by a
# TCP self-connection while the server is down, and the server then cannot bind it.
export PG_PORT=${PG_PORT:-15432}
export KAFKA_WORK=${KAFKA_WORK:-$ESCROW_WORK/kafka}
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
# SASL_PLAINTEXT (default) or SASL_SSL: SCRAM-SHA-512 users and ACLs (schemas/platform_schemas/acls.py); SASL_SSL
# adds TLS with a local CA made in $KAFKA_TLS_DIR. PLAINTEXT turns authentication and ACLs off (never the default).
export KAFKA_SECURITY_PROTOCOL=${KAFKA_SECURITY_PROTOCOL:-SASL_PLAINTEXT}
export KAFKA_TLS_DIR=${KAFKA_TLS_DIR:-$ESCROW_WORK/tls}
KAFKA_SUPER_USER=broker  # the broker itself and the local setup scripts; never a service's or a client's
export RUN_DIR=${RUN_DIR:-$ESCROW_WORK/run}
source "$(dirname "${BASH_SOURCE[0]}")/secrets.sh"
export DEBIAN_FRONTEND=noninteractive
# The superuser's URL: the local scripts and the test harness set the cluster up with it; no service uses it.
PG_BASE_URL=${PG_BASE_URL:-postgresql+asyncpg://postgres:$(secret pg-postgres)@127.0.0.1:$PG_PORT}
SERVICES=(contracts escrow billing notifications)
DATABASES=(contracts escrow billing notifications gateway)
SMTP_SINK_PORT=2525

http_port() {
  case $1 in contracts) echo 8001 ;; escrow) echo 8002 ;; billing) echo 8003 ;; notifications) echo 8004 ;;
    *) echo "unknown service $1" >&2; return 1 ;; esac
}

# The read API's callers as the services know them: `principal=<SHA-256 of its token>,...`, tokens from secrets.sh.
READ_PRINCIPALS=(integrator admin analytics)
http_token_hashes() {
  local principal hashes=()
  for principal in "${READ_PRINCIPALS[@]}"; do
    hashes+=("$principal=$(secret "http-$principal" | sha256sum | cut -d' ' -f1)")
  done
  (IFS=,; echo "${hashes[*]}")
}

# pg_url ROLE DATABASE: the URL of DATABASE as ROLE, with its password (postgres.sh makes the roles).
pg_url() { echo "postgresql+asyncpg://$1:$(secret "pg-$1")@127.0.0.1:$PG_PORT/$2"; }

# Exports what service $1 reads; everything else the caller exported passes through untouched.
# Its databases as their DML-only roles: the owners' URLs are migration_env's, never a running service's.
service_env() {
  local port; port=$(http_port "$1") || return 1
  export DATABASE_URL=$(pg_url "$1_app" "$1") HTTP_PORT=$port
  export HTTP_TOKEN_HASHES=${HTTP_TOKEN_HASHES:-$(http_token_hashes)}
  # its own Kafka principal (the ACL table's row of the same name)
  export KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=$1 KAFKA_SASL_PASSWORD; KAFKA_SASL_PASSWORD=$(secret "kafka-$1")
  [[ $KAFKA_SECURITY_PROTOCOL != SASL_SSL ]] || export KAFKA_SSL_CAFILE=$KAFKA_TLS_DIR/ca.crt
  case $1 in
    billing) export GATEWAY_DATABASE_URL=$(pg_url gateway_app gateway) ;;
    notifications) export SMTP_HOST=${SMTP_HOST:-127.0.0.1} SMTP_PORT=${SMTP_PORT:-$SMTP_SINK_PORT} ;;
  esac
}

# What `<service> migrate` reads besides service_env: its databases as their owner roles.
migration_env() {
  export MIGRATION_DATABASE_URL=$(pg_url "$1_owner" "$1")
  [[ $1 != billing ]] || export GATEWAY_MIGRATION_DATABASE_URL=$(pg_url gateway_owner gateway)
}

# apt-get install, once per call, only when some package is needed.
apt_install() {
  [[ $EUID -eq 0 ]] || { echo "need root to apt-get install $*" >&2; return 1; }
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
