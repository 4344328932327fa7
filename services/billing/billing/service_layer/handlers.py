"""Billing's handlers: billing-method commands, the charge/refund saga steps, history projections."""

from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from platform_runtime.errors import Rejected, TransientError
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope
from platform_schemas.commands.billing import AddBillingMethod, RemoveBillingMethod, SetPrimaryBillingMethod
from platform_schemas.commands.saga import ChargeClient, RefundCharge
from platform_schemas.events.billing import (
    BillingMethodAdded, BillingMethodRemoved, ChargeFailed, ChargeRefunded, ClientCharged,
    PrimaryBillingMethodChanged, TransactionRecorded,
)
from platform_schemas.events.contracts import AccountRegistered
from platform_schemas.events.escrow import EscrowReleased
from platform_schemas.topics import BILLING_EVENTS

from ..adapters.repository import BillingRepository
from ..domain import history
from ..domain.billing_methods import BillingMethod
from ..domain.failed_charges import NO_PRIMARY_METHOD, counts_in_streak
from ..domain.gateway import Declined, GatewayUnavailable, PaymentGateway
from .context import Context


def _own_account(envelope: Envelope, account_id: str) -> None:
    if envelope.actor != account_id:
        raise Rejected("forbidden", f"only {account_id} may change its billing methods")


async def add_billing_method(cmd: AddBillingMethod, ctx: Context) -> None:
    envelope, uow = ctx.envelope, ctx.uow
    _own_account(envelope, cmd.account_id)
    repo = BillingRepository(uow.session)
    if await repo.method_id_taken(cmd.billing_method_id):
        raise Rejected("already_exists", f"billing method id {cmd.billing_method_id} is already used")
    methods = await repo.methods_of(cmd.account_id)
    methods.add(BillingMethod(cmd.billing_method_id, cmd.kind, cmd.token), cmd.make_primary)
    await repo.save_methods(methods, uow.clock.now())
    uow.publish(BILLING_EVENTS, BillingMethodAdded(
        account_id=cmd.account_id, billing_method_id=cmd.billing_method_id, kind=cmd.kind,
        primary=methods.find(cmd.billing_method_id).primary), subject=cmd.account_id)
    await uow.set_command_status(envelope.id, "completed", {"type": "BillingMethodAdded"})


async def set_primary_billing_method(cmd: SetPrimaryBillingMethod, ctx: Context) -> None:
    envelope, uow = ctx.envelope, ctx.uow
    _own_account(envelope, cmd.account_id)
    repo = BillingRepository(uow.session)
    methods = await repo.methods_of(cmd.account_id)
    previous = methods.set_primary(cmd.billing_method_id)
    await repo.save_methods(methods, uow.clock.now())
    uow.publish(BILLING_EVENTS, PrimaryBillingMethodChanged(
        account_id=cmd.account_id, billing_method_id=cmd.billing_method_id,
        previous_billing_method_id=previous), subject=cmd.account_id)
    await uow.set_command_status(envelope.id, "completed", {"type": "PrimaryBillingMethodChanged"})


async def remove_billing_method(cmd: RemoveBillingMethod, ctx: Context) -> None:
    envelope, uow = ctx.envelope, ctx.uow
    _own_account(envelope, cmd.account_id)
    repo = BillingRepository(uow.session)
    methods = await repo.methods_of(cmd.account_id)
    methods.remove(cmd.billing_method_id)
    await repo.save_methods(methods, uow.clock.now())
    uow.publish(BILLING_EVENTS, BillingMethodRemoved(
        account_id=cmd.account_id, billing_method_id=cmd.billing_method_id), subject=cmd.account_id)
    await uow.set_command_status(envelope.id, "completed", {"type": "BillingMethodRemoved"})


async def record_history(uow: UnitOfWork, repo: BillingRepository, rows: list[history.HistoryRow]) -> None:
    now = uow.clock.now()
    for row in rows:
        if await repo.add_history(row, now):
            uow.publish(BILLING_EVENTS, TransactionRecorded(occurred_at=now, **row.__dict__),
                        subject=row.contract_id or row.account_id)


