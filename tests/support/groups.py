"""The services' consumer groups on a broker, for whatever starts service processes of its own (the tests'
platform fixture, every benchmark).

Each service consumes in the group named after it, so two platforms on one broker share groups: each gets part
of the partitions and answers the other's messages. `refuse_shared_groups` stops that before anything joins.
A group that has never committed starts at the earliest offset, and one that has starts where it stopped:
either way what the broker already holds would be read first. `start_groups_at_log_end` commits every
partition's log end for the groups, so services on fresh databases begin with what comes next, however much
history the broker holds.
"""

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.protocol.admin import (
    DescribeGroupsRequest, DescribeGroupsRequest_v0, DescribeGroupsRequest_v1, DescribeGroupsRequest_v2,
)
from aiokafka.structs import OffsetAndMetadata
from platform_runtime.credentials import Credentials

STOP_THE_OTHER = ("stop the other platform (make down, or deploy/local/services.sh stop) or point "
                  "KAFKA_BOOTSTRAP_SERVERS at a broker of your own")


class GroupsTaken(RuntimeError):
    """Another platform's services are members of groups we need; the message is one line saying which."""


@dataclass(frozen=True)
class Group:
    state: str
    members: tuple[str, ...]  # "client_id@host" of each member


class _DescribeGroupsUpToV2(DescribeGroupsRequest):
    """aiokafka 0.14 decodes a v3 answer with the v2 schema and fails ("Buffer underrun"): ask for v2 at most."""


_DescribeGroupsUpToV2._CLASSES = (DescribeGroupsRequest_v0, DescribeGroupsRequest_v1, DescribeGroupsRequest_v2)


async def _coordinator(admin: AIOKafkaAdminClient, group_id: str, timeout: float = 60) -> int:
    """The group's coordinator; a fresh broker has none until it has created __consumer_offsets."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await admin.find_coordinator(group_id)
        except GroupCoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for a coordinator of consumer group {group_id}") from None
            await asyncio.sleep(0.2)


async def describe_groups(kafka: Credentials, groups: tuple[str, ...]) -> dict[str, Group]:
    """Each group's state and members (a group nobody ever joined is `Dead` with none)."""
    admin = AIOKafkaAdminClient(**kafka.kafka_options())
    await admin.start()
    try:
        found = {}
        for group_id in groups:
            node = await _coordinator(admin, group_id)
            response = await admin._send_request(_DescribeGroupsUpToV2([group_id]), node)  # noqa: SLF001
            for _error, name, state, _type, _protocol, members in response.groups:
                found[name] = Group(state, tuple(f"{m[1]}@{m[2].lstrip('/')}" for m in members))
        return found
    finally:
        await admin.close()


async def refuse_shared_groups(kafka: Credentials, groups: tuple[str, ...], own: int = 0, who: str = "") -> None:
    """Raises GroupsTaken when any of the groups has more than `own` members (ours, already started)."""
    described = await describe_groups(kafka, groups)
    crowded = {name: g.members for name, g in described.items() if len(g.members) > own}
    if crowded:
        listed = "; ".join(f"{name}: {len(m)} member(s) {', '.join(sorted(set(m)))}" for name, m in crowded.items())
        raise GroupsTaken(f"{who + ': ' if who else ''}refusing to start: another platform's services are in the "
                          f"consumer groups on {kafka.bootstrap_servers} ({listed}): {STOP_THE_OTHER}")


async def wait_for_groups(kafka: Credentials, groups: tuple[str, ...], timeout: float = 30) -> None:
    """Wait until each group is Stable (its partitions assigned to its members)."""
    deadline = time.monotonic() + timeout
    while True:
        described = await describe_groups(kafka, groups)
        if all(described.get(g) and described[g].state == "Stable" for g in groups):
            return
        if time.monotonic() > deadline:
            states = {g: described[g].state if g in described else "unknown" for g in groups}
            raise TimeoutError(f"waited {timeout}s for the consumer groups to be Stable on {kafka.bootstrap_servers}: {states}")
        await asyncio.sleep(0.2)


async def log_ends(kafka: Credentials, topics: list[str]) -> dict[TopicPartition, int]:
    """The next offset of every partition of the topics."""
    admin = AIOKafkaAdminClient(**kafka.kafka_options())
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    if missing := [t["topic"] for t in described if t["error_code"] or not t["partitions"]]:
        raise RuntimeError(f"topics missing on {kafka.bootstrap_servers}: {missing}")
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(**kafka.kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def start_groups_at_log_end(kafka: Credentials, groups: tuple[str, ...], topics: list[str]) -> dict[TopicPartition, int]:
    """Commits, for each (memberless) group, the log end of every partition of the topics; returns those ends.

    The broker refuses such a commit into a group that has members, so this is for groups just checked by
    refuse_shared_groups."""
    ends = await log_ends(kafka, topics)
    offsets = {tp: OffsetAndMetadata(end, "") for tp, end in ends.items()}
    for group in groups:
        consumer = AIOKafkaConsumer(**kafka.kafka_options(), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(ends))  # manual assignment: commits go in as a simple consumer, no rebalance
            await consumer.commit(offsets)
        finally:
            await consumer.stop()
    return ends


async def committed(kafka: Credentials, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**kafka.kafka_options())
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()
