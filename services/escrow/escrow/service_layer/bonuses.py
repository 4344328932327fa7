"""Escrow's bonus postings: gateway -> client account -> freelancer account, one ledger transaction per bonus.

The bonus id is the ledger transaction id (of kind `bonus`, its own namespace), so a bonus is credited once
however often it is asked for, and no bonus id can be mistaken for a saga step's transaction.
"""

from platform_schemas.commands.saga import BonusToPost, PostBonus, PostBonuses
from platform_schemas.events.escrow import BonusesPosted, BonusPosted

from ..adapters.ledger_repository import LedgerTransaction
from ..domain import earnings, ledger
from ..domain.wire import wire
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
    book = ctx.ledger
    asked = {b.bonus_id: b for b in bonuses}  # each bonus once
    transactions = [LedgerTransaction(tx, b.contract_id, None,
                                      ledger.bonus(tx, b.client_id, b.freelancer_id, b.amount, b.currency))
                    for b in asked.values() for tx in [ledger.TransactionId(ledger.BONUS, b.bonus_id)]]
    # Claimed in one statement: a bonus posted already (a re-sent request) is left out, and a concurrent
    # request for the same bonus waits for this one, then leaves it out too.
    transactions = await book.claim_all(transactions)
    fresh = [asked[t.tx.id] for t in transactions]
    await book.post(transactions)
    credited = [earnings.released(b.bonus_id, "bonus", b.contract_id, b.freelancer_id, b.amount, b.currency, ctx.now,
                                  ctx.pending_for, bonus_id=b.bonus_id) for b in fresh]
    await hold_until_available(ctx, credited)
    for b, t, earning in zip(fresh, transactions, credited):
        ctx.event(BonusPosted(**b.model_dump(), postings=wire(t.postings),
                              available_at=earning.available_at), b.contract_id)
    return credited[0].available_at if credited else await ctx.earnings.first_available_at(
        "bonus", [b.bonus_id for b in bonuses])


HANDLERS = {PostBonuses: post_bonuses, PostBonus: post_bonus}
