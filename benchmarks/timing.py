"""Wall-clock timing with warm-up, medians and interleaved comparisons.

The machine is shared, so a single slow step says little: every figure is the
median of many timed calls after a warm-up, with the 10th and 90th percentiles
beside it to show the spread. Two implementations that are compared with a
ratio are timed in alternating rounds, so that a burst of load from another
process slows both instead of one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, 10th and 90th percentile over `count` timed calls."""

    median: float
    p10: float
    p90: float
    count: int

    @classmethod
    def from_samples(cls, seconds: Sequence[float]) -> Timing:
        values = np.asarray(seconds, dtype=np.float64)
        if values.size == 0:
            raise ValueError("no timed calls; pass at least one duration")
        return cls(
            median=float(np.median(values)),
            p10=float(np.percentile(values, 10)),
            p90=float(np.percentile(values, 90)),
            count=int(values.size),
        )

    def ms(self) -> str:
        """Format as "median ms (p10-p90)"."""
        return f"{self.median * 1e3:.2f} ({self.p10 * 1e3:.2f}-{self.p90 * 1e3:.2f})"


def time_calls(call: Callable[[int], object], warmup: int, repeats: int) -> Timing:
    """Call `call(i)` `warmup` times untimed, then `repeats` times timed, one call each.

    `call` receives a running index so that it can cycle through a pool of
    prepared batches.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    for i in range(warmup):
        call(i)

    durations = []
    for i in range(warmup, warmup + repeats):
        start = time.perf_counter()
        call(i)
        durations.append(time.perf_counter() - start)
    return Timing.from_samples(durations)


def time_interleaved(calls: dict[str, Callable[[int], object]], warmup: int, repeats: int,
                     rounds: int = 5) -> dict[str, Timing]:
    """Time several implementations in alternating rounds and return one Timing each.

    Each implementation is warmed up first. Then, `rounds` times, each one runs
    `repeats // rounds` timed calls in turn (at least one), so every
    implementation sees the same stretch of machine load.
    """
    for call in calls.values():
        for i in range(warmup):
            call(i)

    per_round = max(1, -(-repeats // rounds))  # ceiling division
    durations: dict[str, list[float]] = {name: [] for name in calls}
    index = warmup
    for _ in range(rounds):
        for name, call in calls.items():
            for offset in range(per_round):
                start = time.perf_counter()
                call(index + offset)
                durations[name].append(time.perf_counter() - start)
        index += per_round
    return {name: Timing.from_samples(values) for name, values in durations.items()}
