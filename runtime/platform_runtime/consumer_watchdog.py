"""A consumer that stopped fetching is restarted by the service itself.

After the broker restarts, an aiokafka client can stay unable to talk to it for good, without raising anything
to its user: NodeNotReadyError forever (aio-libs/aiokafka#1133), or a consumer that fetches nothing after the
whole cluster came back (aio-libs/aiokafka#703). Seen here under the chaos run: after a broker restart escrow
handled nothing for 14 minutes while its lag client logged NodeNotReadyError every 15 s, and the refund sagas
waiting for it needed attention. Readiness alone does not help: an orchestrator stops routing HTTP to the pod
but never restarts it, and nothing restarts a local process.

So the watchdog looks every few seconds. Records waiting on partitions this consumer holds (its own positions
against the log ends it fetched, and the broker's log ends against the group's committed offsets, which the
backlog metrics read) with no batch handled for `CONSUMER_STALL_AFTER` is a stall: readiness goes red, and the
consumer is stopped and started again. It rejoins the group and resumes from the committed offsets, which are
committed only after their database commit, so nothing is skipped and a redone batch is dropped by the inbox.
A batch being handled is not a stall of fetching either (a transient fault is retried without limit while the
database is down, and a new consumer would wait as well): the watchdog leaves such a consumer alone, and readiness
and the KafkaConsumerStalled alert say so.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import metrics
from .logging import get_logger

log = get_logger(__name__)


@dataclass
class StallDetector:
    """Lag seen, and still there `after` seconds later with no batch handled since: a stall. Pure."""

    after: float
    _lag_since: float | None = None  # the first check that saw lag with no batch handled since
    stalled: bool = False

    def observe(self, lag: int, last_batch_at: float, now: float) -> bool:
        if lag <= 0:
            self._lag_since = None
        elif self._lag_since is None or last_batch_at >= self._lag_since:
            self._lag_since = now  # new lag, or progress since it was seen: the clock starts again
        self.stalled = self._lag_since is not None and now - self._lag_since >= self.after
        return self.stalled

    def reset(self) -> None:
        self._lag_since, self.stalled = None, False


@dataclass
class ConsumerWatchdog:
    detector: StallDetector
    lag: Callable[[], int]  # records waiting on the partitions this consumer holds
    last_batch_at: Callable[[], float]  # time.monotonic() of the last handled batch
    handling: Callable[[], bool]  # a batch is being handled (perhaps retrying a transient fault)
    restart: Callable[[], Awaitable[None]]
    interval: float
    _restart_failed: bool = False  # the last restart did not finish (the broker may be down still): again

    async def check(self) -> bool:
        """One look; True when it restarted the consumer."""
        stalled = self.detector.observe(self.lag(), self.last_batch_at(), time.monotonic())
        if not (stalled or self._restart_failed):
            return False
        if self.handling():
            return False  # not stuck fetching: the batch goes on when its dependency answers
        log.error("consumer_stalled_restarting", after_seconds=self.detector.after, lag=self.lag(),
                  again=self._restart_failed)
        metrics.CONSUMER_RESTARTS.inc()
        self._restart_failed = True
        await self.restart()
        self._restart_failed = False
        self.detector.reset()
        log.info("consumer_restarted")
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the watchdog must outlive one failed restart
                log.warning("consumer_watchdog_failed", error=repr(error))
