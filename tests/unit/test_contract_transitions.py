"""Every contract command in every contract and milestone state, generated from ONE table.

`TRANSITIONS` names, for each state, the commands that do something and what they lead to; a command
a row does not name is refused with `invalid_state`. Each case runs the domain (no I/O): an allowed
command must move the contract as the table says, a refused one must raise the table's reason code
and leave the contract exactly as it was. The same table drives the wrong-actor sweep (`forbidden`
everywhere) and the unknown-milestone sweep (`not_found`).
"""

import copy
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from contracts.domain import contracts as domain
from contracts.domain.contracts import Contract, Milestone
from platform_runtime.errors import Rejected

pytestmark = pytest.mark.unit

CLIENT, FREELANCER, ADMIN, SYSTEM, STRANGER = "client-1", "freelancer-1", "admin:ops", "system", "someone-else"
EVERYONE = (CLIENT, FREELANCER, ADMIN, SYSTEM, STRANGER)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
REVIEW_PERIOD, REFUND_WINDOW = timedelta(days=14), timedelta(days=7)
AMOUNT = 10_000  # of m1, the milestone every command acts on; m2 is "another milestone" of the contract

Act = Callable[[Contract, str, str], object]


def _auto_release(at: datetime) -> Act:
    return lambda c, actor, mid: c.auto_release(mid, at)


# name: (the actor the table sends it as, everyone who may send it, what it does to the contract)
COMMANDS: dict[str, tuple[str | None, set[str], Act]] = {
    "accept": (FREELANCER, {FREELANCER}, lambda c, a, mid: c.accept(a)),
    "decline": (FREELANCER, {FREELANCER}, lambda c, a, mid: c.decline(a)),
    "withdraw": (CLIENT, {CLIENT}, lambda c, a, mid: c.withdraw(a)),
    "add": (CLIENT, {CLIENT}, lambda c, a, mid: c.add_milestone(a, Milestone("m3", "Extra", 7_000, 0))),
    "edit": (CLIENT, {CLIENT}, lambda c, a, mid: c.edit_milestone(a, mid, "Renamed", 12_000, None)),
    "remove": (CLIENT, {CLIENT}, lambda c, a, mid: c.remove_milestone(a, mid)),
    "activate": (CLIENT, {CLIENT}, lambda c, a, mid: c.activate_milestone(a, mid)),
    "submit": (FREELANCER, {FREELANCER}, lambda c, a, mid: c.submit_work(a, mid, NOW, REVIEW_PERIOD)),
    "request_changes": (CLIENT, {CLIENT}, lambda c, a, mid: c.request_changes(a, mid)),
    "approve": (CLIENT, {CLIENT}, lambda c, a, mid: c.approve(a, mid, keep_open=True)),
    "approve_and_end": (CLIENT, {CLIENT}, lambda c, a, mid: c.approve(a, mid, keep_open=False)),
    "end_by_client": (CLIENT, {CLIENT, FREELANCER}, lambda c, a, mid: c.end(a, NOW)),
    "end_by_freelancer": (FREELANCER, {CLIENT, FREELANCER}, lambda c, a, mid: c.end(a, NOW)),
    "cancel": (CLIENT, {CLIENT}, lambda c, a, mid: c.cancel(a, "not needed", NOW, REFUND_WINDOW)),
    "accept_refund": (FREELANCER, {FREELANCER, SYSTEM}, lambda c, a, mid: c.respond_to_refund(a, mid, True)),
    "dispute_refund": (FREELANCER, {FREELANCER, SYSTEM}, lambda c, a, mid: c.respond_to_refund(a, mid, False)),
    "resolve": (ADMIN, {ADMIN}, lambda c, a, mid: c.resolve_dispute(a, mid, 6_000, 4_000)),
    "resolve_wrong_sum": (ADMIN, {ADMIN}, lambda c, a, mid: c.resolve_dispute(a, mid, 6_000, 3_000)),
    # The auto-release timer (actor `system`): it never rejects, it does nothing when it is not its turn.
    "auto_release_due": (None, set(), _auto_release(NOW)),
    "auto_release_early": (None, set(), _auto_release(NOW - timedelta(seconds=1))),
}
TAKES_MILESTONE = {"edit", "remove", "activate", "submit", "request_changes", "approve", "approve_and_end",
                   "accept_refund", "dispute_refund", "resolve", "resolve_wrong_sum"}
