"""Applies the ACL table (schemas/platform_schemas/acls.py) to the local broker, idempotently, at every start:
the SCRAM users that cannot log in yet are created (a data dir formatted before they existed), then every ACL of
the table is created and every ACL of a table principal that the table no longer holds is deleted.

usage: python deploy/local/kafka/acls.py   (KAFKA_BOOTSTRAP_SERVERS; run by kafka-local.sh start)
Runs as the super user. aiokafka has no ACL API, so the three requests are built from its protocol structs.
"""

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request
from platform_runtime.credentials import Credentials, connect_admin
from platform_schemas.acls import PRINCIPALS, SUPER_USER, Acl, all_acls

HERE = Path(__file__).resolve().parent
# Kafka's enums (org.apache.kafka.common.resource / acl)
RESOURCE = {"any": 1, "topic": 2, "group": 3, "cluster": 4}
RESOURCE_NAME = {v: k for k, v in RESOURCE.items()}
OPERATION = {"Any": 1, "Read": 3, "Write": 4, "Describe": 8, "IdempotentWrite": 12}
OPERATION_NAME = {v: k for k, v in OPERATION.items()}
PATTERN_ANY, PATTERN_LITERAL, PATTERN_PREFIXED = 1, 3, 4
PERMISSION_ANY, PERMISSION_ALLOW = 1, 3
ANY_HOST = "*"


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, creations: list[tuple]) -> None:
        self.creations = creations

    def build(self, request_struct_class):
        return request_struct_class(self.creations)


class _DescribeAcls(Request[DescribeAclsRequest_v1]):
    API_KEY = 29

    def __init__(self, principal: str) -> None:
        self.principal = principal

    def build(self, request_struct_class):
        return request_struct_class(RESOURCE["any"], None, PATTERN_ANY, self.principal, None, OPERATION["Any"],
                                    PERMISSION_ANY)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, filters: list[tuple]) -> None:
        self.filters = filters

    def build(self, request_struct_class):
        return request_struct_class(self.filters)


def _wire(rule: Acl) -> tuple:
    return (RESOURCE[rule.resource], rule.name, PATTERN_PREFIXED if rule.prefixed else PATTERN_LITERAL,
            f"User:{rule.principal}", ANY_HOST, OPERATION[rule.operation], PERMISSION_ALLOW)


async def _can_log_in(credentials: Credentials) -> bool:
    admin = AIOKafkaAdminClient(**credentials.kafka_options(), request_timeout_ms=10000)
    try:
        await admin.start()
        return True
    except KafkaError:
        return False
    finally:
        await admin.close()


def create_scram_users(names: list[str]) -> None:
    subprocess.run([str(HERE / "kafka-local.sh"), "scram-users", *names], check=True, stdin=subprocess.DEVNULL)


async def apply(timeout: float = 60) -> tuple[list[str], int, int]:
    """Returns (SCRAM users created, ACLs created or confirmed, stale ACLs deleted)."""
    # fails when the broker or the super user does
    admin = await connect_admin(Credentials.local(SUPER_USER).kafka_options(), time.monotonic() + timeout)
    try:
        logins = await asyncio.gather(*(_can_log_in(Credentials.local(name)) for name in PRINCIPALS))
        missing = [name for name, ok in zip(PRINCIPALS, logins) if not ok]
        if missing:
            await asyncio.to_thread(create_scram_users, missing)
        wanted = [_wire(rule) for rule in all_acls()]
        response = await admin._send_request(_CreateAcls(wanted))  # noqa: SLF001 - aiokafka has no ACL API
        for code, message in response.creation_responses:
            if code:
                raise for_code(code)(f"creating ACLs: {message}")
        stale = []
        for name in PRINCIPALS:
            described = await admin._send_request(_DescribeAcls(f"User:{name}"))  # noqa: SLF001
            if described.error_code:
                raise for_code(described.error_code)(f"describing ACLs: {described.error_message}")
            for resource_type, resource_name, pattern, acls in described.resources:
                for principal, host, operation, permission in acls:
                    rule = (resource_type, resource_name, pattern, principal, host, operation, permission)
                    if rule not in wanted:
                        stale.append(rule)
        if stale:
            response = await admin._send_request(_DeleteAcls(stale))  # noqa: SLF001
            for code, message, _ in response.filter_responses:
                if code:
                    raise for_code(code)(f"deleting stale ACLs: {message}")
        return missing, len(wanted), len(stale)
    finally:
        await admin.close()


def main() -> int:
    # aiokafka logs every refused login at ERROR; here a refused login only means "create that SCRAM user"
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    created, acls, deleted = asyncio.run(apply())
    print(f"kafka ACLs on {os.environ.get('KAFKA_BOOTSTRAP_SERVERS')}: {len(PRINCIPALS)} principals, {acls} ACLs"
          + (f", SCRAM users created: {', '.join(created)}" if created else "")
          + (f", {deleted} stale ACLs deleted" if deleted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
