"""Prometheus metrics of the runtime (prometheus-client); each service adds its own beside these.

Names are agreed with the alert rules and the dashboard in deploy/observability/: change them together.
"""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("messages_consumed_total", "Messages consumed", ["topic"])
SKIPPED = Counter("messages_skipped_total", "Events skipped unparsed: their ce_type has no handler here", ["topic"])
DEAD_LETTERED = Counter("messages_dead_lettered_total", "Messages sent to a dead-letter topic", ["topic"])
BATCHES_REDONE = Counter("consumer_batches_redone_total",
                         "Batches handled again with a savepoint per message: a command in them was rejected", ["topic"])
OFFSET_COMMITS = Counter("consumer_offset_commits_total",
                         "Offset commit requests sent to Kafka (coalesced over consumer_commit_interval)")
BATCH_SECONDS = Histogram("consumer_batch_seconds", "Time to handle one fetched batch")
RELAYED = Counter("outbox_relayed_total", "Outbox messages published")
RELAY_ROW_FAILURES = Counter("outbox_publish_failures_total",
                             "Outbox rows the broker refused (retried; the log names the row)", ["topic"])
RELAY_ACTIVE = Gauge("outbox_relay_active", "1 while this process holds the relay lock")
TIMERS_FIRED = Counter("timers_fired_total", "Durable timers fired", ["kind"])
CONSUMER_RESTARTS = Counter("consumer_restarts_total",
                            "Consumers the watchdog restarted: lag but no batch for CONSUMER_STALL_AFTER")
LAST_CONSUMED = Gauge("consumer_last_batch_timestamp", "Unix time of the last handled batch")
# Read from the database and the broker every METRICS_INTERVAL (backlog_metrics.py).
OUTBOX_LAG = Gauge("outbox_unsent", "Outbox rows not yet published")
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_unsent_age_seconds", "Age of the oldest unpublished outbox row (0: none)")
TIMERS_DUE = Gauge("timers_due", "Timers due and not yet fired", ["kind"])
TIMERS_OLDEST_OVERDUE = Gauge("timers_oldest_overdue_seconds",
                              "How long the oldest due, unfired timer is past its due time (0: none)", ["kind"])
CONSUMER_LAG = Gauge("kafka_consumer_lag", "Log end offset minus the service group's committed offset",
                     ["topic", "partition"])
