"""The one interpreter of every saga table: start a saga, move it on each answer, re-send or escalate at
each step's deadline. A step's deadline is a durable timer armed in the same transaction as its command."""

from platform_runtime.keys import compose
from platform_runtime.logging import get_logger
from platform_schemas import Message

from ...domain.contracts import Contract
from ...domain.sagas import NEEDS_ATTENTION, NO_ANSWER, RUNNING, Saga, SagaData
from ..context import Context
from . import metrics
from .table import SagaTable

log = get_logger(__name__)
SAGA_DEADLINE = "saga_step_deadline"


async def start(table: SagaTable, ctx: Context, contract: Contract, data: SagaData, *, command_id: str | None,
                started_by: str, change: str | None = None) -> Saga:
    """A new saga in its first step: the step's command and its deadline, in this transaction. With `change`,
    the contract is saved as changed by it, in the same statement as the saga."""
    saga = Saga.start(table.kind, contract.contract_id, command_id, started_by, table.first, data, ctx.now)
    if change is None:
        await ctx.sagas.save(saga)
    else:
        await ctx.save(contract, change, saga)  # refused (an id taken) before anything is asked
    await _ask(table, saga, contract, ctx)
    return saga


async def on_reply(table: SagaTable, saga: Saga, reply: Message, ctx: Context) -> None:
    """A participant's answer: the table says what it does and where it leads; an answer the saga no
    longer waits for (a duplicate, or a re-sent step's second answer) changes nothing."""
    on = table.on(saga.step, type(reply))
    if on is None or not saga.expects(on.step, escalates=on.next == NEEDS_ATTENTION):
        return
    contract = await ctx.contract(saga.contract_id)
    if on.effect is not None:
        await on.effect(saga, reply, contract, ctx)
    await ctx.uow.cancel_timers(saga.saga_id, SAGA_DEADLINE)
    outcome = type(reply).__name__
    if on.next in table.steps:
        saga.advance(outcome, on.next, ctx.now)
        await _ask(table, saga, contract, ctx)
    elif on.next == NEEDS_ATTENTION:
        _escalate(saga, outcome, ctx)
    else:
        saga.finish(on.next, outcome, ctx.now)
        metrics.finished(saga, ctx.now)
    await ctx.save(contract, outcome, saga)


async def on_deadline(tables: dict[str, SagaTable], payload: dict, ctx: Context) -> None:
    """No answer in time: the same step again (same step id, so the participant does it once), or,
    after SAGA_STEP_ATTEMPTS sends, `needs_attention`. A deadline of a step already answered is void."""
    saga = await ctx.sagas.get(payload["saga_id"])
    if saga is None or saga.status != RUNNING or saga.step != payload["step"] \
            or saga.attempts() != payload["attempt"]:
        return
    if saga.attempts() >= ctx.settings.saga_step_attempts:
        _escalate(saga, NO_ANSWER, ctx)
    else:
        saga.resent(ctx.now)
        log.info("saga_step_resent", saga_id=saga.saga_id, kind=saga.kind, step=saga.step,
                 attempt=saga.attempts())
        await _ask(tables[saga.kind], saga, await ctx.contract(saga.contract_id), ctx)
    await ctx.sagas.save(saga)


async def _ask(table: SagaTable, saga: Saga, contract: Contract, ctx: Context) -> None:
    ask = table.steps[saga.step]
    attempt = saga.attempts()
    if ask.taken_on is None or attempt > 1:  # a step its participant takes by itself is only ever re-sent
        ctx.uow.publish(ask.topic, ask.command(saga, contract), subject=saga.contract_id)
    # Each wait twice the one before: a participant that is only slow (a busy platform) is not flooded with
    # re-sends, which would make it slower still.
    wait = ctx.settings.saga_step_timeout * 2 ** (attempt - 1)
    await ctx.uow.schedule(compose(SAGA_DEADLINE, saga.saga_id, saga.step, str(attempt)), SAGA_DEADLINE, saga.saga_id,
                           ctx.now + wait,
                           {"saga_id": saga.saga_id, "step": saga.step, "attempt": attempt})


def _escalate(saga: Saga, outcome: str, ctx: Context) -> None:
    saga.needs_attention(outcome, ctx.now)
    log.warning("saga_needs_attention", saga_id=saga.saga_id, kind=saga.kind, step=saga.step,
                contract_id=saga.contract_id, outcome=outcome, attempts=saga.attempts())
