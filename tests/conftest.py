"""Shared fixtures. `infra`: the Kafka and PostgreSQL servers of this test session (see tests/infra.py)."""

import os

import pytest
import pytest_asyncio

try:  # tests/ is a package (run from the repo root) or only a rootdir on sys.path (pytest's prepend mode)
    from tests.infra import Infra, provide_infra
except ModuleNotFoundError:
    from infra import Infra, provide_infra


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def infra() -> Infra:
    async with provide_infra() as servers:
        yield servers


def tracing_env() -> dict[str, str]:
    """OpenTelemetry on in the test platform, each service writing its spans to a file of this session."""
    try:
        from tests.support.processes import LOGS
    except ModuleNotFoundError:
        from support.processes import LOGS
    import os

    path = LOGS / f"spans-{os.getpid()}-{{service}}.jsonl"
    return {"TRACING_ENABLED": "true", "TRACING_FILE": str(path)}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(infra: Infra):
    """All four services as separate processes on fresh databases (t_*), ports 18001-18004
    (TEST_DB_PREFIX and TEST_PORT_BASE change both).

    Timers are short (review period 6 s, reminder 3 s before, refund window 6 s, earnings pending 3 s) so timer tests
    finish quickly; a test that wants to approve before auto-release has a few seconds to do so.

    The broker may hold history: TEST_HISTORY_EVENTS (`make test`: 100,000) tops the topics notifications
    reads up to that many unrelated events first. The services' groups begin at the log end (claim_groups),
    so no test waits for what came before; tests/e2e/test_history.py checks it.
    """
    try:
        from tests.support.groups import GroupsTaken
        from tests.support.history import ensure_history
        from tests.support.processes import Platform, available
        from tests.support.smtp import SmtpSink
    except ModuleNotFoundError:
        from support.groups import GroupsTaken
        from support.history import ensure_history
        from support.processes import Platform, available
        from support.smtp import SmtpSink
    # notifications mails to this session's own sink (SMTP port TEST_PORT_BASE+25, its HTTP +26).
    sink = SmtpSink() if available("notifications") else None
    if sink:
        await sink.start()
    running = Platform(infra.kafka_bootstrap, infra.postgres_url, env={"AUTO_RELEASE_AFTER": "PT6S",
                                                                      "REVIEW_REMINDER_BEFORE": "PT3S",
                                                                      "REFUND_RESPONSE_WINDOW": "PT6S",
                                                                      "EARNINGS_PENDING_FOR": "PT3S",
                                                                      "TIMER_POLL_INTERVAL": "0.2",
                                                                      # a saga step unanswered for 15 s is sent
                                                                      # again; 30 s later it needs attention
                                                                      # (shorter re-sends only add load to a
                                                                      # platform that is slow under the suite)
                                                                      "SAGA_STEP_TIMEOUT": "PT15S",
                                                                      "SAGA_STEP_ATTEMPTS": "2",
                                                                      "DELIVERY_RETRY_BACKOFF": "0.5",
                                                                      "DELIVERY_RETRY_BACKOFF_MAX": "4",
                                                                      "DELIVERY_POLL_INTERVAL": "0.2",
                                                                      "ADMIN_EMAIL": "administrators@example.test",
                                                                      # spans of every service as JSON lines
                                                                      **tracing_env(),
                                                                      # a charge the gateway does not answer
                                                                      # fails after 10 s (tests/e2e/test_gateway_work.py)
                                                                      "GATEWAY_CHARGE_WITHIN": "PT10S",
                                                                      "GATEWAY_RETRY_BACKOFF_MAX": "2",
                                                                      **(sink.env if sink else {})},
                       credentials=infra.credentials)
    running.smtp = sink
    try:  # a service that never gets ready must not leave the others (and the sink) running
        wanted = int(os.environ.get("TEST_HISTORY_EVENTS") or 0)
        running.history = await ensure_history(infra.credentials("broker"), wanted) if wanted else 0
        try:
            await running.claim_groups()
        except GroupsTaken as taken:  # every end-to-end test would fail for it: say it once and stop
            pytest.exit(str(taken), returncode=pytest.ExitCode.USAGE_ERROR)
        await running.prepare()
        await running.start_all()
        yield running
    finally:
        running.stop_all()
        if sink:
            sink.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(platform):
    """A caller of the platform: publishes commands, follows every event topic, reads HTTP."""
    from platform_runtime.client import PlatformClient

    from tests.support.processes import TEST_PORTS

    # as another back end (integrator); admin commands as the admin principal
    caller = PlatformClient(bootstrap=platform.kafka, credentials=platform.kafka_as("integrator"),
                            admin_kafka=platform.kafka_as("admin"), ports=dict(TEST_PORTS))
    await caller.start()
    yield caller
    await caller.stop()
