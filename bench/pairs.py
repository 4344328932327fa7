"""`python -m bench.pairs`: two settings compared in alternated runs of the benchmark (`make bench-pairs`).

On these shared cores the hour moves a figure more than most changes do (README, issue 10): a run before a change
and one after it compare two hours. So each pair runs both sides back to back, and the order alternates
(A B, B A, A B, ...) so that neither side always runs first, on a colder broker or a quieter minute. Every figure
is reported per run, as the ratio B / A within each pair, and as the median of those ratios: the comparison the
README's steps quote.

A side is what `python -m bench` accepts (`--service-env KEY=VALUE`, `--sink-niceness`, `--event-loop`, ...);
anything outside the benchmark's reach (the broker's settings, the tree's code) is not compared here. Each run
keeps its JSON under the output directory (`A1/`, `B1/`, ...; `bench/results/pairs/<UTC time>/` by default), with
`pairs.json` beside them, written also when a run fails (the pairs complete before it). A run whose broker was still compiling (its JIT compiler above `COMPILING_MS` per saga
at the highest rate) is marked: such a run measures the broker's warm-up as much as the setting.
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .report import RESULTS
from .stats import THREADS_APART

# Short runs of the full run's order: both rates, a small burst, no floor and no traced run.
DEFAULT_RUN = "--only fund --rates 20,100 --latency-duration 30 --burst 1000 --hops-seconds 0 --skip-raw"
JIT = THREADS_APART["kafka broker"][1]  # the broker's compiler threads, counted as a group of their own
COMPILING_MS = 0.3  # per saga at the highest rate; a broker warmed by a few minutes of load shows 0.00-0.18 ms


def order(pairs: int) -> list[str]:
    """A B, B A, A B, ...: each pair holds both sides, the first alternating."""
    return [side for n in range(pairs) for side in (("A", "B") if n % 2 == 0 else ("B", "A"))]


def figures(result: dict) -> dict[str, float]:
    """The figures compared, by name, from one run's JSON (those the run has)."""
    fund = result.get("fund_saga") or {}
    out: dict[str, float] = {}
    for phase in fund.get("latency", []):
        rate = f"{phase['offered_rate_per_second']:g}/s"
        out[f"p50 at {rate} (ms)"] = phase["latency_ms"]["p50"]
        out[f"p99 at {rate} (ms)"] = phase["latency_ms"]["p99"]
        out[f"platform CPU per saga at {rate} (ms)"] = phase["platform_cpu_ms_per_saga"]
    if burst := fund.get("burst"):
        out["burst (sagas/s)"] = burst["sagas_per_second"]
        out["platform CPU per saga in the burst (ms)"] = burst["platform_cpu_ms_per_saga"]
        caught = burst.get("notifications_caught_up") or {}
        if caught.get("seconds_after_the_window") is not None:
            out["notifications caught up after the burst (s)"] = caught["seconds_after_the_window"]
            out["platform CPU per saga, the burst and its catch-up (ms)"] = caught["platform_cpu_ms_per_saga"]
    return out


def compiling(result: dict) -> bool:
    """Whether the broker was still compiling its hot code during the run's highest rate."""
    phases = (result.get("fund_saga") or {}).get("latency", [])
    if not phases:
        return False
    top = max(phases, key=lambda phase: phase["offered_rate_per_second"])
    return top.get("cpu_ms_per_saga", {}).get(JIT, 0.0) > COMPILING_MS


def compare(runs: list[tuple[str, dict[str, float]]]) -> dict[str, dict]:
    """Runs in the order they ran, as (side, figures), two per pair. Per figure: each side's values in pair order,
    the ratio B / A of each pair (None where the pair lacks the figure or A's is 0), and the median of the ratios
    there are."""
    pairs = [dict(runs[i:i + 2]) for i in range(0, len(runs) - 1, 2)]
    names = list(dict.fromkeys(name for _, run in runs for name in run))  # every run's, in the order first seen
    table = {}
    for name in names:
        a = [pair["A"].get(name) for pair in pairs]
        b = [pair["B"].get(name) for pair in pairs]
        ratios = [round(y / x, 2) if x and y is not None else None for x, y in zip(a, b)]
        known = [ratio for ratio in ratios if ratio is not None]
        table[name] = {"A": a, "B": b, "ratios": ratios,
                       "median": round(statistics.median(known), 2) if known else None}
    return table


