"""The contracts service's durable timers under an injected clock.

The domain tests need nothing but a time. The timer-runner tests use the service's real handlers,
its real TimerRunner and a real PostgreSQL scratch database (`<TEST_DB_PREFIX>timers_clock`), with
a FrozenClock that only moves when told: the review period is the production default of 14 days,
and passing it takes no time at all.
"""

import asyncio
import os
from datetime import datetime, timedelta, timezone
from functools import partial

import pytest
import pytest_asyncio
from platform_runtime.clock import FrozenClock
from platform_runtime.dispatch import CommandDispatcher
from platform_runtime.service import build_runtime
from platform_runtime.timers import TimerRunner
from platform_schemas import Envelope, Message, new_envelope
from platform_schemas.commands.contracts import (
    ApproveMilestone, CancelContract, RegisterAccount, RequestChanges, ResolveDispute, RespondToRefundRequest,
    SubmitWork,
)
from platform_schemas.topics import CONTRACTS_COMMANDS, CONTRACTS_EVENTS
from sqlalchemy import select, update

from contracts.adapters.queues import DisputeRepository
from contracts.adapters.repositories import ContractRepository
from contracts.adapters.tables import accounts
from contracts.bootstrap import COMMANDS, definition
from contracts.domain import contracts as domain
from contracts.domain.contracts import Contract, Milestone
from contracts.service_layer.context import Context
from contracts.service_layer.timers import INACTIVITY_SWEEP, schedule_next_sweep, timer_handlers
from contracts.settings import ContractsSettings
from tests.support.processes import recreate_databases

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
REVIEW, REMINDER, WINDOW = timedelta(days=14), timedelta(days=2), timedelta(days=7)


# -- the domain alone -----------------------------------------------------------------------------


def submitted_contract(clock: FrozenClock) -> Contract:
    contract = Contract("c-1", "client-1", "free-1", "Logo", "USD", "first_milestone", domain.ACTIVE)
    contract.milestones = [Milestone("m-1", "Sketches", 10_000, 0, status=domain.FUNDED, charge_id="ch-1")]
    contract.submit_work("free-1", "m-1", clock.now(), REVIEW)
    return contract


@pytest.mark.unit
def test_auto_release_waits_for_the_end_of_the_review_period_and_happens_once():
    clock = FrozenClock(NOON)
    contract = submitted_contract(clock)
    clock.advance(REVIEW - timedelta(microseconds=1))
    assert contract.auto_release("m-1", clock.now()) is None
    clock.advance(timedelta(microseconds=1))
    assert contract.auto_release("m-1", clock.now()).status == domain.RELEASING
    clock.advance(timedelta(days=1))
    assert contract.auto_release("m-1", clock.now()) is None  # released already: a second firing does nothing


@pytest.mark.unit
def test_a_change_request_stops_the_review_clock():
    clock = FrozenClock(NOON)
    contract = submitted_contract(clock)
    clock.advance(timedelta(days=3))
    contract.request_changes("client-1", "m-1")
    clock.advance(REVIEW * 2)
    assert contract.auto_release("m-1", clock.now()) is None
    assert contract.milestone("m-1").status == domain.CHANGES_REQUESTED


# -- the timer runner on a real database ------------------------------------------------------------


