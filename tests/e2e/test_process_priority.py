"""The services as started: notifications yields the CPU to the services a saga waits on (PROCESS_NICENESS,
platform_runtime/priority.py), and those keep the niceness they were started with. The benchmark's mail stand-in
yields to all of them."""

import os
from pathlib import Path

import pytest
from platform_runtime.priority import NICEST

from bench.services import BenchPlatform
from tests.support.ports import free_port
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.e2e


async def test_notifications_runs_nicer_than_the_services_on_the_sagas_path(platform):
    started_with = os.getpriority(os.PRIO_PROCESS, 0)  # what the platform's processes inherit from this run
    niceness = {name.split("#")[0]: os.getpriority(os.PRIO_PROCESS, proc.pid)
                for name, proc in platform.procs.items() if proc.poll() is None}
    assert {"contracts", "notifications"} <= niceness.keys()
    assert niceness == {service: max(started_with, 10) if service == "notifications" else started_with
                        for service in niceness}


def _thread_niceness(pid: int) -> set[int]:
    """Each thread's niceness (field 19 of /proc/<pid>/task/<tid>/stat): the kernel keeps one per thread."""
    return {int(stat.read_text().rsplit(")", 1)[1].split()[16])
            for stat in Path(f"/proc/{pid}/task").glob("*/stat")}


async def test_the_benchmarks_mail_stand_in_runs_at_the_nicest_every_thread_of_it(tmp_path):
    sink = BenchPlatform.__dataclass_fields__["sink_niceness"].default
    assert sink == NICEST  # bench/services.py: a real mail server is not on the platform's cores
    stand_in = SmtpSink(smtp_port=free_port(), http_port=free_port(), directory=tmp_path / "mail", niceness=sink)
    await stand_in.start()
    try:
        assert _thread_niceness(stand_in.proc.pid) == {NICEST}
    finally:
        stand_in.stop()
