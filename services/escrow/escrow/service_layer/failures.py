"""Escrow's typed answer to a saga step it could not do: every step gets its success event or one of these.

Plugged into the runtime twice: a step refused by a rule (`Rejected`) and a step that could not be
handled after every retry (answered before it goes to the dead-letter topic). Either way the step had
no effect on the ledger, so the saga may compensate.
"""

from platform_schemas import Message
from platform_schemas.commands.saga import HoldEscrow, PostBonuses, RefundEscrow, ReleaseEscrow
from platform_schemas.events.escrow import BonusPostingFailed, EscrowHoldRejected, EscrowRefundFailed, EscrowReleaseFailed


def failure_reply(cmd: Message, reason_code: str, message: str, retryable: bool) -> Message | None:
    common = dict(reason_code=reason_code, message=message, retryable=retryable)
    match cmd:
        case HoldEscrow():
            return EscrowHoldRejected(hold_id=cmd.hold_id, step_id=cmd.hold_id, saga_id=cmd.saga_id,
                                      charge_id=cmd.charge_id, contract_id=cmd.contract_id, **common)
        case ReleaseEscrow():
            return EscrowReleaseFailed(release_id=cmd.release_id, step_id=cmd.release_id, saga_id=cmd.saga_id,
                                       contract_id=cmd.contract_id, milestone_id=cmd.milestone_id, **common)
        case RefundEscrow():
            return EscrowRefundFailed(refund_id=cmd.refund_id, step_id=cmd.refund_id, saga_id=cmd.saga_id,
                                      contract_id=cmd.contract_id, milestone_id=cmd.milestone_id, **common)
        case PostBonuses():
            step_id = f"bonus-batch-{cmd.business_date.isoformat()}"
            return BonusPostingFailed(business_date=cmd.business_date, step_id=step_id, saga_id=step_id,
                                      bonus_ids=[b.bonus_id for b in cmd.bonuses], **common)
    return None
