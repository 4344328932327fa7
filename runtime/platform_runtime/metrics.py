"""Prometheus metrics of the runtime (prometheus-client); each service adds its own beside these."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("messages_consumed_total", "Messages consumed", ["topic"])
DEAD_LETTERED = Counter("messages_dead_lettered_total", "Messages sent to a dead-letter topic", ["topic"])
BATCH_SECONDS = Histogram("consumer_batch_seconds", "Time to handle one fetched batch")
RELAYED = Counter("outbox_relayed_total", "Outbox messages published")
OUTBOX_LAG = Gauge("outbox_unsent", "Outbox messages not yet published (at the last relay pass)")
RELAY_ACTIVE = Gauge("outbox_relay_active", "1 while this process holds the relay lock")
TIMERS_FIRED = Counter("timers_fired_total", "Durable timers fired", ["kind"])
LAST_CONSUMED = Gauge("consumer_last_batch_timestamp", "Unix time of the last handled batch")
