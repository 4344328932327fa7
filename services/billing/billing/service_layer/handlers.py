"""Billing's handlers: billing-method commands, the charge/refund saga steps, an operator's retry, history."""

from platform_runtime.errors import Rejected
from platform_runtime.logging import get_logger
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope
from platform_schemas.commands.billing import (
    AddBillingMethod, RemoveBillingMethod, RetryRefund, SetPrimaryBillingMethod,
)
from platform_schemas.commands.saga import ChargeClient, RefundCharge
from platform_schemas.events.billing import (
    BillingMethodAdded, BillingMethodRemoved, PrimaryBillingMethodChanged, RefundRetried,
)
from platform_schemas.events.contracts import AccountRegistered
from platform_schemas.events.escrow import EscrowReleased

from ..adapters import charges_together
from ..domain import history
from ..domain.billing_methods import BillingMethod
from ..domain.gateway_work import NO_PRIMARY_METHOD, NOT_FOUND, ChargeStatus, RefundStatus, Verdict
from . import charges
from .context import Context

log = get_logger(__name__)


def _own_account(ctx: Context, account_id: str) -> None:
    if ctx.actor != account_id:
        raise Rejected("forbidden", f"only {account_id} may change its billing methods")


async def add_billing_method(cmd: AddBillingMethod, ctx: Context) -> None:
    _own_account(ctx, cmd.account_id)
    repo = ctx.billing
    if await repo.method_id_taken(cmd.billing_method_id):
        raise Rejected("already_exists", f"billing method id {cmd.billing_method_id} is already used")
    methods = await repo.methods_of(cmd.account_id)
    methods.add(BillingMethod(cmd.billing_method_id, cmd.kind, cmd.token), cmd.make_primary)
    await repo.save_methods(methods, ctx.now)
    ctx.event(BillingMethodAdded(
        account_id=cmd.account_id, billing_method_id=cmd.billing_method_id, kind=cmd.kind,
        primary=methods.find(cmd.billing_method_id).primary), cmd.account_id)
    await ctx.complete(ctx.envelope.id, "BillingMethodAdded")


async def set_primary_billing_method(cmd: SetPrimaryBillingMethod, ctx: Context) -> None:
    _own_account(ctx, cmd.account_id)
    repo = ctx.billing
    methods = await repo.methods_of(cmd.account_id)
    previous = methods.set_primary(cmd.billing_method_id)
    await repo.save_methods(methods, ctx.now)
    ctx.event(PrimaryBillingMethodChanged(
        account_id=cmd.account_id, billing_method_id=cmd.billing_method_id,
        previous_billing_method_id=previous), cmd.account_id)
    await ctx.complete(ctx.envelope.id, "PrimaryBillingMethodChanged")


async def remove_billing_method(cmd: RemoveBillingMethod, ctx: Context) -> None:
    _own_account(ctx, cmd.account_id)
    repo = ctx.billing
    methods = await repo.methods_of(cmd.account_id)
    methods.remove(cmd.billing_method_id)
    await repo.save_methods(methods, ctx.now)
    ctx.event(BillingMethodRemoved(
        account_id=cmd.account_id, billing_method_id=cmd.billing_method_id), cmd.account_id)
    await ctx.complete(ctx.envelope.id, "BillingMethodRemoved")


# -- the saga steps: only recorded here; the gateway loop makes the call and answers ----------------
async def read_primary_methods_ahead(envelopes: list[Envelope], uow: UnitOfWork) -> None:
    """A batch's ChargeClient steps (two or more): their clients' primary billing methods in one statement, for
    each step's `record_charge` (adapters/charges_together.py). The ids are read before the data is validated,
    only to be looked up; a client missed here is looked up by its charge's own statement."""
    clients = [e.data.get("client_id") for e in envelopes if e.type == "ChargeClient"]
    if len(clients) > 1:
        uow.batch[charges_together.BATCH_KEY] = await charges_together.primary_methods(
            uow.session, sorted({c for c in clients if isinstance(c, str)}))


async def charge_client(cmd: ChargeClient, ctx: Context) -> None:
    charge = charges.new_charge(ctx, cmd)
    recorded, charge["billing_method_id"] = await ctx.work.record_charge(charge)
    if not recorded:
        return  # the step again (same id): its one reply is sent, or will be by the loop
    if charge["billing_method_id"] is None:
        await charges.settle_charge(ctx, charge, Verdict(
            ChargeStatus.FAILED, reason_code=NO_PRIMARY_METHOD,
            message=f"{cmd.client_id} has no primary billing method"), attempts=0)


async def refund_charge(cmd: RefundCharge, ctx: Context) -> None:
    charge = await ctx.work.charge(cmd.charge_id)
    if charge is None or charge["status"] != ChargeStatus.SUCCEEDED:
        charges.refund_failed(ctx, cmd.model_dump(exclude={"description"}), NOT_FOUND,
                              f"no successful charge {cmd.charge_id} to refund", retryable=False)
        return
    if await ctx.work.refund(cmd.refund_id):
        return  # the step again: refunded, pending (the loop answers) or waiting for an operator (answered)
    await charges.record_refund(ctx, cmd)
    await ctx.work.wake_loop()


async def retry_refund(cmd: RetryRefund, ctx: Context) -> None:
    """An operator tries a `needs_attention` refund again: back in the loop's queue, with a new bound."""
    if not ctx.actor.startswith("admin:"):
        raise Rejected("forbidden", "a refund is retried by an administrator (admin:<name>)")
    refund = await ctx.work.refund(cmd.refund_id, lock=True)
    if refund is None:
        raise Rejected("not_found", f"no refund {cmd.refund_id}")
    if refund["status"] != RefundStatus.NEEDS_ATTENTION:
        raise Rejected("invalid_state", f"refund {cmd.refund_id} is {refund['status']}, not needs_attention")
    now = ctx.now
    await ctx.work.update_refund(cmd.refund_id, status=RefundStatus.PENDING, next_attempt_at=now,
                                 give_up_at=None, reason_code=None, message=None)  # a new bound, from its next call
    await ctx.work.wake_loop()
    ctx.event(RefundRetried(**{k: refund[k] for k in RefundRetried.model_fields}), refund["contract_id"])
    await ctx.complete(ctx.envelope.id, "RefundRetried", refund_id=cmd.refund_id)
    log.info("refund_retried", refund_id=cmd.refund_id, saga_id=refund["saga_id"], operator=ctx.actor)


async def on_escrow_released(event: EscrowReleased, ctx: Context) -> None:
    await charges.record_history(ctx, history.release(
        event.release_id, event.client_id, event.freelancer_id, event.contract_id, event.milestone_id,
        event.amount, event.currency, event.available_at))


async def on_account_registered(event: AccountRegistered, ctx: Context) -> None:
    await ctx.billing.learn_account(event.account_id, event.role, ctx.envelope.time)


COMMANDS = {
    AddBillingMethod: add_billing_method,
    SetPrimaryBillingMethod: set_primary_billing_method,
    RemoveBillingMethod: remove_billing_method,
    RetryRefund: retry_refund,
}
SAGA_STEPS = {ChargeClient: charge_client, RefundCharge: refund_charge}
ESCROW_EVENT_HANDLERS = {EscrowReleased: on_escrow_released}
CONTRACTS_EVENT_HANDLERS = {AccountRegistered: on_account_registered}