class Harness:
    """The contracts service's command path and timer runner over a scratch database and a frozen clock."""

    def __init__(self, database_url: str, clock: FrozenClock) -> None:
        self.clock = clock
        # The sagas' step deadlines are out of the way here (no participant answers in this harness);
        # test_saga_tables.py tests them.
        self.settings = ContractsSettings(database_url=database_url, http_port=0,
                                          saga_step_timeout=timedelta(days=3650))
        self.runtime = build_runtime(definition, self.settings, clock)
        self.contexts = partial(Context, settings=self.settings)
        self.dispatcher = CommandDispatcher(CONTRACTS_COMMANDS, COMMANDS, CONTRACTS_EVENTS, self.contexts)

    def runner(self) -> TimerRunner:
        """A timer runner, as each instance of the service has one."""
        return TimerRunner(self.runtime.new_uow, timer_handlers(self.settings), self.clock, context=self.contexts)

    async def send(self, data: Message, actor: str, subject: str) -> Envelope:
        command = new_envelope(data, subject=subject, actor=actor, source="tests")
        async with self.runtime.new_uow() as uow:
            await self.dispatcher.dispatch(command, uow)
            await uow.commit()
        return command

    async def fire(self) -> int:
        return await self.runner().fire_due()

    async def seed_active_contract(self, contract_id: str, client_id: str, freelancer_id: str) -> None:
        contract = Contract(contract_id, client_id, freelancer_id, "Logo", "USD", "first_milestone", domain.ACTIVE,
                            created_at=self.clock.now(), is_new=True)
        contract.milestones = [Milestone(f"{contract_id}-m1", "Sketches", 10_000, 0, status=domain.FUNDED,
                                         charge_id=f"{contract_id}-charge")]
        async with self.runtime.new_uow() as uow:
            await ContractRepository(uow.session).save(contract, "seeded", self.clock.now())
            await uow.commit()

    async def milestone(self, contract_id: str) -> Milestone:
        async with self.runtime.session_factory() as session:
            return (await ContractRepository(session).get(contract_id, lock=False)).milestones[0]

    async def published(self, subject: str) -> list[tuple[str, str]]:
        """(type, actor) of every message this subject's commits put in the outbox, in order."""
        outbox = self.runtime.tables["outbox"]
        async with self.runtime.session_factory() as session:
            rows = await session.execute(select(outbox.c.type, outbox.c.payload).where(outbox.c.key == subject)
                                         .order_by(outbox.c.seq))
            return [(t, Envelope.model_validate_json(p).actor) for t, p in rows]

    async def types(self, subject: str) -> list[str]:
        return [t for t, _ in await self.published(subject)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scratch_database(infra) -> str:
    name = f"{os.environ.get('TEST_DB_PREFIX', 't_')}timers_clock"
    await recreate_databases(infra.postgres_url, [name])
    url = infra.database_url(name)
    runtime = build_runtime(definition, ContractsSettings(database_url=url, http_port=0))
    async with runtime.engine.begin() as conn:
        await conn.run_sync(definition.metadata.create_all)
    await runtime.engine.dispose()
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def harness(scratch_database: str):
    """A fresh clock at noon and a clean slate: the previous test's timers and rows are gone."""
    h = Harness(scratch_database, FrozenClock(NOON))
    async with h.runtime.engine.begin() as conn:
        for table in reversed(definition.metadata.sorted_tables):
            await conn.execute(table.delete())
    await h.send(RegisterAccount(account_id="client-1", role="client", name="Cleo", email="c@example.test"),
                 "admin:tests", "client-1")
    await h.send(RegisterAccount(account_id="free-1", role="freelancer", name="Fred", email="f@example.test"),
                 "admin:tests", "free-1")
    await h.seed_active_contract("c-1", "client-1", "free-1")
    yield h
    await h.runtime.engine.dispose()


async def submit(h: Harness, contract_id: str = "c-1") -> Envelope:
    return await h.send(SubmitWork(contract_id=contract_id, milestone_id=f"{contract_id}-m1", message="done"),
                        "free-1", contract_id)


@pytest.mark.integration
async def test_the_reminder_and_the_auto_release_fire_at_their_time_and_once(harness: Harness):
    await submit(harness)
    assert await harness.fire() == 0
    harness.clock.advance(REVIEW - REMINDER - timedelta(seconds=1))
    assert await harness.fire() == 0
    harness.clock.advance(timedelta(seconds=1))
    assert await harness.fire() == 1
    assert (await harness.types("c-1"))[-1] == "ReviewPeriodEndingSoon"
    harness.clock.advance(REMINDER - timedelta(seconds=1))
    assert await harness.fire() == 0
    assert (await harness.milestone("c-1")).status == domain.SUBMITTED
    harness.clock.advance(timedelta(seconds=1))
    assert await harness.fire() == 1
    assert (await harness.milestone("c-1")).status == domain.RELEASING
    harness.clock.advance(timedelta(days=30))
    assert await harness.fire() == 0
    published = await harness.published("c-1")
    assert [t for t, _ in published].count("MilestoneAutoReleased") == 1
    assert [t for t, _ in published].count("ReleaseEscrow") == 1
    assert ("MilestoneAutoReleased", "system") in published


@pytest.mark.integration
async def test_a_change_request_cancels_the_timers_and_a_resubmission_starts_a_new_review_period(harness: Harness):
    await submit(harness)
    harness.clock.advance(timedelta(days=5))
    await harness.send(RequestChanges(contract_id="c-1", milestone_id="c-1-m1", message="bigger logo"),
                       "client-1", "c-1")
    harness.clock.advance(REVIEW * 2)
    assert await harness.fire() == 0
    assert (await harness.milestone("c-1")).status == domain.CHANGES_REQUESTED
    resubmitted_at = harness.clock.now()
    await submit(harness)
    assert (await harness.milestone("c-1")).review_due_at == resubmitted_at + REVIEW
    harness.clock.advance(REVIEW - timedelta(seconds=1))
    assert await harness.fire() == 1  # the new reminder only
    assert (await harness.milestone("c-1")).status == domain.SUBMITTED
    harness.clock.advance(timedelta(seconds=1))
    assert await harness.fire() == 1
    assert (await harness.milestone("c-1")).status == domain.RELEASING
    assert (await harness.types("c-1")).count("ReviewPeriodEndingSoon") == 1


@pytest.mark.integration
async def test_an_approval_before_the_deadline_leaves_nothing_for_the_timer(harness: Harness):
    await submit(harness)
    harness.clock.advance(timedelta(days=1))
    await harness.send(ApproveMilestone(contract_id="c-1", milestone_id="c-1-m1"), "client-1", "c-1")
    harness.clock.advance(REVIEW)
    assert await harness.fire() == 0
    types = await harness.types("c-1")
    assert types.count("MilestoneApproved") == 1 and "MilestoneAutoReleased" not in types
    assert types.count("ReleaseEscrow") == 1


@pytest.mark.integration
async def test_two_instances_firing_at_once_release_each_milestone_exactly_once(harness: Harness):
    for i in range(2, 22):
        await harness.seed_active_contract(f"c-{i}", "client-1", "free-1")
        await submit(harness, f"c-{i}")
    harness.clock.advance(REVIEW)
    runners = [harness.runner() for _ in range(2)]
    fired = await asyncio.gather(*(r.fire_due() for r in runners for _ in range(3)))
    assert sum(fired) == 40  # 20 reminders and 20 auto-releases, each once
    for i in range(2, 22):
        assert (await harness.types(f"c-{i}")).count("MilestoneAutoReleased") == 1


@pytest.mark.integration
async def test_a_timer_whose_transaction_dies_before_commit_stays_due_and_fires_later(harness: Harness):
    await submit(harness)
    harness.clock.advance(REVIEW)
    timers = harness.runtime.tables["timers"]
    async with harness.runtime.new_uow() as doomed:  # took the rows, then the process died: no commit
        taken = (await doomed.session.execute(select(timers).where(timers.c.fired_at.is_(None))
                                              .with_for_update(skip_locked=True))).all()
        assert len(taken) == 2
        assert await harness.fire() == 0  # locked by the dying instance: skipped, not fired twice
    assert await harness.fire() == 2
    assert (await harness.types("c-1")).count("MilestoneAutoReleased") == 1


@pytest.mark.integration
async def test_a_change_request_does_not_wait_for_a_timer_that_is_firing_and_that_timer_then_does_nothing(
        harness: Harness):
    await submit(harness)
    harness.clock.advance(REVIEW)
    timers = harness.runtime.tables["timers"]
    async with harness.runtime.new_uow() as firing:  # a runner has taken the due timers, not yet the contract
        await firing.session.execute(select(timers).where(timers.c.fired_at.is_(None)).with_for_update())
        await asyncio.wait_for(harness.send(RequestChanges(contract_id="c-1", milestone_id="c-1-m1", message="no"),
                                            "client-1", "c-1"), timeout=10)
    assert await harness.fire() == 2  # both were left to fire, and both find nothing to do
    assert (await harness.milestone("c-1")).status == domain.CHANGES_REQUESTED
    assert "MilestoneAutoReleased" not in await harness.types("c-1")
    assert "ReviewPeriodEndingSoon" not in await harness.types("c-1")


@pytest.mark.integration
async def test_silence_during_the_refund_window_accepts_the_refund_on_the_freelancers_behalf(harness: Harness):
    await submit(harness)
    harness.clock.advance(timedelta(days=1))
    await harness.send(CancelContract(contract_id="c-1", reason="no longer needed"), "client-1", "c-1")
    assert (await harness.milestone("c-1")).status == domain.REFUND_REQUESTED
    harness.clock.advance(WINDOW - timedelta(seconds=1))
    assert await harness.fire() == 0
    harness.clock.advance(timedelta(seconds=1))
    assert await harness.fire() == 1
    assert (await harness.milestone("c-1")).status == domain.REFUNDING
    published = await harness.published("c-1")
    assert ("RefundAccepted", "system") in published
    assert [t for t, _ in published][-1] == "RefundEscrow"
    harness.clock.advance(REVIEW)
    assert await harness.fire() == 0  # the review's reminder and auto-release were cancelled with it
    assert "MilestoneAutoReleased" not in [t for t, _ in await harness.published("c-1")]


@pytest.mark.integration
async def test_the_daily_sweep_marks_long_idle_accounts_inactive_once(harness: Harness):
    async with harness.runtime.new_uow() as uow:
        await uow.session.execute(update(accounts).where(accounts.c.account_id == "client-1")
                                  .values(last_activity_at=NOON - timedelta(days=300)))
        await schedule_next_sweep(uow, harness.settings)
        await uow.commit()
    harness.clock.advance(timedelta(days=1))  # past the next midnight: the sweep runs, nobody is idle enough
    assert await harness.fire() == 1
    assert await harness.types("client-1") == ["AccountRegistered"]
    harness.clock.advance(timedelta(days=65))  # client-1 idle 365 days and more; free-1 registered 66 days ago
    fired = await asyncio.gather(harness.fire(), harness.fire())
    assert sum(fired) == 1  # one sweep row per day, past days' rows were each fired once
    assert await harness.types("client-1") == ["AccountRegistered", "AccountMarkedInactive"]
    assert await harness.types("free-1") == ["AccountRegistered"]
    timers = harness.runtime.tables["timers"]
    async with harness.runtime.session_factory() as session:
        pending = (await session.execute(select(timers.c.due_at).where(
            timers.c.kind == INACTIVITY_SWEEP, timers.c.fired_at.is_(None)))).scalars().all()
    assert pending == [datetime(2027, 2, 1, tzinfo=timezone.utc)]  # the next midnight after the sweep


async def disputed(h: Harness) -> None:
    await submit(h)
    await h.send(CancelContract(contract_id="c-1", reason="no longer needed"), "client-1", "c-1")
    await h.send(RespondToRefundRequest(contract_id="c-1", milestone_id="c-1-m1", accept=False), "free-1", "c-1")
    assert (await h.milestone("c-1")).status == domain.DISPUTED


async def open_disputes(h: Harness) -> list:
    async with h.runtime.session_factory() as session:
        return await DisputeRepository(session).page("open", None, 10)


@pytest.mark.integration
async def test_a_dispute_still_open_after_the_resolve_period_is_flagged_overdue_once_and_no_money_moves(
        harness: Harness):
    await disputed(harness)
    harness.clock.advance(timedelta(days=30) - timedelta(seconds=1))
    assert await harness.fire() == 0
    assert [d.overdue(harness.clock.now()) for d in await open_disputes(harness)] == [False]
    harness.clock.advance(timedelta(seconds=1))
    fired = await asyncio.gather(harness.fire(), harness.fire())
    assert sum(fired) == 1
    published = await harness.published("c-1")
    assert published[-1] == ("DisputeOverdue", "system")
    assert [t for t, _ in published].count("DisputeOverdue") == 1
    assert (await harness.milestone("c-1")).status == domain.DISPUTED  # flagged, still held
    [dispute] = await open_disputes(harness)
    assert dispute.overdue_at == harness.clock.now() and dispute.overdue(harness.clock.now())


@pytest.mark.integration
async def test_a_dispute_resolved_in_time_is_never_flagged_and_leaves_the_open_queue(harness: Harness):
    await disputed(harness)
    harness.clock.advance(timedelta(days=3))
    await harness.send(ResolveDispute(contract_id="c-1", milestone_id="c-1-m1", release_amount=4_000,
                                      refund_amount=6_000), "admin:ops", "c-1")
    assert await open_disputes(harness) == []
    harness.clock.advance(timedelta(days=30))
    assert await harness.fire() == 0
    assert "DisputeOverdue" not in await harness.types("c-1")