REFUSED_BY_DEFAULT = {"auto_release_due": "noop", "auto_release_early": "noop"}  # everything else: invalid_state

# state "contract/m1" or "contract/m1+m2" (m2 is unfunded unless named) -> {command: "contract/m1" or reason}
TRANSITIONS: dict[str, dict[str, str]] = {
    "funding/funding": {},
    "funding_failed/unfunded": {},
    "offered/funded": {"accept": "active/funded", "decline": "declined/refunding", "withdraw": "withdrawn/refunding"},
    "withdrawn/refunding": {},
    "withdrawn/refunded": {},
    "declined/refunded": {},
    "active/unfunded": {
        "add": "active/unfunded", "edit": "active/unfunded", "remove": "active/removed",
        "activate": "active/funding", "end_by_client": "ended/unfunded", "end_by_freelancer": "ended/unfunded",
        "cancel": "cancelled/unfunded"},
    "active/funding": {
        "add": "active/funding", "end_by_client": "invalid_state", "end_by_freelancer": "invalid_state"},
    "active/funded": {
        "add": "active/funded", "submit": "active/submitted", "approve": "active/releasing",
        "approve_and_end": "active/releasing", "end_by_client": "escrow_held", "end_by_freelancer": "ended/refunding",
        "cancel": "cancelling/refunding"},
    "active/funded+funded": {
        "add": "active/funded", "submit": "active/submitted", "approve": "active/releasing",
        "approve_and_end": "escrow_held", "end_by_client": "escrow_held", "end_by_freelancer": "ended/refunding",
        "cancel": "cancelling/refunding"},
    "active/submitted": {
        "add": "active/submitted", "request_changes": "active/changes_requested", "approve": "active/releasing",
        "approve_and_end": "active/releasing", "end_by_client": "escrow_held", "end_by_freelancer": "ended/refunding",
        "cancel": "cancelling/refund_requested", "auto_release_due": "active/releasing"},
    "active/submitted+funding": {
        "add": "active/submitted", "request_changes": "active/changes_requested", "approve": "active/releasing",
        "approve_and_end": "escrow_held", "end_by_client": "escrow_held", "auto_release_due": "active/releasing"},
    "active/submitted+submitted": {
        "add": "active/submitted", "request_changes": "active/changes_requested", "approve": "active/releasing",
        "approve_and_end": "escrow_held", "end_by_client": "escrow_held", "end_by_freelancer": "ended/refunding",
        "cancel": "cancelling/refund_requested", "auto_release_due": "active/releasing"},
    "active/changes_requested": {
        "add": "active/changes_requested", "submit": "active/submitted", "approve": "active/releasing",
        "approve_and_end": "active/releasing", "end_by_client": "escrow_held", "end_by_freelancer": "ended/refunding",
        "cancel": "cancelling/refund_requested"},
    "active/releasing": {"add": "active/releasing", "end_by_client": "escrow_held"},
    "active/paid": {
        "add": "active/paid", "end_by_client": "ended/paid", "end_by_freelancer": "ended/paid",
        "cancel": "cancelled/paid"},
    "active/paid+funded": {
        "add": "active/paid", "end_by_client": "escrow_held", "end_by_freelancer": "ended/paid",
        "cancel": "cancelling/paid"},
    "cancelling/refund_requested": {"accept_refund": "cancelling/refunding", "dispute_refund": "cancelling/disputed"},
    "cancelling/disputed": {"resolve": "cancelling/releasing", "resolve_wrong_sum": "amounts_do_not_add_up"},
    "cancelling/refunding": {},
    "cancelling/releasing": {},
    "ended/paid": {},
    "ended/refunding": {},
    "cancelled/refunded": {},
    "cancelled/split": {},
}
REASONS = {"invalid_state", "escrow_held", "amounts_do_not_add_up", "forbidden", "not_found", "noop"}


