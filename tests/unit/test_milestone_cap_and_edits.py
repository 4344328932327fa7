"""AddMilestone respects the cap on milestones per contract; EditMilestone tells a cleared due date (null) from
one left out. The contracts service's handlers on the in-memory fakes."""

from datetime import date

import pytest
from platform_schemas.commands.contracts import (
    MAX_MILESTONES_PER_CONTRACT, AddMilestone, ApproveMilestone, EditMilestone, MilestoneSpec, RemoveMilestone,
)

from contracts.domain import contracts as domain
from contracts.domain.contracts import Milestone
from contracts.service_layer import milestones
from tests.unit.test_accounts import account, context, contract_with, handle, refused

pytestmark = pytest.mark.unit


def full_contract(ctx):
    contract = contract_with(ctx, domain.SUBMITTED)
    contract.milestones += [Milestone(f"m-x{i}", f"Extra {i}", 5_000, i + 2)
                            for i in range(MAX_MILESTONES_PER_CONTRACT - len(contract.milestones))]
    return contract


def people():
    return context(account("client-1", "client"), account("free-1", "freelancer"))


ADD = AddMilestone(contract_id="c-1", milestone_id="m-new", title="One more", amount=5_000)


async def test_a_contract_at_the_cap_takes_no_further_milestone():
    ctx = people()
    full_contract(ctx)
    assert await refused(ctx, milestones.add_milestone, ADD, "client-1") == "invalid_state"
    next_one = MilestoneSpec(milestone_id="m-new", title="Next", amount=5_000)
    assert await refused(ctx, milestones.approve_milestone,
                         ApproveMilestone(contract_id="c-1", milestone_id="m-1", next_milestone=next_one),
                         "client-1") == "invalid_state"


async def test_a_removed_milestone_makes_room_again():
    ctx = people()
    full_contract(ctx)
    await handle(ctx, milestones.remove_milestone, RemoveMilestone(contract_id="c-1", milestone_id="m-x0"),
                 "client-1")
    await handle(ctx, milestones.add_milestone, ADD, "client-1")
    assert len(ctx.contracts.stored("c-1").live_milestones) == MAX_MILESTONES_PER_CONTRACT


@pytest.mark.parametrize(("edit", "due_date"), [
    (EditMilestone.model_validate({"contract_id": "c-1", "milestone_id": "m-2", "due_date": None}), None),
    (EditMilestone.model_validate({"contract_id": "c-1", "milestone_id": "m-2", "title": "Final art"}),
     date(2026, 12, 24)),
    (EditMilestone.model_validate({"contract_id": "c-1", "milestone_id": "m-2", "due_date": "2027-01-15"}),
     date(2027, 1, 15)),
], ids=["null-clears", "absent-keeps", "a-date-replaces"])
async def test_an_edit_clears_the_due_date_only_when_it_says_null(edit, due_date):
    ctx = people()
    contract_with(ctx, domain.FUNDED).milestones[1].due_date = date(2026, 12, 24)
    await handle(ctx, milestones.edit_milestone, edit, "client-1")
    assert ctx.contracts.stored("c-1").milestone("m-2").due_date == due_date
    edited = ctx.uow.messages()[0]
    assert edited.type == "MilestoneEdited" and edited.data.get("due_date") == (due_date.isoformat() if due_date else None)
