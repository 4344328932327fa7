"""A process's CPU priority (its niceness), for a process off the sagas' path that shares cores with the ones on it.

On a machine where every hop of a saga queues for a core, a service whose work no saga waits for (notifications)
takes its turn after the others when it yields: the sagas' latency falls and its own work is done a little later
(README, issue 10's eighteenth step). Only ever raised: lowering a niceness needs privileges no service has, and a
process started nicer than asked (`nice -n 15 …`) stays as it was started. It orders the processes of one machine
or one container's cgroup; between Kubernetes pods, CPU requests (cpu.weight) decide instead.
"""

import os

NICEST = 19  # the kernel's bound; 0 is the niceness a process normally starts with


def yield_cpu(niceness: int) -> int:
    """Raise this process's niceness to `niceness` if it is lower (0 to NICEST); returns the niceness it now has."""
    if not 0 <= niceness <= NICEST:
        raise ValueError(f"niceness {niceness} is outside 0-{NICEST}")
    if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    return os.getpriority(os.PRIO_PROCESS, 0)
