"""Latency percentiles and CPU accounting shared by the benchmark's parts."""

import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(sorted_samples: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples (q in 0..100)."""
    if not sorted_samples:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_samples) + 0.5 - 1e-9))
    return sorted_samples[min(rank, len(sorted_samples)) - 1]


def summary_ms(seconds: list[float]) -> dict[str, float | int]:
    """count, mean, p50, p90, p99, max in milliseconds."""
    ordered = sorted(s * 1000 for s in seconds)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "mean": round(statistics.fmean(ordered), 3),
        "p50": round(percentile(ordered, 50), 3),
        "p90": round(percentile(ordered, 90), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
    }


def _stat_fields(path: str) -> list[str]:
    """The fields of a /proc/.../stat file after the command name (which may hold spaces and parentheses): utime
    and stime are [11] and [12], the waited-for children's cutime and cstime [13] and [14]. The one reader of
    /proc's CPU times for the whole benchmark. Raises OSError when the process has ended."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int, task: int | None = None) -> float:
    """A process's CPU seconds so far (user + system), all its threads; with `task`, that one thread's. Raises
    OSError when it has ended."""
    fields = _stat_fields(f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def reaped_children_cpu_seconds(pid: int) -> float:
    """The CPU seconds of a process's children that have ended and been waited for (cutime + cstime). A
    PostgreSQL server's autovacuum workers live for less than a second each: no snapshot of running processes
    sees them, but their server, which waits for them, adds their CPU here when they end."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def _threads_named(pid: int, prefixes: tuple[str, ...]) -> list[int]:
    """The thread ids of a process whose name begins with one of the prefixes."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                if f.read().startswith(prefixes):
                    found.append(int(task))
        except OSError:
            continue  # ended meanwhile
    return found


def _machine_busy_idle_steal() -> tuple[float, float, float]:
    """The machine's CPU seconds so far: busy (steal included, as /proc/stat's sum counts it), idle (with iowait),
    and steal alone: time a virtual machine's cores were runnable but the hypervisor ran someone else."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    steal = values[7] if len(values) > 7 else 0
    return (sum(values) - idle) / CLOCK_TICKS, idle / CLOCK_TICKS, steal / CLOCK_TICKS


def _processes(comm: str) -> dict[int, str]:
    """pid -> command line of the processes with this name."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() != comm:
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # exited meanwhile
    return found


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def pid_listening_on(port: int, comm: str) -> int | None:
    """The process named `comm` that listens on this TCP port (e.g. the benchmark's Kafka broker)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    for pid in _processes(comm):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in os.listdir(f"/proc/{pid}/fd")):
                return pid
        except OSError:
            continue
    return None


def kafka_broker_pid(kafka: str) -> int | None:
    """The local broker's process, when the first bootstrap server is on this machine."""
    host, _, port = kafka.split(",")[0].rpartition(":")
    return pid_listening_on(int(port), "java") if host in ("127.0.0.1", "localhost", "") else None


BROKER = "kafka broker"


def counted(services: dict[int, str], broker_pid: int | None) -> dict[int, str]:
    """The processes a run's CPU is counted for, pid -> group: the services' (as given), this process (the load
    generator) and the local broker when there is one (CpuSnapshot.take adds PostgreSQL's)."""
    return {**services, os.getpid(): LOAD_GENERATOR, **({broker_pid: BROKER} if broker_pid else {})}


# The payment gateway simulator's database (billing calls the simulator in its own process, standing in for a
# card network's API): like the mail sink, not the platform's; its backends are counted apart.
GATEWAY_DATABASE = "postgres: payment gateway stand-in"
# PostgreSQL's processes that started and ended within the interval: mostly autovacuum workers (one per database
# per round; those of the benchmark's databases vacuum and analyse the platform's tables), and connections that
# closed. Which database each served is not known once it has ended: shown apart, outside the platform's figures.
ENDED_POSTGRES = "postgres: processes that ended meanwhile (autovacuum workers, closed connections)"
BENCHMARK_DATABASES, OTHER_POSTGRES = "postgres: benchmark databases", "postgres: server and other databases"
POSTGRES_GROUPS = (GATEWAY_DATABASE, BENCHMARK_DATABASES, OTHER_POSTGRES)
DATABASE_GROUP = "postgres: database "  # + its name: the benchmark's databases one by one (by_database)
LOAD_GENERATOR = "bench (this process)"  # the load generator's own CPU, reported apart from the platform's


def postgres_group(cmdline: str, db_prefix: str, by_database: bool = False) -> str:
    """The group of a PostgreSQL process by its title ("postgres: <user> <database> <host> <activity>", or
    "postgres: autovacuum worker <database>"): the gateway stand-in's database, the benchmark's other databases
    (together, or each on its own with `by_database`), or anything else the server runs (its own processes, other
    people's databases)."""
    if f" {db_prefix}gateway" in f"{cmdline} ":
        return GATEWAY_DATABASE
    if f" {db_prefix}" not in cmdline:
        return OTHER_POSTGRES
    words = cmdline.split()
    database = words[-1] if words[1:3] == ["autovacuum", "worker"] else words[2] if len(words) > 2 else ""
    if by_database and database.startswith(db_prefix):
        return DATABASE_GROUP + database
    return BENCHMARK_DATABASES


def is_postgres_group(group: str) -> bool:
    return group in POSTGRES_GROUPS or group.startswith(DATABASE_GROUP)


# Threads counted as a group of their own, out of their process's group: the group -> (thread name prefixes, the
# threads' group). The broker's JIT compiler (HotSpot's C1 and C2 threads) compiles its hot code during its first
# minutes of load, a cost a broker that has run for days no longer pays; apart, a fresh broker's warm-up is seen
# as what it is. Still the platform's CPU: the broker is part of it.
THREADS_APART = {BROKER: (("C1 CompilerThre", "C2 CompilerThre"), f"{BROKER}: JIT compiler")}


def _threads_apart(pid: int, group: str) -> dict[int, float]:
    """The CPU seconds so far of each thread of a process of `group` that is counted apart (none for most groups)."""
    if group not in THREADS_APART:
        return {}
    seconds = {}
    for task in _threads_named(pid, THREADS_APART[group][0]):
        try:
            seconds[task] = process_cpu_seconds(pid, task)
        except OSError:
            continue  # ended meanwhile
    return seconds


def broker_cpu_seconds(pid: int | None) -> tuple[float, float]:
    """The broker's CPU seconds so far: its work, and its JIT compiler's apart (THREADS_APART); (0, 0) when it is
    not known."""
    if pid is None:
        return 0.0, 0.0
    try:
        total, compiler = process_cpu_seconds(pid), sum(_threads_apart(pid, BROKER).values())
    except OSError:
        return 0.0, 0.0
    return total - compiler, compiler


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by each process of interest, grouped, and by the whole machine.

    Groups: the named processes (services, this process, the Kafka broker), the PostgreSQL backends
    serving the benchmark's databases, and every other PostgreSQL process (the server's own, and
    other people's databases on a shared server).
    """

    by_pid: dict[int, tuple[str, float]]
    machine_busy: float
    machine_idle: float
    threads_apart: dict[tuple[int, int], tuple[str, float]]  # (pid, thread id) -> (its group, CPU seconds)
    reaped: dict[int, float]  # a PostgreSQL server's pid -> its ended children's CPU seconds so far
    machine_steal: float = 0.0  # of machine_busy: the hypervisor's (see _machine_busy_idle_steal)

    @classmethod
    def take(cls, named: dict[int, str], db_prefix: str, by_database: bool = False) -> "CpuSnapshot":
        """named: pid -> its group (several processes of one service make one group); by_database: each of the
        benchmark's databases a group of its own (postgres_group)."""
        groups, reaped = dict(named), {}
        for pid, cmdline in _processes("postgres").items():
            if not cmdline.startswith("postgres:"):  # a server: its children title themselves "postgres: ..."
                try:
                    reaped[pid] = reaped_children_cpu_seconds(pid)
                except OSError:
                    pass  # stopped meanwhile
            groups.setdefault(pid, postgres_group(cmdline, db_prefix, by_database))
        by_pid, threads_apart = {}, {}
        for pid, group in groups.items():
            try:
                by_pid[pid] = (group, process_cpu_seconds(pid))
                threads_apart.update(((pid, task), (THREADS_APART[group][1], seconds))
                                     for task, seconds in _threads_apart(pid, group).items())
            except OSError:
                pass  # exited meanwhile
        busy, idle, steal = _machine_busy_idle_steal()
        return cls(by_pid, busy, idle, threads_apart, reaped, steal)

    def since(self, earlier: "CpuSnapshot", wall_seconds: float) -> dict[str, object]:
        """Average cores used by each group over the interval (1.0 = one core fully busy).

        A process that started meanwhile counts from zero; one that ended meanwhile is left out, except
        PostgreSQL's: its server adds its whole life's CPU to the reaped children's once it has waited for it, and
        ENDED_POSTGRES counts that, less what the earlier snapshot had already seen of it. A thread counted apart
        (THREADS_APART) moves its CPU from its process's group to its own; one that ended meanwhile stays in its
        process's group.
        """
        used: dict[str, float] = {}
        for pid, (group, seconds) in self.by_pid.items():
            before = earlier.by_pid.get(pid, (group, 0.0))[1]
            used[group] = used.get(group, 0.0) + seconds - before
        for (pid, task), (group, seconds) in self.threads_apart.items():  # each one's process is in by_pid
            moved = seconds - earlier.threads_apart.get((pid, task), (group, 0.0))[1]
            used[group] = used.get(group, 0.0) + moved
            used[self.by_pid[pid][0]] -= moved
        if self.reaped.keys() & earlier.reaped.keys():  # a server started meanwhile has nothing of this interval
            ended = sum(seconds - earlier.reaped[pid] for pid, seconds in self.reaped.items() if pid in earlier.reaped)
            seen_before = sum(seconds for pid, (group, seconds) in earlier.by_pid.items()
                              if is_postgres_group(group) and pid not in self.by_pid)
            used[ENDED_POSTGRES] = max(ended - seen_before, 0.0)  # 0 if one ended but is not yet waited for
        busy = self.machine_busy - earlier.machine_busy
        idle = self.machine_idle - earlier.machine_idle
        steal = self.machine_steal - earlier.machine_steal
        # Steal is part of busy: a core the hypervisor gave to another guest looks busy from inside. Shown apart,
        # it tells a slow hour of the host from a costlier run of the platform.
        return {"cores_used": {g: round(v / wall_seconds, 3) for g, v in sorted(used.items())},
                "cpu_seconds": {g: round(v, 2) for g, v in sorted(used.items())},
                "machine_busy_fraction": round(busy / max(busy + idle, 1e-9), 3),
                "machine_steal_fraction": round(steal / max(busy + idle, 1e-9), 3), "nproc": os.cpu_count()}


def load_average() -> list[float]:
    return list(os.getloadavg())


STALL_SECONDS = 1.0  # a saga this slow at a load the platform should carry has waited on something stuck


TAIL_SHARE = 0.01  # the sagas a phase's p99 is made of
WORST_SECONDS = 5


def tail(latencies: list[tuple[float, float]], started_unix: float, share: float = TAIL_SHARE) -> dict[str, object]:
    """Where a phase's slowest sagas fall in it, by the second each was scheduled in, from (seconds after the
    phase began it was scheduled, latency) pairs of the sagas that finished.

    A slow tail spread over the whole phase points at the queue; one gathered in a few seconds may be a pause (a
    garbage collection, an autovacuum round) or a state the platform passes through (a young database). So: how
    many of the phase's seconds hold its slowest `share` (the slowest ceil(n * share); of equal latencies, the
    earlier scheduled), its worst seconds, and each second's p50 and max (None for a second no finished saga was
    scheduled in), with the phase's wall-clock start to set them beside a log of the machine's other work.
    """
    if not latencies:
        return {"slowest": 0}
    by_second: dict[int, list[float]] = {}
    for at, seconds in latencies:
        by_second.setdefault(int(at), []).append(seconds * 1000)
    ordered = sorted(latencies, key=lambda pair: pair[1], reverse=True)
    slowest = ordered[:max(1, math.ceil(len(ordered) * share - 1e-9))]
    holding = Counter(int(at) for at, _s in slowest)
    worst = sorted(holding, key=lambda second: (-holding[second], -max(by_second[second])))[:WORST_SECONDS]
    span = range(max(by_second) + 1)
    return {"slowest": len(slowest), "slower_than_ms": round(slowest[-1][1] * 1000, 1),  # the fastest of them
            "seconds_holding_them": len(holding), "of_seconds": len(span),
            "worst_seconds": [{"second": second, "slowest": holding[second],
                               "max_ms": round(max(by_second[second]), 1)} for second in worst],
            "started_unix": round(started_unix, 3),
            "per_second_p50_ms": [round(percentile(sorted(by_second[s]), 50), 1) if s in by_second else None
                                  for s in span],
            "per_second_max_ms": [round(max(by_second[s]), 1) if s in by_second else None for s in span]}


def stalls(latencies: list[tuple[float, float]], threshold: float = STALL_SECONDS) -> dict[str, object]:
    """Sagas slower than `threshold`, from (seconds after the phase began it was scheduled, latency) pairs.

    A stall is a finding to report, not a warm-up artefact to hide: the count, the worst, and when the
    slow ones were scheduled (a cluster at the start is a cold start; one in the middle, a pause).
    """
    slow = sorted((at, seconds) for at, seconds in latencies if seconds >= threshold)
    return {"threshold_ms": threshold * 1000, "count": len(slow),
            "worst_ms": round(max((s for _at, s in slow), default=0.0) * 1000, 1),
            "scheduled_at_s": [round(at, 2) for at, _s in slow[:20]]}
