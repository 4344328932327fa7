"""The benchmark's Kafka principals: each client as the platform's ACLs expect (deploy/local/credentials.sh).

The load generator is `integrator` (commands in, events out) and `admin` for the admin commands; the super
user only sets the broker up (topics, consumer groups) and reads the saga command topics for the hop tracer, a
measuring instrument that no real principal may read.
"""

import os
from functools import lru_cache

from platform_runtime.credentials import Credentials
from platform_schemas.acls import SUPER_USER


@lru_cache(maxsize=None)
def as_(bootstrap: str, name: str) -> Credentials:
    """NAME's credentials on the broker at `bootstrap`."""
    return Credentials.local(name, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap})


def super_user(bootstrap: str) -> Credentials:
    return as_(bootstrap, SUPER_USER)
