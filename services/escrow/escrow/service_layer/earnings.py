"""The earnings security period: a release or bonus is credited to the freelancer's pending account, and a
durable timer moves it to the available account `EARNINGS_PENDING_FOR` later (actor `system`)."""

from platform_schemas.events.escrow import EarningAvailable

from ..domain import earnings as rules
from ..domain import ledger
from ..domain.wire import wire
from .context import Context


async def hold_until_available(ctx: Context, new: list[rules.Earning]) -> None:
    """Record the earnings just credited to pending and set the one timer that makes them available."""
    if not new:
        return
    await ctx.earnings.add(new)
    await ctx.uow.schedule(rules.timer_id(new), rules.EARNINGS_AVAILABLE_TIMER, new[0].contract_id, new[0].available_at,
                       {"earnings": [[e.kind, e.earning_id] for e in new]})


async def make_available(payload: dict, ctx: Context) -> None:
    """The timer: what is left of each earning moves pending -> available, one ledger transaction each."""
    repo, book = ctx.earnings, ctx.ledger
    keys = [tuple(k) for k in payload["earnings"]] if "earnings" in payload else \
        await repo.kinds_of(payload["earning_ids"])  # a timer set before earnings were keyed by kind
    for earning, left in await repo.still_pending(keys):
        tx = ledger.TransactionId(ledger.AVAILABLE, rules.available_transaction(earning))
        postings = ledger.make_available(tx, earning.freelancer_id, left, earning.currency) if left else []
        if postings:
            await book.append(tx, earning.contract_id, earning.milestone_id, postings)
        await repo.mark_available(earning, ctx.now)
        if postings:
            ctx.event(EarningAvailable(
                earning_id=earning.earning_id, contract_id=earning.contract_id, milestone_id=earning.milestone_id,
                bonus_id=earning.bonus_id, freelancer_id=earning.freelancer_id, amount=left,
                currency=earning.currency, available_at=earning.available_at,
                postings=wire(postings)), earning.contract_id)


def timer_handlers() -> dict:
    return {rules.EARNINGS_AVAILABLE_TIMER: make_available}

