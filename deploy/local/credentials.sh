#!/usr/bin/env bash
# What a local client needs to talk to the platform as NAME, as `key=value` lines that a librdkafka or aiokafka
# client takes as they are (plus `http.token`, the bearer token for the services' read API):
#   deploy/local/credentials.sh integrator|admin|analytics|contracts|escrow|billing|notifications
#   deploy/local/credentials.sh --env NAME   the same as `export KAFKA_…=…` lines for a shell (escrowctl, a service):
#                                            eval "$(deploy/local/credentials.sh --env admin)"
# `broker`, the super user, is for the local setup scripts and test fixtures only (topics, ACLs, history).
# The secrets are made at first use (secrets.sh). Nothing here is logged; the output is for the caller alone.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/env.sh"
as_env=
[[ ${1:-} == --env ]] && { as_env=1; shift; }
name=${1:-}
case $name in
  integrator|admin|analytics|contracts|escrow|billing|notifications|"$KAFKA_SUPER_USER") ;;
  *) echo "usage: $0 [--env] integrator|admin|analytics|contracts|escrow|billing|notifications" >&2; exit 2 ;;
esac
password=$(secret "kafka-$name") mechanism=SCRAM-SHA-512
[[ $name != "$KAFKA_SUPER_USER" ]] || mechanism=PLAIN  # see kafka-local.sh: the super user is in the broker's config
if [[ -n $as_env ]]; then
  echo "export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS KAFKA_SECURITY_PROTOCOL=$KAFKA_SECURITY_PROTOCOL"
  if [[ $KAFKA_SECURITY_PROTOCOL != PLAINTEXT ]]; then
    echo "export KAFKA_SASL_MECHANISM=$mechanism KAFKA_SASL_USERNAME=$name KAFKA_SASL_PASSWORD=$password"
  fi
  [[ $KAFKA_SECURITY_PROTOCOL != SASL_SSL ]] || echo "export KAFKA_SSL_CAFILE=$KAFKA_TLS_DIR/ca.crt"
  exit 0
fi
echo "bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS"
echo "security.protocol=$KAFKA_SECURITY_PROTOCOL"
echo "sasl.mechanism=$mechanism"
echo "sasl.username=$name"
echo "sasl.password=$password"
[[ $KAFKA_SECURITY_PROTOCOL != SASL_SSL ]] || echo "ssl.ca.location=$KAFKA_TLS_DIR/ca.crt"
echo "http.token=$(secret "http-$name")"
