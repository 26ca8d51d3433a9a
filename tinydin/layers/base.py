"""The protocol every tinydin layer follows, and the sparse gradient type.

A layer owns two dicts keyed by parameter name:

    params[name]  the parameter array
    grads[name]   its gradient after the last backward(), same shape as the
                  parameter, or a SparseGrad for an embedding table

and two methods:

    out = layer.forward(x, training=...)   caches what backward needs
    dx  = layer.backward(dout)             returns dL/dx and fills grads

backward never writes into `dout`, into the cache or into `params`: callers
(gradient checks, the notebooks) reuse all three.

Shapes use fixed letters everywhere: B batch, T history length, F item fields,
D item vector width, H hidden width, V vocabulary size (table rows are V + 1,
because id 0 is padding).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseGrad:
    """Gradient of an embedding table, stored only for the rows a batch used.

    ids:  (U,) sorted unique row ids, padding id 0 excluded
    rows: (U, D) summed gradient of each of those rows

    Equal to a dense (V + 1, D) gradient that is zero on every other row;
    `to_dense` builds that array, for tests and small tables only.
    """

    ids: np.ndarray
    rows: np.ndarray

    def to_dense(self, num_rows: int) -> np.ndarray:
        dense = np.zeros((num_rows, self.rows.shape[1]), dtype=self.rows.dtype)
        dense[self.ids] = self.rows
        return dense


class Layer:
    """Base class: empty `params` and `grads`, and the two-method protocol."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray | SparseGrad] = {}

    def forward(self, x, training: bool = True):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def zero_grads(self) -> None:
        self.grads = {}

    def state(self) -> dict[str, np.ndarray]:
        """Return the non-parameter arrays a checkpoint must keep (Dice's running stats)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state` returned; layers without state ignore it."""


def check_dtype(dtype) -> np.dtype:
    """Accept float32 (training) or float64 (gradient checks) and reject the rest."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(
            f"dtype {dtype} is not supported; use float32 for training or "
            f"float64 for gradient checks"
        )
    return dtype
