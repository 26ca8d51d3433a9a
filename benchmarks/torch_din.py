"""DIN written with torch.nn and autograd: the reference tinydin is timed against.

This module is for benchmarks only; tinydin never imports torch. The model is
the network tinydin's DIN computes, written the way a PyTorch user would
write it: padded (B, T) tensors everywhere, the activation unit's full input
built explicitly, autograd for every gradient.

    q   = concat_f E_f[candidate_f]                       (B, D)
    K   = concat_f E_f[history_f]                         (B, T, D)
    x_t = [q, k_t, q - k_t, q * k_t]           concat     (B, T, 4D)
        = [k_t, vec(q k_t^T), q]               outer      (B, T, 2D + D^2),
          vec row-major: entry i * D + j is q_i k_j
    a_t = Linear(act(... act(Linear(x_t)))) * mask_t      (B, T)
    u   = sum_t a_t k_t            (or a masked softmax of a_t as the weights)
    z   = Linear(act(Linear(act(Linear([u, q])))))  + bias[candidate goods id]
    loss = mean binary cross-entropy of z, plain SGD on every parameter

Dice (Zhou et al., KDD 2018, Eq. 9) uses batch statistics over the valid
rows only: inside the activation unit the rows are the (b, t) positions whose
mask is True, in the MLP every sample. Only the training-mode forward is
written, because only training is timed and cross-checked; there are no
running statistics.

Embedding tables use padding_idx=0 (row 0 stays zero and gets no gradient).
With sparse=False (the nn.Embedding default) a table's gradient is a dense
(V + 1, D) tensor and SGD touches every row each step; sparse=True gives
sparse gradients, as tinydin's SparseGrad.

`load_from_tinydin` copies a tinydin DIN's parameters into this model, so a
float64 forward and backward of both on one batch can be compared entry by
entry (`cross_check`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Dice(nn.Module):
    """f(s) = s * (alpha + (1 - alpha) * sigmoid((s - mean) / sqrt(var + eps))), per unit.

    forward(x (R, H), mask (R,) bool or None): mean and biased variance over
    the rows the mask keeps; masked rows get output 0.
    """

    def __init__(self, units: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.zeros(units))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            p = torch.sigmoid((x - mean) / torch.sqrt(var + self.eps))
            return x * (self.alpha + (1.0 - self.alpha) * p)

        weight = mask.to(x.dtype).unsqueeze(1)  # (R, 1)
        count = weight.sum().clamp_min(1.0)
        mean = (x * weight).sum(dim=0) / count
        var = ((x - mean) ** 2 * weight).sum(dim=0) / count
        p = torch.sigmoid((x - mean) / torch.sqrt(var + self.eps))
        return x * (self.alpha + (1.0 - self.alpha) * p) * weight


class PReLU(nn.Module):
    """f(s) = s for s > 0, alpha * s otherwise; masked rows get output 0."""

    def __init__(self, units: int, alpha: float = 0.25) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((units,), alpha))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.where(x > 0, x, self.alpha * x)
        if mask is not None:
            out = out * mask.to(x.dtype).unsqueeze(1)
        return out


class Sigmoid(nn.Module):
    """Logistic function; masked rows get output 0."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.sigmoid(x)
        if mask is not None:
            out = out * mask.to(x.dtype).unsqueeze(1)
        return out


def make_activation(name: str, units: int) -> nn.Module:
    """Build the activation called `name` ("dice", "prelu" or "sigmoid")."""
    if name == "dice":
        return Dice(units)
    if name == "prelu":
        return PReLU(units)
    if name == "sigmoid":
        return Sigmoid()
    raise ValueError(f"activation {name!r} is not known; choose dice, prelu or sigmoid")


