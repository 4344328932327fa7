#!/usr/bin/env bash
# kafka-console-producer as it ships with the broker's jars (Apache Kafka 4.1 kafka-tools), on $KAFKA_BOOTSTRAP_SERVERS.
# usage: deploy/local/kafka-console-producer.sh --topic TOPIC [kafka-console-producer options]
exec "$(dirname "${BASH_SOURCE[0]}")/kafka/kafka-local.sh" console-producer "$@"