def contract_in(state: str) -> Contract:
    """A two-milestone contract (m1 acted on, m2 another) standing in `state`."""
    status, milestones = state.split("/")
    m1_status, _, m2_status = milestones.partition("+")
    contract = Contract("c-1", CLIENT, FREELANCER, "Logo", "USD", "first_milestone", status, created_at=NOW)
    for position, (mid, m_status) in enumerate([("m1", m1_status), ("m2", m2_status or domain.UNFUNDED)]):
        m = Milestone(mid, mid.upper(), AMOUNT, position, status=m_status)
        if m_status not in (domain.UNFUNDED, domain.M_FUNDING):
            m.charge_id = f"charge-{mid}"
        if m_status == domain.SUBMITTED:
            m.review_due_at = NOW  # due exactly now: "auto_release_due" runs at NOW
        if m_status == domain.REFUND_REQUESTED:
            m.respond_by = NOW + REFUND_WINDOW
        if m_status == domain.PAID:
            m.released_amount = AMOUNT
        if m_status == domain.REFUNDED:
            m.refunded_amount = AMOUNT
        if m_status == domain.SPLIT:
            m.released_amount, m.refunded_amount = 6_000, 4_000
        contract.milestones.append(m)
    return contract


def expected(state: str, command: str) -> str:
    return TRANSITIONS[state].get(command, REFUSED_BY_DEFAULT.get(command, "invalid_state"))


def where_it_stands(contract: Contract) -> str:
    m1 = next(m for m in contract.milestones if m.milestone_id == "m1")
    return f"{contract.status}/{'removed' if m1.removed else m1.status}"


CASES = [(state, command) for state in TRANSITIONS for command in COMMANDS]


def test_the_table_is_well_formed():
    """Every state is reachable as written, every cell names a real outcome, every domain command is in it."""
    statuses = {v for k, v in vars(domain).items() if k.isupper() and isinstance(v, str)}
    for state, row in TRANSITIONS.items():
        assert set(row) <= set(COMMANDS), state
        for outcome in [state, *row.values()]:
            if outcome not in REASONS:
                status, m1 = outcome.split("/")
                assert status in statuses and {*m1.split("+")} <= statuses | {"removed"}, outcome
    with_actor = {name for name, fn in inspect.getmembers(Contract, inspect.isfunction)
                  if "actor" in inspect.signature(fn).parameters and not name.startswith(("_", "ensure_"))}
    used = {name for _, _, act in COMMANDS.values() for name in act.__code__.co_names}
    assert with_actor <= used, f"commands missing from the table: {with_actor - used}"