def render(table: dict[str, dict], marked: list[str]) -> str:
    """The comparison as a Markdown table, the runs of a compiling broker named below it."""
    def values(xs):
        return " / ".join("-" if x is None else f"{x:g}" for x in xs)
    lines = ["| figure | A | B | B / A per pair | median |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {values(row['A'])} | {values(row['B'])} | {values(row['ratios'])} | "
              f"{values([row['median']])} |" for name, row in table.items()]
    if marked:
        lines.append(f"\nThe broker was still compiling (JIT compiler above {COMPILING_MS} ms per saga at the "
                     f"highest rate) in: {', '.join(marked)}.")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pairs", description=__doc__.splitlines()[0])
    p.add_argument("--a", default="", help="side A's extra arguments of `python -m bench` (default: none)")
    p.add_argument("--b", default="", help="side B's extra arguments, e.g. \"--service-env CONSUMER_MAX_RECORDS=50\"")
    p.add_argument("--pairs", type=int, default=4, help="pairs of runs (about 2 minutes a run here)")
    p.add_argument("--run", default=DEFAULT_RUN, help="the arguments every run has")
    p.add_argument("--out", type=Path, help="where the runs' JSON goes (default bench/results/pairs/<UTC time>)")
    args = p.parse_args(argv)
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    try:  # the runs' arguments as words, once: the checks below and the runs use the same
        args.sides = {"A": shlex.split(args.a), "B": shlex.split(args.b)}
        args.every_run = shlex.split(args.run)
    except ValueError as bad:
        p.error(f"unbalanced quoting: {bad}")
    if args.sides["A"] == args.sides["B"]:
        p.error("--a and --b are the same: nothing to compare")
    if any("--no-save" in words for words in (*args.sides.values(), args.every_run)):
        p.error("--no-save: each run's result is what the pairs are read from")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = args.out or RESULTS / "pairs" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    runs, marked = [], []
    for n, side in enumerate(order(args.pairs)):
        name = f"{side}{n // 2 + 1}"  # each pair holds one run of each side: A1 and B1 are the first pair
        print(f"pairs: run {n + 1} of {2 * args.pairs}, {name}: {(args.b if side == 'B' else args.a) or '(as is)'}",
              flush=True)
        command = [sys.executable, "-m", "bench", *args.every_run, *args.sides[side],
                   "--results-dir", str(out / name), "--label", f"pairs {name}"]
        if subprocess.run(command).returncode != 0:
            print(f"pairs: run {name} failed; its output is above, the runs before it under {out}", file=sys.stderr)
            summarise(args, out, runs[:len(runs) - len(runs) % 2], marked)
            return 1
        result = json.loads(sorted((out / name).glob("*.json"))[-1].read_text())  # the one the run saved
        runs.append((side, figures(result)))
        if compiling(result):
            marked.append(name)
    summarise(args, out, runs, marked)
    return 0


def summarise(args: argparse.Namespace, out: Path, runs: list[tuple[str, dict[str, float]]], marked: list[str]) -> None:
    """pairs.json and the printed table, of the complete pairs in `runs`."""
    table = compare(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pairs.json").write_text(json.dumps({"a": args.a, "b": args.b, "run": args.run, "pairs": len(runs) // 2,
                                                "order": order(args.pairs), "compiling": marked, "figures": table},
                                               indent=2) + "\n")
    print(f"\nA: {args.a or '(as is)'}\nB: {args.b or '(as is)'}\n")
    print(render(table, marked))
    print(f"\nruns and pairs.json: {out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
