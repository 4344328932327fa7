"""Account commands: register, suspend, ask for and grant reactivation."""

from platform_runtime.errors import Rejected
from platform_schemas.actors import is_account_id
from platform_schemas.events.billing import ChargeFailed
from platform_schemas.commands.contracts import (
    ReactivateAccount, RegisterAccount, RequestReactivation, SuspendAccount,
)
from platform_schemas.events.contracts import (
    AccountReactivated, AccountRegistered, AccountSuspended, ReactivationRefused, ReactivationRequested,
)

from ..domain.accounts import ACTIVE, INACTIVE, SUSPENDED, Account
from .context import Context


def _admin(ctx: Context) -> None:
    if not ctx.actor.startswith("admin:"):
        raise Rejected("forbidden", f"{ctx.envelope.type} is for administrators (actor admin:<name>)")


async def register_account(cmd: RegisterAccount, ctx: Context) -> None:
    _admin(ctx)
    if not is_account_id(cmd.account_id):
        raise Rejected("invalid_data", f"{cmd.account_id!r} names a kind of actor (system, admin:<name>), "
                                       "not an account")
    account = Account(cmd.account_id, cmd.role, cmd.name, cmd.email, last_activity_at=ctx.now)
    if not await ctx.accounts.add(account):
        raise Rejected("already_exists", f"account {cmd.account_id} already exists")
    ctx.event(AccountRegistered(**cmd.model_dump()), cmd.account_id)
    await ctx.complete(ctx.message_id, "AccountRegistered")


async def suspend_account(cmd: SuspendAccount, ctx: Context) -> None:
    _admin(ctx)
    account = await ctx.account(cmd.account_id, lock=True)
    account.suspend(cmd.reason, cmd.appealable)
    await ctx.accounts.save(account)
    ctx.event(AccountSuspended(account_id=cmd.account_id, reason=cmd.reason, appealable=cmd.appealable),
              cmd.account_id)
    await ctx.complete(ctx.message_id, "AccountSuspended")


async def request_reactivation(cmd: RequestReactivation, ctx: Context) -> None:
    if ctx.actor != cmd.account_id:
        raise Rejected("forbidden", "only the account holder may ask for reactivation")
    account = await ctx.account(cmd.account_id, lock=True)
    if account.status == ACTIVE:
        raise Rejected("invalid_state", f"account {cmd.account_id} is already active")
    if account.status == INACTIVE:
        _reactivate(account, ctx)
        outcome = "AccountReactivated"
    elif account.appealable:
        account.ask_for_reactivation(ctx.now)
        ctx.event(ReactivationRequested(account_id=account.account_id), account.account_id)
        outcome = "ReactivationRequested"
    else:
        ctx.event(ReactivationRefused(
            account_id=account.account_id, reason_code="suspension_final",
            message=f"the suspension is final and cannot be appealed: {account.status_reason}"), account.account_id)
        outcome = "ReactivationRefused"
    await ctx.accounts.save(account)
    await ctx.complete(ctx.message_id, outcome)


async def reactivate_account(cmd: ReactivateAccount, ctx: Context) -> None:
    _admin(ctx)
    account = await ctx.account(cmd.account_id, lock=True)
    if account.status == ACTIVE:
        raise Rejected("invalid_state", f"account {cmd.account_id} is already active")
    _reactivate(account, ctx)
    await ctx.accounts.save(account)
    await ctx.complete(ctx.message_id, "AccountReactivated")


async def count_failed_charge(ctx: Context, event: ChargeFailed) -> None:
    """Any failed charge (a fund saga's or a bonus batch's) may be the one that suspends the client."""
    if event.consecutive_failures < ctx.settings.suspend_after_failed_charges:
        return  # most failures suspend nobody: no account lock for them
    account = await ctx.account(event.client_id, lock=True)
    reason = account.suspend_for_failed_charges(event.consecutive_failures, ctx.settings.suspend_after_failed_charges)
    if reason is None:
        return
    await ctx.accounts.save(account)
    ctx.event(AccountSuspended(account_id=account.account_id, reason=reason, appealable=True, automatic=True),
              account.account_id, actor="system")


def _reactivate(account: Account, ctx: Context) -> None:
    account.reactivate(ctx.now)
    ctx.event(AccountReactivated(account_id=account.account_id), account.account_id)