class ActivationUnit(nn.Module):
    """Scores every padded position: forward(q (B, D), keys (B, T, D), mask (B, T)) -> (B, T)."""

    def __init__(self, item_dim: int, hidden: tuple[int, ...], activation: str, unit: str,
                 score_bias: bool = True) -> None:
        super().__init__()
        if unit not in ("concat", "outer"):
            raise ValueError(f"unit {unit!r} is not known; use 'concat' or 'outer'")
        self.unit = unit
        width = 4 * item_dim if unit == "concat" else 2 * item_dim + item_dim * item_dim
        self.linears = nn.ModuleList()
        self.activations = nn.ModuleList()
        for units in hidden:
            self.linears.append(nn.Linear(width, units))
            self.activations.append(make_activation(activation, units))
            width = units
        self.score = nn.Linear(width, 1, bias=score_bias)

    def forward(self, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = keys.shape
        queries = q.unsqueeze(1).expand(batch, length, dim)  # (B, T, D)

        if self.unit == "concat":
            x = torch.cat([queries, keys, queries - keys, queries * keys], dim=-1)  # (B, T, 4D)
        else:
            outer = (q[:, None, :, None] * keys[:, :, None, :]).reshape(batch, length, dim * dim)  # (B, T, D^2)
            x = torch.cat([keys, outer, queries], dim=-1)  # (B, T, 2D + D^2)

        rows = x.reshape(batch * length, -1)
        row_mask = mask.reshape(-1)
        for linear, activation in zip(self.linears, self.activations):
            rows = activation(linear(rows), row_mask)
        return self.score(rows).reshape(batch, length) * mask.to(rows.dtype)


class TorchDIN(nn.Module):
    """DIN over padded batches; see the module docstring for the equations.

    forward(candidate (B, F) long, history (B, T, F) long) -> logits (B,).
    """

    def __init__(self, vocab_sizes: tuple[int, ...], embedding_dims: tuple[int, ...], *,
                 unit: str = "concat", attention_hidden: tuple[int, ...] = (36,),
                 attention_activation: str = "dice", mlp_hidden: tuple[int, ...] = (200, 80),
                 mlp_activation: str = "dice", normalize: str = "none", item_bias: bool = True,
                 score_bias: bool = True, sparse: bool = False) -> None:
        super().__init__()
        if normalize not in ("none", "softmax"):
            raise ValueError(f"normalize {normalize!r} is not known; use 'none' or 'softmax'")
        self.normalize = normalize
        self.tables = nn.ModuleList(
            nn.Embedding(vocab + 1, dim, padding_idx=0, sparse=sparse)
            for vocab, dim in zip(vocab_sizes, embedding_dims)
        )
        item_dim = int(sum(embedding_dims))
        self.attention = ActivationUnit(item_dim, tuple(attention_hidden), attention_activation, unit,
                                        score_bias=score_bias)

        self.mlp_linears = nn.ModuleList()
        self.mlp_activations = nn.ModuleList()
        width = 2 * item_dim
        for units in mlp_hidden:
            self.mlp_linears.append(nn.Linear(width, units))
            self.mlp_activations.append(make_activation(mlp_activation, units))
            width = units
        self.output = nn.Linear(width, 1)
        self.bias = nn.Embedding(vocab_sizes[0] + 1, 1, padding_idx=0, sparse=sparse) if item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([table(ids[..., f]) for f, table in enumerate(self.tables)], dim=-1)

    def forward(self, candidate: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history[:, :, 0] != 0  # (B, T)
        q = self.embed(candidate)  # (B, D)
        keys = self.embed(history)  # (B, T, D)

        scores = self.attention(q, keys, mask)  # (B, T)
        if self.normalize == "none":
            weights = scores
        else:
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            weights = torch.nan_to_num(weights) * mask.to(weights.dtype)  # an empty history gives 0, not NaN
        pooled = torch.einsum("bt,btd->bd", weights, keys)

        x = torch.cat([pooled, q], dim=1)
        for linear, activation in zip(self.mlp_linears, self.mlp_activations):
            x = activation(linear(x))
        logits = self.output(x).squeeze(1)
        if self.bias is not None:
            logits = logits + self.bias(candidate[:, 0]).squeeze(1)
        return logits


def from_config(config, sparse: bool = False, score_bias: bool = True) -> TorchDIN:
    """Build a TorchDIN with the sizes of a tinydin ModelConfig (no user fields).

    score_bias: whether the activation unit's score layer has a bias; pass
    `has_score_bias(din)` to mirror a built tinydin DIN.
    """
    if config.user_fields:
        raise ValueError(
            f"the PyTorch reference has no user fields, but the config has {config.user_fields}; "
            f"benchmark a config without user fields"
        )
    return TorchDIN(
        tuple(config.vocab_sizes), tuple(config.embedding_dims), unit=config.unit,
        attention_hidden=tuple(config.attention_hidden),
        attention_activation=config.attention_activation, mlp_hidden=tuple(config.mlp_hidden),
        mlp_activation=config.mlp_activation, normalize=config.normalize,
        item_bias=config.item_bias, score_bias=score_bias, sparse=sparse,
    )


def has_score_bias(din) -> bool:
    """Return whether the score layer of a tinydin DIN's activation unit has a bias."""
    _, _, score_dense = attention_layers(din.attention)
    return f"{score_dense}.b" in din.attention.params


def batch_tensors(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (candidate, history, label) of a tinydin Batch as torch tensors."""
    candidate = torch.from_numpy(np.ascontiguousarray(batch.candidate, dtype=np.int64))
    history = torch.from_numpy(np.ascontiguousarray(batch.history, dtype=np.int64))
    label = torch.from_numpy(np.asarray(batch.label, dtype=np.float32))
    return candidate, history, label


def parameter_pairs(torch_model: TorchDIN, din) -> list[tuple[str, torch.Tensor, np.ndarray, bool]]:
    """Pair each torch parameter with the tinydin array it mirrors.

    Returns (tinydin name, torch tensor, tinydin array, transposed) tuples.
    nn.Linear stores its weight as (out, in) and tinydin's Dense as (in, out),
    so `transposed` is True for those.
    """
    pairs = []
    for f, name in enumerate(din.config.item_fields):
        key = f"item_embedding.{name}.weight"
        pairs.append((key, torch_model.tables[f].weight, din.params[key], False))
    if torch_model.bias is not None:
        pairs.append(("item_bias.weight", torch_model.bias.weight, din.params["item_bias.weight"], False))

    attention = din.attention
    hidden_dense, hidden_act, score_dense = attention_layers(attention)
    for i, (dense_name, act_name) in enumerate(zip(hidden_dense, hidden_act)):
        linear = torch_model.attention.linears[i]
        pairs.append((f"attention.{dense_name}.W", linear.weight, attention.params[f"{dense_name}.W"], True))
        pairs.append((f"attention.{dense_name}.b", linear.bias, attention.params[f"{dense_name}.b"], False))
        alpha_key = f"{act_name}.alpha"
        if alpha_key in attention.params:
            pairs.append((f"attention.{alpha_key}", torch_model.attention.activations[i].alpha,
                          attention.params[alpha_key], False))
    score = torch_model.attention.score
    pairs.append((f"attention.{score_dense}.W", score.weight, attention.params[f"{score_dense}.W"], True))
    if score.bias is not None:
        pairs.append((f"attention.{score_dense}.b", score.bias, attention.params[f"{score_dense}.b"], False))

    for i in range(len(din.config.mlp_hidden)):
        linear = torch_model.mlp_linears[i]
        pairs.append((f"mlp.dense{i}.W", linear.weight, din.params[f"mlp.dense{i}.W"], True))
        pairs.append((f"mlp.dense{i}.b", linear.bias, din.params[f"mlp.dense{i}.b"], False))
        pairs.append((f"mlp.act{i}.alpha", torch_model.mlp_activations[i].alpha,
                      din.params[f"mlp.act{i}.alpha"], False))
    pairs.append(("mlp.output.W", torch_model.output.weight, din.params["mlp.output.W"], True))
    pairs.append(("mlp.output.b", torch_model.output.bias, din.params["mlp.output.b"], False))
    return pairs


def attention_layers(attention) -> tuple[list[str], list[str], str]:
    """Return the parameter-name prefixes of tinydin's activation unit.

    Returns (hidden Dense prefixes, activation prefixes, score Dense prefix),
    read from the unit's `params` keys: a Dense owns "<prefix>.W", and the
    score layer is the last Dense.
    """
    dense = sorted({key.rsplit(".", 1)[0] for key in attention.params if key.endswith(".W")},
                   key=_layer_index)
    activations = sorted({key.rsplit(".", 1)[0] for key in attention.params if key.endswith(".alpha")},
                         key=_layer_index)
    hidden = dense[:-1]
    if activations and len(activations) != len(hidden):
        raise ValueError(
            f"tinydin's activation unit has Dense layers {dense} and activations {activations}; "
            f"expected one activation per hidden Dense layer"
        )
    # A sigmoid has no parameter, so name its slot after the Dense layer.
    if not activations:
        activations = [f"{name}.act" for name in hidden]
    return hidden, activations, dense[-1]


def _layer_index(prefix: str) -> tuple[int, str]:
    digits = "".join(ch for ch in prefix if ch.isdigit())
    return (int(digits) if digits else 1 << 30, prefix)


def load_from_tinydin(torch_model: TorchDIN, din) -> None:
    """Copy every parameter of a tinydin DIN into `torch_model`, converting to its dtype."""
    with torch.no_grad():
        for name, tensor, array, transposed in parameter_pairs(torch_model, din):
            value = torch.from_numpy(np.array(array.T if transposed else array))
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(
                    f"parameter {name} has shape {tuple(array.shape)} in tinydin but "
                    f"{tuple(tensor.shape)} in the PyTorch reference; build both from the same config"
                )
            tensor.copy_(value.to(tensor.dtype))


def cross_check(din, batch) -> dict[str, float]:
    """Compare a float64 tinydin DIN with the PyTorch reference on one batch.

    Loads the tinydin parameters into a float64 TorchDIN, runs forward and
    backward of the mean BCE loss in both, and returns the largest absolute
    difference of the logits and of every parameter gradient, keyed by the
    tinydin parameter name ("logits" for the logits).
    """
    from tinydin.layers.base import SparseGrad
    from tinydin.layers.losses import BCEWithLogits

    if din.dtype != np.float64:
        raise ValueError(f"cross_check needs a float64 tinydin model, got {din.dtype}; build it with dtype='float64'")

    torch_model = from_config(din.config, score_bias=has_score_bias(din)).double()
    load_from_tinydin(torch_model, din)

    loss_layer = BCEWithLogits()
    logits = din.forward(batch, training=True)
    loss_layer.forward(logits, batch.label.astype(np.float64))
    din.backward(loss_layer.backward(1.0))

    candidate, history, label = batch_tensors(batch)
    torch_logits = torch_model(candidate, history)
    loss = nn.functional.binary_cross_entropy_with_logits(torch_logits, label.double())
    loss.backward()

    differences = {"logits": float(np.max(np.abs(torch_logits.detach().numpy() - logits)))}
    for name, tensor, array, transposed in parameter_pairs(torch_model, din):
        grad = din.grads[name]
        if isinstance(grad, SparseGrad):
            grad = grad.to_dense(array.shape[0])
        reference = tensor.grad
        if reference is None:
            reference = torch.zeros_like(tensor)
        if reference.is_sparse:
            reference = reference.to_dense()
        reference = reference.numpy()
        differences[name] = float(np.max(np.abs((reference.T if transposed else reference) - grad)))
    return differences
