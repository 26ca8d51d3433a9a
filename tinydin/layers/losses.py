"""Binary cross-entropy on logits, the training loss of DIN.

For a logit z and a label y in {0, 1}, with p = sigmoid(z),

    loss(z, y) = -y log p - (1 - y) log(1 - p)
               = max(z, 0) - z y + log(1 + exp(-|z|))

The second form never overflows: exp is taken of -|z| <= 0 only, and log1p
keeps precision when exp(-|z|) is tiny. The layer returns the mean over the
batch, and its gradient is

    dloss/dz_i = (sigmoid(z_i) - y_i) / B
"""
from __future__ import annotations

import numpy as np

from tinydin.layers.base import Layer


def exp_neg_abs(x: np.ndarray) -> np.ndarray:
    """Return exp(-|x|) in x's float dtype, exactly 0 where the result would underflow.

    np.exp sets the underflow flag once exp(-|x|) drops below the smallest
    normal float (|x| > 708 in float64, > 87 in float32), which raises inside
    np.errstate(all="raise"). Past `limit` the result is 0, so log1p(exp(-|x|))
    and sigmoid(x) are off by less than exp(-limit): 3e-305 in float64, 3e-38
    in float32.
    """
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    limit = -0.99 * np.log(np.finfo(dtype).tiny)  # 701.3 in float64, 86.5 in float32
    magnitude = np.abs(x).astype(dtype, copy=False)

    exps = np.exp(-np.minimum(magnitude, limit))
    return np.where(magnitude > limit, 0.0, exps).astype(dtype, copy=False)


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """Return 1 / (1 + exp(-x)) with no overflow or underflow warning for any finite x."""
    exps = exp_neg_abs(x)
    return np.where(np.asarray(x) >= 0, 1.0 / (1.0 + exps), exps / (1.0 + exps))


class BCEWithLogits(Layer):
    """Mean binary cross-entropy of logits against 0/1 labels.

    forward(logits (B,), labels (B,) of 0 and 1, training) -> 0-d array
    backward(dloss=1.0) -> dlogits (B,)
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, logits, labels, training: bool = True) -> np.ndarray:
        logits = np.asarray(logits)
        labels = np.asarray(labels)
        if logits.ndim != 1 or logits.size == 0 or not np.issubdtype(logits.dtype, np.floating):
            raise ValueError(
                f"logits have shape {logits.shape} and dtype {logits.dtype}, expected a "
                f"non-empty float array of shape (B,), one logit per sample"
            )
        if labels.shape != logits.shape:
            raise ValueError(
                f"labels have shape {labels.shape} but logits have {logits.shape}; "
                f"pass one label per logit"
            )
        invalid = (labels != 0) & (labels != 1)
        if invalid.any():
            position = int(np.flatnonzero(invalid)[0])
            raise ValueError(
                f"label {labels[position]} at position {position} is not 0 or 1; "
                f"binary cross-entropy needs click labels (1 = click, 0 = no click)"
            )
        nonfinite = ~np.isfinite(logits)
        if nonfinite.any():
            position = int(np.flatnonzero(nonfinite)[0])
            raise ValueError(
                f"logit {logits[position]} at position {position} is not finite; the model "
                f"diverged, so lower the learning rate or check the inputs"
            )

        labels = labels.astype(logits.dtype)
        exps = exp_neg_abs(logits)
        losses = np.maximum(logits, 0.0) - logits * labels + np.log1p(exps)

        self._cache = (logits, labels)
        return np.asarray(losses.mean())

    def backward(self, dloss=1.0) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("BCEWithLogits.backward called before forward")
        logits, labels = self._cache

        dlogits = (stable_sigmoid(logits) - labels) / logits.size
        return (np.asarray(dloss, dtype=logits.dtype) * dlogits).astype(logits.dtype, copy=False)
