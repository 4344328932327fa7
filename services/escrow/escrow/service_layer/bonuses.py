"""Escrow's bonus postings: gateway -> client account -> freelancer account, one ledger transaction per bonus.

The bonus id is the ledger transaction id, so a bonus is credited once however often it is asked for.
"""

from platform_schemas import Posting
from platform_schemas.commands.saga import BonusToPost, PostBonus, PostBonuses
from platform_schemas.events.escrow import BonusesPosted, BonusPosted

from ..domain import earnings, ledger
from .context import Context
from .earnings import hold_until_available


async def post_bonuses(cmd: PostBonuses, ctx: Context) -> None:
    """Billing's bonus batch, once the clients are charged: credit each freelancer, then reply for them all."""
    available_at = await _post(ctx, cmd.bonuses)
    ctx.event(BonusesPosted(business_date=cmd.business_date, bonus_ids=[b.bonus_id for b in cmd.bonuses],
                            available_at=available_at), ctx.envelope.subject)


async def post_bonus(cmd: PostBonus, ctx: Context) -> None:
    """One bonus on its own (BonusPosted is its reply)."""
    await _post(ctx, [BonusToPost(**cmd.model_dump())])


async def _post(ctx: Context, bonuses: list[BonusToPost]):
    """Credits the bonuses not yet posted to the freelancers' pending accounts; returns when they become
    available (a re-sent request: when the first posting of them does, near enough for the reply)."""
    book = ctx.bonus_ledger
    posted = await book.already_posted([b.bonus_id for b in bonuses])
    fresh = [b for b in bonuses if b.bonus_id not in posted]
    transactions = [(b.bonus_id, b.contract_id, ledger.bonus(b.bonus_id, b.client_id, b.freelancer_id, b.amount,
                                                             b.currency)) for b in fresh]
    await book.append_all(transactions)
    credited = [earnings.released(b.bonus_id, "bonus", b.contract_id, b.freelancer_id, b.amount, b.currency, ctx.now,
                                  ctx.pending_for, bonus_id=b.bonus_id) for b in fresh]
    await hold_until_available(ctx, credited)
    for b, (_, _, postings), earning in zip(fresh, transactions, credited):
        ctx.event(BonusPosted(**b.model_dump(), postings=[Posting(**p.__dict__) for p in postings],
                              available_at=earning.available_at), b.contract_id)
    return credited[0].available_at if credited else await ctx.earnings.first_available_at([b.bonus_id for b in bonuses])


HANDLERS = {PostBonuses: post_bonuses, PostBonus: post_bonus}
