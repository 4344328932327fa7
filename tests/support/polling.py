"""Waiting for a result in a test: poll with a deadline, never a fixed sleep."""

import asyncio
import inspect
import time


async def eventually(condition, timeout: float, what: str, every: float = 0.1):
    """Poll `condition` (a function answering a value, or an awaitable of one) until its answer is truthy, and
    return that answer; at the deadline raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s (last: {result!r})")
        await asyncio.sleep(every)
