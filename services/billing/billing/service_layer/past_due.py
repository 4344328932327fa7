"""Past-due balances: a declined bonus charge is owed, retried by the next daily batches; each change of what
a client owes in a currency is told once (PastDueBalanceChanged), for contracts, escrow and notifications."""

from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas.events.billing import PastDueBalanceChanged
from platform_schemas.topics import BILLING_EVENTS

from ..adapters.bonus_repository import BonusRepository


async def refresh(uow: UnitOfWork, repo: BonusRepository, pairs: set[tuple[str, str]],
                  reasons: dict[tuple[str, str], tuple[str, str]] | None = None) -> None:
    """Recompute what these (client, currency) owe from their bonuses; record and announce what changed."""
    owed = await repo.owed(pairs)
    before = await repo.past_due_balances(pairs, lock=True)
    for client_id, currency in sorted(pairs):
        amount, until = owed.get((client_id, currency), (0, None))
        previous = before.get((client_id, currency), 0)
        if amount == previous:
            continue
        await repo.set_past_due_balance(client_id, currency, amount, until, uow.clock.now())
        reason_code, message = (reasons or {}).get((client_id, currency), (None, None))
        uow.publish(BILLING_EVENTS, PastDueBalanceChanged(
            client_id=client_id, currency=currency, amount=amount, previous_amount=previous, retry_until=until,
            reason_code=reason_code if amount > previous else None, message=message if amount > previous else None),
            subject=client_id)
