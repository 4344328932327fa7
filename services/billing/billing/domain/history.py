"""Transaction-history rows: what each money movement looks like from each account holder's side."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HistoryRow:
    transaction_id: str
    account_id: str
    kind: str
    description: str
    amount: int  # signed: money leaving the account holder is negative
    currency: str
    contract_id: str | None = None
    milestone_id: str | None = None
    bonus_id: str | None = None
    available_at: datetime | None = None  # earnings: when the freelancer can use the money


def fixed_price_charge(charge_id: str, client_id: str, contract_id: str, milestone_ids: list[str], amount: int,
                       currency: str) -> HistoryRow:
    what = ", ".join(milestone_ids) or "deposit"
    return HistoryRow(f"{charge_id}:charge", client_id, "fixed_price_charge",
                      f"Fixed-price charge, contract {contract_id}, milestone {what}", -amount, currency,
                      contract_id, milestone_ids[0] if len(milestone_ids) == 1 else None)


def refund(refund_id: str, client_id: str, contract_id: str, milestone_id: str | None, amount: int,
           currency: str) -> HistoryRow:
    return HistoryRow(f"{refund_id}:refund", client_id, "refund",
                      f"Refund, contract {contract_id}" + (f", milestone {milestone_id}" if milestone_id else ""),
                      amount, currency, contract_id, milestone_id)


def release(release_id: str, client_id: str, freelancer_id: str, contract_id: str, milestone_id: str, amount: int,
            currency: str, available_at: datetime | None = None) -> list[HistoryRow]:
    """Both legs for the client (escrow release +, payment -) and the freelancer's earning."""
    where = f"contract {contract_id}, milestone {milestone_id}"
    return [
        HistoryRow(f"{release_id}:escrow_release", client_id, "escrow_release", f"Escrow release, {where}",
                   amount, currency, contract_id, milestone_id),
        HistoryRow(f"{release_id}:payment", client_id, "payment", f"Payment to {freelancer_id}, {where}",
                   -amount, currency, contract_id, milestone_id),
        HistoryRow(f"{release_id}:earning", freelancer_id, "fixed_price_earning", f"Fixed-price earning, {where}",
                   amount, currency, contract_id, milestone_id, available_at=available_at),
    ]
