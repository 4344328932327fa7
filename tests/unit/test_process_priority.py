"""A process's CPU priority (PROCESS_NICENESS, platform_runtime/priority.py): the services on the sagas' path at 0,
notifications yielding the CPU to them at 10, only ever raised, and bounded as the kernel bounds it."""

import subprocess
import sys

import pytest
from billing.bootstrap import definition as billing
from contracts.bootstrap import definition as contracts
from escrow.bootstrap import definition as escrow
from notifications.bootstrap import definition as notifications
from platform_runtime.priority import yield_cpu
from pydantic import ValidationError

from tests.support.settings import settings_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("definition", [contracts, billing, escrow], ids=lambda d: d.name)
def test_the_services_on_the_sagas_path_keep_the_niceness_they_are_started_with(definition):
    assert settings_of(definition).process_niceness == 0


def test_notifications_yields_the_cpu_and_an_operator_may_undo_it(monkeypatch):
    assert settings_of(notifications).process_niceness == 10
    monkeypatch.setenv("PROCESS_NICENESS", "0")
    assert settings_of(notifications).process_niceness == 0


@pytest.mark.parametrize("value", [-1, 20])
def test_a_niceness_the_kernel_would_not_take_is_refused_at_start(value):
    with pytest.raises(ValidationError):
        settings_of(notifications, process_niceness=value)
    with pytest.raises(ValueError):
        yield_cpu(value)


def run_yield_cpu(asked: int, started_with: int) -> tuple[int, int]:
    """A fresh process's niceness before and after yield_cpu (a process of its own: this one's could not come back).
    `nice -n` adds to the niceness this test runs with, so the figures are read, not assumed."""
    code = ("import os; from platform_runtime.priority import yield_cpu; "
            f"before = os.getpriority(os.PRIO_PROCESS, 0); print(before, yield_cpu({asked}))")
    done = subprocess.run(["nice", "-n", str(started_with), sys.executable, "-c", code],
                          capture_output=True, text=True, check=True)
    before, after = map(int, done.stdout.split())
    return before, after


def test_a_process_is_made_nicer_as_asked():
    before, after = run_yield_cpu(asked=10, started_with=0)
    assert after == max(before, 10)


def test_a_process_started_nicer_than_asked_stays_as_it_was_started():
    before, after = run_yield_cpu(asked=10, started_with=15)
    assert before >= 15 and after == before
