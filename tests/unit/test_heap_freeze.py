"""The heap frozen at start (GC_FREEZE_AT_START, platform_runtime/heap.py): what a started service holds is left out
of later full collections, what it allocates afterwards is still collected, and every service does it unless told
not to. Each case runs in a process of its own: freezing this test process would change every later test's heap."""

import subprocess
import sys
import textwrap

import pytest
from billing.bootstrap import definition as billing
from contracts.bootstrap import definition as contracts
from escrow.bootstrap import definition as escrow
from notifications.bootstrap import definition as notifications

from tests.support.settings import settings_of

pytestmark = pytest.mark.unit


def run(script: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_what_lived_at_start_is_out_of_the_full_collections_and_later_garbage_is_still_collected():
    out = run("""
        import gc, weakref
        from platform_runtime.heap import freeze_what_started

        class Node: pass
        started = [Node() for _ in range(10_000)]          # lives as long as the process
        garbage = Node(); garbage.me = garbage              # a cycle nobody holds any more
        ref_before = weakref.ref(garbage); del garbage
        frozen = freeze_what_started()
        tracked = {id(o) for o in gc.get_objects()}
        later = Node(); later.me = later                    # a cycle made after the freeze
        ref_later = weakref.ref(later); del later
        gc.collect()
        print(frozen >= 10_000, ref_before() is None, any(id(n) in tracked for n in started), ref_later() is None)
    """)
    assert out == "True True False True", (
        "frozen at least what lived; the start-up's cycle collected before the freeze; what lived is no longer "
        "walked by a collection; a cycle made afterwards still collected")


def test_a_full_collection_walks_only_what_came_after_the_freeze():
    out = run("""
        import gc, time
        from platform_runtime.heap import freeze_what_started

        started = [[i] for i in range(1_000_000)]         # a million containers, like a started service's heap
        def full_collection_ms():
            best = float("inf")
            for _ in range(3):
                t = time.process_time(); gc.collect(); best = min(best, time.process_time() - t)
            return best * 1000
        before = full_collection_ms()
        freeze_what_started()
        after = full_collection_ms()
        print(f"{before:.1f} {after:.1f}")
    """)
    before, after = map(float, out.split())
    assert after < before / 5, f"a full collection took {before} ms of CPU before the freeze and {after} ms after"


@pytest.mark.parametrize("definition", [contracts, billing, escrow, notifications], ids=lambda d: d.name)
def test_every_service_freezes_its_heap_at_start_unless_told_not_to(definition, monkeypatch):
    assert settings_of(definition).gc_freeze_at_start is True
    monkeypatch.setenv("GC_FREEZE_AT_START", "false")
    assert settings_of(definition).gc_freeze_at_start is False
