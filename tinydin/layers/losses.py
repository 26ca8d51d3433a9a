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

from tinydin.layers.activations import exp_neg_abs, sigmoid as stable_sigmoid
from tinydin.layers.base import Layer


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
