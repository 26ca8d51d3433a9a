"""`python -m tinydin gradcheck`: check every layer and model in every configuration.

Each case builds a layer in float64 with random, non-symmetric parameters, runs
`tinydin.gradcheck.check_layer` on random inputs and returns its rows. The table
lists every parameter and every differentiable input of every case; the exit
status is 1 if any row's relative error reaches 1e-7. Layer rows measure the
error against each tensor's own scale; whole-model rows against the model's
largest gradient (see `run_all`).

Cases cover what implementations get wrong: padded positions, a fully padded
history, repeated ids, a batch of one, Dice in training (statistics as part of
the function) and in inference, and both layouts of the activation unit.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Iterator

import numpy as np

from tinydin.gradcheck import CheckRow, check_layer, format_rows
from tinydin.layers.activations import Dice, PReLU, Sigmoid
from tinydin.layers.attention import ActivationUnit
from tinydin.layers.dense import Dense
from tinydin.layers.embedding import Embedding, ItemEmbedding
from tinydin.layers.losses import BCEWithLogits
from tinydin.layers.pooling import MeanPooling, SumPooling, WeightedSumPooling

F64 = np.float64


def _randomize(layer, rng: np.random.Generator) -> None:
    """Give every parameter random values: zeros or equal entries can hide a wrong backward."""
    for value in layer.params.values():
        value[...] = rng.uniform(-0.8, 0.8, value.shape)
    for value in layer.state().values():
        value[...] = rng.uniform(0.5, 1.5, value.shape)


def _away_from_zero(x: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Push entries out of (-margin, margin), so no PReLU kink lies within eps."""
    near = np.abs(x) < margin
    x[near] = np.where(x[near] < 0, -margin, margin) * 2
    return x


def activation_cases(rng) -> Iterator[tuple]:
    dense = Dense(5, 4, rng=rng, dtype=F64)
    _randomize(dense, rng)
    yield "dense", dense, [rng.standard_normal((3, 2, 5))], (0,), True

    mask = np.array([True, True, False, True, False, True])
    one_valid = np.array([False, False, True, False, False, False])
    for training in (True, False):
        mode = "train" if training else "infer"
        for label, case_mask in (("", None), (" padded", mask), (" one valid row", one_valid)):
            dice = Dice(4, F64)
            _randomize(dice, rng)
            yield f"dice {mode}{label}", dice, [rng.standard_normal((6, 4)), case_mask], (0,), training

    prelu = PReLU(4, F64)
    _randomize(prelu, rng)
    yield "prelu", prelu, [_away_from_zero(rng.standard_normal((6, 4))), None], (0,), True
    yield "prelu padded", prelu, [_away_from_zero(rng.standard_normal((6, 4))), mask], (0,), True
    yield "sigmoid", Sigmoid(), [rng.standard_normal((6, 4)), None], (0,), True


# B = 4, T = 5 history mask: full, partly padded, fully padded, one valid position.
HISTORY_MASK = np.array([
    [True, True, True, True, True],
    [True, True, True, False, False],
    [False, False, False, False, False],
    [True, False, False, False, False],
])


def _history_ids(rng, mask: np.ndarray, vocab: int, fields: int) -> np.ndarray:
    """Ids with repeats (vocab is small) and 0 wherever the mask is False."""
    ids = rng.integers(1, vocab + 1, size=mask.shape + (fields,))
    ids[~mask] = 0
    return ids


def embedding_cases(rng) -> Iterator[tuple]:
    table = Embedding(6, 3, rng=rng, dtype=F64, name="goods_id")
    _randomize(table, rng)
    table.params["weight"][0] = 0.0
    ids = _history_ids(rng, HISTORY_MASK, 6, 1)[..., 0]
    yield "embedding repeated ids and padding", table, [ids], (), True

    items = ItemEmbedding(("goods_id", "cate_id"), (7, 3), (3, 2), rng=rng, dtype=F64)
    _randomize(items, rng)
    yield "item embedding two fields", items, [_history_ids(rng, HISTORY_MASK, 3, 2)], (), True


def pooling_cases(rng) -> Iterator[tuple]:
    keys_shape = HISTORY_MASK.shape + (3,)
    for normalize in ("none", "softmax"):
        inputs = [rng.standard_normal(HISTORY_MASK.shape), rng.standard_normal(keys_shape), HISTORY_MASK]
        yield f"weighted sum pooling {normalize}", WeightedSumPooling(normalize), inputs, (0, 1), True
    for layer in (SumPooling(), MeanPooling()):
        yield f"{type(layer).__name__}", layer, [rng.standard_normal(keys_shape), HISTORY_MASK], (0,), True


def attention_cases(rng) -> Iterator[tuple]:
    dim = 3
    for unit in ("outer", "concat"):
        for activation in ("dice", "prelu", "sigmoid"):
            layer = ActivationUnit(dim, (4,), activation, unit, rng=rng, dtype=F64)
            _randomize(layer, rng)
            q = rng.standard_normal((HISTORY_MASK.shape[0], dim))
            keys = rng.standard_normal(HISTORY_MASK.shape + (dim,))
            name = f"activation unit {unit} {activation}"
            yield name, layer, [q, keys, HISTORY_MASK], (0, 1), True
            if activation == "dice":
                yield name + " inference", layer, [q, keys, HISTORY_MASK], (0, 1), False
        single = ActivationUnit(dim, (4, 3), "dice", unit, rng=rng, dtype=F64)
        _randomize(single, rng)
        one_mask = np.array([[True, True, False]])
        inputs = [rng.standard_normal((1, dim)), rng.standard_normal((1, 3, dim)), one_mask]
        yield f"activation unit {unit} batch of one, two hidden layers", single, inputs, (0, 1), True


def loss_cases(rng) -> Iterator[tuple]:
    labels = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    yield "binary cross-entropy", BCEWithLogits(), [rng.standard_normal(5) * 3, labels], (0,), True


LAYER_GROUPS: list[Callable[[np.random.Generator], Iterator[tuple]]] = [
    activation_cases, embedding_cases, pooling_cases, attention_cases, loss_cases,
]


def run_all(seed: int = 0) -> list[CheckRow]:
    """Run every layer case, then every whole-model case, and return all rows.

    Layer rows divide by each tensor's own scale. Model rows divide by the
    largest gradient anywhere in the model (`tinydin.models.check_model`). The
    reason: on a small batch some tensors of a whole model have a gradient of
    nearly zero (a PReLU slope whose inputs are all positive), and their
    numerical estimate is only roundoff.
    """
    from tinydin.models import check_model, model_gradcheck_cases

    rng = np.random.default_rng(seed)
    rows: list[CheckRow] = []
    for group in LAYER_GROUPS:
        for name, layer, inputs, wrt, training in group(rng):
            rows.extend(check_layer(layer, inputs, wrt=wrt, training=training, name=name, seed=len(rows)))
    for name, model, batch in model_gradcheck_cases(seed):
        rows.extend(check_model(name, model, batch, seed=len(rows)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinydin gradcheck",
        description="Check every hand-written backward pass against central differences in float64.",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH as a JSON list of objects")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parameters and inputs (default 0)")
    args = parser.parse_args(argv)

    rows = run_all(args.seed)
    print(format_rows(rows))
    failed = [row for row in rows if not row.passed]
    worst = max(row.rel_error for row in rows)
    print(f"\n{len(rows)} rows, {len(failed)} failed, largest relative error {worst:.2e} (limit 1e-7)")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([row.as_dict() for row in rows], handle, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
