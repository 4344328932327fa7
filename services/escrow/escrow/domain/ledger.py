"""The double-entry ledger: every posting moves money from one account to another, so all balances
sum to zero; escrow, client and freelancer accounts never go negative. Pure: no I/O.

A freelancer has two accounts per currency: what is released lands in *pending* and moves to
*available* (`freelancer:`) once the earnings security period is over (`make_available`)."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from platform_runtime.errors import Rejected


@dataclass(frozen=True)
class Posting:
    posting_id: str
    debit_account: str  # the account the money leaves
    credit_account: str  # the account the money enters
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"a posting moves a positive integer amount, not {self.amount!r}")
        if self.debit_account == self.credit_account:
            raise ValueError("a posting moves money between two different accounts")


def gateway(currency: str) -> str:
    """Money outside the platform (the payment network); the only account allowed below zero."""
    return f"gateway:{currency}"


def client(client_id: str, currency: str) -> str:
    return f"client:{client_id}:{currency}"


def freelancer(freelancer_id: str, currency: str) -> str:
    return f"freelancer:{freelancer_id}:{currency}"


def freelancer_pending(freelancer_id: str, currency: str) -> str:
    """Released to the freelancer but still inside the earnings security period."""
    return f"freelancer_pending:{freelancer_id}:{currency}"


def escrow(contract_id: str, milestone_id: str) -> str:
    return f"escrow:{contract_id}:{milestone_id}"


def may_go_negative(account: str) -> bool:
    return account.startswith("gateway:")


def fund(transaction_id: str, client_id: str, currency: str, milestones: list[tuple[str, str, int]]) -> list[Posting]:
    """The charge enters the client's account, then each milestone's share moves into escrow."""
    total = sum(amount for _, _, amount in milestones)
    postings = [Posting(f"{transaction_id}:charge", gateway(currency), client(client_id, currency), total, currency)]
    postings += [
        Posting(f"{transaction_id}:{milestone_id}", client(client_id, currency), escrow(contract_id, milestone_id),
                amount, currency)
        for contract_id, milestone_id, amount in milestones
    ]
    return postings


def release(transaction_id: str, contract_id: str, milestone_id: str, client_id: str, freelancer_id: str,
            amount: int, currency: str) -> list[Posting]:
    """Escrow -> client account -> freelancer's pending account: two postings, one ledger transaction."""
    return [
        Posting(f"{transaction_id}:escrow_release", escrow(contract_id, milestone_id), client(client_id, currency),
                amount, currency),
        Posting(f"{transaction_id}:payment", client(client_id, currency),
                freelancer_pending(freelancer_id, currency), amount, currency),
    ]


def refund(transaction_id: str, contract_id: str, milestone_id: str, client_id: str, amount: int,
           currency: str) -> list[Posting]:
    """Escrow -> client account -> back out to the billing method of the original charge."""
    return [
        Posting(f"{transaction_id}:escrow_refund", escrow(contract_id, milestone_id), client(client_id, currency),
                amount, currency),
        Posting(f"{transaction_id}:refund", client(client_id, currency), gateway(currency), amount, currency),
    ]


def bonus(transaction_id: str, client_id: str, freelancer_id: str, amount: int, currency: str) -> list[Posting]:
    return [
        Posting(f"{transaction_id}:bonus_charge", gateway(currency), client(client_id, currency), amount, currency),
        Posting(f"{transaction_id}:bonus", client(client_id, currency), freelancer_pending(freelancer_id, currency),
                amount, currency),
    ]


# -- the earnings security period ---------------------------------------------------------------
def make_available(earning_id: str, freelancer_id: str, amount: int, currency: str) -> list[Posting]:
    """The security period is over: what is left of the earning moves from pending to available."""
    return [Posting(f"{earning_id}:available", freelancer_pending(freelancer_id, currency),
                    freelancer(freelancer_id, currency), amount, currency)]


def take_back(transaction_id: str, freelancer_id: str, client_id: str, amount: int, currency: str,
              still_pending: int) -> list[Posting]:
    """A released payment refunded to the client: taken from what is still pending first, the rest
    from the available balance (which `apply` refuses to overdraw)."""
    from_pending = min(amount, still_pending)
    legs = [(f"{transaction_id}:from_pending", freelancer_pending(freelancer_id, currency), from_pending),
            (f"{transaction_id}:from_available", freelancer(freelancer_id, currency), amount - from_pending)]
    return [Posting(posting_id, account, client(client_id, currency), taken, currency)
            for posting_id, account, taken in legs if taken > 0]


def ensure_held(held: int, amount: int, milestone_id: str) -> None:
    """Money leaves a milestone's escrow only up to what it holds."""
    if held < amount:
        raise Rejected("invalid_state", f"milestone {milestone_id} holds {held}, less than {amount}")


def balances(postings: Iterable[Posting]) -> dict[str, int]:
    result: dict[str, int] = defaultdict(int)
    for p in postings:
        result[p.debit_account] -= p.amount
        result[p.credit_account] += p.amount
    return dict(result)


def apply(current: dict[str, int], postings: list[Posting]) -> dict[str, int]:
    """New balances of the touched accounts; refuses a transaction that overdraws an account."""
    changed = dict(current)
    for account, delta in balances(postings).items():
        changed[account] = changed.get(account, 0) + delta
        if changed[account] < 0 and not may_go_negative(account):
            raise Rejected("insufficient_funds", f"{account} would go below zero")
    return changed


def check(postings: Iterable[Posting], stored_balances: dict[str, int], held: dict[str, int],
          pending: dict[str, int] | None = None) -> list[str]:
    """Everything recomputed from the postings: zero sum, no overdraft, balances and escrow agree, and each
    pending account holds exactly the earnings still inside their security period (`pending`)."""
    postings = list(postings)
    problems: list[str] = []
    recomputed = balances(postings)
    for p in postings:
        if p.amount <= 0:
            problems.append(f"posting {p.posting_id} has a non-positive amount {p.amount}")
    for account, balance in recomputed.items():
        if balance < 0 and not may_go_negative(account):
            problems.append(f"{account} is negative: {balance}")
    for currency in {p.currency for p in postings}:
        total = sum(b for a, b in balances(p for p in postings if p.currency == currency).items())
        if total != 0:
            problems.append(f"{currency} balances sum to {total}, not 0")
    for account in sorted(set(recomputed) | set(stored_balances)):
        if recomputed.get(account, 0) != stored_balances.get(account, 0):
            problems.append(f"{account}: postings say {recomputed.get(account, 0)}, "
                            f"stored balance says {stored_balances.get(account, 0)}")
    for account, amount in held.items():
        if recomputed.get(account, 0) != amount:
            problems.append(f"{account}: holds {recomputed.get(account, 0)} but milestones hold {amount}")
    if pending is not None:
        pending_accounts = {a for a in recomputed if a.startswith("freelancer_pending:")} | set(pending)
        for account in sorted(pending_accounts):
            if recomputed.get(account, 0) != pending.get(account, 0):
                problems.append(f"{account}: holds {recomputed.get(account, 0)} "
                                f"but earnings still pending add up to {pending.get(account, 0)}")
    return problems
