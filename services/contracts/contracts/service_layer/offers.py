"""Offer commands: send (starts the fund saga), withdraw and decline (refund sagas), accept."""

from platform_runtime.errors import Rejected
from platform_runtime.unit_of_work import UnitOfWork
from platform_schemas import Envelope
from platform_schemas.commands.contracts import AcceptOffer, DeclineOffer, SendOffer, WithdrawOffer
from platform_schemas.events.contracts import ContractStarted

from ..adapters.repositories import AccountRepository
from ..domain.contracts import Contract, Milestone
from .context import PRELOADED_ACCOUNTS, Context
from .sagas.fund import fund_milestones
from .sagas.refund import refund_milestone


async def read_parties_ahead(envelopes: list[Envelope], uow: UnitOfWork) -> None:
    """A batch's offers: the accounts of their clients and freelancers in one statement, for each SendOffer's
    `read_accounts` (unlocked reads, as they are). The ids are read before the data is validated, only to be
    looked up."""
    ids = sorted({e.data[k] for e in envelopes if e.type == "SendOffer" for k in ("client_id", "freelancer_id")
                  if isinstance(e.data.get(k), str)})
    if len(ids) > 2:  # more than one offer's parties
        uow.batch[PRELOADED_ACCOUNTS] = await AccountRepository(uow.session).get_many(ids)


async def send_offer(cmd: SendOffer, ctx: Context) -> None:
    if ctx.actor != cmd.client_id:
        raise Rejected("forbidden", "an offer is sent by its client (actor must be client_id)")
    await ctx.read_accounts(cmd.client_id, cmd.freelancer_id)  # both in one round trip
    client = await ctx.account(cmd.client_id)
    client.ensure_role("client")
    client.ensure_may_start_activity()
    client.ensure_nothing_past_due()
    (await ctx.account(cmd.freelancer_id)).ensure_role("freelancer")
    for spec in cmd.milestones:
        ctx.settings.limits.check_milestone(spec.amount)
    ctx.settings.limits.check_contract(spec.amount for spec in cmd.milestones)
    # A contract or milestone id used before is refused `id_taken` by the save, which claims each id.
    contract = Contract.offer(
        cmd.contract_id, cmd.client_id, cmd.freelancer_id, cmd.title, cmd.currency, cmd.deposit,
        [Milestone(s.milestone_id, s.title, s.amount, i, s.due_date) for i, s in enumerate(cmd.milestones)],
        ctx.now)
    # The new contract and its fund saga are written in one statement (the saga's save).
    await fund_milestones(ctx, contract, contract.deposit_milestones(), offer=True, command_id=ctx.message_id,
                          started_by=ctx.message_id, change="SendOffer")


async def withdraw_offer(cmd: WithdrawOffer, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    await _refund_each(ctx, contract, contract.withdraw(ctx.actor), "withdraw")


async def decline_offer(cmd: DeclineOffer, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    await _refund_each(ctx, contract, contract.decline(ctx.actor), "decline")


async def accept_offer(cmd: AcceptOffer, ctx: Context) -> None:
    contract = await ctx.contract(cmd.contract_id)
    contract.ensure_freelancer(ctx.actor)
    freelancer = await ctx.account(contract.freelancer_id)
    freelancer.ensure_may_start_activity()
    contract.accept(ctx.actor)
    await ctx.save(contract, "ContractStarted")
    ctx.event(ContractStarted(contract_id=contract.contract_id, client_id=contract.client_id,
                              freelancer_id=contract.freelancer_id, currency=contract.currency), contract.contract_id)
    await ctx.complete(ctx.message_id, "ContractStarted")


async def _refund_each(ctx: Context, contract: Contract, milestones: list[Milestone], reason: str) -> None:
    await ctx.save(contract, ctx.envelope.type)
    for m in milestones:
        await refund_milestone(ctx, contract, m, m.amount, reason=reason, command_id=ctx.message_id, started_by=ctx.message_id)
