"""A running batch's progress (its bonuses per status), counted at most as often as the count can be afforded.

The count reads the whole batch: 50-100 ms of the server's time at 100,000 bonuses, ten times that at 1,000,000.
Asked every second (a dashboard polling `GET /bonus-batches/{date}`, the benchmark) and every 2 s by the runner's
log line, it took a core of the database from the batch it reports on: a batch of 1,000,000 slowed from about
1,300 to 600 bonuses/s as it grew (measured). So a new count is made only when the last one is older than fifty
times what it cost (and than `min_age`); in between the last one is served, with its age. At ten times, the counts
of a batch of 1,000,000 (about 0.35 s each) still took 71 s of the database's time in a run of 876 s (2026-12-03).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date

COST_FACTOR = 50  # a count may take at most a fiftieth of the time of one database backend


@dataclass
class _Count:
    counts: dict[str, int]
    taken_at: float  # time.monotonic()
    cost: float  # seconds the count took


@dataclass
class ProgressCounts:
    min_age: float = 1.0
    _last: dict[date, _Count] = field(default_factory=dict)
    _locks: dict[date, asyncio.Lock] = field(default_factory=dict)

    async def get(self, business_date: date, count: Callable[[], Awaitable[dict[str, int]]],
                  max_age: float | None = None) -> tuple[dict[str, int], float]:
        """(bonuses per status, seconds since they were counted); `count` asks the database. A caller content
        with an older count says so with `max_age` (default `min_age`): the runner's log line every 2 s shares
        the counts made for the HTTP reads, and makes one only when none is that recent."""
        max_age = self.min_age if max_age is None else max_age
        if (fresh := self._fresh(business_date, max_age)) is not None:
            return fresh
        async with self._locks.setdefault(business_date, asyncio.Lock()):  # one count at a time per batch
            if (fresh := self._fresh(business_date, max_age)) is not None:
                return fresh
            started = time.monotonic()
            counts = await count()
            now = time.monotonic()
            self._last[business_date] = _Count(counts, now, now - started)
            return counts, 0.0

    def forget(self, business_date: date) -> None:
        """The batch completed: its figures are stored, no count is needed any more."""
        self._last.pop(business_date, None)
        self._locks.pop(business_date, None)

    def _fresh(self, business_date: date, max_age: float) -> tuple[dict[str, int], float] | None:
        last = self._last.get(business_date)
        if last is None:
            return None
        age = time.monotonic() - last.taken_at
        return (last.counts, age) if age < max(max_age, COST_FACTOR * last.cost) else None
