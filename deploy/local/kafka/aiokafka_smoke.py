"""aiokafka smoke test against a Kafka-compatible broker.

Usage: python aiokafka_smoke.py [bootstrap]   (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)
It connects as the super user (deploy/local/credentials.sh broker): its scratch topics, groups and
transactional ids are in no row of the ACL table.
Exercises: ApiVersions, admin create_topics, plain produce/consume with a
consumer group + commit, idempotent producer, transactional producer
(commit + abort + send_offsets_to_transaction) and a read_committed consumer.
Prints one PASS/FAIL line per check and exits non-zero on any failure.
"""
import asyncio
import os
import sys
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from platform_runtime.credentials import Credentials

_BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
KAFKA = Credentials.local("broker", env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": _BOOTSTRAP}).kafka_options()
RESULTS = []


def report(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)


async def step(name, coro, timeout=30):
    try:
        res = await asyncio.wait_for(coro, timeout)
        report(name, True, "" if res is None else str(res))
        return res
    except Exception as e:  # noqa: BLE001
        report(name, False, f"{type(e).__name__}: {e}")
        return None


async def consume_n(topic, n, group=None, isolation="read_uncommitted", commit=True):
    c = AIOKafkaConsumer(
        topic, **KAFKA, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level=isolation)
    await c.start()
    got = []
    try:
        while len(got) < n:
            batch = await c.getmany(timeout_ms=1000)
            for _tp, msgs in batch.items():
                got.extend(m.value for m in msgs)
            if not batch and len(got) >= n:
                break
        if group and commit:
            await c.commit()
    finally:
        await c.stop()
    return got


async def main():
    run = uuid.uuid4().hex[:6]
    t_plain, t_idem, t_txn, t_out = (f"{x}-{run}" for x in ("plain", "idem", "txn", "out"))

    admin = AIOKafkaAdminClient(**KAFKA)
    await admin.start()
    await step("admin.create_topics", admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in (t_plain, t_idem, t_txn, t_out)]))
    await step("admin.list_topics", admin.list_topics())
    await admin.close()

    # plain produce / consume in a group, commit, then re-consume -> nothing new
    async def plain():
        p = AIOKafkaProducer(**KAFKA, acks="all")
        await p.start()
        try:
            for i in range(5):
                await p.send_and_wait(t_plain, f"m{i}".encode())
        finally:
            await p.stop()
        got = await consume_n(t_plain, 5, group=f"g-{run}")
        assert got == [f"m{i}".encode() for i in range(5)], got
        c = AIOKafkaConsumer(t_plain, **KAFKA, group_id=f"g-{run}", enable_auto_commit=False)
        await c.start()
        try:
            committed = await c.committed(TopicPartition(t_plain, 0))
        finally:
            await c.stop()
        assert committed == 5, committed
        return f"consumed {len(got)}, committed offset {committed}"
    await step("produce/consume/group-commit", plain(), timeout=60)

    async def idem():
        p = AIOKafkaProducer(**KAFKA, enable_idempotence=True)
        await p.start()
        try:
            for i in range(5):
                await p.send_and_wait(t_idem, f"i{i}".encode())
        finally:
            await p.stop()
        got = await consume_n(t_idem, 5)
        assert got == [f"i{i}".encode() for i in range(5)], got
        return "5 idempotent records"
    await step("idempotent producer", idem(), timeout=60)

    async def txn():
        p = AIOKafkaProducer(**KAFKA, transactional_id=f"tx-{run}")
        await p.start()
        try:
            async with p.transaction():
                await p.send(t_txn, b"committed-1")
                await p.send(t_txn, b"committed-2")
            await p.begin_transaction()
            await p.send(t_txn, b"aborted-1")
            await p.abort_transaction()
            async with p.transaction():
                await p.send(t_txn, b"committed-3")
        finally:
            await p.stop()
        got = await consume_n(t_txn, 3, isolation="read_committed")
        assert got == [b"committed-1", b"committed-2", b"committed-3"], got
        return "read_committed sees only committed records"
    await step("transactions commit/abort + read_committed", txn(), timeout=90)

    async def consume_transform_produce():
        group = f"ctp-{run}"
        c = AIOKafkaConsumer(t_plain, **KAFKA, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level="read_committed")
        p = AIOKafkaProducer(**KAFKA, transactional_id=f"ctp-{run}")
        await c.start()
        await p.start()
        try:
            msgs = []
            while len(msgs) < 5:
                batch = await c.getmany(timeout_ms=1000)
                for _tp, ms in batch.items():
                    msgs.extend(ms)
            async with p.transaction():
                for m in msgs:
                    await p.send(t_out, m.value.upper())
                await p.send_offsets_to_transaction(
                    {TopicPartition(t_plain, 0): msgs[-1].offset + 1}, group)
            # the transaction markers reach __consumer_offsets asynchronously after EndTxn returns
            deadline = asyncio.get_running_loop().time() + 10
            while (committed := await c.committed(TopicPartition(t_plain, 0))) != 5:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
        finally:
            await p.stop()
            await c.stop()
        assert committed == 5, committed
        out = await consume_n(t_out, 5, isolation="read_committed")
        assert out == [f"M{i}".encode() for i in range(5)], out
        return "offsets committed via transaction"
    await step("send_offsets_to_transaction", consume_transform_produce(), timeout=90)

    print(f"{sum(RESULTS)} passed, {len(RESULTS) - sum(RESULTS)} failed", flush=True)
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