@pytest.mark.parametrize(("state", "command"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
def test_each_command_in_each_state_does_what_the_table_says(state: str, command: str):
    contract = contract_in(state)
    before = copy.deepcopy(contract)
    actor, _, act = COMMANDS[command]
    outcome = expected(state, command)
    if outcome in REASONS - {"noop"}:
        with pytest.raises(Rejected) as refused:
            act(contract, actor, "m1")
        assert refused.value.reason_code == outcome, refused.value.message
        assert contract == before, "a refused command changed the contract"
    elif outcome == "noop":
        assert act(contract, actor, "m1") is None
        assert contract == before
    else:
        act(contract, actor, "m1")
        assert where_it_stands(contract) == outcome


@pytest.mark.parametrize(("state", "command"), [(s, c) for s, c in CASES if COMMANDS[c][0]],
                         ids=[f"{s}-{c}" for s, c in CASES if COMMANDS[c][0]])
def test_a_command_from_anyone_else_is_forbidden_in_every_state(state: str, command: str):
    _, allowed, act = COMMANDS[command]
    for actor in sorted(set(EVERYONE) - allowed):
        contract = contract_in(state)
        before = copy.deepcopy(contract)
        with pytest.raises(Rejected) as refused:
            act(contract, actor, "m1")
        assert refused.value.reason_code == "forbidden", (actor, refused.value.message)
        assert contract == before


@pytest.mark.parametrize("command", sorted(TAKES_MILESTONE))
def test_a_milestone_the_contract_does_not_have_is_not_found(command: str):
    state = "cancelling/disputed" if "resolve" in command else \
        "cancelling/refund_requested" if "refund" in command else "active/funded"
    contract = contract_in(state)
    actor, _, act = COMMANDS[command]
    with pytest.raises(Rejected) as refused:
        act(contract, actor, "m-unknown")
    assert refused.value.reason_code == "not_found"


# -- what the sagas' replies do to a contract that has moved on ---------------------------------------


def test_a_dispute_split_settles_as_split_and_the_cancellation_completes():
    contract = contract_in("cancelling/disputed")
    contract.resolve_dispute(ADMIN, "m1", 6_000, 4_000)
    assert contract.milestone_paid("m1", 6_000).status == domain.REFUNDING
    assert contract.status == domain.CANCELLING
    assert contract.milestone_refunded("m1", 4_000).status == domain.SPLIT
    assert contract.status == domain.CANCELLED


def test_a_dispute_released_in_full_completes_the_cancellation_without_a_refund():
    contract = contract_in("cancelling/disputed")
    contract.resolve_dispute(ADMIN, "m1", AMOUNT, 0)
    assert contract.milestone_paid("m1", AMOUNT).status == domain.PAID
    assert contract.status == domain.CANCELLED


def test_cancel_refunds_unsubmitted_milestones_at_once_and_asks_about_submitted_work():
    contract = contract_in("active/submitted+funded")
    refund_now, ask = contract.cancel(CLIENT, "not needed", NOW, REFUND_WINDOW)
    assert [m.milestone_id for m in refund_now] == ["m2"] and [m.milestone_id for m in ask] == ["m1"]
    assert contract.milestone("m1").respond_by == NOW + REFUND_WINDOW
    assert contract.milestone("m1").review_due_at is None  # the review clock stops
    contract.milestone_refunded("m2", AMOUNT)
    assert contract.status == domain.CANCELLING  # m1 still open
    contract.respond_to_refund(SYSTEM, "m1", True)
    contract.milestone_refunded("m1", AMOUNT)
    assert contract.status == domain.CANCELLED
    assert contract.escrow_held == 0


def test_a_freelancer_ending_the_contract_gives_back_submitted_work_too():
    contract = contract_in("active/submitted+funded")
    refunded = contract.end(FREELANCER, NOW)
    assert sorted(m.milestone_id for m in refunded) == ["m1", "m2"]
    assert all(m.status == domain.REFUNDING and m.review_due_at is None for m in refunded)
    assert contract.status == domain.ENDED


def test_resubmitted_work_gets_a_new_review_period():
    contract = contract_in("active/submitted")
    contract.request_changes(CLIENT, "m1")
    assert contract.milestone("m1").review_due_at is None
    later = NOW + timedelta(days=3)
    contract.submit_work(FREELANCER, "m1", later, REVIEW_PERIOD)
    assert contract.milestone("m1").review_due_at == later + REVIEW_PERIOD
    assert contract.auto_release("m1", later + REVIEW_PERIOD - timedelta(seconds=1)) is None
    assert contract.auto_release("m1", later + REVIEW_PERIOD).status == domain.RELEASING


@pytest.mark.parametrize(("state", "ends"), [("active/paid", True), ("active/paid+funding", False),
                                              ("active/paid+funded", False), ("cancelling/paid", False)])
def test_an_approval_that_asked_to_end_the_contract_ends_it_only_if_no_money_came_in_meanwhile(state, ends):
    contract = contract_in(state)
    assert contract.end_after_release(NOW) is ends
    assert (contract.status == domain.ENDED) is ends
