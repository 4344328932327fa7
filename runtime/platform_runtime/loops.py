"""The one shape of every background loop: do a step, sleep only when there was nothing to do."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .logging import get_logger

log = get_logger(__name__)


async def poll_forever(step: Callable[[], Awaitable[bool]], idle_seconds: float, name: str,
                       wake: asyncio.Event | None = None) -> None:
    """Run `step` until cancelled. A failing step is logged and tried again: its work stays in the database.

    With `wake`, an idle loop also starts its next step as soon as the event is set (new work announced)."""
    while True:
        if wake is not None:
            wake.clear()
        try:
            busy = await step()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a loop of the service must outlive one bad step
            log.warning(f"{name}_failed", error=repr(error))
            busy = False
        if busy:
            continue
        if wake is None:
            await asyncio.sleep(idle_seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), idle_seconds)
