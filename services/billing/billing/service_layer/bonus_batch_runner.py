"""The bonus batch's work, a background loop of short transactions in every billing instance.

A batch of 100,000 bonuses is never one transaction nor one message: each step takes a bounded
chunk, claims it (`FOR UPDATE SKIP LOCKED`, or the batch row's lock for the steps that must be
alone), does it and commits. Several instances share a batch; a crash loses at most the chunk in
flight, which the next pass (here or in another instance) does again:

    collect  pending bonuses given before the cutoff -> the batch, summed into per-client charges
    charge   pending charges -> the gateway (idempotency key per batch, client and currency); one given up
             unanswered is voided by its key (the gateway loop) before its bonuses may be charged again
    credit   charged bonuses -> PostBonuses to escrow;  fail  declined bonuses -> BonusFailed
    complete when every bonus is paid or failed -> BonusBatchCompleted
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from prometheus_client import Counter, Gauge

from platform_runtime.logging import get_logger
from platform_runtime.loops import poll_forever
from platform_runtime.unit_of_work import Cause, UnitOfWork
from platform_schemas.commands.saga import BonusToPost, PostBonuses
from platform_schemas.events.billing import BonusBatchStarted, BonusFailed, ChargeFailed
from platform_schemas.topics import BILLING_EVENTS, ESCROW_SAGA_COMMANDS

from ..adapters.bonus_repository import BonusRepository
from ..adapters.gateway_work_repository import GatewayWork
from ..domain import bonus_batch as batches
from ..domain.bonus_batch_states import (
    BATCH, CHARGE, SETTLED_BONUS, BatchEvent, BatchStatus, ChargeEvent, ChargeStatus, after,
)
from ..domain.failed_charges import counts_in_streak
from ..domain.gateway import PaymentGateway
from ..domain.gateway_work import (
    GATEWAY_UNAVAILABLE, RetryPolicy, Unanswered, Verdict, VoidStatus, charge_verdict,
)
from ..settings import BillingSettings
from . import past_due
from .bonus_batch import Waiter, announce_completed
from .bonus_progress import ProgressCounts
from .gateway_calls import call_gateway

log = get_logger(__name__)
BATCH_BONUSES = Gauge("bonus_batch_bonuses", "Bonuses the batch took", ["business_date"])
BATCH_PROCESSED = Gauge("bonus_batch_processed", "Bonuses of the batch paid or failed so far", ["business_date"])
BATCH_OPEN = Gauge("bonus_batch_open", "1 while the batch of this business date is not completed", ["business_date"])
CHARGES = Counter("bonus_batch_charges_total", "Bonus batch charges answered by the gateway in this process",
                  ["outcome"])


PROGRESS_EVERY = 2.0  # seconds at least between two counts of a running batch (more for a big one)


def _cause(batch: dict) -> Cause:
    return Cause(batch["started_by"], batch["correlation_id"], batch["actor"])


@dataclass
class BonusBatchRunner:
    new_uow: Callable[[], UnitOfWork]
    gateway: PaymentGateway
    settings: BillingSettings
    policy: RetryPolicy  # the gateway loop's: the same backoff, the charge's bound
    progress: ProgressCounts = field(default_factory=ProgressCounts)  # shared with GET /bonus-batches/{date}

    def __post_init__(self) -> None:
        self._gateway_slots = asyncio.Semaphore(self.settings.bonus_batch_gateway_concurrency)
        self._reported: dict[date, float] = {}  # business date -> when its progress was last logged (monotonic)

    async def run(self) -> None:
        """Two loops, each at its own pace: one collects, charges and completes; the other hands the charged
        bonuses to escrow and fails the declined ones. In one loop a chunk of charges waited for a chunk of
        credits and the reverse (measured: the gateway idle while credits were written, and back). A failed
        step loses nothing: the chunk's rows are still there for the next one."""
        idle = self.settings.bonus_batch_poll.total_seconds()
        await asyncio.gather(poll_forever(self.charge_step, idle, "bonus_batch_step"),
                             poll_forever(self.credit_step, idle, "bonus_batch_credit_step"))

    async def charge_step(self) -> bool:
        """One chunk of each open batch's collection or charges; False when there was nothing to do."""
        busy, earlier_collecting = False, False
        for batch in await self._open_batches():
            if batch["status"] == BatchStatus.COLLECTING:
                # Oldest day first: a later batch takes only what earlier ones left.
                busy |= not earlier_collecting and await self.collect(batch)
                earlier_collecting = True
            else:
                busy |= await self.advance(batch)
        return busy

    async def credit_step(self) -> bool:
        """One chunk of each charging batch's credits and failures; False when there was nothing to do."""
        busy = False
        for batch in await self._open_batches():
            if batch["status"] != BatchStatus.COLLECTING:
                busy |= await self.credit_chunk(batch)
                busy |= await self.fail_chunk(batch)
        return busy

    async def _open_batches(self) -> list[dict]:
        async with self.new_uow() as uow:
            return await BonusRepository(uow.session).open_batches()

    # -- collect -------------------------------------------------------------------------------
    async def collect(self, batch: dict) -> bool:
        business_date = batch["business_date"]
        async with self.new_uow() as uow:
            repo = BonusRepository(uow.session)
            locked = await repo.batch(business_date, lock=True, skip_locked=True)
            if locked is None or locked["status"] != BatchStatus.COLLECTING:
                return False  # another instance is collecting it
            charge_date = batches.charge_date(locked["started_at"])
            sums = await repo.take_pending(business_date, locked["cutoff"], self.settings.bonus_batch_collect_chunk,
                                           charge_date)
            await repo.add_to_charges(business_date, batches.charge_totals(business_date, sums), charge_date)
            taken = sum(s.bonuses for s in sums)
            done = taken < self.settings.bonus_batch_collect_chunk
            if done:
                total = await repo.count_in_batch(business_date)
                await repo.update_batch(business_date, status=after(BATCH, locked["status"], BatchEvent.COLLECTED),
                                        bonuses=total)
                uow.cause = _cause(locked)
                uow.publish(BILLING_EVENTS, BonusBatchStarted(business_date=business_date, bonuses=total),
                            subject=batches.batch_subject(business_date))
            await uow.commit()
        if done:
            # The whole day's bonuses just changed batch and status: the planner learns it now, not when
            # autovacuum gets to it (see the migration of refresh_bonus_statistics).
            async with self.new_uow() as uow:
                await BonusRepository(uow.session).refresh_statistics()
                await uow.commit()
            BATCH_BONUSES.labels(business_date.isoformat()).set(total)
            BATCH_OPEN.labels(business_date.isoformat()).set(1)
            log.info("bonus_batch_started", business_date=business_date.isoformat(), bonuses=total,
                     cutoff=locked["cutoff"].isoformat())
        else:
            log.info("bonus_batch_collecting", business_date=business_date.isoformat(), taken=taken)
        return True

    # -- charge, credit, fail, complete --------------------------------------------------------
    async def advance(self, batch: dict) -> bool:
        busy = await self.charge_chunk(batch)
        await self.report_progress(batch["business_date"])
        return busy or await self.complete(batch)

    async def charge_chunk(self, batch: dict) -> bool:
        business_date = batch["business_date"]
        async with self.new_uow() as uow:
            repo = BonusRepository(uow.session)
            now = uow.clock.now()
            charges = await repo.claim_charges(business_date, now, self.settings.bonus_batch_charge_chunk)
            if not charges:
                return False
            methods = await repo.primary_methods({c["client_id"] for c in charges})
            answers = await asyncio.gather(*(self._charge(c, methods.get(c["client_id"]), uow) for c in charges))
            settled = [a for a in answers if a["status"] != ChargeStatus.PENDING]
            for charge, answer in zip(charges, answers):
                if answer["status"] == ChargeStatus.PENDING:
                    await repo.postpone_charge(charge["charge_id"], answer["retry_at"], answer["give_up_at"],
                                               answer["error"])
            for answer in settled:
                answer["now"] = uow.clock.now()
            given_up = [(c, a) for c, a in zip(charges, answers) if a["reason"] == GATEWAY_UNAVAILABLE]
            for _, answer in given_up:
                # A call whose answer was lost may have charged: the key is voided (the gateway loop, until the
                # gateway answers) before a later batch may charge these bonuses again under its own key.
                answer["void_status"] = VoidStatus.PENDING
            await repo.settle_charges(business_date, settled)
            if given_up:
                await GatewayWork(uow.session).wake_loop()
            failed = [(c, a) for c, a in zip(charges, answers) if a["status"] == ChargeStatus.FAILED]
            await repo.count_outcomes([a["client_id"] for a in settled if a["status"] == ChargeStatus.SUCCEEDED],
                                      [a["client_id"] for _, a in failed if counts_in_streak(a["reason"])])
            streaks = await repo.streaks({a["client_id"] for _, a in failed})
            await self._announce_failed_charges(uow, batch, failed, streaks)
            # A retried past-due balance that is now paid is no longer owed.
            await past_due.refresh(uow, repo, {(a["client_id"], a["currency"]) for a in settled
                                               if a["status"] == "succeeded"}, paid_only=True)
            await uow.commit()
        for answer in answers:
            CHARGES.labels(answer["status"]).inc()
        for charge, answer in given_up:
            log.error("bonus_charge_given_up", charge_id=charge["charge_id"], business_date=business_date.isoformat(),
                      client_id=charge["client_id"], amount=charge["amount"], currency=charge["currency"],
                      bonuses=charge["bonuses"], message=answer["message"])
        return True

    @staticmethod
    async def _announce_failed_charges(uow: UnitOfWork, batch: dict, failed: list[tuple[dict, dict]],
                                       streaks: dict[str, int]) -> None:
        """A declined bonus charge is a failed charge like any other, caused by the batch."""
        uow.cause = _cause(batch)
        business_date = batch["business_date"]
        for charge, answer in failed:
            uow.publish(BILLING_EVENTS, ChargeFailed(
                charge_id=charge["charge_id"], saga_id=batches.batch_subject(business_date),
                client_id=charge["client_id"], amount=charge["amount"], currency=charge["currency"],
                purpose="bonus", reason_code=answer["reason"], message=answer["message"],
                consecutive_failures=streaks.get(charge["client_id"], 0), business_date=business_date,
                bonuses=charge["bonuses"], step_id=charge["charge_id"],
                retryable=answer["reason"] == GATEWAY_UNAVAILABLE), subject=charge["client_id"])

    async def _charge(self, charge: dict, method: tuple[str, str] | None, uow: UnitOfWork) -> dict:
        """One call for one charge, judged by the gateway policy: succeeded, failed, or pending (ask again later)."""
        answer = {"charge_id": charge["charge_id"], "client_id": charge["client_id"], "currency": charge["currency"],
                  "method": method[0] if method else None, "reference": None, "reason": None, "message": None}
        if method is None:
            return {**answer, "status": after(CHARGE, ChargeStatus.PENDING, ChargeEvent.REFUSED),
                    "reason": batches.NO_PRIMARY_METHOD,
                    "message": f"{charge['client_id']} has no primary billing method"}
        give_up_at = charge["give_up_at"] or uow.clock.now() + self.settings.gateway_charge_within
        async with self._gateway_slots:
            reply = await call_gateway("bonus_charge", lambda: self._call(charge, method[1]),
                                       self.settings.gateway_call_timeout.total_seconds())
        verdict = charge_verdict(reply, charge["attempts"] + 1, uow.clock.now(), give_up_at, self.policy)
        if not verdict.settled:
            # Outcome unknown: asked again later with the same idempotency key, never charged twice.
            return {**answer, "status": ChargeStatus.PENDING, "retry_at": verdict.retry_at, "give_up_at": give_up_at,
                    "error": reply.error if isinstance(reply, Unanswered) else ""}
        return {**answer, "status": after(CHARGE, ChargeStatus.PENDING, _charge_event(verdict)),
                "reference": verdict.reference, "reason": verdict.reason_code, "message": verdict.message}

    async def _call(self, charge: dict, token: str) -> str:
        charged = await self.gateway.charge(charge["idempotency_key"], token, charge["amount"], charge["currency"])
        return charged.reference

    async def credit_chunk(self, batch: dict) -> bool:
        """Charged bonuses -> escrow's ledger, many per PostBonuses; at most a window of them awaiting escrow."""
        business_date = batch["business_date"]
        async with self.new_uow() as uow:
            repo = BonusRepository(uow.session)
            room = self.settings.bonus_batch_credits_in_flight - await repo.credits_in_flight(business_date)
            if room <= 0:
                return False  # escrow is behind: its answers free the window
            limit = min(room, self.settings.bonus_batch_credit_chunk)
            claimed = await repo.ask_credits(business_date, limit, uow.clock.now())
            if not claimed:
                # Charges whose bonuses were all asked already (by an instance from before the charges were
                # followed up) may have been marked just now: that is kept.
                await uow.commit()
                return False
            uow.cause = _cause(batch)
            for request in batches.credit_requests(claimed):
                uow.publish(ESCROW_SAGA_COMMANDS, PostBonuses(business_date=business_date, bonuses=[
                    BonusToPost(bonus_id=b.bonus_id, contract_id=b.contract_id, client_id=b.client_id,
                                freelancer_id=b.freelancer_id, amount=b.amount, currency=b.currency, charge_id=charge)
                    for charge, b in request]), subject=batches.batch_subject(business_date))
            await uow.commit()
        return True

    async def fail_chunk(self, batch: dict) -> bool:
        """Bonuses of a declined charge become a past-due balance, retried by the next daily batches; after the
        last retry they fail: the client is told why, the freelancer is not credited."""
        business_date = batch["business_date"]
        charge_date = batches.charge_date(batch["started_at"])
        async with self.new_uow() as uow:
            repo = BonusRepository(uow.session)
            charges, claimed = await repo.claim_declined(business_date, self.settings.bonus_batch_credit_chunk)
            if not charges:
                return False
            uow.cause = _cause(batch)
            past, failing = {}, []
            for stored, b in claimed:
                verdict, until = batches.after_decline(stored["past_due_until"], charge_date,
                                                       self.settings.past_due_retry_days)
                if verdict == "past_due":
                    past.setdefault(until, []).append(b.bonus_id)
                else:
                    failing.append((stored, b))
            for until, bonus_ids in past.items():
                await repo.set_past_due(bonus_ids, until)
            for stored, b in failing:
                uow.publish(BILLING_EVENTS, BonusFailed(
                    business_date=business_date, bonus_id=b.bonus_id, contract_id=b.contract_id,
                    client_id=b.client_id, freelancer_id=b.freelancer_id, amount=b.amount, currency=b.currency,
                    reason_code=stored["reason_code"], message=stored["message"]), subject=b.contract_id)
            if failing:
                await repo.set_failed([b.bonus_id for _, b in failing], uow.clock.now())
            await repo.follow_up_failed(business_date, charges, uow.clock.now())
            await past_due.refresh(uow, repo, {(b.client_id, b.currency) for _, b in claimed},
                                   {(b.client_id, b.currency): (stored["reason_code"], stored["message"])
                                    for stored, b in claimed})
            await uow.commit()
        return True

    async def complete(self, batch: dict) -> bool:
        business_date = batch["business_date"]
        async with self.new_uow() as uow:
            repo = BonusRepository(uow.session)
            # Asked after every idle step: a look for a charge or a credit still under way (an index probe) spares
            # the count of the whole batch (100,000 rows) until there is none.
            if await repo.any_unsettled(business_date):
                return False
            locked = await repo.batch(business_date, lock=True, skip_locked=True)
            if locked is None or locked["status"] != BatchStatus.CHARGING:
                return False
            counts = await repo.progress(business_date)
            if any(status not in SETTLED_BONUS for status in counts):
                return False  # charges or credits still under way
            summary = batches.Summary()
            async for charge in repo.charge_results(business_date):
                summary.add(charge)
            figures = summary.figures()
            # A declined charge's bonuses are failed or past due (some may have moved on to a later batch
            # since, for their retry: those are no longer counted here).
            declined = counts.get("failed", 0) + counts.get("past_due", 0)
            if figures["paid"] != counts.get("paid", 0) or figures["failed"] < declined:
                raise RuntimeError(f"batch {business_date}: charges say {figures}, bonuses say {counts}")
            figures.update(failed=counts.get("failed", 0), past_due=counts.get("past_due", 0))
            await repo.update_batch(business_date, status=after(BATCH, locked["status"], BatchEvent.SETTLED),
                                    completed_at=uow.clock.now(), **figures)
            await announce_completed(uow, {**locked, **figures}, [Waiter(**w) for w in locked["waiters"]])
            await uow.commit()
        self.progress.forget(business_date)
        self._reported.pop(business_date, None)
        day = business_date.isoformat()
        BATCH_PROCESSED.labels(day).set(figures["bonuses"])
        BATCH_BONUSES.labels(day).set(figures["bonuses"])
        BATCH_OPEN.labels(day).set(0)
        log.info("bonus_batch_completed", business_date=day,
                 **{k: figures[k] for k in ("bonuses", "paid", "failed", "totals")})
        return True

    async def _count(self, business_date: date) -> dict[str, int]:
        async with self.new_uow() as uow:
            return await BonusRepository(uow.session).progress(business_date)

    async def report_progress(self, business_date: date) -> None:
        """processed / total in the logs and the gauges every PROGRESS_EVERY seconds, from a count at most that old
        (made for an HTTP read meanwhile, or now), and less often for a batch whose count costs more
        (bonus_progress.py; every 0.2 s it cost a batch of 100,000 16 s of the database's time, measured)."""
        if time.monotonic() - self._reported.get(business_date, -PROGRESS_EVERY) < PROGRESS_EVERY:
            return
        counts, age = await self.progress.get(business_date, lambda: self._count(business_date),
                                              max_age=PROGRESS_EVERY)
        self._reported[business_date] = time.monotonic() - age
        total, processed = sum(counts.values()), sum(counts.get(s, 0) for s in SETTLED_BONUS)
        day = business_date.isoformat()
        BATCH_BONUSES.labels(day).set(total)
        BATCH_PROCESSED.labels(day).set(processed)
        log.info("bonus_batch_progress", business_date=day, processed=processed, total=total, by_status=counts)


def _charge_event(verdict: Verdict) -> ChargeEvent:
    if verdict.reason_code is None:
        return ChargeEvent.ANSWERED
    return ChargeEvent.GIVEN_UP if verdict.reason_code == GATEWAY_UNAVAILABLE else ChargeEvent.REFUSED
