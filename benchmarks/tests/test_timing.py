"""Timing statistics and the command-line section list."""
import argparse

import pytest

from benchmarks.run import parse_sections
from benchmarks.timing import Timing, time_calls, time_interleaved


def test_timing_median_and_percentiles():
    timing = Timing.from_samples([5.0, 1.0, 3.0, 2.0, 4.0])
    assert timing.median == 3.0
    # numpy's linear percentile of 1..5: 10th is 1.4, 90th is 4.6.
    assert timing.p10 == pytest.approx(1.4)
    assert timing.p90 == pytest.approx(4.6)
    assert timing.count == 5


def test_timing_rejects_empty():
    with pytest.raises(ValueError, match="no timed calls"):
        Timing.from_samples([])


def test_time_calls_counts_calls():
    seen = []
    timing = time_calls(seen.append, warmup=2, repeats=3)
    assert seen == [0, 1, 2, 3, 4]
    assert timing.count == 3


def test_interleaved_alternates_rounds():
    order = []
    calls = {"a": lambda i: order.append(("a", i)), "b": lambda i: order.append(("b", i))}
    timings = time_interleaved(calls, warmup=1, repeats=4, rounds=2)
    assert timings["a"].count == 4
    assert timings["b"].count == 4
    # Warm-up a, warm-up b, then per round two calls of a followed by two of b.
    assert [name for name, _ in order] == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]


def test_sections_keep_run_order():
    assert parse_sections("torch,step") == ["step", "torch"]


def test_sections_reject_unknown():
    with pytest.raises(argparse.ArgumentTypeError, match="unknown section speed"):
        parse_sections("step,speed")
