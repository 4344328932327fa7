"""The daily bonus batch saga's messages: bonuses learnt, batches started (command or timer), credits settled.

    collect -> BonusBatchStarted -> charge each client once per currency (gateway)
            -> charged: escrow PostBonuses | BonusesPosted -> BonusPaid (+ history)
            -> declined: BonusFailed
            -> BonusBatchCompleted (to every command that asked for the day)

The work itself runs in chunks outside the consumer (bonus_batch_runner.py); the handlers here only
record what arrived and start or answer a batch.
"""

from dataclasses import asdict, dataclass
from datetime import date, timedelta

from platform_runtime.unit_of_work import Cause, UnitOfWork
from platform_schemas.commands.billing import RunBonusBatch
from platform_schemas.events.billing import BonusBatchCompleted, BonusPaid, TransactionRecorded
from platform_schemas.events.contracts import BonusGiven
from platform_schemas.events.escrow import BonusesPosted
from platform_schemas.topics import BILLING_EVENTS

from ..adapters.bonus_repository import BonusRepository
from ..domain import bonus_batch as batches
from ..domain.bonus_batch_states import BatchStatus
from .context import Context

BONUS_BATCH_TIMER = "bonus_batch"


@dataclass(frozen=True)
class Waiter:
    """Someone who asked for a batch and is told BonusBatchCompleted when it ends."""

    command_id: str | None
    correlation_id: str
    actor: str


# -- bonuses, from contracts ---------------------------------------------------------------------
async def on_bonus_given(event: BonusGiven, ctx: Context) -> None:
    await ctx.bonuses.add_bonus(
        bonus_id=event.bonus_id, contract_id=event.contract_id, client_id=event.client_id,
        freelancer_id=event.freelancer_id, amount=event.amount, currency=event.currency,
        business_date=event.business_date, given_at=event.given_at)


# -- starting a batch ----------------------------------------------------------------------------
async def run_bonus_batch(cmd: RunBonusBatch, ctx: Context) -> None:
    batches.ensure_may_run(ctx.actor, cmd.business_date, ctx.now)
    envelope = ctx.envelope
    await start_batch(ctx.uow, cmd.business_date, Waiter(envelope.id, envelope.correlationid or envelope.id,
                                                         envelope.actor))


async def start_batch(uow: UnitOfWork, business_date: date, waiter: Waiter) -> None:
    """A new batch starts collecting; a running one adds the waiter; a finished one answers at once, unchanged."""
    repo = BonusRepository(uow.session)
    now = uow.clock.now()
    if await repo.add_batch(business_date=business_date, status=BatchStatus.COLLECTING,
                            cutoff=batches.cutoff(business_date, now), correlation_id=waiter.correlation_id,
                            actor=waiter.actor, started_by=uow.cause.message_id, waiters=[asdict(waiter)],
                            started_at=now):
        return
    batch = await repo.batch(business_date, lock=True)
    if batch["status"] == BatchStatus.COMPLETED:
        await announce_completed(uow, batch, [waiter])
    elif asdict(waiter) not in batch["waiters"]:
        await repo.update_batch(business_date, waiters=[*batch["waiters"], asdict(waiter)])


async def announce_completed(uow: UnitOfWork, batch: dict, waiters: list[Waiter]) -> None:
    """BonusBatchCompleted, with the batch's stored figures, to each waiter under its own correlation id."""
    business_date = batch["business_date"]
    figures = {k: batch[k] for k in ("bonuses", "paid", "failed", "totals", "failures")}
    # A batch made before the list was bounded may hold more: the event carries the first ones, and the count.
    figures["failures"] = (figures["failures"] or [])[:batches.MAX_FAILURES_LISTED]
    figures["failed_charges"] = await BonusRepository(uow.session).count_failed_charges(business_date)
    figures["past_due"] = batch.get("past_due") or 0
    previous = uow.cause
    for waiter in waiters:
        uow.cause = Cause(waiter.command_id or batch["started_by"], waiter.correlation_id, waiter.actor)
        uow.publish(BILLING_EVENTS, BonusBatchCompleted(business_date=business_date, **figures),
                    subject=batches.batch_subject(business_date))
        if waiter.command_id:
            await uow.set_command_status(waiter.command_id, "completed", {
                "type": "BonusBatchCompleted", "business_date": business_date.isoformat(),
                **{k: figures[k] for k in ("bonuses", "paid", "failed", "totals")}})
    uow.cause = previous


# -- the scheduled batch (a durable timer, one row per business day) -----------------------------
def timer_handlers(settings):
    async def scheduled_batch(payload: dict, ctx: Context) -> None:
        uow = ctx.uow
        if settings.bonus_batch_at is None:
            return  # the schedule was switched off since this timer was set
        business_date = date.fromisoformat(payload["business_date"])
        await start_batch(uow, business_date, Waiter(None, batches.scheduled_correlation_id(business_date), "system"))
        await schedule_batch(uow, business_date + timedelta(days=1), settings.bonus_batch_at)

    return {BONUS_BATCH_TIMER: scheduled_batch}


async def schedule_batch(uow: UnitOfWork, business_date: date, at) -> None:
    """The timer of one business day; its id is the day, so instances scheduling it at once make one row."""
    previous, uow.cause = uow.cause, Cause(f"schedule:{business_date}", batches.scheduled_correlation_id(business_date),
                                           "system")
    try:
        await uow.schedule(f"{BONUS_BATCH_TIMER}:{business_date.isoformat()}", BONUS_BATCH_TIMER,
                           batches.batch_subject(business_date), batches.scheduled_at(business_date, at),
                           {"business_date": business_date.isoformat()})
    finally:
        uow.cause = previous


async def schedule_next_batch(uow: UnitOfWork, at) -> None:
    """At start: the next day to come, or, after a pause (schedule off, or no instance running), the day after
    the last one scheduled, so that every day missed meanwhile runs too (each its timer, one after the other)."""
    if at is None:
        return
    last = await BonusRepository(uow.session).last_scheduled_batch(BONUS_BATCH_TIMER)
    await schedule_batch(uow, batches.first_to_schedule(uow.clock.now(), at, last), at)


# -- credits settled by escrow ---------------------------------------------------------------------
async def on_bonuses_posted(event: BonusesPosted, ctx: Context) -> None:
    """The freelancers are credited: the bonuses are paid, with both sides' history rows."""
    repo, uow = ctx.bonuses, ctx.uow
    now = ctx.now
    paid = await repo.mark_paid(event.bonus_ids, now)
    rows = [row for stored, bonus in paid for row in batches.history_rows(bonus, stored["charge_id"], event.available_at)]
    recorded = await repo.add_history(rows, now)
    for stored, bonus in paid:
        uow.publish(BILLING_EVENTS, BonusPaid(
            business_date=stored["batch_date"], bonus_id=bonus.bonus_id, contract_id=bonus.contract_id,
            client_id=bonus.client_id, freelancer_id=bonus.freelancer_id, amount=bonus.amount,
            currency=bonus.currency, charge_id=stored["charge_id"]), subject=bonus.contract_id)
    for row in rows:
        if row.transaction_id in recorded:
            uow.publish(BILLING_EVENTS, TransactionRecorded(occurred_at=now, **row.__dict__),
                        subject=row.contract_id or row.account_id)


COMMANDS = {RunBonusBatch: run_bonus_batch}
CONTRACTS_EVENT_HANDLERS = {BonusGiven: on_bonus_given}
ESCROW_EVENT_HANDLERS = {BonusesPosted: on_bonuses_posted}
