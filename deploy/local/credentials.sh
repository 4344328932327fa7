#!/usr/bin/env bash
# What a local client needs to talk to the platform as NAME, as `key=value` lines that a librdkafka or aiokafka
# client takes as they are (plus `http.token`, the bearer token for the services' read API):
#   deploy/local/credentials.sh integrator|admin|analytics|contracts|escrow|billing|notifications
# The secrets are made at first use (secrets.sh). Nothing here is logged; the output is for the caller alone.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/env.sh"
name=${1:-}
case $name in
  integrator|admin|analytics|contracts|escrow|billing|notifications) ;;
  *) echo "usage: $0 integrator|admin|analytics|contracts|escrow|billing|notifications" >&2; exit 2 ;;
esac
echo "bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS"
echo "security.protocol=${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}"
echo "sasl.mechanism=SCRAM-SHA-512"
echo "sasl.username=$name"
echo "sasl.password=$(secret "kafka-$name")"
echo "http.token=$(secret "http-$name")"
