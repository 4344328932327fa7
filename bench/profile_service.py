"""Run a service under cProfile timed by CPU time: `python -m bench.profile_service OUT.prof <service>`.

CPU time, not wall clock: on a shared, loaded machine a wall-clock profile mostly shows the
process waiting for a core. The statistics are written when the service stops on SIGINT
(uvicorn re-raises SIGTERM after its shutdown, which would end the process before the write).
"""

import cProfile
import pstats
import runpy
import sys
import time
from pathlib import Path


def summarize(stats_file: Path, lines: int = 45) -> str:
    """The functions that used the most CPU themselves, then the heaviest call paths by cumulative time."""
    out = []
    for order in ("tottime", "cumulative"):
        stream = _Capture()
        stats = pstats.Stats(str(stats_file), stream=stream)
        stats.strip_dirs().sort_stats(order).print_stats(lines)
        out.append(f"==== by {order}\n{stream.text}")
    return "\n".join(out)


class _Capture:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def main() -> None:
    out, service = Path(sys.argv[1]), sys.argv[2]
    sys.argv = [service]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(service, run_name="__main__", alter_sys=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))
        out.with_suffix(".txt").write_text(summarize(out))


if __name__ == "__main__":
    main()
