"""The double-entry ledger: every posting moves money from one account to another, so all balances
sum to zero; escrow, client and freelancer accounts never go negative. Pure: no I/O.

A freelancer has two accounts per currency: what is released lands in *pending* and moves to
*available* (`freelancer`) once the earnings security period is over (`make_available`).

Accounts and postings are structured values, never strings joined from caller ids: an account is
(kind, owner, sub, currency) and a posting is named by (transaction kind, transaction id, leg number).
The strings on the wire (`str(account)`, `posting_id`) are derived from them injectively.
"""

import functools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from platform_runtime.errors import Rejected
from platform_runtime.keys import digest, label

# Account kinds. New kinds (a freelancer's pending and available earnings, say) are new values here.
GATEWAY, CLIENT, FREELANCER, FREELANCER_PENDING, ESCROW = (
    "gateway", "client", "freelancer", "freelancer_pending", "escrow")
# Ledger transaction kinds: each has its own namespace of transaction ids.
FUND, RELEASE, REFUND, BONUS, AVAILABLE, TAKE_BACK = "fund", "release", "refund", "bonus", "available", "take_back"


@dataclass(frozen=True, order=True)
class Account:
    kind: str
    owner: str  # the account or contract id ("" for the gateway)
    sub: str  # the milestone id for escrow, else ""
    currency: str

    def __str__(self) -> str:
        return _name(self)

    @property
    def may_go_negative(self) -> bool:
        return self.kind == GATEWAY


@dataclass(frozen=True)
class TransactionId:
    """A ledger transaction: the saga step id (or bonus id) within its kind, one effect per step."""

    kind: str
    id: str

    def posting_id(self, leg: int) -> str:
        return digest("posting", self.kind, self.id, str(leg))


@dataclass(frozen=True)
class Posting:
    posting_id: str
    debit_account: Account  # the account the money leaves
    credit_account: Account  # the account the money enters
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"a posting moves a positive integer amount, not {self.amount!r}")
        if self.debit_account == self.credit_account:
            raise ValueError("a posting moves money between two different accounts")


def gateway(currency: str) -> Account:
    """Money outside the platform (the payment network); the only account allowed below zero."""
    return Account(GATEWAY, "", "", currency)


def client(client_id: str, currency: str) -> Account:
    return Account(CLIENT, client_id, "", currency)


def freelancer(freelancer_id: str, currency: str) -> Account:
    return Account(FREELANCER, freelancer_id, "", currency)


def freelancer_pending(freelancer_id: str, currency: str) -> Account:
    """Released to the freelancer but still inside the earnings security period."""
    return Account(FREELANCER_PENDING, freelancer_id, "", currency)


def escrow(contract_id: str, milestone_id: str, currency: str) -> Account:
    return Account(ESCROW, contract_id, milestone_id, currency)


def _legs(tx: TransactionId, moves: list[tuple[Account, Account, int]], currency: str) -> list[Posting]:
    return [Posting(tx.posting_id(leg), debit, credit, amount, currency)
            for leg, (debit, credit, amount) in enumerate(moves)]


def fund(tx: TransactionId, client_id: str, currency: str, milestones: list[tuple[str, str, int]]) -> list[Posting]:
    """The charge enters the client's account, then each milestone's share moves into escrow."""
    total = sum(amount for _, _, amount in milestones)
    moves = [(gateway(currency), client(client_id, currency), total)]
    moves += [(client(client_id, currency), escrow(contract_id, milestone_id, currency), amount)
              for contract_id, milestone_id, amount in milestones]
    return _legs(tx, moves, currency)


def release(tx: TransactionId, contract_id: str, milestone_id: str, client_id: str, freelancer_id: str,
            amount: int, currency: str) -> list[Posting]:
    """Escrow -> client account -> freelancer's pending account: two postings, one ledger transaction."""
    return _legs(tx, [(escrow(contract_id, milestone_id, currency), client(client_id, currency), amount),
                      (client(client_id, currency), freelancer_pending(freelancer_id, currency), amount)], currency)


