"""The daily bonus batch: which bonuses a batch takes, one charge per client and currency, the summary. Pure.

The batch of business day D takes every pending bonus given before the end of D (or before the moment
of the run, when an operator runs D early) that no earlier batch took. Each client is charged once
per currency for the sum of its bonuses; a declined charge fails only that client's bonuses.
"""

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from platform_runtime.errors import Rejected
from platform_schemas.commands.saga import MAX_BONUSES_PER_POST

from .failed_charges import NO_PRIMARY_METHOD  # noqa: F401 - the batch's name for it
from .history import HistoryRow

# Bonuses one PostBonuses command carries at most: the schema's limit. Escrow posts each in its own ledger
# transaction, all in the command's database transaction; what a command costs besides (its inbox row, its reply,
# the reply's two statements in billing) is paid once for 500 instead of 200 (issue 10, thirty-first step).
MAX_BONUSES_PER_CREDIT = MAX_BONUSES_PER_POST
_CORRELATION_NAMESPACE = uuid.UUID("6f1c8f0e-4a8e-5b39-9a41-6a3b0f3f1c2d")


# -- the batch and its day ---------------------------------------------------------------------
def batch_subject(business_date: date) -> str:
    """Subject and Kafka key of every message about the batch itself."""
    return f"bonus-batch-{business_date.isoformat()}"


def scheduled_correlation_id(business_date: date) -> str:
    """The scheduled batch has no command: its correlation id is derived from its date, the same everywhere."""
    return str(uuid.uuid5(_CORRELATION_NAMESPACE, batch_subject(business_date)))


def ensure_may_run(actor: str, business_date: date, now: datetime) -> None:
    if actor != "system" and not actor.startswith("admin:"):
        raise Rejected("forbidden", "a bonus batch is run by an administrator (admin:<name>) or the system")
    if business_date > utc_date(now):
        raise Rejected("date_in_future", f"business day {business_date} has not started yet (UTC)")


