"""The outer-product activation unit alone: bilinear against materialized.

Both run tinydin's ActivationUnit(unit="outer") with the same weights:
the default bilinear path never forms the (N, D^2) input, and
materialized=True builds x_t = [k_t, vec(q k_t^T), q] for every valid position
and multiplies it by the first-layer weight. One call is forward plus
backward in training mode (Dice inside the unit). Peak memory is the
tracemalloc peak of one such call, inputs excluded; NumPy reports its array
buffers to tracemalloc, so the figure covers every temporary array.
"""
from __future__ import annotations

import tracemalloc

import numpy as np

from benchmarks.context import Context, missing_modules, skipped
from benchmarks.report import megabytes, table
from benchmarks.timing import time_interleaved

ITEM_DIM = 36
HIDDEN = (36,)


def unit_inputs(batch_size: int, max_len: int, seed: int):
    """Return q (B, D), keys (B, T, D), mask (B, T) and dscores (B, T), float32."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch_size, ITEM_DIM)).astype(np.float32) * 0.05
    keys = rng.standard_normal((batch_size, max_len, ITEM_DIM)).astype(np.float32) * 0.05
    lengths = rng.integers(1, max_len + 1, size=batch_size)
    mask = np.arange(max_len)[None, :] < lengths[:, None]  # (B, T)
    keys[~mask] = 0.0
    dscores = rng.standard_normal((batch_size, max_len)).astype(np.float32)
    return q, keys, mask, dscores


def peak_bytes(call) -> int:
    """Return the tracemalloc peak of one call, counted from a fresh start."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def run_outer(context: Context) -> str:
    missing = missing_modules("tinydin.layers.attention")
    if missing:
        return skipped("Outer-product benchmark", missing)
    from tinydin.layers.attention import ActivationUnit

    rows = []
    for batch_size, max_len in context.shapes:
        q, keys, mask, dscores = unit_inputs(batch_size, max_len, context.seed)
        units = {}
        for name, materialized in (("bilinear", False), ("materialized", True)):
            units[name] = ActivationUnit(ITEM_DIM, HIDDEN, activation="dice", unit="outer",
                                         rng=np.random.default_rng(context.seed), dtype=np.float32,
                                         materialized=materialized)

        def forward_backward(unit):
            unit.forward(q, keys, mask, training=True)
            return unit.backward(dscores)

        timings = time_interleaved({name: (lambda i, unit=unit: forward_backward(unit))
                                    for name, unit in units.items()}, context.warmup, context.repeats)
        peaks = {name: peak_bytes(lambda unit=unit: forward_backward(unit)) for name, unit in units.items()}

        scores = {name: unit.forward(q, keys, mask, training=False) for name, unit in units.items()}
        difference = float(np.max(np.abs(scores["bilinear"] - scores["materialized"])))

        valid = int(mask.sum())
        rows.append([
            batch_size, max_len, valid,
            timings["bilinear"].ms(), timings["materialized"].ms(),
            f"{timings['materialized'].median / timings['bilinear'].median:.1f}",
            megabytes(peaks["bilinear"]), megabytes(peaks["materialized"]),
            f"{peaks['materialized'] / peaks['bilinear']:.1f}",
            megabytes(valid * ITEM_DIM * ITEM_DIM * 4), f"{difference:.1e}",
        ])

    header = ["B", "T", "N valid", "bilinear ms (p10-p90)", "materialized ms (p10-p90)", "time ratio",
              "bilinear peak MiB", "materialized peak MiB", "memory ratio", "N x D^2 float32 MiB",
              "max abs score diff"]
    intro = (
        f"D = {ITEM_DIM}, one hidden layer of {HIDDEN[0]} with Dice, float32, history lengths uniform "
        f"in 1..T. Times: forward plus backward, medians over {context.repeats} or more calls after "
        f"{context.warmup} warm-up calls, the two paths alternating in 5 rounds. The last column "
        f"compares the two paths' inference scores."
    )
    return intro + "\n\n" + table(header, rows)
