"""A fixed-price contract and its milestones: every rule of the offer and lifecycle lives here. Pure.

The contract records the events of its own changes (`events`, taken by `pull_events()` when it is
saved), so each event, `ContractEnded` or `MilestoneAdded` alike, is built in one place.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from platform_runtime.errors import Rejected
from platform_schemas import Message
from platform_schemas.events.contracts import (
    ContractCancelled, ContractEnded, MilestoneAdded, MilestonePaid, MilestoneRefunded, OfferDeclined, OfferWithdrawn,
)
from platform_schemas.commands.contracts import MAX_MILESTONES_PER_CONTRACT

# Contract statuses
FUNDING, FUNDING_FAILED, OFFERED, WITHDRAWN, DECLINED = "funding", "funding_failed", "offered", "withdrawn", "declined"
ACTIVE, CANCELLING, ENDED, CANCELLED = "active", "cancelling", "ended", "cancelled"
# Milestone statuses
UNFUNDED, M_FUNDING, FUNDED, SUBMITTED, CHANGES_REQUESTED = "unfunded", "funding", "funded", "submitted", "changes_requested"
RELEASING, PAID, REFUND_REQUESTED, DISPUTED = "releasing", "paid", "refund_requested", "disputed"
REFUNDING, REFUNDED, SPLIT = "refunding", "refunded", "split"

HOLDS_ESCROW = {FUNDED, SUBMITTED, CHANGES_REQUESTED, RELEASING, REFUND_REQUESTED, DISPUTED, REFUNDING}
WORK_SUBMITTED = {SUBMITTED, CHANGES_REQUESTED}
SETTLED = {PAID, REFUNDED, SPLIT}
KEEP = object()  # an edit that leaves a field as it is (None is a value: no due date)


@dataclass
class Milestone:
    milestone_id: str
    title: str
    amount: int
    position: int
    due_date: date | None = None
    status: str = UNFUNDED
    review_due_at: datetime | None = None
    respond_by: datetime | None = None
    charge_id: str | None = None
    released_amount: int = 0
    refunded_amount: int = 0
    removed: bool = False

    @property
    def holds_escrow(self) -> bool:
        return self.status in HOLDS_ESCROW


@dataclass
class Contract:
    contract_id: str
    client_id: str
    freelancer_id: str
    title: str
    currency: str
    deposit: str
    status: str = FUNDING
    milestones: list[Milestone] = field(default_factory=list)
    created_at: datetime | None = None
    ended_at: datetime | None = None
    cancel_reason: str | None = None
    is_new: bool = False
    events: list[Message] = field(default_factory=list, repr=False, compare=False)

    def pull_events(self) -> list[Message]:
        """The events recorded since the last save, in order; the contract forgets them."""
        events, self.events = self.events, []
        return events

    def recorded(self, *types: type[Message]) -> Message | None:
        """The last recorded event of one of these types, if any (not taken)."""
        return next((e for e in reversed(self.events) if isinstance(e, types)), None)

    @property
    def _parties(self) -> dict:
        return dict(contract_id=self.contract_id, client_id=self.client_id, freelancer_id=self.freelancer_id,
                    currency=self.currency)

    @property
    def refunded_amount(self) -> int:
        return sum(m.refunded_amount for m in self.live_milestones)

    @property
    def released_amount(self) -> int:
        return sum(m.released_amount for m in self.live_milestones)

    # -- queries ------------------------------------------------------------------------------
    def milestone(self, milestone_id: str) -> Milestone:
        for m in self.milestones:
            if m.milestone_id == milestone_id and not m.removed:
                return m
        raise Rejected("not_found", f"contract {self.contract_id} has no milestone {milestone_id}")

    @property
    def live_milestones(self) -> list[Milestone]:
        return [m for m in self.milestones if not m.removed]

    @property
    def escrow_held(self) -> int:
        return sum(m.amount for m in self.live_milestones if m.holds_escrow)

    def ensure_client(self, actor: str) -> None:
        if actor != self.client_id:
            raise Rejected("forbidden", f"only the client of contract {self.contract_id} may do this")

    def ensure_freelancer(self, actor: str) -> None:
        if actor != self.freelancer_id:
            raise Rejected("forbidden", f"only the freelancer of contract {self.contract_id} may do this")

    def ensure_status(self, *allowed: str) -> None:
        if self.status not in allowed:
            raise Rejected("invalid_state", f"contract {self.contract_id} is {self.status}")

    # -- the offer ----------------------------------------------------------------------------
    @classmethod
    def offer(cls, contract_id: str, client_id: str, freelancer_id: str, title: str, currency: str,
              deposit: str, milestones: list[Milestone], now: datetime) -> "Contract":
        if client_id == freelancer_id:
            raise Rejected("invalid_data", "a client cannot hire themselves")
        ids = [m.milestone_id for m in milestones]
        if len(set(ids)) != len(ids):
            raise Rejected("invalid_data", "milestone ids must be distinct")
        contract = cls(contract_id, client_id, freelancer_id, title, currency, deposit, FUNDING, milestones,
                       created_at=now, is_new=True)
        for m in contract.deposit_milestones():
            m.status = M_FUNDING
        return contract

    def deposit_milestones(self) -> list[Milestone]:
        live = self.live_milestones
        return live if self.deposit == "all_milestones" else live[:1]

    def offer_funded(self, charge_id: str, milestone_ids: list[str]) -> list[Milestone]:
        self.status = OFFERED
        return self.milestones_funded(charge_id, milestone_ids)

    def offer_funding_failed(self) -> None:
        self.status = FUNDING_FAILED
        for m in self.live_milestones:
            if m.status == M_FUNDING:
                m.status = UNFUNDED

    def milestones_funded(self, charge_id: str, milestone_ids: list[str]) -> list[Milestone]:
        funded = []
        for milestone_id in milestone_ids:
            m = self.milestone(milestone_id)
            m.status, m.charge_id = FUNDED, charge_id
            funded.append(m)
        return funded

    def milestone_funding_failed(self, milestone_id: str) -> Milestone:
        m = self.milestone(milestone_id)
        m.status = UNFUNDED
        return m

    def withdraw(self, actor: str) -> list[Milestone]:
        self.ensure_client(actor)
        self.ensure_status(OFFERED)
        self.status = WITHDRAWN
        return self._refund_all_held()

    def decline(self, actor: str) -> list[Milestone]:
        self.ensure_freelancer(actor)
        self.ensure_status(OFFERED)
        self.status = DECLINED
        return self._refund_all_held()

    def accept(self, actor: str) -> None:
        self.ensure_freelancer(actor)
        self.ensure_status(OFFERED)
        self.status = ACTIVE

    def _refund_all_held(self, *statuses: str) -> list[Milestone]:
        held = [m for m in self.live_milestones if m.status in (statuses or (FUNDED,))]
        for m in held:
            m.status, m.review_due_at = REFUNDING, None
        return held

    def _ensure_no_money_moving(self) -> None:
        """A charge, release or refund in flight would land on a contract that no longer expects it."""
        if moving := [m.milestone_id for m in self.live_milestones if m.status in (M_FUNDING, RELEASING, REFUNDING)]:
            raise Rejected("invalid_state", f"money is moving on milestone {', '.join(moving)}; "
                                            "try again when it has settled")

    # -- milestones on an active contract -----------------------------------------------------
    def ensure_room_for_a_milestone(self) -> None:
        if len(self.live_milestones) >= MAX_MILESTONES_PER_CONTRACT:
            raise Rejected("invalid_state", f"contract {self.contract_id} has {len(self.live_milestones)} milestones, "
                                            f"the most a contract may have; remove one first")

    def add_milestone(self, actor: str, milestone: Milestone, room_checked: bool = False) -> Milestone:
        """`room_checked`: an approval's next milestone, whose room was checked when the approval was taken."""
        self.ensure_client(actor)
        self.ensure_status(ACTIVE)
        if not room_checked:
            self.ensure_room_for_a_milestone()
        if any(m.milestone_id == milestone.milestone_id for m in self.milestones):
            raise Rejected("id_taken", f"milestone id {milestone.milestone_id} is already used")
        milestone.position = max((m.position for m in self.milestones), default=-1) + 1
        self.milestones.append(milestone)
        self.events.append(MilestoneAdded(contract_id=self.contract_id, milestone_id=milestone.milestone_id,
                                          title=milestone.title, amount=milestone.amount, currency=self.currency,
                                          due_date=milestone.due_date))
        return milestone

    def _unfunded(self, actor: str, milestone_id: str) -> Milestone:
        self.ensure_client(actor)
        self.ensure_status(ACTIVE)
        m = self.milestone(milestone_id)
        if m.status != UNFUNDED:
            raise Rejected("invalid_state", f"milestone {milestone_id} is {m.status}; only unfunded ones change")
        return m

    def edit_milestone(self, actor: str, milestone_id: str, title: str | None, amount: int | None,
                       due_date: "date | None | object" = KEEP) -> Milestone:
        m = self._unfunded(actor, milestone_id)
        m.title = title or m.title
        m.amount = amount if amount is not None else m.amount
        m.due_date = m.due_date if due_date is KEEP else due_date
        return m

    def remove_milestone(self, actor: str, milestone_id: str) -> Milestone:
        m = self._unfunded(actor, milestone_id)
        m.removed = True
        return m

    def activate_milestone(self, actor: str, milestone_id: str) -> Milestone:
        m = self._unfunded(actor, milestone_id)
        m.status = M_FUNDING
        return m

    # -- work and review ----------------------------------------------------------------------
    def submit_work(self, actor: str, milestone_id: str, now: datetime, review_period: timedelta) -> Milestone:
        self.ensure_freelancer(actor)
        self.ensure_status(ACTIVE)
        m = self.milestone(milestone_id)
        if m.status not in (FUNDED, CHANGES_REQUESTED):
            raise Rejected("invalid_state", f"milestone {milestone_id} is {m.status}; work goes on funded ones")
        m.status, m.review_due_at = SUBMITTED, now + review_period
        return m

    def request_changes(self, actor: str, milestone_id: str) -> Milestone:
        self.ensure_client(actor)
        self.ensure_status(ACTIVE)
        m = self.milestone(milestone_id)
        if m.status != SUBMITTED:
            raise Rejected("invalid_state", f"milestone {milestone_id} is {m.status}; nothing to review")
        m.status, m.review_due_at = CHANGES_REQUESTED, None
        return m

    def approve(self, actor: str, milestone_id: str, keep_open: bool) -> Milestone:
        self.ensure_client(actor)
        self.ensure_status(ACTIVE)
        m = self.milestone(milestone_id)
        if m.status not in (SUBMITTED, CHANGES_REQUESTED, FUNDED):
            raise Rejected("invalid_state", f"milestone {milestone_id} is {m.status}; it cannot be approved")
        others = [o for o in self.live_milestones if o is not m]
        if not keep_open and any(o.holds_escrow or o.status == M_FUNDING for o in others):
            raise Rejected("escrow_held", "another milestone still holds escrow; release or cancel it first")
        m.status, m.review_due_at = RELEASING, None
        return m

    def auto_release(self, milestone_id: str, now: datetime) -> Milestone | None:
        """The review period passed in silence; None when something else happened first."""
        m = self.milestone(milestone_id)
        if m.status != SUBMITTED or m.review_due_at is None or m.review_due_at > now:
            return None
        m.status, m.review_due_at = RELEASING, None
        return m

    def milestone_paid(self, milestone_id: str, amount: int, automatic: bool = False) -> Milestone:
        """Released; a dispute split goes on to refund the rest."""
        m = self.milestone(milestone_id)
        m.released_amount += amount
        m.status = PAID if m.released_amount >= m.amount else REFUNDING
        self.events.append(MilestonePaid(milestone_id=m.milestone_id, amount=amount, automatic=automatic,
                                         **self._parties))
        self._settle_cancellation()
        return m

    def end_after_release(self, now: datetime) -> bool:
        """An approval asked to end the contract once paid: done, unless money came in meanwhile."""
        if self.status != ACTIVE or any(m.holds_escrow or m.status == M_FUNDING for m in self.live_milestones):
            return False
        self.status, self.ended_at = ENDED, now
        self.events.append(ContractEnded(ended_by=self.client_id, **self._parties))
        return True

    # -- end, cancel, refunds, disputes -------------------------------------------------------
    def end(self, actor: str, now: datetime) -> list[Milestone]:
        if actor not in (self.client_id, self.freelancer_id):
            raise Rejected("forbidden", f"only the parties of contract {self.contract_id} may end it")
        self.ensure_status(ACTIVE)
        if actor == self.client_id and self.escrow_held:
            raise Rejected("escrow_held", "escrow is still held; release or cancel it before ending")
        self._ensure_no_money_moving()
        self.status, self.ended_at = ENDED, now
        # The freelancer gives up: everything still held goes back, submitted work included.
        to_refund = self._refund_all_held(FUNDED, *WORK_SUBMITTED)
        self.events.append(ContractEnded(ended_by=actor, refunded_amount=sum(m.amount for m in to_refund),
                                         **self._parties))
        return to_refund

    def cancel(self, actor: str, reason: str, now: datetime, window: timedelta) -> tuple[list[Milestone], list[Milestone]]:
        """Refund at once what has no submitted work; ask the freelancer about the rest."""
        self.ensure_client(actor)
        self.ensure_status(ACTIVE)
        self._ensure_no_money_moving()
        self.status, self.cancel_reason = CANCELLING, reason
        refund_now, ask = [], []
        for m in self.live_milestones:
            if m.status == FUNDED:
                m.status = REFUNDING
                refund_now.append(m)
            elif m.status in WORK_SUBMITTED:
                m.status, m.review_due_at, m.respond_by = REFUND_REQUESTED, None, now + window
                ask.append(m)
        self._settle_cancellation()
        return refund_now, ask

    def respond_to_refund(self, actor: str, milestone_id: str, accept: bool) -> Milestone:
        if actor != "system":
            self.ensure_freelancer(actor)
        m = self.milestone(milestone_id)
        if m.status != REFUND_REQUESTED:
            raise Rejected("invalid_state", f"milestone {milestone_id} is {m.status}; no refund is asked")
        m.status, m.respond_by = (REFUNDING if accept else DISPUTED), None
        return m

    def resolve_dispute(self, actor: str, milestone_id: str, release_amount: int, refund_amount: int) -> Milestone:
        if not actor.startswith("admin:"):
            raise Rejected("forbidden", "only an administrator resolves disputes")
        m = self.milestone(milestone_id)
        if m.status != DISPUTED:
            raise Rejected("invalid_state", f"milestone {milestone_id} is {m.status}, not disputed")
        if release_amount < 0 or refund_amount < 0 or release_amount + refund_amount != m.amount:
            raise Rejected("amounts_do_not_add_up",
                           f"release and refund must be >= 0 and add up to the held {m.amount}")
        m.status = RELEASING if release_amount else REFUNDING
        return m

    def milestone_refunded(self, milestone_id: str, amount: int) -> Milestone:
        m = self.milestone(milestone_id)
        m.refunded_amount += amount
        if m.released_amount + m.refunded_amount >= m.amount:
            m.status = SPLIT if m.released_amount and m.refunded_amount else REFUNDED
        self.events.append(MilestoneRefunded(contract_id=self.contract_id, milestone_id=m.milestone_id,
                                             client_id=self.client_id, amount=amount, currency=self.currency))
        self._settle_cancellation()
        self._settle_withdrawn_or_declined()
        return m

    def _settle_cancellation(self) -> None:
        """The contract's outcome once nothing is held any more: cancelled, with what went where."""
        if self.status == CANCELLING and all(m.status in SETTLED | {UNFUNDED} for m in self.live_milestones):
            self.status = CANCELLED
            self.events.append(ContractCancelled(reason=self.cancel_reason or "", refunded_amount=self.refunded_amount,
                                                 released_amount=self.released_amount, **self._parties))

    def _settle_withdrawn_or_declined(self) -> None:
        """A withdrawn or declined offer's outcome, once its last refund is done."""
        if any(m.status == REFUNDING for m in self.live_milestones):
            return
        if self.status == WITHDRAWN:
            self.events.append(OfferWithdrawn(refunded_amount=self.refunded_amount, **self._parties))
        elif self.status == DECLINED:
            self.events.append(OfferDeclined(refunded_amount=self.refunded_amount, **self._parties))

    @property
    def just_cancelled(self) -> bool:
        return self.status == CANCELLED
