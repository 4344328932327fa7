"""The benchmark's CPU accounting counts the broker's JIT compiler threads apart from the broker's other work,
without changing the broker's total (bench/stats.py, THREADS_APART). This process plays the broker: one of its
threads, named as HotSpot names its C2 compiler thread, burns a known amount of CPU, and the main thread some."""

import ctypes
import os
import threading
import time

import pytest

from bench.stats import CpuSnapshot, broker_cpu_seconds, reaped_children_cpu_seconds

PR_SET_NAME = 15  # prctl: the calling thread's name, as /proc/<pid>/task/<tid>/comm shows it
COMPILER_SECONDS = 0.3
OWN_SECONDS = 0.1
BROKER, COMPILER = "kafka broker", "kafka broker: JIT compiler"


def burn(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


class CompilerThread(threading.Thread):
    """Named before the first snapshot and alive at the last, as a broker's compiler threads are."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.named, self.go, self.burned, self.end = (threading.Event() for _ in range(4))

    def run(self) -> None:
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(b"C2 CompilerThre"), 0, 0, 0)
        self.named.set()
        self.go.wait()
        burn(COMPILER_SECONDS)
        self.burned.set()
        self.end.wait()


@pytest.mark.skipif(not os.path.isdir(f"/proc/{os.getpid()}/task"), reason="reads Linux's /proc")
def test_the_brokers_jit_compiler_threads_are_counted_apart_and_the_total_is_unchanged():
    named = {os.getpid(): BROKER}
    compiler = CompilerThread()
    compiler.start()
    try:
        assert compiler.named.wait(10)
        before = CpuSnapshot.take(named, db_prefix="no_such_prefix_")
        compiler.go.set()
        burn(OWN_SECONDS)  # the broker's own work
        assert compiler.burned.wait(30)
        after = CpuSnapshot.take(named, db_prefix="no_such_prefix_")
        _, compiler_total = broker_cpu_seconds(os.getpid())  # what the raw limits read: the compiler's CPU so far
    finally:
        compiler.end.set()
        compiler.join(10)  # gone, with its name, before any other test looks at this process's threads
    used = after.since(before, wall_seconds=1.0)["cpu_seconds"]

    assert used[COMPILER] == pytest.approx(COMPILER_SECONDS, abs=0.05)
    assert used[BROKER] >= OWN_SECONDS - 0.02  # the main thread's CPU stays the broker's own
    process_total = after.by_pid[os.getpid()][1] - before.by_pid[os.getpid()][1]
    assert used[BROKER] + used[COMPILER] == pytest.approx(process_total, abs=0.011)  # nothing counted twice
    assert compiler_total == pytest.approx(COMPILER_SECONDS, abs=0.05)


def test_a_process_without_such_threads_is_counted_as_before():
    assert broker_cpu_seconds(os.getpid())[1] == 0.0
    named = {os.getpid(): "contracts"}
    before = CpuSnapshot.take(named, db_prefix="no_such_prefix_")
    burn(0.05)
    used = CpuSnapshot.take(named, db_prefix="no_such_prefix_").since(before, wall_seconds=1.0)["cpu_seconds"]
    assert set(used) >= {"contracts"} and COMPILER not in used


CHILD_SECONDS = 0.2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child")
def test_the_cpu_of_a_child_that_ended_counts_once_it_is_waited_for():
    """What ENDED_POSTGRES reads of a PostgreSQL server: its autovacuum workers end between two snapshots."""
    before = reaped_children_cpu_seconds(os.getpid())
    child = os.fork()
    if child == 0:  # the child: burn, then leave without running the parent's cleanup
        burn(CHILD_SECONDS)
        os._exit(0)
    os.waitpid(child, 0)
    assert reaped_children_cpu_seconds(os.getpid()) - before == pytest.approx(CHILD_SECONDS, abs=0.05)
