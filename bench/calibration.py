"""The machine's speed at a run's start and end: a fixed piece of work timed by its own CPU time.

On a shared host the same code spends more CPU in some hours than in others: three alternated pairs of the same
batch of 300,000 bonuses went from 0.83 to 0.70 ms of the machine's CPU a bonus within twenty minutes, while the
hypervisor's steal stayed under 0.3 % (issue 10, thirty-second step). What changes is how fast a core runs the same
instructions (presumably its neighbours' use of the caches and memory, or the host's clock), which no count of CPU
seconds shows. Timed the same way at the start and end of every run, this work puts each run's figures beside a
reading of the machine's speed at those two instants. Lower is faster; figures compare within one CPU model
(`machine.cpu`).
"""

import hashlib
import json
import statistics
import time

# A message-like document: what the services spend most of their Python time on is parsing, encoding and hashing
# such documents, and moving through lists and dicts of them.
_DOCUMENT = {"id": "5b0f3a8e-2f4d-4c1e-9a7b-1c2d3e4f5a6b", "type": "BonusPaid", "subject": "bonus-batch-2026-12-07",
             "data": {"bonuses": [{"bonus_id": f"bonus-{i:06d}", "client_id": f"client-{i % 97}",
                                   "freelancer_id": f"freelancer-{i % 89}", "amount": 1_000 + i, "currency": "USD"}
                                  for i in range(40)]}}


def _work() -> int:
    touched = 0
    for _ in range(60):
        text = json.dumps(_DOCUMENT, sort_keys=True)
        parsed = json.loads(text)
        touched += len(hashlib.sha256(text.encode()).digest()) + len(parsed["data"]["bonuses"])
    by_client: dict[str, int] = {}
    for i in range(60_000):
        key = f"client-{i % 997}"
        by_client[key] = by_client.get(key, 0) + i
    return touched + len(sorted(by_client.values(), reverse=True))


def cpu_calibration(repeats: int = 15, warm_up_seconds: float = 0.5) -> dict:
    """The work's CPU milliseconds, each repeat and their median, after half a second of the same work: a core
    that was idle ran its first tenths of a second at about half speed here (35 ms a repeat falling to 18 within
    seven repeats), and that ramp is not what the figure is for. What is left varies from one second to the next
    (medians of 17-32 ms a few seconds apart, on an idle machine), and a run that began at its fast end still spent
    a fifth more CPU a bonus than another had: the neighbours' load read at two instants, beside the run, not a
    correction of its figures."""
    warm_until = time.monotonic() + warm_up_seconds
    while time.monotonic() < warm_until:
        _work()
    times = []
    for _ in range(repeats):
        started = time.process_time_ns()
        _work()
        times.append(round((time.process_time_ns() - started) / 1e6, 2))
    return {"cpu_ms_median": round(statistics.median(times), 2), "cpu_ms": times}
