"""DIN, the BaseModel (Embedding&MLP) and a popularity baseline, composed from tinydin.layers.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018
(arXiv:1706.06978), section 4. For one sample with candidate item c and history
items h_1..h_T (mask_t = 1 on real items, 0 on padding):

    q   = embed(c)                                   (B, D)
    k_t = embed(h_t)                                 (B, T, D)   same tables as q
    a_t = g(k_t, q)                                  activation unit, (B, T)
    u   = sum_t w_t k_t                              w_t = a_t * mask_t, or a masked softmax
    x   = concat[user fields, u, q]                  (B, D_user + 2 D)
    z   = Dense(act(... act(Dense(x)) ...)) + b[c_1] one logit per sample, (B,)

b is the optional item bias: a scalar embedding of the candidate's first field
(the item id), as the official DIN code adds, so the MLP need not spend capacity
on how often an item is clicked at all. It starts at zero, or, through
`init_item_bias_from_rates`, at each item's smoothed click-rate log-odds in the
training split (what the popularity baseline scores).

The BaseModel replaces a_t and the weighted sum by u = sum_t mask_t k_t (or the
mean over valid t). Everything else, tables and MLP included, is the same, so a
comparison of the two measures the attention alone.

Backward runs the same steps in reverse. q reaches the logit twice: directly in
x, and through the activation unit. Every k_t does too, through the pooled value
and through its score. Both paths are summed before the shared tables receive
them in one sparse update.

Popularity needs no gradient: it scores a candidate with its smoothed click
rate in the training split.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Iterator

import numpy as np

from tinydin.data.batching import Batch, iterate_batches
from tinydin.data.samples import Samples, count_occurrences
from tinydin.layers.activations import Dice, make_activation, sigmoid
from tinydin.layers.attention import ActivationUnit
from tinydin.layers.base import Layer, SparseGrad, check_dtype
from tinydin.layers.dense import Dense
from tinydin.layers.embedding import Embedding, ItemEmbedding
from tinydin.layers.pooling import MeanPooling, SumPooling, WeightedSumPooling

MODEL_KINDS = ("din", "base", "popularity")
UNITS = ("outer", "concat")
ATTENTION_ACTIVATIONS = ("dice", "prelu", "sigmoid")
MLP_ACTIVATIONS = ("dice", "prelu")
NORMALIZATIONS = ("none", "softmax")
POOLINGS = ("sum", "mean")
DTYPES = ("float32", "float64")

# Width of each item field's embedding when the config names none: 18 per field,
# so two fields (goods id, category id) give the D = 36 of the usual Amazon setup.
DEFAULT_ITEM_DIM = 18
# Width of each user-field embedding when the config names none. User fields are
# small one-hot vocabularies (gender, age bucket, occupation); 8 is tinydin's
# choice, not a number from the paper.
DEFAULT_USER_DIM = 8


@dataclass
class ModelConfig:
    """Everything that fixes the shapes and the initial values of a model."""

    item_fields: tuple[str, ...]                # names of the F item fields; the first is the item id
    vocab_sizes: tuple[int, ...]                # V per item field; tables have V + 1 rows (row 0 is padding)
    embedding_dims: tuple[int, ...] | None = None  # width per item field; None gives 18 each
    user_fields: tuple[str, ...] = ()           # optional one-hot user or context fields
    user_vocab_sizes: tuple[int, ...] = ()      # V per user field, in the order of user_fields
    user_embedding_dims: tuple[int, ...] | None = None  # width per user field; None gives 8 each
    max_len: int = 50                           # T: histories longer than this keep their last T items
    unit: str = "outer"                         # activation unit input: "outer" [k, q k^T, q] or "concat" [q, k, q-k, q*k]
    attention_hidden: tuple[int, ...] = (36,)   # hidden widths of the activation unit's MLP
    attention_activation: str = "dice"          # "dice", "prelu" or "sigmoid" inside the activation unit
    normalize: str = "none"                     # attention weights: "none" (raw scores) or "softmax" over valid items
    mlp_hidden: tuple[int, ...] = (200, 80)     # hidden widths of the prediction MLP
    mlp_activation: str = "dice"                # "dice" or "prelu" in the prediction MLP
    pooling: str = "sum"                        # BaseModel only: "sum" or "mean" of the history vectors
    item_bias: bool = True                      # add a learned scalar per candidate item id to the logit
    dtype: str = "float32"                      # "float32" to train, "float64" for gradient checks
    seed: int = 0                               # seed of the initial parameters

    def __post_init__(self) -> None:
        self.item_fields = tuple(self.item_fields)
        self.vocab_sizes = tuple(self.vocab_sizes)
        self.user_fields = tuple(self.user_fields)
        self.user_vocab_sizes = tuple(self.user_vocab_sizes)
        self.attention_hidden = tuple(self.attention_hidden)
        self.mlp_hidden = tuple(self.mlp_hidden)
        if self.embedding_dims is None:
            self.embedding_dims = (DEFAULT_ITEM_DIM,) * len(self.item_fields)
        self.embedding_dims = tuple(self.embedding_dims)
        if self.user_embedding_dims is None:
            self.user_embedding_dims = (DEFAULT_USER_DIM,) * len(self.user_fields)
        self.user_embedding_dims = tuple(self.user_embedding_dims)
        _validate_config(self)

    @property
    def item_dim(self) -> int:
        """D, the width of an item vector: the sum of the item field widths."""
        return int(sum(self.embedding_dims))

    @property
    def user_dim(self) -> int:
        """Total width of the user-field embeddings in the MLP input."""
        return int(sum(self.user_embedding_dims))

    @classmethod
    def from_samples(cls, samples: Samples, **overrides) -> ModelConfig:
        """Build a config whose fields and vocabulary sizes match `samples`; `overrides` set the rest."""
        user_fields = tuple(sorted(samples.user_fields))
        values = dict(
            item_fields=samples.item_fields,
            vocab_sizes=samples.vocab_sizes,
            user_fields=user_fields,
            user_vocab_sizes=tuple(samples.user_vocab_sizes[name] for name in user_fields),
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        """Return the config as plain JSON types (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Rebuild a config from `to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"model config has unknown keys {unknown}; expected only {sorted(known)}"
            )
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _validate_config(config: ModelConfig) -> None:
    """Raise ValueError naming the first invalid field of `config`, the value and what is allowed."""
    def positive_ints(name: str, values, allow_empty: bool = False) -> None:
        if not values and not allow_empty:
            raise ValueError(f"ModelConfig.{name} is empty; give at least one positive integer")
        for value in values:
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"ModelConfig.{name} = {values} must contain positive integers, got {value!r}")

    def choice(name: str, allowed: tuple[str, ...]) -> None:
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"ModelConfig.{name} = {value!r} is not supported; use one of {', '.join(allowed)}")

    num_fields = len(config.item_fields)
    if num_fields == 0:
        raise ValueError("ModelConfig.item_fields is empty; an item needs at least one field, e.g. ('goods_id',)")
    if len(set(config.item_fields)) != num_fields:
        raise ValueError(f"ModelConfig.item_fields = {config.item_fields} repeats a name; field names must be unique")
    for name, values in (("vocab_sizes", config.vocab_sizes), ("embedding_dims", config.embedding_dims)):
        if len(values) != num_fields:
            raise ValueError(
                f"ModelConfig.{name} has {len(values)} entries for {num_fields} item fields "
                f"{config.item_fields}; give one per field"
            )
        positive_ints(name, values)

    num_user = len(config.user_fields)
    if len(set(config.user_fields)) != num_user:
        raise ValueError(f"ModelConfig.user_fields = {config.user_fields} repeats a name; field names must be unique")
    for name, values in (("user_vocab_sizes", config.user_vocab_sizes),
                         ("user_embedding_dims", config.user_embedding_dims)):
        if len(values) != num_user:
            raise ValueError(
                f"ModelConfig.{name} has {len(values)} entries for {num_user} user fields "
                f"{config.user_fields}; give one per user field"
            )
        positive_ints(name, values, allow_empty=True)

    positive_ints("max_len", (config.max_len,))
    positive_ints("attention_hidden", config.attention_hidden)
    positive_ints("mlp_hidden", config.mlp_hidden, allow_empty=True)
    choice("unit", UNITS)
    choice("attention_activation", ATTENTION_ACTIVATIONS)
    choice("normalize", NORMALIZATIONS)
    choice("mlp_activation", MLP_ACTIVATIONS)
    choice("pooling", POOLINGS)
    choice("dtype", DTYPES)
    if not isinstance(config.item_bias, bool):
        raise ValueError(f"ModelConfig.item_bias = {config.item_bias!r} must be True or False")
    if isinstance(config.seed, bool) or int(config.seed) != config.seed or config.seed < 0:
        raise ValueError(f"ModelConfig.seed = {config.seed!r} must be a non-negative integer")


class _EmbeddingMLPModel(Layer):
    """The parts DIN and the BaseModel share: tables, MLP head, item bias, bookkeeping.

    Subclasses add the history pooling with `_pool_forward` and `_pool_backward`.
    forward(batch, training) -> logits (B,); backward(dlogits (B,)) -> None.
    `params`, `grads` and `state()` are flat dicts "<layer name>.<key>" over
    `named_layers()`, holding the same arrays as the layers.
    """

    kind = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.dtype = check_dtype(config.dtype)
        rng = np.random.default_rng(config.seed)
        self._layers: dict[str, Layer] = {}

        self.item_embedding = ItemEmbedding(
            config.item_fields, config.vocab_sizes, config.embedding_dims, rng=rng, dtype=self.dtype
        )
        for name in config.item_fields:
            self._layers[f"item_embedding.{name}"] = self.item_embedding.tables[name]

        self.user_embeddings: dict[str, Embedding] = {}
        for name, num_ids, dim in zip(config.user_fields, config.user_vocab_sizes, config.user_embedding_dims):
            table = Embedding(num_ids, dim, rng=rng, dtype=self.dtype, name=name)
            self.user_embeddings[name] = table
            self._layers[f"user_embedding.{name}"] = table

        self._build_pooling(rng)

        # Prediction MLP: x -> [Dense -> activation] * len(mlp_hidden) -> Dense(., 1).
        self.mlp: list[tuple[Dense, Layer]] = []
        width = config.user_dim + 2 * config.item_dim
        for i, units in enumerate(config.mlp_hidden):
            dense = Dense(width, units, rng=rng, dtype=self.dtype)
            activation = make_activation(config.mlp_activation, units, self.dtype)
            self.mlp.append((dense, activation))
            self._layers[f"mlp.dense{i}"] = dense
            self._layers[f"mlp.act{i}"] = activation
            width = units
        self.output = Dense(width, 1, rng=rng, dtype=self.dtype)
        self._layers["mlp.output"] = self.output

        self.bias_table: Embedding | None = None
        if config.item_bias:
            # Zero start, as in the official DIN code: an item's bias grows only
            # from its own clicks and non-clicks.
            self.bias_table = Embedding(
                config.vocab_sizes[0], 1, rng=rng, dtype=self.dtype,
                name=f"{config.item_fields[0]} bias", scale=0.0,
            )
            self._layers["item_bias"] = self.bias_table

        for layer_name, layer in self._layers.items():
            for key, value in layer.params.items():
                self.params[f"{layer_name}.{key}"] = value
        self._cache = None

    # Hooks for the subclasses -------------------------------------------------

    def _build_pooling(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _pool_forward(self, q, keys, mask, training: bool) -> np.ndarray:
        raise NotImplementedError

    def _pool_backward(self, dpooled):
        raise NotImplementedError

    # The Layer protocol ------------------------------------------------------

    def named_layers(self) -> Iterator[tuple[str, Layer]]:
        """Yield (name, layer) for every layer that owns parameters or state.

        Embedding tables are "item_embedding.<field>", "user_embedding.<field>" and
        "item_bias"; their parameter is "weight", so an occurrence count for the
        mini-batch aware regularizer is keyed "item_embedding.<field>.weight".
        """
        yield from self._layers.items()

    def zero_grads(self) -> None:
        self.grads = {}
        for _, layer in self.named_layers():
            layer.zero_grads()

    def state(self) -> dict[str, np.ndarray]:
        """Return every Dice running statistic, keyed "<layer name>.<key>" (the live arrays)."""
        collected = {}
        for layer_name, layer in self.named_layers():
            for key, value in layer.state().items():
                collected[f"{layer_name}.{key}"] = value
        return collected

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy running statistics back into the layers; `state` must have every key `state()` has."""
        missing = sorted(set(self.state()) - set(state))
        if missing:
            raise ValueError(f"model state is missing {missing}; pass the dict that state() returned")
        for layer_name, layer in self.named_layers():
            own = layer.state()
            if own:
                layer.load_state({key: state[f"{layer_name}.{key}"] for key in own})

    def init_item_bias_from_rates(self, train: Samples, prior_strength: float | None = None) -> None:
        """Start the item bias at the popularity baseline's click rates from `train`.

            b[j]     = logit(rate_j) - logit(prior)      rate_j from smoothed_click_rates
            output.b = logit(prior)

        so an untrained model scores an item as the popularity baseline does,
        plus what the randomly initialized MLP adds. Items never shown in
        `train`, and row 0, keep b = 0: the global rate. A bias pulled toward
        zero is pulled toward the global rate, as the popularity prior is.
        Pass the training split only; a validation or test label here leaks.
        prior_strength: m of the smoothing; None gives POPULARITY_PRIOR_STRENGTH.
        """
        if prior_strength is None:
            prior_strength = POPULARITY_PRIOR_STRENGTH
        if self.bias_table is None:
            raise ValueError("this model has no item bias (ModelConfig.item_bias=False); build it with item_bias=True")
        rates, prior = smoothed_click_rates(train, self.config, prior_strength)
        if not 0.0 < prior < 1.0:
            raise ValueError(
                f"the training split's click rate is {prior}, so its log-odds are infinite; the item "
                f"bias can start from click rates only when the split has both clicks and non-clicks"
            )

        log_odds = np.log(rates) - np.log1p(-rates)  # (V + 1,)
        prior_log_odds = math.log(prior) - math.log1p(-prior)
        weight = self.bias_table.params["weight"]  # (V + 1, 1)
        weight[:, 0] = log_odds - prior_log_odds
        weight[0] = 0.0
        self.output.params["b"][...] = prior_log_odds

    def forward(self, batch: Batch, training: bool = True) -> np.ndarray:
        """Return the logits (B,) of a batch; see the module docstring for the steps."""
        candidate, history, mask, user_ids = self._check_batch(batch)
        num_rows = candidate.shape[0]

        q, keys = self.item_embedding.forward_many(candidate, history, training=training)  # (B, D), (B, T, D)

        pooled = self._pool_forward(q, keys, mask, training)  # (B, D)

        user_vectors = [
            self.user_embeddings[name].forward(user_ids[name], training=training)
            for name in self.config.user_fields
        ]
        x = np.concatenate(user_vectors + [pooled, q], axis=1)  # (B, D_user + 2 D)

        for dense, activation in self.mlp:
            hidden = dense.forward(x, training=training)
            x = activation.forward(hidden, None, training=training)
        logits = self.output.forward(x, training=training).reshape(num_rows)

        if self.bias_table is not None:
            logits = logits + self.bias_table.forward(candidate[:, 0], training=training).reshape(num_rows)

        if not np.all(np.isfinite(logits)):
            raise FloatingPointError(
                "the model produced a non-finite logit; training diverged, so lower the "
                "learning rate (or check the inputs for extreme values)"
            )
        self._cache = (num_rows,)
        return logits

    def backward(self, dlogits) -> None:
        """Fill `grads` with dL/dparam for every parameter, given dL/dlogits (B,)."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        (num_rows,) = self._cache
        dlogits = np.asarray(dlogits, dtype=self.dtype)
        if dlogits.shape != (num_rows,):
            raise ValueError(f"dlogits has shape {dlogits.shape}, expected ({num_rows},), one per sample")

        # Clear every layer first: a layer this pass does not reach (the
        # activation unit's inner layers when no history position is valid)
        # must not keep the previous batch's gradient for the optimizer to apply.
        self.zero_grads()

        if self.bias_table is not None:
            self.bias_table.backward(dlogits[:, None])

        dx = self.output.backward(dlogits[:, None])
        for dense, activation in reversed(self.mlp):
            dhidden = activation.backward(dx)
            dx = dense.backward(dhidden)

        # Split dx = d concat[user fields, pooled, q] back into its pieces.
        offset = 0
        for name, dim in zip(self.config.user_fields, self.config.user_embedding_dims):
            self.user_embeddings[name].backward(dx[:, offset:offset + dim])
            offset += dim
        item_dim = self.config.item_dim
        dpooled = dx[:, offset:offset + item_dim]
        dq = dx[:, offset + item_dim:offset + 2 * item_dim]

        # q and every k_t also reach the logit through the pooling (and, in DIN,
        # the activation unit): add those paths before the tables see them.
        dq_pool, dkeys = self._pool_backward(dpooled)
        if dq_pool is not None:
            dq = dq + dq_pool
        self.item_embedding.backward_many(dq, dkeys)

        for layer_name, layer in self.named_layers():
            for key, value in layer.params.items():
                # A parameter the pass did not reach has gradient zero.
                grad = layer.grads.get(key)
                self.grads[f"{layer_name}.{key}"] = np.zeros_like(value) if grad is None else grad
        return None

    def _check_batch(self, batch: Batch):
        """Return (candidate, history, mask, user ids) after checking shapes against the config."""
        num_fields = len(self.config.item_fields)
        candidate = np.asarray(batch.candidate)
        history = np.asarray(batch.history)
        if candidate.ndim != 2 or candidate.shape[1] != num_fields:
            raise ValueError(
                f"batch.candidate has shape {candidate.shape}, expected (B, {num_fields}) for the "
                f"item fields {self.config.item_fields}"
            )
        if history.ndim != 3 or history.shape[0] != candidate.shape[0] or history.shape[2] != num_fields:
            raise ValueError(
                f"batch.history has shape {history.shape}, expected ({candidate.shape[0]}, T, {num_fields})"
            )
        if history.shape[1] > self.config.max_len:
            raise ValueError(
                f"batch history length {history.shape[1]} exceeds the model's max_len "
                f"{self.config.max_len}; build batches with max_len={self.config.max_len}"
            )

        # The mask comes from the ids, never from embedding values: position t is
        # real exactly when its first field is not the padding id 0.
        mask = history[:, :, 0] != 0  # (B, T)

        user_ids = {}
        for name in self.config.user_fields:
            if name not in batch.user_fields:
                raise ValueError(
                    f"batch has no user field '{name}'; the model was built with user fields "
                    f"{self.config.user_fields}, so batch the same data it was built from"
                )
            user_ids[name] = np.asarray(batch.user_fields[name])
        return candidate, history, mask, user_ids

    # Inference ---------------------------------------------------------------

    def predict(self, data, batch_size: int = 1024) -> np.ndarray:
        """Return click probabilities (N,) float64 for a Samples or a Batch, in their order.

        Runs in inference mode: Dice uses its running statistics, so a sample's
        probability does not depend on the rest of its batch.
        """
        if isinstance(data, Batch):
            return sigmoid(self.forward(data, training=False).astype(np.float64))
        if not isinstance(data, Samples):
            raise TypeError(f"predict takes a Samples or a Batch, got {type(data).__name__}")

        probabilities = np.empty(len(data), dtype=np.float64)
        for batch in iterate_batches(data, batch_size, self.config.max_len, shuffle=False):
            probabilities[batch.index] = sigmoid(self.forward(batch, training=False).astype(np.float64))
        return probabilities


class DIN(_EmbeddingMLPModel):
    """Deep Interest Network: history pooled with the activation unit's scores.

    forward(batch, training) -> logits (B,); predict_attention(batch) -> (B, T).
    """

    kind = "din"

    def _build_pooling(self, rng: np.random.Generator) -> None:
        config = self.config
        # A softmax ignores a constant added to every score, so under "softmax"
        # the unit's output bias would get a zero gradient forever: leave it out.
        self.attention = ActivationUnit(
            config.item_dim, config.attention_hidden, activation=config.attention_activation,
            unit=config.unit, rng=rng, dtype=self.dtype, output_bias=config.normalize == "none",
        )
        self.pooling = WeightedSumPooling(config.normalize)
        # The unit's inner layers are listed one by one, so the optimizer updates
        # each Dense and Dice (and decays weights named "W") as it does in the MLP.
        for name, layer in self.attention.named_layers():
            self._layers[f"attention.{name}"] = layer

    def _pool_forward(self, q, keys, mask, training: bool) -> np.ndarray:
        scores = self.attention.forward(q, keys, mask, training=training)  # (B, T)
        return self.pooling.forward(scores, keys, mask, training=training)  # (B, D)

    def _pool_backward(self, dpooled):
        dscores, dkeys_pool = self.pooling.backward(dpooled)
        dq, dkeys_attention = self.attention.backward(dscores)
        return dq, dkeys_pool + dkeys_attention

    def predict_attention(self, batch: Batch) -> np.ndarray:
        """Return the weight (B, T) that each history position gets in the pooled vector.

        These are the w_t of u = sum_t w_t k_t in inference mode: raw scores with
        normalize="none", a softmax over the valid positions with "softmax", and
        exactly 0 at padding in both.
        """
        self.forward(batch, training=False)
        return np.array(self.pooling.weights, dtype=np.float64)


class BaseModel(_EmbeddingMLPModel):
    """Embedding&MLP: history pooled by a plain sum (or mean) of its item vectors."""

    kind = "base"

    def _build_pooling(self, rng: np.random.Generator) -> None:
        self.pooling = SumPooling() if self.config.pooling == "sum" else MeanPooling()

    def _pool_forward(self, q, keys, mask, training: bool) -> np.ndarray:
        return self.pooling.forward(keys, mask, training=training)

    def _pool_backward(self, dpooled):
        return None, self.pooling.backward(dpooled)


# Prior strength m of the popularity baseline: an item's smoothed rate is its own
# click rate pulled toward the global one as if it had m more impressions at the
# global rate. With m = 10 an item's own record outweighs the prior once it has
# more than 10 impressions, and an item seen once or twice (raw rate 0 or 1)
# stays close to the global rate instead of being ranked first or last. On the
# MovieLens (ml-latest-small) validation split, m = 3 to 10 gave the best AUC of
# m in {0.1, 1, 3, 10, 30, 100, 1000}; docs/training.md has the table.
POPULARITY_PRIOR_STRENGTH = 10.0


def smoothed_click_rates(train: Samples, config: ModelConfig,
                         prior_strength: float = POPULARITY_PRIOR_STRENGTH) -> tuple[np.ndarray, float]:
    """Return each item's smoothed click rate (V + 1,) float64 in `train`, and the global click rate.

    rate[j] = (clicks_j + prior * m) / (impressions_j + m) over the samples whose
    candidate is item j (first field), prior = the mean label, m = prior_strength.
    Row 0 (padding) and items never shown get the prior.
    """
    if not prior_strength > 0:
        raise ValueError(f"prior_strength {prior_strength} must be positive (a count of pseudo-impressions)")
    if len(train) == 0:
        raise ValueError("the training split is empty; click rates need at least one sample")
    num_rows = config.vocab_sizes[0] + 1
    items = train.candidate[:, 0]
    if items.max() >= num_rows:
        raise ValueError(
            f"candidate id {int(items.max())} is outside the table (1..{num_rows - 1}) of field "
            f"'{config.item_fields[0]}'; build the config from the same data"
        )
    labels = train.label.astype(np.float64)
    clicks = np.bincount(items, weights=labels, minlength=num_rows)
    impressions = np.bincount(items, minlength=num_rows).astype(np.float64)

    prior = float(labels.mean())
    rates = (clicks + prior * prior_strength) / (impressions + prior_strength)
    return rates, prior


class Popularity:
    """Scores each candidate by its smoothed click rate in the training split.

    rate[j] = (clicks_j + prior * m) / (impressions_j + m), prior = global click
    rate, m = POPULARITY_PRIOR_STRENGTH, j = the candidate's first field (item id).
    Items never shown in training get the prior. No parameters are trained, so
    `fit` is a single counting pass over the training samples.
    """

    kind = "popularity"

    def __init__(self, config: ModelConfig, prior_strength: float = POPULARITY_PRIOR_STRENGTH) -> None:
        if not prior_strength > 0:
            raise ValueError(f"prior_strength {prior_strength} must be positive (a count of pseudo-impressions)")
        self.config = config
        self.prior_strength = float(prior_strength)
        self.rates: np.ndarray | None = None  # (V + 1,) float64 once fitted
        self.prior: float | None = None

    def fit(self, train: Samples) -> Popularity:
        """Count clicks and impressions per candidate item in `train`."""
        self.rates, self.prior = smoothed_click_rates(train, self.config, self.prior_strength)
        return self

    def predict(self, data, batch_size: int = 1024) -> np.ndarray:
        """Return the smoothed click rate (N,) of each candidate of a Samples or a Batch."""
        if self.rates is None:
            raise RuntimeError("Popularity.predict called before fit; call fit(train_samples) first")
        items = np.asarray(data.candidate)[:, 0]
        num_ids = self.rates.shape[0] - 1
        outside = (items < 1) | (items > num_ids)
        if outside.any():
            raise ValueError(
                f"candidate id {int(items[outside][0])} in field '{self.config.item_fields[0]}' is "
                f"outside the table (1..{num_ids}); ids start at 1 and 0 is padding"
            )
        return self.rates[items]

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The fitted table as a "parameter", so checkpoints treat all models alike."""
        return {} if self.rates is None else {"rates": self.rates}

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Nothing to restore: Popularity has no running statistics."""


def build_model(kind: str, config: ModelConfig):
    """Return a new "din", "base" or "popularity" model built from `config`."""
    if kind == "din":
        return DIN(config)
    if kind == "base":
        return BaseModel(config)
    if kind == "popularity":
        return Popularity(config)
    raise ValueError(f"model kind {kind!r} is not known; choose one of {', '.join(MODEL_KINDS)}")


def occurrence_counts(model: _EmbeddingMLPModel, train: Samples) -> dict[str, np.ndarray]:
    """Return {"<layer name>.weight": (V + 1,) counts} for every embedding table of `model`.

    n_j, the divisor of the mini-batch aware regularizer, counts training samples.
    For an item field it counts the samples whose candidate or history contains
    id j, where the history is the most recent T = config.max_len items that a
    batch keeps (`count_occurrences`). For the item bias, which only candidates
    use, it counts the samples whose candidate is item j. For a user field it
    counts the samples with that id.
    """
    counts: dict[str, np.ndarray] = {}
    per_field = count_occurrences(train, max_len=model.config.max_len)
    for name, field_counts in zip(train.item_fields, per_field):
        counts[f"item_embedding.{name}.weight"] = field_counts

    if model.config.item_bias:
        candidate_counts = np.bincount(train.candidate[:, 0], minlength=model.config.vocab_sizes[0] + 1)
        candidate_counts[0] = 0
        counts["item_bias.weight"] = candidate_counts.astype(np.int64)

    for name in model.config.user_fields:
        ids = train.user_fields[name]
        user_counts = np.bincount(ids, minlength=model.user_embeddings[name].num_ids + 1).astype(np.int64)
        user_counts[0] = 0
        counts[f"user_embedding.{name}.weight"] = user_counts

    expected = {f"{name}.weight" for name, layer in model.named_layers() if isinstance(layer, Embedding)}
    missing = sorted(expected - set(counts))
    if missing:
        raise ValueError(
            f"the training samples give no counts for {missing}; build the model config with "
            f"ModelConfig.from_samples(train) so its fields match the data"
        )
    return counts


# Gradient-check cases ------------------------------------------------------------

def _tiny_config(**overrides) -> ModelConfig:
    """Build a float64 config small enough to check every parameter entry in about a second."""
    values = dict(
        item_fields=("item", "category"), vocab_sizes=(10, 4), embedding_dims=(2, 2),
        user_fields=("age",), user_vocab_sizes=(3,), user_embedding_dims=(2,),
        max_len=5, attention_hidden=(5,), mlp_hidden=(5, 3), dtype="float64", seed=7,
    )
    values.update(overrides)
    return ModelConfig(**values)


def _randomize(model: _EmbeddingMLPModel, rng: np.random.Generator) -> None:
    """Give every parameter and statistic random, non-symmetric values.

    Zeros (the item bias, Dice's alphas) or equal entries would hide a backward
    that mixes up rows or units. Row 0 of every table stays zero, as training
    keeps it.
    """
    for name, layer in model.named_layers():
        for key, value in layer.params.items():
            if isinstance(layer, Embedding):
                value[1:] = rng.normal(0.0, 0.5, value[1:].shape)
            elif key == "alpha":
                value[...] = rng.uniform(-0.5, 0.5, value.shape)
            else:
                value[...] = rng.normal(0.0, 0.6, value.shape)
        for key, value in layer.state().items():
            value[...] = rng.uniform(-0.5, 0.5, value.shape) if key == "running_mean" else rng.uniform(0.5, 1.5, value.shape)


def _tiny_batch(lengths, config: ModelConfig, rng: np.random.Generator) -> Batch:
    """Build a batch with the given history lengths (0 = fully padded row), padded to max(lengths, 1).

    Item ids are drawn from a few values so that ids repeat inside a row and
    across rows, which the sparse table gradients must add up.
    """
    lengths = np.asarray(lengths)
    num_rows, width = lengths.size, max(int(lengths.max()), 1)
    num_fields = len(config.item_fields)

    candidate = np.stack([rng.integers(1, config.vocab_sizes[f] + 1, num_rows) for f in range(num_fields)], axis=1)
    history = np.zeros((num_rows, width, num_fields), dtype=np.int32)
    for f in range(num_fields):
        history[:, :, f] = rng.integers(1, min(config.vocab_sizes[f], 6) + 1, (num_rows, width))
    mask = np.arange(width)[None, :] < lengths[:, None]  # (B, T)
    history[~mask] = 0

    user_fields = {
        name: rng.integers(0, num_ids + 1, num_rows).astype(np.int32)
        for name, num_ids in zip(config.user_fields, config.user_vocab_sizes)
    }
    return Batch(
        candidate=candidate.astype(np.int32), history=history, mask=mask,
        label=rng.integers(0, 2, num_rows).astype(np.float32), user=np.arange(1, num_rows + 1, dtype=np.int32),
        user_fields=user_fields, index=np.arange(num_rows),
    )


def model_gradcheck_cases(seed: int = 0) -> list[tuple[str, _EmbeddingMLPModel, Batch]]:
    """Return (name, model, batch) cases covering every model configuration, in float64.

    Check each with `check_model(name, model, batch)`, which perturbs every
    entry of model.params.
    The usual batch has 4
    rows with histories of lengths 5, 3, 0 (fully padded) and 2; the "batch of
    one" cases have a single row of length 3.
    """
    rng = np.random.default_rng(seed)
    usual_lengths = (5, 3, 0, 2)
    cases = []

    def add(name: str, kind: str, lengths=usual_lengths, **overrides) -> None:
        config = _tiny_config(**overrides)
        model = build_model(kind, config)
        _randomize(model, rng)
        cases.append((name, model, _tiny_batch(lengths, config, rng)))

    for unit in UNITS:
        for activation in ATTENTION_ACTIVATIONS:
            for normalize in NORMALIZATIONS:
                add(f"din {unit} {activation} {normalize}", "din",
                    unit=unit, attention_activation=activation, normalize=normalize)
    add("din prelu mlp", "din", mlp_activation="prelu", attention_activation="prelu")
    add("din no bias, no user fields", "din", item_bias=False, user_fields=(), user_vocab_sizes=(),
        user_embedding_dims=())
    add("din two attention layers", "din", attention_hidden=(4, 3), unit="concat")
    add("din batch of one", "din", lengths=(3,))
    add("din batch of one, softmax", "din", lengths=(3,), normalize="softmax", mlp_activation="prelu")

    for pooling in POOLINGS:
        for activation in MLP_ACTIVATIONS:
            add(f"base {pooling} {activation}", "base", pooling=pooling, mlp_activation=activation)
    add("base batch of one", "base", lengths=(3,))
    return cases


def check_model(name: str, model: _EmbeddingMLPModel, batch: Batch, seed: int = 0):
    """Run the finite-difference check of every parameter of `model` on `batch` (float64).

    Returns one tinydin.gradcheck.CheckRow per parameter tensor, with

        rel_error = max|a - n| / max(1e-8, S),   S = 2 * max over ALL tensors of max|a|

    the scale S taken over the whole model rather than over the tensor alone
    (2|a| stands in for |a| + |n|, which agree wherever the check passes).
    Some tensors have an exact gradient of 0 on a given batch, for example the
    PReLU slopes of a layer whose inputs are all positive, which happens easily
    in a batch of one. Their numerical gradient is pure roundoff, about
    1e-16 / eps, and dividing that by the tensor's own zero scale
    would flag a correct backward. The price: a wrong backward in one tensor is
    caught only if its error exceeds 1e-7 * S, so a bug in a tensor whose whole
    gradient is below that goes unseen. Layer-level checks (tinydin.selfcheck)
    use the strict per-tensor scale.
    """
    from tinydin.gradcheck import DEFAULT_TOLERANCE, check_layer

    rows = check_layer(model, [batch], wrt=(), name=name, seed=seed)

    # check_layer ran backward once before perturbing, and forward calls do not
    # touch grads, so model.grads still contains the analytic gradients.
    analytic_scale = max(
        float(np.max(np.abs(grad.rows if isinstance(grad, SparseGrad) else grad), initial=0.0))
        for grad in model.grads.values()
    )
    scale = max(1e-8, 2.0 * analytic_scale)
    for row in rows:
        row.rel_error = row.max_abs_diff / scale
        row.passed = row.rel_error < DEFAULT_TOLERANCE
    return rows