def refund(tx: TransactionId, contract_id: str, milestone_id: str, client_id: str, amount: int,
           currency: str) -> list[Posting]:
    """Escrow -> client account -> back out to the billing method of the original charge."""
    return _legs(tx, [(escrow(contract_id, milestone_id, currency), client(client_id, currency), amount),
                      (client(client_id, currency), gateway(currency), amount)], currency)


def bonus(tx: TransactionId, client_id: str, freelancer_id: str, amount: int, currency: str) -> list[Posting]:
    return _legs(tx, [(gateway(currency), client(client_id, currency), amount),
                      (client(client_id, currency), freelancer_pending(freelancer_id, currency), amount)], currency)


# -- the earnings security period ---------------------------------------------------------------
def make_available(tx: TransactionId, freelancer_id: str, amount: int, currency: str) -> list[Posting]:
    """The security period is over: what is left of the earning moves from pending to available."""
    return _legs(tx, [(freelancer_pending(freelancer_id, currency), freelancer(freelancer_id, currency), amount)],
                 currency)


def take_back(tx: TransactionId, freelancer_id: str, client_id: str, amount: int, currency: str,
              still_pending: int) -> list[Posting]:
    """A released payment refunded to the client: taken from what is still pending first, the rest
    from the available balance (which `apply` refuses to overdraw)."""
    from_pending = min(amount, still_pending)
    moves = [(freelancer_pending(freelancer_id, currency), client(client_id, currency), from_pending),
             (freelancer(freelancer_id, currency), client(client_id, currency), amount - from_pending)]
    return _legs(tx, [m for m in moves if m[2] > 0], currency)


def ensure_held(held: int, amount: int, milestone_id: str) -> None:
    """Money leaves a milestone's escrow only up to what it holds."""
    if held < amount:
        raise Rejected("invalid_state", f"milestone {milestone_id} holds {held}, less than {amount}")


def balances(postings: Iterable[Posting]) -> dict[Account, int]:
    result: dict[Account, int] = defaultdict(int)
    for p in postings:
        result[p.debit_account] -= p.amount
        result[p.credit_account] += p.amount
    return dict(result)


def apply(current: dict[Account, int], postings: list[Posting]) -> dict[Account, int]:
    """New balances of the touched accounts; refuses a transaction that overdraws an account."""
    return apply_all(current, [postings])


def apply_all(current: dict[Account, int], transactions: Iterable[list[Posting]]) -> dict[Account, int]:
    """`apply` of each transaction in turn, on one copy of the balances (a batch of bonuses touches hundreds
    of accounts: a copy per transaction would cost their product); refuses the lot if one overdraws."""
    changed = dict(current)
    for postings in transactions:
        for account, delta in balances(postings).items():
            changed[account] = changed.get(account, 0) + delta
            if changed[account] < 0 and not account.may_go_negative:
                raise Rejected("insufficient_funds", f"{account} would go below zero")
    return changed


def check(postings: Iterable[Posting], stored_balances: dict[Account, int], held: dict[Account, int],
          pending: dict[Account, int] | None = None) -> list[str]:
    """Everything recomputed from the postings: zero sum, no overdraft, balances and escrow agree, and each
    pending account holds exactly the earnings still inside their security period (`pending`)."""
    postings = list(postings)
    problems: list[str] = []
    recomputed = balances(postings)
    for p in postings:
        if p.amount <= 0:
            problems.append(f"posting {p.posting_id} has a non-positive amount {p.amount}")
    for account, balance in recomputed.items():
        if balance < 0 and not account.may_go_negative:
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
        pending_accounts = {a for a in recomputed if a.kind == FREELANCER_PENDING} | set(pending)
        for account in sorted(pending_accounts):
            if recomputed.get(account, 0) != pending.get(account, 0):
                problems.append(f"{account}: holds {recomputed.get(account, 0)} "
                                f"but earnings still pending add up to {pending.get(account, 0)}")
    return problems


@functools.lru_cache(maxsize=65_536)
def _name(account: Account) -> str:
    """An account's name on the wire; a batch of postings names the same accounts again and again."""
    return label(account.kind, *(p for p in (account.owner, account.sub) if p), account.currency)
