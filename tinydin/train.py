"""The training and evaluation loop: SGD on binary cross-entropy, model selection on validation.

One epoch shuffles the training samples (from the seed), and for each batch runs

    logits = model.forward(batch)          (B,)
    loss   = mean BCE(logits, labels)
    model.backward(dloss/dlogits)          fills model.grads
    optimizer.step()                       SGD with mini-batch aware regularization

Before the first step, with item_bias_init="click_rate", the item bias starts
at the training split's smoothed click-rate log-odds (the popularity
baseline's table), so the models start from the popularity baseline's scores. With
item_bias_reg_lambda set, the bias gets its own regularization strength
(through a second SGD over the bias alone).

After each epoch the model is scored on the validation split (AUC, GAUC, log
loss). The epoch with the best validation AUC is kept: its parameters and Dice
running statistics are copied aside and restored at the end, and only then is
the test split scored. Training stops early after `patience` epochs without a
better validation AUC. The test split never influences a choice.

The same model config seed and TrainConfig.seed give bit-identical metrics:
every random draw (initialization, shuffling) comes from those seeds.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tinydin.data.batching import iterate_batches
from tinydin.data.samples import Samples
from tinydin.layers.losses import BCEWithLogits
from tinydin.metrics import auc, gauc, log_loss
from tinydin.models import Popularity, occurrence_counts
from tinydin.optim import EMBEDDING_REGS, SGD, ConstantLR, StepDecay

logger = logging.getLogger("tinydin.train")

SCHEDULES = ("constant", "step")
ITEM_BIAS_INITS = ("zero", "click_rate")


@dataclass
class TrainConfig:
    """How to train: optimizer, schedule, regularization, epochs and logging."""

    epochs: int = 5                 # maximum number of epochs (early stopping may end sooner)
    batch_size: int = 32            # samples per SGD step
    lr: float = 0.1                 # initial learning rate
    schedule: str = "constant"      # "constant", or "step": lr * decay_factor every decay_every epochs
    decay_factor: float = 0.5       # multiplier of the step schedule, in (0, 1]
    decay_every: int = 1            # epochs between two decays of the step schedule
    embedding_reg: str = "mba"      # "mba" (mini-batch aware), "l2" (every row every step) or "none"
    reg_lambda: float = 0.0         # lambda of the embedding regularization
    weight_decay: float = 0.0       # L2 on the dense weight matrices of the MLPs
    item_bias_init: str = "zero"    # "zero", or "click_rate": smoothed log-odds of each item's training click rate
    item_bias_reg_lambda: float | None = None  # lambda of the item bias's regularization; None uses reg_lambda
    seed: int = 0                   # seed of the shuffling order
    patience: int = 2               # stop after this many epochs without a better validation AUC; 0 never stops early
    eval_batch_size: int = 4096     # samples per forward pass when scoring a split
    log_every: int = 500            # steps between two progress lines
    verbose: bool = True            # log progress at INFO (True) or DEBUG (False)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "decay_every", "eval_batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"TrainConfig.{name} = {value!r} must be a positive integer")
        if isinstance(self.patience, bool) or int(self.patience) != self.patience or self.patience < 0:
            raise ValueError(f"TrainConfig.patience = {self.patience!r} must be 0 (never stop early) or a positive integer")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr = {self.lr!r} must be a finite number above 0, e.g. 0.1")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule = {self.schedule!r} is not known; use one of {', '.join(SCHEDULES)}")
        if not 0.0 < self.decay_factor <= 1.0:
            raise ValueError(f"TrainConfig.decay_factor = {self.decay_factor!r} must be in (0, 1], e.g. 0.5")
        if self.embedding_reg not in EMBEDDING_REGS:
            raise ValueError(
                f"TrainConfig.embedding_reg = {self.embedding_reg!r} is not known; use one of {', '.join(EMBEDDING_REGS)}"
            )
        if self.item_bias_init not in ITEM_BIAS_INITS:
            raise ValueError(
                f"TrainConfig.item_bias_init = {self.item_bias_init!r} is not known; use one of {', '.join(ITEM_BIAS_INITS)}"
            )
        for name in ("reg_lambda", "weight_decay", "item_bias_reg_lambda"):
            value = getattr(self, name)
            if name == "item_bias_reg_lambda" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TrainConfig.{name} = {value!r} must be a finite number >= 0")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"TrainConfig.seed = {self.seed!r} must be a non-negative integer")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """Result of `train`: per-epoch history, the chosen epoch and its metrics."""

    history: list[dict]             # one dict per epoch: epoch, train_loss, val_auc, val_gauc, val_logloss, lr, seconds
    best_epoch: int                 # 1-based epoch with the best validation AUC (0 for popularity)
    validation: dict                # evaluate() on validation with the restored best parameters
    test: dict                      # evaluate() on test with the restored best parameters
    seconds: float                  # wall-clock time of the whole call
    stopped_early: bool = False     # True when patience ended training before config.epochs

    def to_dict(self) -> dict:
        return asdict(self)


# Per-dataset, per-model defaults, chosen on the VALIDATION split (never on
# test) by the sweeps that docs/training.md records with their commands and
# every result.
#   synthetic  DIN: lr 0.3 halved every epoch beat constant 0.1, 0.3 and 1.0 and
#              MBA lambda 0.1 and 1.0; its best epoch was 3. BaseModel: lr 0.1
#              beat 0.3 and 1.0 and was still improving until epoch 7.
#   movielens  Both models start the item bias at the training split's smoothed
#              click-rate log-odds and leave it out of MBA (lambda 0): with a
#              zero start or MBA on the bias, neither model reached the
#              popularity baseline's validation AUC. The other embeddings get a
#              strong MBA pull (lr * lambda = 1, the most that the rarest ids,
#              seen once, allow) and the MLP weights weight decay 1e-3, because
#              every run that fitted the training split much beyond popularity
#              lost validation AUC within an epoch or two. DIN: batch 128, lr 0.04,
#              lambda 25, best epoch 3. BaseModel: batch 32, lr 0.01, lambda 100,
#              best epoch 1. Validation has only 61 users, so differences below
#              about 0.01 AUC between these runs are within noise.
_DEFAULTS: dict[str, dict[str, dict]] = {
    "synthetic": {
        "din": dict(epochs=4, batch_size=32, lr=0.3, schedule="step", decay_factor=0.5, decay_every=1,
                    reg_lambda=0.0, patience=2),
        "base": dict(epochs=8, batch_size=32, lr=0.1, reg_lambda=0.0, patience=3),
    },
    "movielens": {
        "din": dict(epochs=6, batch_size=128, lr=0.04, reg_lambda=25.0, weight_decay=1e-3,
                    item_bias_init="click_rate", item_bias_reg_lambda=0.0, patience=2),
        "base": dict(epochs=6, batch_size=32, lr=0.01, reg_lambda=100.0, weight_decay=1e-3,
                     item_bias_init="click_rate", item_bias_reg_lambda=0.0, patience=2),
    },
    # NOTE: not tuned, because no copy of the Amazon Electronics files was
    # available for a sweep; these repeat the synthetic choices.
    "amazon": {
        "din": dict(epochs=4, batch_size=32, lr=0.3, schedule="step", decay_factor=0.5, decay_every=1,
                    reg_lambda=0.0, patience=2),
        "base": dict(epochs=8, batch_size=32, lr=0.1, reg_lambda=0.0, patience=3),
    },
}


def default_train_config(dataset: str, model_kind: str = "din", **overrides) -> TrainConfig:
    """Return the TrainConfig tinydin uses for `dataset` and `model_kind`, with `overrides` applied.

    The popularity baseline trains nothing, so it gets the plain TrainConfig
    defaults (only the evaluation batch size matters to it).
    """
    if dataset not in _DEFAULTS:
        raise ValueError(f"dataset {dataset!r} has no training defaults; use one of {', '.join(_DEFAULTS)}")
    if model_kind not in ("din", "base", "popularity"):
        raise ValueError(f"model kind {model_kind!r} is not known; use din, base or popularity")
    values = dict(_DEFAULTS[dataset].get(model_kind, {}))
    values.update(overrides)
    return TrainConfig(**values)


def evaluate(model, samples: Samples, batch_size: int = 4096) -> dict:
    """Score `samples` and return auc, gauc, logloss, n, positive_rate and mean_prediction.

    gauc is None (and gauc_skipped_users the number of users left out) when no
    user has both a click and a non-click. For samples that carry the true click
    probability (synthetic data), oracle_auc and oracle_logloss are what the
    truth itself scores (oracle_gauc too, when gauc is defined): the ceiling a
    model can reach on these labels.
    """
    if len(samples) == 0:
        raise ValueError("cannot evaluate on an empty split; check the data split fractions")
    probabilities = model.predict(samples, batch_size=batch_size)
    labels = samples.label

    result = {
        "n": int(len(samples)),
        "auc": auc(labels, probabilities),
        "logloss": log_loss(labels, probabilities),
        "positive_rate": float(labels.mean()),
        "mean_prediction": float(probabilities.mean()),
    }
    try:
        result["gauc"], result["gauc_skipped_users"] = gauc(labels, probabilities, samples.user, return_skipped=True)
    except ValueError:
        # No user with both labels: GAUC is undefined, not zero.
        result["gauc"], result["gauc_skipped_users"] = None, int(np.unique(samples.user).size)

    if samples.true_prob is not None:
        result["oracle_auc"] = auc(labels, samples.true_prob)
        result["oracle_logloss"] = log_loss(labels, samples.true_prob)
        result["oracle_gauc"] = None if result["gauc"] is None else gauc(labels, samples.true_prob, samples.user)
    return result


def _ensure_log_output(verbose: bool) -> None:
    """Show INFO lines on stderr when nothing in the program has configured logging."""
    package_logger = logging.getLogger("tinydin")
    if verbose and not logging.getLogger().handlers and not package_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)


def _make_schedule(config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "step":
        return StepDecay(config.lr, config.decay_factor, config.decay_every * steps_per_epoch)
    return ConstantLR(config.lr)


class _LayerGroup:
    """Some of a model's layers, in the form SGD takes: an object with named_layers()."""

    def __init__(self, layers: list) -> None:
        self._layers = layers

    def named_layers(self):
        return iter(self._layers)


