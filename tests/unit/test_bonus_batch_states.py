"""The bonus batch's transition tables, each read as one table: every status × every event, the status it
leads to, or '-' where the move does not exist (the runner cannot make it)."""

import pytest

from billing.domain.bonus_batch_states import (
    BATCH, BONUS, CHARGE, BatchEvent, BatchStatus, BonusEvent, BonusStatus, ChargeEvent, ChargeStatus,
    InvalidTransition, after, bonus_move,
)

pytestmark = pytest.mark.unit

EXPECTED = {
    "batch": (BATCH, BatchStatus, BatchEvent, {
        #              collected    settled
        "collecting": ("charging", "-"),
        "charging":   ("-",        "completed"),
        "completed":  ("-",        "-"),
    }),
    "bonus": (BONUS, BonusStatus, BonusEvent, {
        #             take     charged    declined    credit       posted  fail      owe         retry
        "pending":   ("taken", "-",       "-",        "-",         "-",    "-",      "-",        "-"),
        "taken":     ("-",     "charged", "declined", "-",         "-",    "-",      "-",        "-"),
        "charged":   ("-",     "-",       "-",        "crediting", "-",    "-",      "-",        "-"),
        "declined":  ("-",     "-",       "-",        "-",         "-",    "failed", "past_due", "-"),
        "crediting": ("-",     "-",       "-",        "-",         "paid", "-",      "-",        "-"),
        "paid":      ("-",     "-",       "-",        "-",         "-",    "-",      "-",        "-"),
        "failed":    ("-",     "-",       "-",        "-",         "-",    "-",      "-",        "-"),
        "past_due":  ("-",     "-",       "-",        "-",         "-",    "-",      "-",        "taken"),
    }),
    "charge": (CHARGE, ChargeStatus, ChargeEvent, {
        #             answered     refused   given_up
        "pending":   ("succeeded", "failed", "failed"),
        "succeeded": ("-",         "-",      "-"),
        "failed":    ("-",         "-",      "-"),
    }),
}
CASES = [(name, status, event, row[i]) for name, (_, statuses, events, rows) in EXPECTED.items()
         for status, row in rows.items() for i, event in enumerate(events)]


@pytest.mark.parametrize("table_name, status, event, expected", CASES)
def test_each_status_and_event_leads_where_the_table_says(table_name, status, event, expected):
    table, statuses, events, _ = EXPECTED[table_name]
    if expected == "-":
        with pytest.raises(InvalidTransition):
            after(table, statuses(status), events(event))
    else:
        assert after(table, statuses(status), events(event)) == expected


def test_the_expected_tables_name_every_status_and_event():
    for table, statuses, events, rows in EXPECTED.values():
        assert set(rows) == {s.value for s in statuses}
        assert all(len(row) == len(events) for row in rows.values())


def test_every_bonus_move_has_one_source_which_the_runner_claims():
    assert [bonus_move(e) for e in BonusEvent] == [
        ("pending", "taken"), ("taken", "charged"), ("taken", "declined"), ("charged", "crediting"),
        ("crediting", "paid"), ("declined", "failed"), ("declined", "past_due"), ("past_due", "taken")]