def utc_date(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def end_of(business_date: date) -> datetime:
    return datetime.combine(business_date + timedelta(days=1), time(0), tzinfo=timezone.utc)


def cutoff(business_date: date, now: datetime) -> datetime:
    """Bonuses given before this moment belong to the batch: the end of the day, or now for an early run."""
    return min(end_of(business_date), now)


def charge_date(batch_started_at: datetime) -> date:
    """The UTC calendar day a batch charges on: the day it started (the scheduled run starts at BONUS_BATCH_AT
    on the day after its business day; an early run, the day an operator asked). A client is charged for
    bonuses at most once per charge date and currency: a second batch of that day leaves the client's
    bonuses pending, and the next batch that charges on a later day takes them."""
    return utc_date(batch_started_at)


# -- past-due balances ----------------------------------------------------------------------------
def after_decline(past_due_until: date | None, charge_date: date, retry_days: int) -> tuple[str, date]:
    """A bonus whose charge was declined on `charge_date`: `past_due` until the last day a batch retries it
    (`retry_days` after its first decline), or `failed` when this was that last retry."""
    until = past_due_until or charge_date + timedelta(days=retry_days)
    return ("failed" if charge_date >= until else "past_due"), until


def scheduled_at(business_date: date, at: time) -> datetime:
    """When the scheduled batch of a business day runs: the next day at `at` (UTC)."""
    return datetime.combine(business_date + timedelta(days=1), at, tzinfo=timezone.utc)


def next_scheduled(now: datetime, at: time) -> date:
    """The business day whose scheduled batch is the next one still to come."""
    yesterday = utc_date(now) - timedelta(days=1)
    return yesterday if scheduled_at(yesterday, at) > now else yesterday + timedelta(days=1)


def first_to_schedule(now: datetime, at: time, last_scheduled: date | None) -> date:
    """The next day to come; after a pause, the day after the last one scheduled, so missed days run too."""
    upcoming = next_scheduled(now, at)
    return min(upcoming, last_scheduled + timedelta(days=1)) if last_scheduled else upcoming


# -- charges: one per client and currency ------------------------------------------------------
@dataclass(frozen=True)
class Bonus:
    bonus_id: str
    contract_id: str
    client_id: str
    freelancer_id: str
    amount: int
    currency: str


def charge_key(business_date: date, client_id: str, currency: str) -> str:
    """The gateway idempotency key: the same batch, client and currency never charge twice."""
    return f"{batch_subject(business_date)}:{client_id}:{currency}"


def charge_id(business_date: date, client_id: str, currency: str) -> str:
    """A short id for the charge (wire ids are at most 64 characters), derived from its key."""
    digest = hashlib.sha256(charge_key(business_date, client_id, currency).encode()).hexdigest()[:24]
    return f"bc-{business_date:%Y%m%d}-{digest}"


@dataclass(frozen=True)
class ChargeTotal:
    """Part (or all) of one client's charge in one currency: the bonuses it covers and their sum."""

    charge_id: str
    idempotency_key: str
    client_id: str
    currency: str
    amount: int
    bonuses: int


@dataclass(frozen=True)
class ClientSum:
    """What a chunk of one client's bonuses in one currency adds up to (summed where they are stored)."""

    client_id: str
    currency: str
    amount: int
    bonuses: int
    smallest: int  # the smallest bonus among them, to refuse a non-positive one


def group_charges(business_date: date, bonuses: Iterable[Bonus]) -> list[ChargeTotal]:
    """Sum bonuses per client and currency, whatever the contract; ordered by client, then currency."""
    sums: dict[tuple[str, str], list[int]] = {}
    for b in bonuses:
        total = sums.setdefault((b.client_id, b.currency), [0, 0, b.amount])
        total[0] += b.amount
        total[1] += 1
        total[2] = min(total[2], b.amount)
        if b.amount <= 0:
            raise ValueError(f"bonus {b.bonus_id} has a non-positive amount {b.amount}")
    return charge_totals(business_date, [ClientSum(client, currency, amount, count, smallest)
                                         for (client, currency), (amount, count, smallest) in sums.items()])


def charge_totals(business_date: date, sums: Iterable[ClientSum]) -> list[ChargeTotal]:
    """Per-client sums (one client may come twice: past-due and new bonuses) -> one charge total per client
    and currency, ordered by client, then currency."""
    merged: dict[tuple[str, str], list[int]] = {}
    for s in sums:
        if s.smallest <= 0:
            raise ValueError(f"a bonus of {s.client_id} in {s.currency} has a non-positive amount {s.smallest}")
        total = merged.setdefault((s.client_id, s.currency), [0, 0])
        total[0] += s.amount
        total[1] += s.bonuses
    return [
        ChargeTotal(charge_id(business_date, client, currency), charge_key(business_date, client, currency),
                    client, currency, amount, count)
        for (client, currency), (amount, count) in sorted(merged.items())
    ]


# -- credits: the charged bonuses, asked of escrow's ledger -----------------------------------
def credit_requests(charged: list[tuple[str, Bonus]],
                    limit: int = MAX_BONUSES_PER_CREDIT) -> list[list[tuple[str, Bonus]]]:
    """(charge id, bonus) pairs -> requests of at most `limit` bonuses each, in the order given."""
    return [charged[start:start + limit] for start in range(0, len(charged), limit)]


def transaction_id(bonus_id: str, leg: str) -> str:
    """`<bonus>:<leg>`, or a digest of it where that would pass the 64 characters of a wire id."""
    plain = f"{bonus_id}:{leg}"
    return plain if len(plain) <= 64 else f"{leg}:{hashlib.sha256(bonus_id.encode()).hexdigest()[:40]}"


def history_rows(bonus: Bonus, charge: str, available_at: datetime | None = None) -> list[HistoryRow]:
    """The client's bonus charge (-) and the freelancer's bonus earning (+), one pair per bonus."""
    where = f"contract {bonus.contract_id}, bonus {bonus.bonus_id}"
    return [
        HistoryRow(transaction_id(bonus.bonus_id, "bonus_charge"), bonus.client_id, "bonus_charge",
                   f"Bonus charge to {bonus.freelancer_id}, {where} (charge {charge})", -bonus.amount,
                   bonus.currency, bonus.contract_id, None, bonus.bonus_id),
        HistoryRow(transaction_id(bonus.bonus_id, "bonus_earning"), bonus.freelancer_id, "bonus_earning",
                   f"Bonus earning from {bonus.client_id}, {where}", bonus.amount, bonus.currency,
                   bonus.contract_id, None, bonus.bonus_id, available_at),
    ]


# -- the summary --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChargeResult:
    charge_id: str
    client_id: str
    currency: str
    amount: int
    bonuses: int
    succeeded: bool
    reason_code: str | None = None
    message: str | None = None


# BonusBatchCompleted lists at most this many failed charges (a message has a size limit; a batch may fail
# for 10,000 clients): `failed_charges` counts them all, GET /bonus-batches/{date}/failures pages them.
MAX_FAILURES_LISTED = 100


@dataclass
class Summary:
    """BonusBatchCompleted's figures, added up one settled charge at a time (so it streams)."""

    bonuses: int = 0
    paid: int = 0
    failed: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)  # the first MAX_FAILURES_LISTED
    failed_charges: int = 0

    def add(self, charge: ChargeResult) -> None:
        self.bonuses += charge.bonuses
        if charge.succeeded:
            self.paid += charge.bonuses
            self.totals[charge.currency] = self.totals.get(charge.currency, 0) + charge.amount
        else:
            self.failed += charge.bonuses
            self.failed_charges += 1
            if len(self.failures) < MAX_FAILURES_LISTED:  # an event is bounded; the rest is paged over HTTP
                self.failures.append({"client_id": charge.client_id, "currency": charge.currency,
                                      "charge_id": charge.charge_id, "reason_code": charge.reason_code or "",
                                      "message": charge.message or ""})

    def figures(self) -> dict:
        return {"bonuses": self.bonuses, "paid": self.paid, "failed": self.failed,
                "totals": dict(sorted(self.totals.items())), "failures": self.failures}


def summarize(charges: Iterable[ChargeResult]) -> Summary:
    summary = Summary()
    for charge in charges:
        summary.add(charge)
    return summary
