"""Two settings compared in alternated runs (bench/pairs.py): the order, the figures read from a run, the ratios
B / A within each pair and their median, a compiling broker marked, and the runs started as asked."""

import json
import sys

import pytest

from bench import pairs

pytestmark = pytest.mark.unit


def result(p99_at_100: float, jit_at_100: float = 0.0, burst: float = 600.0) -> dict:
    def phase(rate, p50, p99, jit=0.0):
        return {"offered_rate_per_second": float(rate), "latency_ms": {"p50": p50, "p99": p99},
                "platform_cpu_ms_per_saga": 16.5, "cpu_ms_per_saga": {pairs.JIT: jit}}
    return {"fund_saga": {"latency": [phase(20, 20.0, 40.0, jit=5.0), phase(100, 80.0, p99_at_100, jit=jit_at_100)],
                          "burst": {"sagas_per_second": burst, "platform_cpu_ms_per_saga": 2.5}}}


def test_each_pair_holds_both_sides_and_the_first_alternates():
    assert pairs.order(1) == ["A", "B"]
    assert pairs.order(4) == ["A", "B", "B", "A", "A", "B", "B", "A"]


def test_the_figures_of_a_run_are_each_rates_percentiles_and_cpu_and_the_burst():
    got = pairs.figures(result(150.0))
    assert got["p99 at 100/s (ms)"] == 150.0 and got["p50 at 20/s (ms)"] == 20.0
    assert got["platform CPU per saga at 100/s (ms)"] == 16.5
    assert got["burst (sagas/s)"] == 600.0 and got["platform CPU per saga in the burst (ms)"] == 2.5
    assert pairs.figures({"fund_saga": None}) == {}


def test_a_burst_with_notifications_caught_up_adds_the_catch_up_and_the_cpu_up_to_it():
    run = result(150.0)
    run["fund_saga"]["burst"]["notifications_caught_up"] = {"seconds_after_the_window": 1.5,
                                                             "platform_cpu_ms_per_saga": 3.1}
    got = pairs.figures(run)
    assert got["notifications caught up after the burst (s)"] == 1.5
    assert got["platform CPU per saga, the burst and its catch-up (ms)"] == 3.1
    run["fund_saga"]["burst"]["notifications_caught_up"] = {"seconds_after_the_window": None}  # not at the deadline
    assert "notifications caught up after the burst (s)" not in pairs.figures(run)


def test_a_ratio_is_b_over_a_within_its_pair_whichever_ran_first_and_the_median_is_of_the_ratios():
    runs = [("A", {"p99": 200.0}), ("B", {"p99": 100.0}),   # pair 1: A first
            ("B", {"p99": 300.0}), ("A", {"p99": 200.0}),   # pair 2: B first
            ("A", {"p99": 100.0}), ("B", {"p99": 100.0})]
    row = pairs.compare(runs)["p99"]
    assert row["A"] == [200.0, 200.0, 100.0] and row["B"] == [100.0, 300.0, 100.0]
    assert row["ratios"] == [0.5, 1.5, 1.0]
    assert row["median"] == 1.0


def test_a_pair_without_a_figure_or_with_a_zero_has_no_ratio_and_is_left_out_of_the_median():
    runs = [("A", {"x": 0.0, "y": 1.0}), ("B", {"x": 5.0, "y": 2.0}),
            ("B", {"x": 4.0}), ("A", {"x": 2.0, "y": 1.0})]
    table = pairs.compare(runs)
    assert table["x"]["ratios"] == [None, 2.0] and table["x"]["median"] == 2.0
    assert table["y"]["ratios"] == [2.0, None] and table["y"]["median"] == 2.0


def test_a_run_whose_broker_was_still_compiling_at_the_highest_rate_is_marked():
    assert pairs.compiling(result(150.0, jit_at_100=0.9))
    assert not pairs.compiling(result(150.0, jit_at_100=0.05))  # 5 ms at 20/s: only the highest rate counts
    assert not pairs.compiling({"fund_saga": {"latency": []}})


def test_the_printout_has_every_figure_and_names_the_compiling_runs():
    table = pairs.compare([("A", {"p99": 200.0}), ("B", {"p99": 100.0})])
    text = pairs.render(table, ["A1"])
    assert "| p99 | 200 | 100 | 0.5 | 0.5 |" in text
    assert "still compiling" in text and "A1" in text


