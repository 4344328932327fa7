"""GiveBonus (recorded now, charged by billing's daily batch) and the batch's word on each bonus."""

from datetime import timezone

from platform_runtime.errors import Rejected
from platform_runtime.logging import get_logger
from platform_schemas.commands.contracts import GiveBonus
from platform_schemas.events.billing import BonusFailed, BonusPaid, PastDueBalanceChanged
from platform_schemas.events.contracts import BonusGiven
from platform_schemas.events.escrow import EarningAvailable

from ..domain import bonuses
from .context import Context

log = get_logger(__name__)


async def give_bonus(cmd: GiveBonus, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_client(ctx.actor)
    client = await ctx.account(contract.client_id, lock=True)
    client.ensure_may_start_activity()
    client.ensure_nothing_past_due()
    # The client's row is locked above, so two bonuses of one client are counted one after the other.
    given_today = await ctx.bonuses.given_on(contract.client_id, contract.currency,
                                             ctx.now.astimezone(timezone.utc).date())
    bonus = bonuses.give(contract, ctx.actor, cmd.bonus_id, cmd.amount, cmd.note, ctx.now, ctx.settings.limits,
                         ctx.settings.bonus_window_after_end, given_today)
    if not await ctx.bonuses.add(bonus):
        raise Rejected("id_taken", f"bonus id {cmd.bonus_id} is already used")
    await ctx.record_activity(bonus.client_id, bonus.freelancer_id)
    ctx.event(BonusGiven(contract_id=bonus.contract_id, bonus_id=bonus.bonus_id, client_id=bonus.client_id,
                         freelancer_id=bonus.freelancer_id, amount=bonus.amount, currency=bonus.currency,
                         note=bonus.note, business_date=bonus.business_date, given_at=bonus.given_at),
              contract.contract_id)
    await ctx.complete(ctx.message_id, "BonusGiven")


async def on_bonus_paid(event: BonusPaid, ctx: Context) -> None:
    await ctx.bonuses.settle(event.bonus_id, bonuses.PAID, None, ctx.now)
    await ctx.record_activity(event.client_id, event.freelancer_id)  # a bonus paid and an earning


async def on_bonus_failed(event: BonusFailed, ctx: Context) -> None:
    await ctx.bonuses.settle(event.bonus_id, bonuses.FAILED, event.reason_code, ctx.now)


async def on_earning_available(event: EarningAvailable, ctx: Context) -> None:
    await ctx.record_activity(event.freelancer_id)  # earnings count as activity, pending -> available too


async def on_past_due_changed(event: PastDueBalanceChanged, ctx: Context) -> None:
    """Billing's past-due balance of a client: new offers and bonuses are refused while it is above 0."""
    client = await ctx.accounts.get(event.client_id, lock=True)
    if client is None:
        return
    if client.owe(event.currency, event.amount, event.version):
        await ctx.accounts.save(client)
    else:  # an older word arriving after a newer one: the newer stands
        log.info("past_due_balance_stale_ignored", client_id=event.client_id, currency=event.currency,
                 amount=event.amount, version=event.version)


EVENT_HANDLERS = {BonusPaid: on_bonus_paid, BonusFailed: on_bonus_failed, EarningAvailable: on_earning_available,
                  PastDueBalanceChanged: on_past_due_changed}
