"""The consumer watchdog on fakes: lag without progress for CONSUMER_STALL_AFTER restarts the consumer, and only then."""

import pytest
from platform_runtime.consumer_watchdog import ConsumerWatchdog, StallDetector

pytestmark = pytest.mark.unit


def test_lag_without_a_batch_for_the_whole_period_is_a_stall():
    detector = StallDetector(after=60)
    assert not detector.observe(lag=5, last_batch_at=0, now=100)  # lag first seen: the clock starts
    assert not detector.observe(lag=5, last_batch_at=0, now=159)
    assert detector.observe(lag=5, last_batch_at=0, now=160)
    assert detector.stalled


def test_progress_or_no_lag_starts_the_clock_again():
    detector = StallDetector(after=60)
    detector.observe(lag=5, last_batch_at=0, now=100)
    assert not detector.observe(lag=3, last_batch_at=130, now=159)  # a batch since: not stuck, clock from 159
    assert not detector.observe(lag=3, last_batch_at=130, now=200)
    assert detector.observe(lag=3, last_batch_at=130, now=219)
    assert not detector.observe(lag=0, last_batch_at=130, now=220)  # caught up
    assert not detector.observe(lag=1, last_batch_at=130, now=221)  # new lag: a new period


def test_an_idle_consumer_with_an_old_last_batch_is_not_stalled_by_new_records():
    """Records that arrive after hours of quiet are lag at once, but the consumer gets the whole period."""
    detector = StallDetector(after=60)
    assert not detector.observe(lag=0, last_batch_at=0, now=10_000)
    assert not detector.observe(lag=2, last_batch_at=0, now=10_001)
    assert not detector.observe(lag=2, last_batch_at=0, now=10_050)


class Fake:
    def __init__(self, lag: int, handling: bool = False, fail_restart: bool = False) -> None:
        self.lag, self.handling, self.fail_restart, self.restarts = lag, handling, fail_restart, 0
        self.now = 0.0

    async def restart(self) -> None:
        self.restarts += 1
        if self.fail_restart:
            raise ConnectionError("broker still down")


def watchdog(fake: Fake) -> ConsumerWatchdog:
    return ConsumerWatchdog(StallDetector(after=0), lambda: fake.lag, lambda: -1.0, lambda: fake.handling,
                            fake.restart, interval=0.01)


async def test_a_stalled_consumer_is_restarted_and_readiness_is_green_again():
    fake = Fake(lag=4)
    dog = watchdog(fake)
    assert await dog.check()
    assert fake.restarts == 1 and not dog.detector.stalled


async def test_a_consumer_with_nothing_to_do_is_left_alone():
    fake = Fake(lag=0)
    dog = watchdog(fake)
    assert not await dog.check() and fake.restarts == 0


async def test_a_batch_being_handled_is_not_a_stall_of_fetching():
    """The batch waits for the database (a transient fault, retried): a new consumer would wait as well."""
    fake = Fake(lag=4, handling=True)
    dog = watchdog(fake)
    assert not await dog.check()
    assert fake.restarts == 0 and dog.detector.stalled


async def test_a_restart_that_failed_is_tried_again_at_the_next_look():
    fake = Fake(lag=0, fail_restart=True)
    dog = watchdog(fake)
    fake.lag = 4
    with pytest.raises(ConnectionError):
        await dog.check()
    fake.lag, fake.fail_restart = 0, False  # the stopped consumer reports no lag of its own
    assert await dog.check()
    assert fake.restarts == 2