def test_a_side_of_one_word_that_looks_like_an_option_is_taken_as_written_with_an_equals_sign():
    # as `make bench-pairs` passes them: --b="$(PAIR_B)"
    assert pairs.parse_args(["--a=", "--b=--sink-niceness=0"]).b == "--sink-niceness=0"


@pytest.mark.parametrize("argv", [
    ["--b", ""],                                           # nothing to compare
    ["--b", " "],                                          # the same words
    ["--b", "--sink-niceness 0", "--pairs", "0"],          # no pair
    ["--b", "--label 'unbalanced"],                        # quoting a shell would refuse
    ["--b", "--sink-niceness 0 --no-save"],                # no result to read the pairs from
    ["--b", "--sink-niceness 0", "--run", "--only fund --no-save"],
])
def test_what_cannot_make_a_comparison_is_refused(argv):
    with pytest.raises(SystemExit):
        pairs.parse_args(argv)


def test_the_runs_are_started_in_alternated_order_each_with_its_sides_arguments_and_its_own_results(
        tmp_path, monkeypatch, capsys):
    started = []

    class Done:
        returncode = 0

    def run(command):
        started.append(command)
        out = command[command.index("--results-dir") + 1]
        label = command[command.index("--label") + 1]
        b = "--event-loop" in command
        (tmp_path / out).mkdir(parents=True, exist_ok=True)
        jit = 0.9 if label == "pairs A1" else 0.0
        (tmp_path / out / "20261206T000000Z.json").write_text(json.dumps(result(100.0 if b else 200.0, jit_at_100=jit)))
        return Done()

    monkeypatch.setattr(pairs.subprocess, "run", run)
    assert pairs.main(["--b", "--event-loop asyncio", "--pairs", "2", "--out", str(tmp_path)]) == 0
    labels = [command[command.index("--label") + 1] for command in started]
    assert labels == ["pairs A1", "pairs B1", "pairs B2", "pairs A2"]
    assert all(command[:3] == [sys.executable, "-m", "bench"] for command in started)
    assert [("--event-loop" in command) for command in started] == [False, True, True, False]
    summary = json.loads((tmp_path / "pairs.json").read_text())
    assert summary["figures"]["p99 at 100/s (ms)"]["ratios"] == [0.5, 0.5]
    assert summary["compiling"] == ["A1"]
    assert "| p99 at 100/s (ms) | 200 / 200 | 100 / 100 | 0.5 / 0.5 | 0.5 |" in capsys.readouterr().out


def test_a_failed_run_stops_the_pairs_and_the_complete_pairs_before_it_are_summarised(tmp_path, monkeypatch):
    class Ran:
        def __init__(self, returncode):
            self.returncode = returncode

    def run(command):  # the first pair completes, the third run fails
        name = command[command.index("--label") + 1].split()[-1]
        if name == "B2":
            return Ran(1)
        out = tmp_path / name
        out.mkdir()
        (out / "20261206T000000Z.json").write_text(json.dumps(result(100.0 if name.startswith("B") else 200.0)))
        return Ran(0)

    monkeypatch.setattr(pairs.subprocess, "run", run)
    assert pairs.main(["--b", "--event-loop asyncio", "--pairs", "2", "--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "pairs.json").read_text())
    assert summary["pairs"] == 1 and summary["figures"]["p99 at 100/s (ms)"]["ratios"] == [0.5]


def test_a_figure_only_later_runs_have_is_still_compared():
    table = pairs.compare([("A", {"x": 1.0}), ("B", {"x": 1.0}), ("B", {"x": 1.0, "y": 3.0}), ("A", {"x": 1.0, "y": 1.0})])
    assert list(table) == ["x", "y"] and table["y"]["ratios"] == [None, 3.0]


def test_a_run_saved_into_a_directory_of_its_own_leaves_no_latest_json_there(tmp_path):
    from bench.report import save
    run = {"started_at": "2026-12-06T19:28:18Z"}
    assert save(run, tmp_path / "main").name == "20261206T192818Z.json"
    assert (tmp_path / "main" / "latest.json").exists()  # make bench: bench/results/latest.json, as always
    save(run, tmp_path / "A1", latest=False)
    assert [p.name for p in (tmp_path / "A1").iterdir()] == ["20261206T192818Z.json"]
