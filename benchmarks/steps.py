"""The training step and the inference call that the benchmarks time.

A training step is what tinydin's training loop does per batch:

    logits = model.forward(batch, training=True)
    loss   = BCEWithLogits(logits, labels)
    model.backward(dloss/dlogits)
    optimizer.step()                      SGD, with "mba", "l2" or "none"

Inference is model.forward(batch, training=False). Batches are built before
timing, so neither figure includes make_batch (the epoch benchmark does).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

# The learning rate only has to keep a few hundred steps on random labels
# finite; its value does not change the cost of a step.
BENCH_LR = 0.01
# Any lambda above 0 makes "mba" and "l2" do their regularization work.
BENCH_REG_LAMBDA = 1e-4


@dataclass
class Trainer:
    """A model, its loss layer and its optimizer, ready for `step(batch)`."""

    model: object
    loss: object
    optimizer: object

    def step(self, batch) -> float:
        logits = self.model.forward(batch, training=True)
        loss = self.loss.forward(logits, batch.label.astype(logits.dtype))
        self.model.backward(self.loss.backward(1.0))
        self.optimizer.step()
        return float(loss)

    def phases(self, batch) -> dict[str, float]:
        """Run one step and return the seconds spent in forward, loss, backward and update."""
        times = {}
        start = time.perf_counter()
        logits = self.model.forward(batch, training=True)
        times["forward"] = time.perf_counter() - start

        start = time.perf_counter()
        self.loss.forward(logits, batch.label.astype(logits.dtype))
        dlogits = self.loss.backward(1.0)
        times["loss"] = time.perf_counter() - start

        start = time.perf_counter()
        self.model.backward(dlogits)
        times["backward"] = time.perf_counter() - start

        start = time.perf_counter()
        self.optimizer.step()
        times["optimizer"] = time.perf_counter() - start
        return times

    def infer(self, batch) -> np.ndarray:
        return self.model.forward(batch, training=False)


def build_trainer(kind: str, config, samples, embedding_reg: str = "mba") -> Trainer:
    """Build a "din" or "base" model from `config` with SGD; `samples` give the MBA counts."""
    from tinydin.layers.losses import BCEWithLogits
    from tinydin.models import build_model, occurrence_counts
    from tinydin.optim import SGD

    model = build_model(kind, config)
    counts = occurrence_counts(model, samples) if embedding_reg == "mba" else None
    optimizer = SGD(model, lr=BENCH_LR, embedding_reg=embedding_reg,
                    reg_lambda=0.0 if embedding_reg == "none" else BENCH_REG_LAMBDA,
                    occurrence_counts=counts)
    return Trainer(model=model, loss=BCEWithLogits(), optimizer=optimizer)
