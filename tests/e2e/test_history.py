"""A broker with history (issue 14): the session's platform started after TEST_HISTORY_EVENTS earlier, unrelated
events on the topics notifications reads (`make test`: 100,000), and no test waits for them.

The notification tests (test_notifications.py) run on that same broker with their usual deadlines; this file
checks that the history was there and that the services began after it, never reading it.
"""

import os
import time

import pytest
from tests.e2e.test_notifications import notified
from tests.support.checks import query
from tests.support.groups import committed
from tests.support.history import TOPICS, history_size
from tests.support.story import parties, send_offer

pytestmark = pytest.mark.e2e
WANTED = int(os.environ.get("TEST_HISTORY_EVENTS") or 0)


@pytest.fixture
def history(platform) -> int:
    if not WANTED:
        pytest.skip("no history asked for: TEST_HISTORY_EVENTS unset (make test sets 100000)")
    return platform.history


async def test_the_broker_held_the_history_before_the_platform_started(platform, history):
    assert history >= WANTED
    began = sum(end for tp, end in platform.began_at.items() if tp.topic in TOPICS)
    assert began >= history  # the groups were set to begin after all of it
    assert await history_size(platform.kafka_as("broker")) >= began


async def test_every_group_began_at_the_log_end_and_never_read_the_history(platform, client, history):
    # A fresh offer is told to the freelancer within the usual deadline of the notification tests.
    started = time.monotonic()
    people = await parties(client)
    _, outcome = await send_offer(client, people, amounts=(40_000,))
    assert outcome.type == "OfferSent", outcome.data
    await notified(client, platform.smtp, people.freelancer_id, "offer_received")
    assert time.monotonic() - started < 45

    for service in ("contracts", "escrow", "billing", "notifications"):
        offsets = await committed(platform.kafka_as("broker"), service)
        behind = {tp: (offsets.get(tp), end) for tp, end in platform.began_at.items()
                  if offsets.get(tp, -1) < end}
        assert not behind, f"{service}'s group is before where it began: {behind}"

    # Had notifications read the history, it would know its people (AccountRegistered projects them).
    [row] = await query(platform, "notifications",
                        "SELECT count(*) AS n FROM accounts WHERE account_id LIKE 'acc-history-%'")
    assert row["n"] == 0
