"""Billing's typed answer to a saga step it could not do: every step gets its success event or one of these.

Plugged into the runtime (as escrow's is): a step refused by a rule, and a step that could not be handled
after every retry (answered before it goes to the dead-letter topic). Either way nothing was charged or
refunded by it, so the saga may go on without it. The gateway's own refusals and outages are answered by the
gateway loop (service_layer/charges.py) with the same types.
"""

from platform_schemas import Message
from platform_schemas.commands.saga import ChargeClient, RefundCharge
from platform_schemas.events.billing import ChargeFailed, RefundChargeFailed


def failure_reply(cmd: Message, reason_code: str, message: str, retryable: bool) -> Message | None:
    common = dict(reason_code=reason_code, message=message, retryable=retryable, saga_id=cmd.saga_id,
                  contract_id=cmd.contract_id, client_id=cmd.client_id, amount=cmd.amount, currency=cmd.currency)
    match cmd:
        case ChargeClient():
            # Not the client's failure: its failed-charge streak is not reported as grown.
            return ChargeFailed(charge_id=cmd.charge_id, step_id=cmd.charge_id, purpose=cmd.purpose,
                                consecutive_failures=0, **common)
        case RefundCharge():
            return RefundChargeFailed(refund_id=cmd.refund_id, step_id=cmd.refund_id, charge_id=cmd.charge_id,
                                      milestone_id=cmd.milestone_id, **common)
    return None
