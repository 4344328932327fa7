"""A contract's statement (contracts/domain/statement.py): built from escrow's money movements, each item's
funded = released + refunded + in escrow, released = pending + available, and the lines add up to what
the client paid."""

from datetime import datetime, timedelta, timezone

import pytest

from contracts.domain.statement import AVAILABLE, FUNDED, REFUNDED, RELEASED, Movement, build

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def movement(item: str, kind: str, amount: int, minute: int, available_at=None, item_kind="milestone"):
    return Movement(f"{item}:{kind}:{minute}", item_kind, item, kind, amount, at(minute), available_at)


def statement():
    milestones = [("m-1", "Logo", 50_000), ("m-2", "Site", 30_000), ("m-3", "Later", 20_000)]
    bonuses = [("b-1", "Thanks", 2_500)]
    moves = [
        movement("m-1", FUNDED, 50_000, 0), movement("m-2", FUNDED, 30_000, 0),
        movement("m-1", RELEASED, 50_000, 5, available_at=at(5) + timedelta(days=5)),
        movement("m-1", AVAILABLE, 50_000, 5 + 5 * 24 * 60),
        # m-2: a dispute split, 10,000 released (still pending), 20,000 refunded
        movement("m-2", RELEASED, 10_000, 9, available_at=at(9) + timedelta(days=5)),
        movement("m-2", REFUNDED, 20_000, 9),
        movement("b-1", FUNDED, 2_500, 20, item_kind="bonus"),
        movement("b-1", RELEASED, 2_500, 20, available_at=at(20) + timedelta(days=5), item_kind="bonus"),
    ]
    return build("c-1", "USD", milestones, bonuses, reversed(moves))


def test_each_line_says_what_was_funded_released_refunded_pending_and_available_with_the_dates():
    lines = {line.item_id: line for line in statement().lines}
    m1, m2, m3, b1 = lines["m-1"], lines["m-2"], lines["m-3"], lines["b-1"]
    assert (m1.funded, m1.released, m1.refunded, m1.in_escrow, m1.pending, m1.available) == (
        50_000, 50_000, 0, 0, 0, 50_000)
    assert (m1.funded_at, m1.released_at, m1.available_at) == (at(0), at(5), at(5) + timedelta(days=5))
    assert (m2.released, m2.refunded, m2.pending, m2.available, m2.in_escrow) == (10_000, 20_000, 10_000, 0, 0)
    assert m2.refunded_at == at(9)
    assert (m3.funded, m3.in_escrow, m3.funded_at) == (0, 0, None)  # not funded yet: on the statement, at zero
    assert (b1.item_kind, b1.title, b1.funded, b1.pending) == ("bonus", "Thanks", 2_500, 2_500)


def test_the_lines_add_up_to_what_the_client_paid():
    totals = statement().totals()
    assert totals == {"funded": 82_500, "released": 62_500, "refunded": 20_000, "in_escrow": 0,
                      "pending": 12_500, "available": 50_000}
    assert totals["funded"] == totals["released"] + totals["refunded"] + totals["in_escrow"]
    assert totals["released"] == totals["pending"] + totals["available"]


def test_the_items_keep_the_contracts_order_milestones_then_bonuses():
    assert [line.item_id for line in statement().lines] == ["m-1", "m-2", "m-3", "b-1"]


def test_a_movement_of_an_item_the_contract_no_longer_lists_is_still_shown():
    found = build("c-1", "USD", [], [], [movement("m-9", FUNDED, 700, 0)])
    assert [(line.item_id, line.funded) for line in found.lines] == [("m-9", 700)]
