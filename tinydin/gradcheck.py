"""Finite-difference gradient checks, for tinydin's layers and for your own.

For a layer with output y = f(x; theta), pick a fixed random upstream gradient G
(never all ones: ones hide a transposed or summed-the-wrong-way backward) and
check the scalar

    L(x, theta) = sum(G * f(x; theta))

whose exact gradient is what `backward(G)` returns. Each entry of each parameter
and input is nudged by +-eps and the slope is read off by central differences,

    dL/dw ~= (L(w + eps) - L(w - eps)) / (2 eps)          error O(eps^2)

and compared with the relative error

    rel = max|a - n| / max(1e-8, max(|a| + |n|))   (maxima over the tensor)

The denominator is the tensor's scale, not each entry's: an entry whose true
gradient is nearly zero carries only roundoff (about 1e-10 here), and dividing
that by its own tiny size would flag a correct backward. A wrong backward is
off by the tensor's scale and still gives rel near 1.

In float64 with eps = 1e-5 a correct backward gives rel around 1e-9 or less;
anything above 1e-7 is a bug (or a kink such as PReLU at 0 inside eps). The
default eps balances the two errors: truncation grows as eps^2, roundoff in the
loss as 1e-16 * |L| / eps, and the two meet near the cube root of float64's
epsilon (about 6e-6). At 1e-6, whole-model checks with small gradients came
within a factor 1.1 of the tolerance; at 1e-5 they stay below 1e-8.

Layers with running statistics (Dice) would update them on every perturbed
forward pass. `check_layer` saves `layer.state()` first and restores it after
every call, so the check sees one fixed function of its inputs.

The layer protocol is the one in `tinydin.layers.base`: `params`, `grads`,
`forward(*inputs, training=...)`, `backward(dout)`. A layer with one
differentiable input returns that gradient from backward; with several, a tuple
in the order of `wrt`; with none (an embedding), anything (it is ignored).
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Callable, Sequence

import numpy as np

from tinydin.layers.base import SparseGrad

DEFAULT_EPS = 1e-5
DEFAULT_TOLERANCE = 1e-7


@dataclass
class CheckRow:
    """One compared tensor: which check, which parameter or input, and the result."""

    check: str
    param: str
    shape: tuple
    rel_error: float
    max_abs_diff: float
    passed: bool

    def as_dict(self) -> dict:
        row = asdict(self)
        row["shape"] = list(self.shape)
        return row


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Return max|a - n| / max(1e-8, max(|a| + |n|)), both maxima over the tensor."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(
            f"analytic gradient has shape {analytic.shape} but the numerical one has "
            f"{numeric.shape}; backward must return one gradient per input element"
        )
    if analytic.size == 0:
        return 0.0
    scale = max(1e-8, float(np.max(np.abs(analytic) + np.abs(numeric))))
    return float(np.max(np.abs(analytic - numeric))) / scale


def numerical_gradient(
    loss: Callable[[], float], array: np.ndarray, eps: float = DEFAULT_EPS
) -> np.ndarray:
    """Return dloss/darray by central differences, nudging `array` in place.

    `loss` takes no argument and must read `array` (a parameter or an input the
    caller passes by reference). Every entry is restored exactly afterwards.
    """
    if array.dtype != np.float64:
        raise ValueError(
            f"numerical gradients need float64 arrays, got {array.dtype}; build the "
            f"layer and its inputs with dtype=np.float64 for checking"
        )
    grad = np.zeros_like(array)
    flat = array.reshape(-1)  # a view, so writes reach `array`
    flat_grad = grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        loss_plus = loss()
        flat[i] = saved - eps
        loss_minus = loss()
        flat[i] = saved
        flat_grad[i] = (loss_plus - loss_minus) / (2 * eps)
    return grad


def _dense(grad, shape) -> np.ndarray:
    if isinstance(grad, SparseGrad):
        return grad.to_dense(shape[0])
    return np.asarray(grad)


def check_layer(
    layer,
    inputs: Sequence,
    *,
    wrt: Sequence[int] = (0,),
    training: bool = True,
    name: str | None = None,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    tolerance: float = DEFAULT_TOLERANCE,
    params: Sequence[str] | None = None,
) -> list[CheckRow]:
    """Compare `layer.backward` with central differences for every parameter and input.

    inputs:   the positional arguments of `layer.forward`; only those at the
              positions in `wrt` are differentiated (float64 arrays), the rest
              (ids, masks, labels) are passed as they are.
    training: passed to forward; Dice in training mode is checked as a function of
              the whole batch, statistics included.
    params:   the parameter names to check (default: all of `layer.params`).
    Returns one CheckRow per parameter and per differentiated input.
    """
    name = name or type(layer).__name__
    inputs = list(inputs)
    saved_state = {key: np.array(value, copy=True) for key, value in layer.state().items()}

    def forward():
        out = layer.forward(*inputs, training=training)
        layer.load_state({key: value.copy() for key, value in saved_state.items()})
        return out

    out = forward()
    rng = np.random.default_rng(seed)
    upstream = rng.standard_normal(np.shape(out))
    upstream_before = upstream.copy()

    analytic_inputs = layer.backward(upstream)
    if not np.array_equal(upstream, upstream_before):
        raise AssertionError(f"{name}.backward wrote into its upstream gradient")
    if len(wrt) == 1:
        analytic_inputs = (analytic_inputs,)
    analytic_params = {key: _dense(grad, layer.params[key].shape) for key, grad in layer.grads.items()}

    def loss() -> float:
        return float(np.sum(upstream * forward()))

    rows = []
    for key in params if params is not None else list(layer.params):
        value = layer.params[key]
        numeric = numerical_gradient(loss, value, eps)
        analytic = analytic_params.get(key, np.zeros_like(value))
        rows.append(_row(name, key, analytic, numeric, tolerance))

    for slot, position in enumerate(wrt):
        value = inputs[position]
        numeric = numerical_gradient(loss, value, eps)
        rows.append(_row(name, f"input[{position}]", np.asarray(analytic_inputs[slot]), numeric, tolerance))
    return rows


def _row(check, param, analytic, numeric, tolerance) -> CheckRow:
    error = rel_error(analytic, numeric)
    diff = float(np.max(np.abs(analytic - numeric))) if numeric.size else 0.0
    return CheckRow(check, param, tuple(numeric.shape), error, diff, error < tolerance)


def format_rows(rows: Sequence[CheckRow]) -> str:
    """Return an aligned table: check, param, shape, relative error, max abs diff, passed."""
    header = ("check", "param", "shape", "rel_error", "max_abs_diff", "passed")
    lines = [
        (row.check, row.param, "x".join(map(str, row.shape)) or "scalar",
         f"{row.rel_error:.2e}", f"{row.max_abs_diff:.2e}", "yes" if row.passed else "NO")
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    text = []
    for cells in [header, *lines]:
        text.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip())
    return "\n".join(text)
