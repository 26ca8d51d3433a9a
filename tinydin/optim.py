"""Stochastic gradient descent with mini-batch aware embedding regularization.

Every parameter w with gradient g (of the batch-mean loss) takes the step

    w <- w - lr * (g + r(w))

where r is the regularization term, chosen per kind of parameter.

Embedding tables (parameters whose gradient is a SparseGrad) follow
`embedding_reg`:

  "mba"   mini-batch aware L2, Zhou et al., "Deep Interest Network for
          Click-Through Rate Prediction" (KDD 2018), Eqs. 4-7. Only the rows j
          that appear in the batch move:

              w_j <- w_j - lr * (g_j + lambda * alpha_mj / n_j * w_j)

          alpha_mj = 1 because row j is in the batch (an indicator, not a count
          of its uses). n_j comes from the caller's `occurrence_counts`: the
          number of training samples in which id j occurs, where a sample
          counts an id once however often it appears in its candidate and
          history. Rare ids get a stronger pull towards zero per step, because
          they get fewer steps. lambda
          absorbs the factor 2 of d||w||^2/dw. Every other row, row 0 included,
          stays bit-identical. Cost: O(U D) for U unique ids in the batch.
  "l2"    dense L2 on every row except the padding row 0, every step:
              w <- w - lr * (g + lambda * w)     (g = 0 on rows not in the batch)
          Cost: O(V D) per step, which is what makes it impractical for tables
          with millions of rows.
  "none"  w_j <- w_j - lr * g_j on the batch rows only.

Dense parameters (every other parameter) get plain SGD, plus weight decay on
parameters named "W": g + weight_decay * W. Biases and PReLU/Dice slopes
("alpha") are not decayed.

The learning rate comes from a schedule: `ConstantLR` or `StepDecay`.

Shapes: a table is (V + 1, D), its SparseGrad has ids (U,) and rows (U, D);
occurrence counts are (V + 1,).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from tinydin.layers.base import SparseGrad
from tinydin.layers.embedding import Embedding, ItemEmbedding

EMBEDDING_REGS = ("mba", "l2", "none")


def _check_lr(lr, name: str = "lr") -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{name} {lr} is invalid; the learning rate must be a finite number above 0")
    return float(lr)


class ConstantLR:
    """The same learning rate at every step."""

    def __init__(self, lr: float) -> None:
        self.lr = _check_lr(lr)

    def lr_at(self, step: int) -> float:
        return self.lr

    def __repr__(self) -> str:
        return f"ConstantLR(lr={self.lr})"


class StepDecay:
    """A learning rate multiplied by `factor` every `every_steps` steps.

    lr_at(step) = lr * factor ** (step // every_steps), with steps counted from 0.
    """

    def __init__(self, lr: float, factor: float, every_steps: int) -> None:
        self.lr = _check_lr(lr)
        if not (isinstance(factor, (int, float, np.floating)) and 0.0 < factor <= 1.0):
            raise ValueError(
                f"factor {factor!r} is invalid; StepDecay multiplies the learning rate by "
                f"a factor in (0, 1], e.g. 0.5 to halve it"
            )
        if isinstance(every_steps, bool) or not isinstance(every_steps, (int, np.integer)) or every_steps < 1:
            raise ValueError(f"every_steps {every_steps!r} is invalid; expected an integer of at least 1")
        self.factor = float(factor)
        self.every_steps = int(every_steps)

    def lr_at(self, step: int) -> float:
        return self.lr * self.factor ** (step // self.every_steps)

    def __repr__(self) -> str:
        return f"StepDecay(lr={self.lr}, factor={self.factor}, every_steps={self.every_steps})"


def _declared_tables(layer) -> set[str]:
    """Return the names of the layer's parameters that are embedding tables.

    Embedding layers are known by type before their first backward pass; any
    other layer's table is recognised by its SparseGrad.

    NOTE: a table in a layer of another type is unknown until it has a
    SparseGrad, so a missing occurrence count for it raises at the first
    step(), not at construction.
    """
    names = {name for name, grad in layer.grads.items() if isinstance(grad, SparseGrad)}
    if isinstance(layer, Embedding):
        names.add("weight")
    if isinstance(layer, ItemEmbedding):
        names.update(f"{field}.weight" for field in layer.tables)
    return names


class SGD:
    """Plain SGD over the layers of a model, with the embedding regularization above.

    model: any object whose `named_layers()` yields (layer_name, layer) pairs;
        each layer has `params` and `grads` dicts. A parameter is called
        "layer_name.param_name" in messages and in `occurrence_counts`.
    lr: the learning rate, or None when `schedule` gives it.
    schedule: ConstantLR or StepDecay (anything with `lr_at(step)` and `lr`);
        defaults to ConstantLR(lr).
    embedding_reg: "mba", "l2" or "none".
    reg_lambda: lambda of the embedding regularization (ignored by "none").
    occurrence_counts: for "mba" with reg_lambda > 0, a mapping from each
        table's name to a (V + 1,) array of n_j, the number of training samples
        in which id j occurs, each sample counting an id once. Entry 0 is not
        used. Read once, when the optimizer is built. Ignored by "l2" and
        "none".
    weight_decay: L2 coefficient for dense parameters named "W".

    step() updates every parameter that has a gradient in its layer's `grads`,
    in place and in the parameter's own dtype, then advances the schedule. A
    parameter without a gradient is left as it is, not even decayed. step()
    does not clear the gradients: the next backward pass overwrites them.
    All gradients are checked before any parameter changes, so a step that
    raises leaves the model as it was.
    """

    def __init__(
        self,
        model,
        lr: float | None,
        schedule=None,
        embedding_reg: str = "mba",
        reg_lambda: float = 0.0,
        occurrence_counts: Mapping[str, np.ndarray] | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        if schedule is None:
            if lr is None:
                raise ValueError("SGD needs a learning rate: pass lr or a schedule")
            schedule = ConstantLR(lr)
        elif lr is not None and _check_lr(lr) != schedule.lr:
            raise ValueError(
                f"lr {lr} differs from the schedule's initial learning rate {schedule.lr}; "
                f"pass lr=None with a schedule, or the same value in both"
            )
        self.schedule = schedule

        if embedding_reg not in EMBEDDING_REGS:
            raise ValueError(
                f"embedding_reg {embedding_reg!r} is not known; choose one of "
                f"{', '.join(repr(name) for name in EMBEDDING_REGS)}"
            )
        for name, value in (("reg_lambda", reg_lambda), ("weight_decay", weight_decay)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value} is invalid; expected a finite number >= 0")
        self.embedding_reg = embedding_reg
        self.reg_lambda = float(reg_lambda)
        self.weight_decay = float(weight_decay)
        self.step_count = 0

        self._layers = self._collect_layers(model)
        self._tables = {
            f"{layer_name}.{param_name}"
            for layer_name, layer in self._layers
            for param_name in _declared_tables(layer)
        }

        self._counts: dict[str, np.ndarray] = {}
        self._decay: dict[str, np.ndarray] = {}
        if self._uses_counts:
            self._counts = self._check_counts(occurrence_counts)
            self._check_decay_factor()
            self._decay = self._decay_rates()

    @property
    def lr(self) -> float:
        """The learning rate that the next step() uses."""
        return self.schedule.lr_at(self.step_count)

    @property
    def _uses_counts(self) -> bool:
        return self.embedding_reg == "mba" and self.reg_lambda > 0

    @staticmethod
    def _collect_layers(model) -> list[tuple[str, object]]:
        """List the model's layers, and reject names or arrays that appear twice.

        A layer or array listed twice would be updated twice per step.
        """
        if not hasattr(model, "named_layers"):
            raise TypeError(
                f"{type(model).__name__} has no named_layers(); SGD needs a model that "
                f"yields (layer_name, layer) pairs"
            )
        layers = list(model.named_layers())

        seen_names: set[str] = set()
        seen_arrays: dict[int, str] = {}
        for layer_name, layer in layers:
            if layer_name in seen_names:
                raise ValueError(f"layer name {layer_name!r} appears twice in model.named_layers()")
            seen_names.add(layer_name)

            for param_name, param in layer.params.items():
                full_name = f"{layer_name}.{param_name}"
                if id(param) in seen_arrays:
                    raise ValueError(
                        f"parameter {full_name!r} is the same array as {seen_arrays[id(param)]!r}, "
                        f"so one step would update it twice; let named_layers() yield each "
                        f"parameter once"
                    )
                seen_arrays[id(param)] = full_name
        return layers

    def _params_by_name(self) -> dict[str, np.ndarray]:
        return {
            f"{layer_name}.{param_name}": param
            for layer_name, layer in self._layers
            for param_name, param in layer.params.items()
        }

    def _check_counts(self, occurrence_counts) -> dict[str, np.ndarray]:
        """Validate the MBA occurrence counts once, so that step() stays O(U D)."""
        if occurrence_counts is None:
            raise ValueError(
                f"embedding_reg='mba' with reg_lambda={self.reg_lambda} needs occurrence_counts: "
                f"a mapping from each embedding table ({', '.join(sorted(self._tables)) or 'none found yet'}) "
                f"to the number of training samples in which each id occurs"
            )

        params = self._params_by_name()
        counts = {}
        for name, array in occurrence_counts.items():
            if name not in params:
                raise ValueError(
                    f"occurrence_counts names {name!r}, which is not a parameter of the model; "
                    f"expected one of the tables {sorted(self._tables)}"
                )
            array = np.asarray(array)
            num_rows = params[name].shape[0]
            if array.shape != (num_rows,):
                raise ValueError(
                    f"occurrence counts of {name!r} have shape {array.shape}, but the table has "
                    f"{num_rows} rows; expected shape ({num_rows},), one count per id with "
                    f"entry 0 for the padding id"
                )
            if array.dtype.kind not in "iuf" or not np.isfinite(array).all() or (array < 0).any():
                raise ValueError(
                    f"occurrence counts of {name!r} must be finite numbers >= 0, got dtype "
                    f"{array.dtype} with min {array.min()}"
                )
            counts[name] = array

        missing = sorted(self._tables - counts.keys())
        if missing:
            raise ValueError(
                f"occurrence_counts has no entry for the embedding table(s) {missing}; "
                f"mini-batch aware regularization needs n_j for every table"
            )
        return counts

    def _check_decay_factor(self) -> None:
        """Reject lr and lambda that would push a rare row through zero on every visit.

        One MBA step multiplies the decay part of row j by (1 - lr * lambda / n_j).
        Past a factor of 1 the row changes sign every time it is seen, and past
        2 it grows without bound, so training ends in overflow. A factor of
        exactly 1 sets the decay part to zero, which is harsh but stable.
        """
        lr = self.schedule.lr_at(0)
        for name, counts in self._counts.items():
            seen = counts[counts > 0]
            if seen.size == 0:
                continue
            rarest = float(seen.min())
            factor = lr * self.reg_lambda / rarest
            if factor > 1.0:
                raise ValueError(
                    f"lr {lr:g} * reg_lambda {self.reg_lambda:g} / n_j {rarest:g} = {factor:.3g} "
                    f"for the rarest id of {name!r}; mini-batch aware decay needs this at most 1, "
                    f"or that row flips sign at every step. Lower lr, or reg_lambda to at most "
                    f"{rarest / lr:.3g}"
                )

    def _decay_rates(self) -> dict[str, np.ndarray]:
        """Return lambda / n_j (V + 1,) per table in the table's dtype, inf where n_j = 0.

        Computed once, so that a step gathers one float32 value per batch row
        (in the check, which hands it to the update) instead of the int64
        count twice, and its arithmetic stays in float32. inf marks the ids
        that the check rejects.
        """
        params = self._params_by_name()
        rates = {}
        for name, counts in self._counts.items():
            rate = np.full(counts.shape, np.inf, dtype=params[name].dtype)
            np.divide(self.reg_lambda, counts, out=rate, where=counts > 0)
            rates[name] = rate
        return rates

    def step(self) -> None:
        """Apply one update from the gradients in the layers, then advance the schedule."""
        lr = self.lr

        # Check everything first, so that an invalid gradient leaves every
        # parameter unchanged.
        updates = []
        for layer_name, layer in self._layers:
            for param_name, param in layer.params.items():
                grad = layer.grads.get(param_name)
                if grad is None:
                    continue
                full_name = f"{layer_name}.{param_name}"
                decay = None
                if isinstance(grad, SparseGrad):
                    decay = self._check_sparse(full_name, param, grad)
                    self._tables.add(full_name)
                else:
                    self._check_dense(full_name, param, grad)
                updates.append((param_name, param, grad, decay))

        for param_name, param, grad, decay in updates:
            if isinstance(grad, SparseGrad):
                self._update_table(param, grad, lr, decay)
            else:
                self._update_dense(param_name, param, grad, lr)

        self.step_count += 1

    def _check_sparse(self, full_name: str, table: np.ndarray, grad: SparseGrad) -> np.ndarray | None:
        """Validate a table's SparseGrad and return lambda / n_j (U,) of its rows under MBA, else None."""
        ids, rows = np.asarray(grad.ids), np.asarray(grad.rows)
        num_rows, dim = table.shape[0], table.shape[-1]
        if table.ndim != 2 or ids.ndim != 1 or rows.shape != (ids.shape[0], dim):
            raise ValueError(
                f"SparseGrad of {full_name!r} has ids {ids.shape} and rows {rows.shape}, but the "
                f"table is {table.shape}; expected ids (U,) and rows (U, {dim})"
            )
        if ids.size and ids.dtype.kind not in "iu":
            raise ValueError(f"SparseGrad ids of {full_name!r} have dtype {ids.dtype}; expected integers")
        if ids.size and (ids[0] < 1 or ids[-1] > num_rows - 1 or (np.diff(ids) <= 0).any()):
            raise ValueError(
                f"SparseGrad ids of {full_name!r} must be sorted, unique and in 1..{num_rows - 1} "
                f"(0 is padding and gets no gradient), got ids from {ids.min()} to {ids.max()}"
            )
        self._check_finite(full_name, rows)

        if self._uses_counts:
            if full_name not in self._counts:
                raise ValueError(
                    f"embedding table {full_name!r} has no occurrence counts; add it to "
                    f"occurrence_counts (tables with counts: {sorted(self._counts)})"
                )
            decay = np.take(self._decay[full_name], ids)  # (U,), inf where n_j = 0
            if not np.isfinite(decay).all():
                bad_id = ids[np.flatnonzero(~np.isfinite(decay))[0]]
                raise ValueError(
                    f"id {bad_id} of embedding table {full_name!r} is in the batch but its "
                    f"occurrence count is 0; count occurrences on the same training data "
                    f"that the batches come from"
                )
            return decay
        return None

    def _check_dense(self, full_name: str, param: np.ndarray, grad) -> None:
        if full_name in self._tables:
            raise ValueError(
                f"gradient of embedding table {full_name!r} is a dense array; tables take a "
                f"SparseGrad so that a step touches only the rows of the batch"
            )
        grad = np.asarray(grad)
        if grad.shape != param.shape:
            raise ValueError(
                f"gradient of {full_name!r} has shape {grad.shape}, expected the parameter's "
                f"shape {param.shape}"
            )
        self._check_finite(full_name, grad)

    def _check_finite(self, full_name: str, grad: np.ndarray) -> None:
        if not np.isfinite(grad).all():
            raise FloatingPointError(
                f"gradient of {full_name!r} contains NaN or inf at step {self.step_count}; "
                f"lower the learning rate or check the loss for overflow"
            )

    def _update_table(self, table: np.ndarray, grad: SparseGrad, lr: float, decay: np.ndarray | None) -> None:
        ids, g = grad.ids, grad.rows  # (U,), (U, D)
        old_rows = np.take(table, ids, axis=0)  # (U, D), a copy; np.take copies whole rows

        if decay is not None:
            # decay = lambda * alpha_mj / n_j for each row of the batch, with alpha_mj = 1.
            step = decay[:, None] * old_rows  # (U, D)
            step += g
            step *= lr
            table[ids] = old_rows - step
            return

        if self.embedding_reg == "l2" and self.reg_lambda > 0:
            new_rows = old_rows - lr * (g + self.reg_lambda * old_rows)

            # Every real row decays, whether or not it is in the batch: this
            # O(V D) pass is the cost that mini-batch aware regularization avoids.
            real_rows = table[1:]  # (V, D) view
            real_rows -= lr * (self.reg_lambda * real_rows)

            table[ids] = new_rows
            return

        table[ids] = old_rows - lr * g

    def _update_dense(self, param_name: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        if param_name == "W" and self.weight_decay > 0:
            grad = grad + self.weight_decay * param
        param -= lr * grad

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr}, schedule={self.schedule!r}, embedding_reg={self.embedding_reg!r}, "
            f"reg_lambda={self.reg_lambda}, weight_decay={self.weight_decay})"
        )
