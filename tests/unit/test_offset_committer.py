"""The offset committer (platform_runtime/offsets.py) on a fake consumer: coalesced, never ahead, never lost.

Against the real broker: tests/integration/test_consumer_dlq.py (a consumer killed mid-batch has committed
nothing beyond the database; a stop commits what was done).
"""

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from platform_runtime.offsets import OffsetCommitter

pytestmark = pytest.mark.unit

A, B, GONE = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)


class FakeConsumer:
    def __init__(self, held=(A, B), fail_with: BaseException | None = None) -> None:
        self.held = set(held)
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_with = fail_with

    def assignment(self):
        return set(self.held)

    async def commit(self, offsets):
        if self.fail_with is not None:
            raise self.fail_with
        self.commits.append(dict(offsets))


async def settled(committer: OffsetCommitter) -> None:
    """Until the background loop has nothing left to commit (bounded)."""
    for _ in range(200):
        await asyncio.sleep(0.005)
        if not committer._pending:  # noqa: SLF001
            return


async def test_batches_within_one_interval_become_one_commit_of_the_highest_offsets():
    consumer, committer = FakeConsumer(), OffsetCommitter(interval=0.2)
    loop = asyncio.create_task(committer.run())
    try:
        await committer.done(consumer, {A: 5})
        await settled(committer)
        await committer.done(consumer, {A: 7, B: 3})
        await committer.done(consumer, {A: 9})
        await settled(committer)
    finally:
        loop.cancel()
    assert consumer.commits == [{A: 5}, {A: 9, B: 3}]


async def test_interval_zero_commits_every_batch_as_it_is_handed_over():
    consumer, committer = FakeConsumer(), OffsetCommitter(interval=0)
    await committer.done(consumer, {A: 1})
    await committer.done(consumer, {A: 2})
    assert consumer.commits == [{A: 1}, {A: 2}]


async def test_closing_commits_at_once_and_flush_commits_what_is_pending():
    consumer, committer = FakeConsumer(), OffsetCommitter(interval=60)
    await committer.done(consumer, {A: 4})  # no loop running: only pending
    assert consumer.commits == []
    await committer.flush()
    assert consumer.commits == [{A: 4}]
    committer.closing = True
    await committer.done(consumer, {B: 2})
    assert consumer.commits == [{A: 4}, {B: 2}]


async def test_partitions_no_longer_held_are_left_to_their_new_owner():
    consumer, committer = FakeConsumer(held=(A,)), OffsetCommitter(interval=60)
    await committer.done(consumer, {A: 3, GONE: 8})
    await committer.flush()
    assert consumer.commits == [{A: 3}]


async def test_a_commit_that_did_not_reach_the_broker_is_kept_for_the_next_one():
    consumer, committer = FakeConsumer(fail_with=KafkaConnectionError()), OffsetCommitter(interval=60)
    await committer.done(consumer, {A: 3})
    with pytest.raises(KafkaConnectionError):
        await committer.flush()
    consumer.fail_with = None
    await committer.done(consumer, {B: 1})
    await committer.flush()
    assert consumer.commits == [{A: 3, B: 1}]


async def test_a_commit_refused_after_a_rebalance_is_dropped():
    consumer, committer = FakeConsumer(fail_with=CommitFailedError()), OffsetCommitter(interval=60)
    await committer.done(consumer, {A: 3})
    await committer.flush()  # logged, not raised: the partition's new owner redoes the batch
    consumer.fail_with = None
    await committer.flush()
    assert consumer.commits == []


async def test_revoking_partitions_commits_what_was_done_on_them_first():
    consumer, committer = FakeConsumer(), OffsetCommitter(interval=60)
    await committer.done(consumer, {A: 6})
    await committer.rebalance_listener().on_partitions_revoked({A})
    assert consumer.commits == [{A: 6}]
