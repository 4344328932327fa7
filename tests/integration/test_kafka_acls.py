"""The broker itself enforces the ACL table (schemas/platform_schemas/acls.py): every principal x every topic x
read / write, each principal's consumer group against another's, a wrong password, and the forgeries an
integrator's credentials must not allow (BonusGiven on contracts.events, PostBonus on escrow.saga-commands, an
admin command on contracts.admin-commands).

Nothing is written by the matrix: a write probe is a record over the broker's `message.max.bytes` (1 MiB). The
broker checks the principal's Write ACL first and answers TOPIC_AUTHORIZATION_FAILED, or, when it allows the write,
refuses the record for its size (MESSAGE_TOO_LARGE). A read probe is one Fetch request: TOPIC_AUTHORIZATION_FAILED,
or an answer for the partition. One producer and one admin connection per principal, all principals at once.
"""

import asyncio
import dataclasses
import time
import uuid
from datetime import date, datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.fetch import FetchRequest
from platform_runtime.credentials import Credentials
from platform_schemas import new_envelope
from platform_schemas.acls import ADMIN_COMMAND_TOPICS, PRINCIPALS, SUPER_USER, may
from platform_schemas.commands.contracts import ResolveDispute
from platform_schemas.commands.saga import PostBonus
from platform_schemas.events.contracts import BonusGiven
from platform_schemas.topics import CONTRACTS_ADMIN_COMMANDS, CONTRACTS_EVENTS, ESCROW_SAGA_COMMANDS, TOPICS

pytestmark = pytest.mark.integration

OVERSIZED = b"x" * (1024 * 1024 + 64 * 1024)  # over the broker's message.max.bytes (1 MiB + 12 bytes)
TOPIC_AUTHORIZATION_FAILED = 29


@pytest.fixture(scope="module")
def secured(infra):
    if not infra.secured:
        pytest.skip("a PLAINTEXT broker without authorizer (tests/infra.py branch b): no ACLs to check")
    return infra


async def _existing_topics(infra) -> list[str]:
    admin = AIOKafkaAdminClient(**infra.credentials(SUPER_USER).kafka_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    # The admin command topics count as soon as they exist (their ACLs are in the table before).
    return [t.name for t in TOPICS] + [t for t in ADMIN_COMMAND_TOPICS if t in existing]


async def _may_write(producer: AIOKafkaProducer, topic: str) -> bool:
    try:
        await producer.send_and_wait(topic, OVERSIZED)
    except MessageSizeTooLargeError:  # allowed, then refused for its size: nothing written
        return True
    except TopicAuthorizationFailedError:
        return False
    raise AssertionError(f"an oversized record was written to {topic}")


async def _may_read(admin: AIOKafkaAdminClient, topic: str) -> bool:
    fetch = FetchRequest(max_wait_time=0, min_bytes=1, max_bytes=1024, isolation_level=0,
                         topics=[(topic, [(0, 0, 1024)])])
    response = await admin._send_request(fetch)  # noqa: SLF001 - one Fetch, its error code as the broker says it
    [(_, [partition, *_])] = response.topics
    error_code = partition[1]
    return error_code != TOPIC_AUTHORIZATION_FAILED


async def _may_use_group(admin: AIOKafkaAdminClient, group: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await admin.list_consumer_group_offsets(group)  # FindCoordinator + OffsetFetch: Describe on the group
            return True
        except GroupAuthorizationFailedError:
            return False
        except GroupCoordinatorNotAvailableError:  # a fresh broker makes __consumer_offsets at the first question
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _probe(credentials: Credentials, topics: list[str], groups: list[str]) -> dict[tuple[str, str], bool]:
    producer = AIOKafkaProducer(**credentials.kafka_options(), enable_idempotence=False, acks=1,
                                max_request_size=2 * len(OVERSIZED), request_timeout_ms=20000)
    admin = AIOKafkaAdminClient(**credentials.kafka_options(), request_timeout_ms=20000)
    await producer.start()
    await admin.start()
    try:
        seen = {("Write", t): await _may_write(producer, t) for t in topics}
        seen |= {("Read", t): await _may_read(admin, t) for t in topics}
        seen |= {("Group", g): await _may_use_group(admin, g) for g in groups}
        return seen
    finally:
        await producer.stop()
        await admin.close()


def _group_of(name: str) -> str:
    principal = PRINCIPALS[name]
    return f"{principal.group}acl-test" if principal.group_prefixed else principal.group


async def test_the_broker_enforces_the_acl_table_for_every_principal_topic_and_operation(secured):
    topics = await _existing_topics(secured)
    groups = [_group_of(name) for name in PRINCIPALS]
    names = list(PRINCIPALS)
    probed = await asyncio.gather(*(_probe(secured.credentials(n), topics, groups) for n in names))
    seen = {(name, *key): allowed for name, results in zip(names, probed) for key, allowed in results.items()}
    expected = {(name, op, t): may(name, op, t) for name in names for op in ("Read", "Write") for t in topics}
    expected |= {(name, "Group", g): g == _group_of(name) for name in names for g in groups}
    wrong = sorted(f"{name} {op} {what}: broker {'allows' if seen[name, op, what] else 'refuses'}, table "
                   f"{'allows' if allowed else 'refuses'}"
                   for (name, op, what), allowed in expected.items() if seen[name, op, what] != allowed)
    assert not wrong, "\n".join(wrong)
    # the table is not empty-handed either: every principal may do something, and refuses most things
    for name in names:
        assert any(seen[name, "Read", t] for t in topics) and not all(seen[name, "Write", t] for t in topics)


async def test_a_wrong_password_or_no_authentication_is_refused(secured):
    integrator = secured.credentials("integrator")
    for attempt in (dataclasses.replace(integrator, sasl_password="not-the-password"),
                    dataclasses.replace(integrator, security_protocol="PLAINTEXT")):
        admin = AIOKafkaAdminClient(**attempt.kafka_options(), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await admin.start()
        await admin.close()
    admin = AIOKafkaAdminClient(**integrator.kafka_options())  # and the right one is taken
    await admin.start()
    await admin.close()


async def test_integrator_credentials_cannot_forge_facts_ledger_postings_or_admin_commands(secured):
    contract, day = f"c-{uuid.uuid4().hex[:8]}", date.today()
    forged = {
        CONTRACTS_EVENTS: new_envelope(
            BonusGiven(contract_id=contract, bonus_id=f"b-{contract}", client_id="cl-x", freelancer_id="fr-me",
                       amount=1_000_000, currency="USD", note="forged", business_date=day,
                       given_at=datetime.now(timezone.utc)),
            subject=contract, actor="system", source="contracts"),
        ESCROW_SAGA_COMMANDS: new_envelope(
            PostBonus(bonus_id=f"b-{contract}", contract_id=contract, client_id="cl-x", freelancer_id="fr-me",
                      amount=1_000_000, currency="USD", charge_id="ch-x"),
            subject=contract, actor="system", source="billing"),
        CONTRACTS_ADMIN_COMMANDS: new_envelope(
            ResolveDispute(contract_id=contract, milestone_id="m-1", release_amount=1_000_000, refund_amount=0),
            subject=contract, actor="admin:mallory", source="marketplace-web"),
    }
    producer = AIOKafkaProducer(**secured.credentials("integrator").kafka_options(), enable_idempotence=True)
    await producer.start()
    try:
        for topic, envelope in forged.items():
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topic, envelope.to_json(), key=envelope.subject.encode())
    finally:
        await producer.stop()
