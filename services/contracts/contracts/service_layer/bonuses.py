"""GiveBonus (recorded now, charged by billing's daily batch) and the batch's word on each bonus."""

from platform_runtime.errors import Rejected
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope
from platform_schemas.commands.contracts import GiveBonus
from platform_schemas.events.billing import BonusFailed, BonusPaid
from platform_schemas.events.contracts import BonusGiven

from ..adapters.bonus_repository import BonusRepository
from ..domain import bonuses
from .context import Context


async def give_bonus(cmd: GiveBonus, envelope: Envelope, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_client(envelope.actor)
    client = await ctx.account(contract.client_id, lock=True)
    client.ensure_may_start_activity()
    bonus = bonuses.give(contract, envelope.actor, cmd.bonus_id, cmd.amount, cmd.note, ctx.now, ctx.settings.limits,
                         ctx.settings.bonus_window_after_end)
    if not await BonusRepository(ctx.uow.session).add(bonus):
        raise Rejected("already_exists", f"bonus id {cmd.bonus_id} is already used")
    client.touch(ctx.now)
    await ctx.accounts.save(client)
    ctx.event(BonusGiven(contract_id=bonus.contract_id, bonus_id=bonus.bonus_id, client_id=bonus.client_id,
                         freelancer_id=bonus.freelancer_id, amount=bonus.amount, currency=bonus.currency,
                         note=bonus.note, business_date=bonus.business_date, given_at=bonus.given_at),
              contract.contract_id)
    await ctx.complete(envelope.id, "BonusGiven")


async def on_bonus_paid(event: BonusPaid, envelope: Envelope, uow: UnitOfWork) -> None:
    await BonusRepository(uow.session).settle(event.bonus_id, bonuses.PAID, None, uow.clock.now())


async def on_bonus_failed(event: BonusFailed, envelope: Envelope, uow: UnitOfWork) -> None:
    await BonusRepository(uow.session).settle(event.bonus_id, bonuses.FAILED, event.reason_code, uow.clock.now())


EVENT_HANDLERS = {"BonusPaid": on_bonus_paid, "BonusFailed": on_bonus_failed}
