"""The services as started: notifications yields the CPU to the services a saga waits on (PROCESS_NICENESS,
platform_runtime/priority.py), and those keep the niceness they were started with."""

import os

import pytest

pytestmark = pytest.mark.e2e


async def test_notifications_runs_nicer_than_the_services_on_the_sagas_path(platform):
    started_with = os.getpriority(os.PRIO_PROCESS, 0)  # what the platform's processes inherit from this run
    niceness = {name.split("#")[0]: os.getpriority(os.PRIO_PROCESS, proc.pid)
                for name, proc in platform.procs.items() if proc.poll() is None}
    assert {"contracts", "notifications"} <= niceness.keys()
    assert niceness == {service: max(started_with, 10) if service == "notifications" else started_with
                        for service in niceness}