def _make_optimizers(model, train_samples: Samples, config: TrainConfig, schedule) -> list[SGD]:
    """Return the SGD optimizers of one training run: one, or two when the item bias has its own lambda.

    The item bias gets a second SGD over the same schedule only when
    config.item_bias_reg_lambda differs from reg_lambda; every other layer
    stays in the first.
    """
    bias_lambda = config.item_bias_reg_lambda
    has_bias = any(name == "item_bias" for name, _ in model.named_layers())
    groups = [(model, config.reg_lambda)]
    if has_bias and bias_lambda is not None and bias_lambda != config.reg_lambda:
        layers = list(model.named_layers())
        groups = [(_LayerGroup([pair for pair in layers if pair[0] != "item_bias"]), config.reg_lambda),
                  (_LayerGroup([pair for pair in layers if pair[0] == "item_bias"]), bias_lambda)]

    counts = None
    if config.embedding_reg == "mba" and max(reg_lambda for _, reg_lambda in groups) > 0:
        counts = occurrence_counts(model, train_samples)

    optimizers = []
    for group, reg_lambda in groups:
        group_counts = None
        if counts is not None and reg_lambda > 0:
            # Each optimizer checks that it has counts for exactly its own tables.
            names = {f"{name}.{key}" for name, layer in group.named_layers() for key in layer.params}
            group_counts = {name: value for name, value in counts.items() if name in names}
        optimizers.append(SGD(
            group, lr=None, schedule=schedule, embedding_reg=config.embedding_reg, reg_lambda=reg_lambda,
            occurrence_counts=group_counts, weight_decay=config.weight_decay,
        ))
    return optimizers


