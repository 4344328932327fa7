"""One call to the payment gateway, bounded in time, classified, counted and timed (Prometheus)."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram

from platform_runtime.logging import get_logger

from ..domain.gateway import Declined, GatewayUnavailable
from ..domain.gateway_work import Answered, GatewayAnswer, Refused, Unanswered

log = get_logger(__name__)
CALLS = Counter("gateway_calls_total", "Payment gateway calls by operation and outcome "
                "(succeeded, declined, unavailable)", ["operation", "outcome"])
CALL_SECONDS = Histogram("gateway_call_seconds", "Duration of one payment gateway call", ["operation"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


async def call_gateway(operation: str, call: Callable[[], Awaitable[str]], timeout: float) -> GatewayAnswer:
    """The gateway's answer to `call` (which returns the gateway's reference); never raises for the gateway."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reference = await call()
    except Declined as declined:
        answer: GatewayAnswer = Refused(declined.reason_code, declined.message)
    except (GatewayUnavailable, TimeoutError) as error:
        answer = Unanswered(f"{type(error).__name__}: {error}"[:1000])
    except Exception as error:  # noqa: BLE001 - the gateway's client failing is the gateway not answering
        log.warning("gateway_call_error", operation=operation, error=repr(error))
        answer = Unanswered(f"{type(error).__name__}: {error}"[:1000])
    else:
        answer = Answered(reference)
    CALL_SECONDS.labels(operation).observe(time.monotonic() - started)
    CALLS.labels(operation, _OUTCOMES[type(answer)]).inc()
    return answer


_OUTCOMES = {Answered: "succeeded", Refused: "declined", Unanswered: "unavailable"}
