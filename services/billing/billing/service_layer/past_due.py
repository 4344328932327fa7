"""Past-due balances: a declined bonus charge is owed, retried by the next daily batches; each change of what
a client owes in a currency is told once (PastDueBalanceChanged), for contracts, escrow and notifications."""

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas.events.billing import PastDueBalanceChanged
from platform_schemas.topics import BILLING_EVENTS

from ..adapters.bonus_repository import BonusRepository


async def refresh(uow: UnitOfWork, repo: BonusRepository, pairs: set[tuple[str, str]],
                  reasons: dict[tuple[str, str], tuple[str, str]] | None = None, paid_only: bool = False) -> None:
    """Recompute what these (client, currency) owe from their bonuses; record and announce what changed.

    The balances are locked before what is owed is read: a transaction changing the same balance waits here
    until the other commits, then reads its bonuses as they are (read committed: each statement sees what was
    committed before it began). Read first and locked after, two transactions would each compute from what
    they saw alone and the last to commit would write, and announce, a stale amount. Each change counts one
    more `version`, carried by the event: the consumers keep the highest and ignore an older one.

    `paid_only`: the caller only paid bonuses (a charge succeeded). Then a pair without a balance row is left
    alone: a bonus counts as owed only once a declined charge made it past due, and that transaction made the
    row (committed before any batch could take the bonus again), so such a pair owes nothing and the payment
    changes nothing. This spares a batch a row per client it charges."""
    before = await repo.lock_past_due_balances(pairs, uow.clock.now(), create=not paid_only)
    if paid_only:
        pairs = set(before)
    if not pairs:
        return
    owed = await repo.owed(pairs)
    for client_id, currency in sorted(pairs):
        amount, until = owed.get((client_id, currency), (0, None))
        previous, _ = before.get((client_id, currency), (0, 0))
        if amount == previous:
            continue
        version = await repo.set_past_due_balance(client_id, currency, amount, until, uow.clock.now())
        reason_code, message = (reasons or {}).get((client_id, currency), (None, None))
        uow.publish(BILLING_EVENTS, PastDueBalanceChanged(
            client_id=client_id, currency=currency, amount=amount, previous_amount=previous, retry_until=until,
            reason_code=reason_code if amount > previous else None, message=message if amount > previous else None,
            version=version), subject=client_id)
