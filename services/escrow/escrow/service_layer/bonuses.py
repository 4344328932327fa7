"""Escrow's bonus postings: gateway -> client account -> freelancer account, one ledger transaction per bonus.

The bonus id is the ledger transaction id, so a bonus is credited once however often it is asked for.
"""

from datetime import timedelta
from functools import partial

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Posting
from platform_schemas.commands.saga import BonusToPost, PostBonus, PostBonuses
from platform_schemas.events.escrow import BonusesPosted, BonusPosted
from platform_schemas.topics import ESCROW_EVENTS

from ..adapters.bonus_ledger import BonusLedger
from ..adapters.earnings_repository import EarningsRepository
from ..domain import earnings, ledger
from .earnings import hold_until_available


async def post_bonuses(cmd: PostBonuses, envelope: Envelope, uow: UnitOfWork, *, pending_for: timedelta) -> None:
    """Billing's bonus batch, once the clients are charged: credit each freelancer, then reply for them all."""
    available_at = await _post(uow, cmd.bonuses, pending_for)
    uow.publish(ESCROW_EVENTS, BonusesPosted(business_date=cmd.business_date,
                                             bonus_ids=[b.bonus_id for b in cmd.bonuses], available_at=available_at),
                subject=envelope.subject)


async def post_bonus(cmd: PostBonus, envelope: Envelope, uow: UnitOfWork, *, pending_for: timedelta) -> None:
    """One bonus on its own (BonusPosted is its reply)."""
    await _post(uow, [BonusToPost(**cmd.model_dump())], pending_for)


async def _post(uow: UnitOfWork, bonuses: list[BonusToPost], pending_for: timedelta):
    """Credits the bonuses not yet posted to the freelancers' pending accounts; returns when they become
    available (a re-sent request: when the first posting of them does, near enough for the reply)."""
    book = BonusLedger(uow.session)
    posted = await book.already_posted([b.bonus_id for b in bonuses])
    fresh = [b for b in bonuses if b.bonus_id not in posted]
    transactions = [(b.bonus_id, b.contract_id, ledger.bonus(b.bonus_id, b.client_id, b.freelancer_id, b.amount,
                                                             b.currency)) for b in fresh]
    await book.append_all(transactions)
    now = uow.clock.now()
    credited = [earnings.released(b.bonus_id, "bonus", b.contract_id, b.freelancer_id, b.amount, b.currency, now,
                                  pending_for, bonus_id=b.bonus_id) for b in fresh]
    await hold_until_available(uow, credited)
    for b, (_, _, postings), earning in zip(fresh, transactions, credited):
        uow.publish(ESCROW_EVENTS, BonusPosted(**b.model_dump(), postings=[Posting(**p.__dict__) for p in postings],
                                               available_at=earning.available_at), subject=b.contract_id)
    return credited[0].available_at if credited else await EarningsRepository(uow.session).first_available_at([b.bonus_id for b in bonuses])


def handlers(pending_for: timedelta) -> dict:
    return {"PostBonuses": partial(post_bonuses, pending_for=pending_for),
            "PostBonus": partial(post_bonus, pending_for=pending_for)}
