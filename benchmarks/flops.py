"""Analytic FLOP counts of one DIN or BaseModel step, and the machine's GEMM rate.

A FLOP here is one floating-point add or multiply, so a multiply-add counts 2
and an (m x k) @ (k x n) product counts 2 m k n. Only the contractions
(matrix products, einsums, the pooling sum) are counted; element-wise work
(Dice, PReLU, masks, the loss) and table lookups are left out. The counts
therefore bound the arithmetic from below, and the achieved GFLOP/s of a
step says how far the step is from being limited by arithmetic.

Symbols: B batch, N valid history positions in the batch, P = B * Tb the
padded positions, D item width, a_1..a_L the activation unit's hidden widths,
m_1..m_K the MLP's hidden widths, E the width of the user-field embeddings.

Forward FLOPs of DIN as tinydin computes it (valid positions, except where noted):

    first layer of the activation unit, hidden width a_1:
      concat, folded:  q (W_q + W_d) per sample           2 B D a_1
                       k (W_k - W_d) and (q * k) W_p      4 N D a_1
      outer, bilinear: P_b = q^T M + W_k per sample        2 B D^2 a_1
                       q W_q per sample                    2 B D a_1
                       k . P_b per position                2 P D a_1
                       (tinydin runs this one product as a batched matmul
                       over the padded (B, T) grid, so it counts P, not N)
    later layers:      2 N a_i a_(i+1), and 2 N a_L for the score
    weighted pooling:  2 N D
    MLP:               2 B ((E + 2D) m_1 + m_1 m_2 + ... + m_K)

The BaseModel has the MLP term and N D adds for sum pooling. A training step
is counted as 3 times the forward count: the backward pass of every
contraction is two contractions of the same size (one for the input
gradient, one for the weight gradient, or for the two inputs of an einsum).

A padded implementation without folding (the PyTorch reference) computes the
activation unit at all P positions on its full input width: 2 P (4D) a_1 for
concat, 2 P (2D + D^2) a_1 for outer, plus the same later layers and pooling
with P in place of N.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    """The sizes a FLOP count needs: see the module docstring for the symbols."""

    batch: float            # B
    valid: float            # N, the mean number of valid positions per batch
    padded: float           # P = B * Tb
    item_dim: int           # D
    attention_hidden: tuple[int, ...]
    mlp_hidden: tuple[int, ...]
    user_dim: int = 0       # E


def _mlp_forward(shape: Shape) -> float:
    widths = (shape.user_dim + 2 * shape.item_dim,) + tuple(shape.mlp_hidden) + (1,)
    return 2.0 * shape.batch * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def _attention_tail(rows: float, hidden: tuple[int, ...]) -> float:
    """Layers after the first: hidden to hidden, then to the one score."""
    widths = tuple(hidden) + (1,)
    return 2.0 * rows * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def din_forward_flops(shape: Shape, unit: str) -> float:
    """Forward FLOPs of tinydin's DIN: folded concat or bilinear outer (module docstring)."""
    b, n, d = shape.batch, shape.valid, shape.item_dim
    a1 = shape.attention_hidden[0]
    if unit == "concat":
        first = 2 * b * d * a1 + 4 * n * d * a1
    elif unit == "outer":
        first = 2 * b * d * d * a1 + 2 * b * d * a1 + 2 * shape.padded * d * a1
    else:
        raise ValueError(f"unit {unit!r} is not known; use 'concat' or 'outer'")
    return first + _attention_tail(n, shape.attention_hidden) + 2 * n * d + _mlp_forward(shape)


def padded_din_forward_flops(shape: Shape, unit: str, materialized_rows: float | None = None) -> float:
    """Forward FLOPs of a DIN that runs the full-width first layer on `materialized_rows` rows.

    The default row count is P (every padded position), as the PyTorch
    reference computes; pass N for a materialized unit on valid rows only.
    """
    rows = shape.padded if materialized_rows is None else materialized_rows
    d = shape.item_dim
    a1 = shape.attention_hidden[0]
    if unit == "concat":
        width = 4 * d
    elif unit == "outer":
        width = 2 * d + d * d
    else:
        raise ValueError(f"unit {unit!r} is not known; use 'concat' or 'outer'")
    first = 2 * rows * width * a1
    return first + _attention_tail(rows, shape.attention_hidden) + 2 * rows * d + _mlp_forward(shape)


def base_forward_flops(shape: Shape) -> float:
    """Forward FLOPs of the BaseModel: N D adds of sum pooling and the MLP."""
    return shape.valid * shape.item_dim + _mlp_forward(shape)


def training_flops(forward: float) -> float:
    """FLOPs of forward plus backward: 3 times the forward count (module docstring)."""
    return 3.0 * forward


def measure_gemm_gflops(size: int = 2048, repeats: int = 10, dtype=np.float32) -> tuple[float, float]:
    """Return (median GFLOP/s, median seconds) of a square float32 matrix product `size`^3.

    This is the arithmetic ceiling NumPy's BLAS reaches on this machine with
    its current thread count; small products in a DIN step run well below it.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty((size, size), dtype=dtype)
    for _ in range(2):
        np.matmul(a, b, out=out)

    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        durations.append(time.perf_counter() - start)
    seconds = float(np.median(durations))
    return 2.0 * size ** 3 / seconds / 1e9, seconds