@dataclass
class SagaSteps:
    """Charge and refund through the gateway; a retried step reuses its idempotency key."""

    gateway: PaymentGateway
    attempts: int = 4
    backoff_seconds: float = 0.05

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(stop=stop_after_attempt(self.attempts), reraise=True,
                             retry=retry_if_exception_type(GatewayUnavailable),
                             wait=wait_exponential(multiplier=self.backoff_seconds, max=2))

    async def charge_client(self, cmd: ChargeClient, ctx: Context) -> None:
        envelope, uow = ctx.envelope, ctx.uow
        repo = BillingRepository(uow.session)
        if await repo.charge(cmd.charge_id):
            return
        primary = (await repo.methods_of(cmd.client_id)).primary()
        reason = None
        if primary is None:
            reason = (NO_PRIMARY_METHOD, f"{cmd.client_id} has no primary billing method")
        else:
            try:
                async for attempt in self._retrying():
                    with attempt:
                        charged = await self.gateway.charge(cmd.charge_id, primary.token, cmd.amount, cmd.currency)
            except Declined as declined:
                reason = (declined.reason_code, declined.message)
            except GatewayUnavailable as error:
                # Outcome unknown: leave the step undone; the consumer retries it later with the same key.
                raise TransientError(f"gateway unavailable for {cmd.charge_id}") from error
        if reason is None or counts_in_streak(reason[0]):
            streak = await repo.count_charge_outcome(cmd.client_id, succeeded=reason is None)
        else:
            streak = await repo.consecutive_failures(cmd.client_id)
        common = dict(charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id,
                      client_id=cmd.client_id, amount=cmd.amount, currency=cmd.currency, purpose=cmd.purpose,
                      created_at=uow.clock.now(), billing_method_id=primary.billing_method_id if primary else None)
        if reason:
            await repo.add_charge(status="failed", reason_code=reason[0], **common)
            uow.publish(BILLING_EVENTS, ChargeFailed(
                charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id, client_id=cmd.client_id,
                amount=cmd.amount, currency=cmd.currency, purpose=cmd.purpose, reason_code=reason[0],
                message=reason[1], consecutive_failures=streak), subject=cmd.contract_id)
            return
        await repo.add_charge(status="succeeded", gateway_reference=charged.reference, **common)
        if cmd.purpose == "fixed_price":
            await record_history(uow, repo, [history.fixed_price_charge(
                cmd.charge_id, cmd.client_id, cmd.contract_id, [m.milestone_id for m in cmd.milestones],
                cmd.amount, cmd.currency)])
        uow.publish(BILLING_EVENTS, ClientCharged(
            charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id, client_id=cmd.client_id,
            billing_method_id=primary.billing_method_id, amount=cmd.amount, currency=cmd.currency,
            purpose=cmd.purpose, milestones=cmd.milestones, gateway_reference=charged.reference),
            subject=cmd.contract_id)

    async def refund_charge(self, cmd: RefundCharge, ctx: Context) -> None:
        envelope, uow = ctx.envelope, ctx.uow
        repo = BillingRepository(uow.session)
        charge = await repo.charge(cmd.charge_id)
        if charge is None or charge["status"] != "succeeded":
            raise Rejected("not_found", f"no successful charge {cmd.charge_id} to refund")
        existing = await repo.refund(cmd.refund_id)
        if existing and existing["status"] == "refunded":
            return
        await repo.add_refund(refund_id=cmd.refund_id, charge_id=cmd.charge_id, saga_id=cmd.saga_id,
                              contract_id=cmd.contract_id, client_id=cmd.client_id, milestone_id=cmd.milestone_id,
                              amount=cmd.amount, currency=cmd.currency, status="refunding",
                              created_at=uow.clock.now())
        try:
            async for attempt in self._retrying():
                with attempt:
                    reference = await self.gateway.refund(cmd.refund_id, charge["gateway_reference"], cmd.amount)
        except GatewayUnavailable as error:
            # Never dropped: the step stays `refunding` and the consumer retries it with backoff.
            raise TransientError(f"refund {cmd.refund_id} still failing") from error
        await repo.update_refund(cmd.refund_id, status="refunded", gateway_reference=reference)
        await record_history(uow, repo, [history.refund(
            cmd.refund_id, cmd.client_id, cmd.contract_id, cmd.milestone_id, cmd.amount, cmd.currency)])
        uow.publish(BILLING_EVENTS, ChargeRefunded(
            refund_id=cmd.refund_id, charge_id=cmd.charge_id, saga_id=cmd.saga_id, contract_id=cmd.contract_id,
            client_id=cmd.client_id, billing_method_id=charge["billing_method_id"], amount=cmd.amount,
            currency=cmd.currency, milestone_id=cmd.milestone_id), subject=cmd.contract_id)


async def on_account_registered(event: AccountRegistered, ctx: Context) -> None:
    await BillingRepository(ctx.uow.session).learn_account(event.account_id, event.role, ctx.envelope.time)


async def on_escrow_released(event: EscrowReleased, ctx: Context) -> None:
    envelope, uow = ctx.envelope, ctx.uow
    await record_history(uow, BillingRepository(uow.session), history.release(
        event.release_id, event.client_id, event.freelancer_id, event.contract_id, event.milestone_id,
        event.amount, event.currency, event.available_at))


async def charge_client(cmd: ChargeClient, ctx: Context) -> None:
    await SagaSteps(ctx.gateway, attempts=ctx.settings.gateway_attempts).charge_client(cmd, ctx)


async def refund_charge(cmd: RefundCharge, ctx: Context) -> None:
    await SagaSteps(ctx.gateway, attempts=ctx.settings.gateway_attempts).refund_charge(cmd, ctx)


COMMANDS = {
    AddBillingMethod: add_billing_method,
    SetPrimaryBillingMethod: set_primary_billing_method,
    RemoveBillingMethod: remove_billing_method,
}
SAGA_STEPS = {ChargeClient: charge_client, RefundCharge: refund_charge}
ESCROW_EVENT_HANDLERS = {EscrowReleased: on_escrow_released}
CONTRACTS_EVENT_HANDLERS = {AccountRegistered: on_account_registered}
