"""Escrow's bonus postings: gateway -> client account -> freelancer account, one ledger transaction per bonus.

The bonus id is the ledger transaction id, so a bonus is credited once however often it is asked for.
"""

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope, Posting
from platform_schemas.commands.saga import BonusToPost, PostBonus, PostBonuses
from platform_schemas.events.escrow import BonusesPosted, BonusPosted
from platform_schemas.topics import ESCROW_EVENTS

from ..adapters.bonus_ledger import BonusLedger
from ..domain import ledger


async def post_bonuses(cmd: PostBonuses, envelope: Envelope, uow: UnitOfWork) -> None:
    """Billing's bonus batch, once the clients are charged: credit each freelancer, then reply for them all."""
    await _post(uow, cmd.bonuses)
    uow.publish(ESCROW_EVENTS, BonusesPosted(business_date=cmd.business_date,
                                             bonus_ids=[b.bonus_id for b in cmd.bonuses]), subject=envelope.subject)


async def post_bonus(cmd: PostBonus, envelope: Envelope, uow: UnitOfWork) -> None:
    """One bonus on its own (BonusPosted is its reply)."""
    await _post(uow, [BonusToPost(**cmd.model_dump())])


async def _post(uow: UnitOfWork, bonuses: list[BonusToPost]) -> None:
    book = BonusLedger(uow.session)
    posted = await book.already_posted([b.bonus_id for b in bonuses])
    fresh = [b for b in bonuses if b.bonus_id not in posted]
    transactions = [(b.bonus_id, b.contract_id, ledger.bonus(b.bonus_id, b.client_id, b.freelancer_id, b.amount,
                                                             b.currency)) for b in fresh]
    await book.append_all(transactions)
    for b, (_, _, postings) in zip(fresh, transactions):
        uow.publish(ESCROW_EVENTS, BonusPosted(**b.model_dump(), postings=[Posting(**p.__dict__) for p in postings]),
                    subject=b.contract_id)


HANDLERS = {"PostBonuses": post_bonuses, "PostBonus": post_bonus}
