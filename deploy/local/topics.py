"""Create every topic of platform_schemas.topics.TOPICS; topics that already exist are left alone.

Broker auto-creation is off, so this is the only place topics come from.
usage: python deploy/local/topics.py   (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092; as the super user, whose
credentials deploy/local/credentials.sh prints)
"""

import asyncio
import os
import sys
import time

from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from platform_runtime.credentials import Credentials, connect_admin
from platform_schemas.acls import SUPER_USER
from platform_schemas.topics import TOPICS, Topic

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


async def ensure_topics(kafka: dict[str, Any], topics: list[Topic] = TOPICS, timeout: float = 60) -> list[str]:
    """Create the missing topics and wait until the broker lists all of them; returns the names created.
    `kafka`: aiokafka's connection options (Credentials.kafka_options() of a principal that may create topics)."""
    deadline = time.monotonic() + timeout
    admin = await connect_admin(kafka, deadline)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(t.name, t.partitions, 1, topic_configs={"retention.ms": str(t.retention_ms)})
                    for t in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code and code != TOPIC_ALREADY_EXISTS:  # another process may have created it meanwhile
                    raise for_code(code)(f"creating topic {name}: {rest[0] if rest else ''}")
        wanted = {t.name for t in topics}
        while not wanted <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not listed after {timeout}s: {wanted - set(await admin.list_topics())}")
            await asyncio.sleep(0.2)
        return [t.name for t in missing]
    finally:
        await admin.close()


def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    created = asyncio.run(ensure_topics(Credentials.local(SUPER_USER).kafka_options()))
    print(f"topics on {bootstrap}: {len(TOPICS)} present, created {len(created)}" + (f": {', '.join(created)}" if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