def _snapshot(model) -> dict[str, np.ndarray]:
    """Copy every parameter and running statistic, to restore the best epoch later."""
    copies = {f"param:{key}": value.copy() for key, value in model.params.items()}
    copies.update({f"state:{key}": value.copy() for key, value in model.state().items()})
    return copies


def _restore(model, snapshot: dict[str, np.ndarray]) -> None:
    # Write into the existing arrays: the layers and the optimizer hold them.
    for key, value in model.params.items():
        value[...] = snapshot[f"param:{key}"]
    model.load_state({key: snapshot[f"state:{key}"] for key in model.state()})


def train(model, splits, config: TrainConfig | None = None) -> TrainResult:
    """Train `model` on splits.train, select the epoch on splits.validation, score splits.test.

    splits: any object with `train`, `validation` and `test` Samples (what
    `load_dataset` returns). A Popularity model is fitted in one pass instead.
    """
    config = config or TrainConfig()
    _ensure_log_output(config.verbose)
    level = logging.INFO if config.verbose else logging.DEBUG
    started = time.perf_counter()

    if isinstance(model, Popularity):
        model.fit(splits.train)
        validation = evaluate(model, splits.validation, config.eval_batch_size)
        test = evaluate(model, splits.test, config.eval_batch_size)
        logger.log(level, "popularity  valid | auc %.4f | logloss %.4f", validation["auc"], validation["logloss"])
        seconds = time.perf_counter() - started
        history = [{"epoch": 0, "train_loss": None, "val_auc": validation["auc"],
                    "val_gauc": validation["gauc"], "val_logloss": validation["logloss"],
                    "lr": None, "seconds": seconds}]
        return TrainResult(history, 0, validation, test, seconds)

    train_samples = splits.train
    num_train = len(train_samples)
    if num_train == 0:
        raise ValueError("the training split is empty; check the data split fractions")
    steps_per_epoch = math.ceil(num_train / config.batch_size)

    if config.item_bias_init == "click_rate":
        model.init_item_bias_from_rates(train_samples)
    optimizers = _make_optimizers(model, train_samples, config, _make_schedule(config, steps_per_epoch))
    loss_layer = BCEWithLogits()
    rng = np.random.default_rng(config.seed)

    history: list[dict] = []
    best_auc, best_epoch, best_snapshot = -math.inf, 0, None
    stale_epochs = 0
    stopped_early = False
    step_width = len(str(steps_per_epoch))

    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        window_loss, window_seen, window_started = 0.0, 0, time.perf_counter()

        batches = iterate_batches(train_samples, config.batch_size, model.config.max_len, shuffle=True, rng=rng)
        for step, batch in enumerate(batches, start=1):
            lr = optimizers[0].lr
            # A diverging step overflows somewhere inside the network; numpy's
            # warnings about it would only precede the one clear error that the
            # model (non-finite logit) or the optimizer (non-finite gradient) raises.
            with np.errstate(over="ignore", invalid="ignore"):
                logits = model.forward(batch, training=True)
                loss = float(loss_layer.forward(logits, batch.label))
                model.backward(loss_layer.backward(1.0))
                for optimizer in optimizers:
                    optimizer.step()

            size = len(batch)
            loss_sum += loss * size
            seen += size
            window_loss += loss * size
            window_seen += size
            if step % config.log_every == 0 or step == steps_per_epoch:
                rate = window_seen / max(time.perf_counter() - window_started, 1e-9)
                logger.log(level, "epoch %d step %*d/%d | loss %.4f | %5.1fk samples/s | lr %.3g",
                           epoch, step_width, step, steps_per_epoch, window_loss / window_seen,
                           rate / 1000.0, lr)
                window_loss, window_seen, window_started = 0.0, 0, time.perf_counter()

        validation = evaluate(model, splits.validation, config.eval_batch_size)
        improved = validation["auc"] > best_auc
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "val_auc": validation["auc"],
            "val_gauc": validation["gauc"],
            "val_logloss": validation["logloss"],
            "lr": lr,
            "seconds": time.perf_counter() - epoch_started,
        }
        history.append(record)
        gauc_text = "  n/a " if validation["gauc"] is None else f"{validation['gauc']:.4f}"
        logger.log(level, "epoch %d valid | auc %.4f | gauc %s | logloss %.4f | train loss %.4f | %.1f s%s",
                   epoch, validation["auc"], gauc_text, validation["logloss"], record["train_loss"],
                   record["seconds"], " | best" if improved else "")

        if improved:
            best_auc, best_epoch, best_snapshot = validation["auc"], epoch, _snapshot(model)
            stale_epochs = 0
        else:
            stale_epochs += 1
            if config.patience and stale_epochs >= config.patience and epoch < config.epochs:
                logger.log(level, "stopping early: no better validation AUC for %d epochs", stale_epochs)
                stopped_early = True
                break

    _restore(model, best_snapshot)
    validation = evaluate(model, splits.validation, config.eval_batch_size)
    test = evaluate(model, splits.test, config.eval_batch_size)
    logger.log(level, "best epoch %d | valid auc %.4f | test auc %.4f | logloss %.4f",
               best_epoch, validation["auc"], test["auc"], test["logloss"])
    return TrainResult(history, best_epoch, validation, test, time.perf_counter() - started, stopped_early)
