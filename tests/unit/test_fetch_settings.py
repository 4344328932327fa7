"""What a service's fetches ask the broker to wait for (CONSUMER_FETCH_MIN_BYTES, CONSUMER_FETCH_MAX_WAIT_MS): at
once on the sagas' path, batched in notifications, and what the settings say is what the consumer is built with."""

import pytest
from billing.bootstrap import definition as billing
from contracts.bootstrap import definition as contracts
from escrow.bootstrap import definition as escrow
from faststream.kafka import KafkaBroker
from notifications.bootstrap import definition as notifications
from platform_runtime.dead_letters import DeadLetters
from platform_runtime.service import _subscribe, build_runtime
from pydantic import ValidationError

from tests.support.settings import settings_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("definition", [contracts, billing, escrow], ids=lambda d: d.name)
def test_the_services_on_the_sagas_path_take_a_record_as_soon_as_it_is_written(definition):
    settings = settings_of(definition)
    assert (settings.consumer_fetch_min_bytes, settings.consumer_fetch_max_wait_ms) == (1, 500)


def test_notifications_waits_for_64_kib_of_events_or_250_ms_and_an_operator_may_undo_it(monkeypatch):
    settings = settings_of(notifications)
    assert (settings.consumer_fetch_min_bytes, settings.consumer_fetch_max_wait_ms) == (64 * 1024, 250)
    monkeypatch.setenv("CONSUMER_FETCH_MIN_BYTES", "1")
    assert settings_of(notifications).consumer_fetch_min_bytes == 1


@pytest.mark.parametrize("field, value", [("consumer_fetch_min_bytes", 0), ("consumer_fetch_max_wait_ms", -1),
                                          ("consumer_fetch_max_wait_ms", 30_001)])
def test_a_fetch_setting_out_of_its_bounds_is_refused(field, value):
    with pytest.raises(ValidationError):
        settings_of(notifications, **{field: value})


@pytest.mark.parametrize("definition", [contracts, notifications], ids=lambda d: d.name)
def test_the_consumer_is_built_with_the_services_fetch_settings(definition):
    runtime = build_runtime(definition, settings_of(definition))
    broker = KafkaBroker("127.0.0.1:1", apply_types=False)
    _subscribe(broker, runtime, definition.subscriptions(runtime), DeadLetters(None, definition.name))
    # faststream keeps what it will build the aiokafka consumer with (private, but the only place it is kept).
    built = runtime.subscriber._connection_args
    assert (built["fetch_min_bytes"], built["fetch_max_wait_ms"]) == (
        runtime.settings.consumer_fetch_min_bytes, runtime.settings.consumer_fetch_max_wait_ms)
