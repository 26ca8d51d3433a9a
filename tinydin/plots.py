"""Figures: training curves per epoch, and DIN's attention over one user's history.

Figures are built on matplotlib.figure.Figure directly, not through pyplot, so
they render with the Agg canvas whatever backend (or display) the machine has,
and a script never opens a window. In a notebook, a returned Figure displays
as a PNG.

The attention heatmap shows, for one user, the weight w_t that DIN gives each
history item t when it scores each of a few candidates c. Rows are candidates
and columns are history positions (oldest left), so one row is the history as
seen from one candidate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from tinydin.data.batching import Batch, make_batch
from tinydin.data.samples import Samples


def plot_curves(history: Sequence[dict], path=None, title: str | None = None) -> Figure:
    """Plot train loss, validation log loss, validation AUC and GAUC per epoch.

    history: TrainResult.history (dicts with epoch, train_loss, val_logloss,
    val_auc, val_gauc; None values are skipped). Saves a PNG at `path` if given.
    """
    if not history:
        raise ValueError("history is empty; plot_curves needs at least one epoch")
    epochs = [row["epoch"] for row in history]

    figure = Figure(figsize=(9, 3.6), layout="constrained")
    loss_axes, auc_axes = figure.subplots(1, 2)

    _plot_series(loss_axes, epochs, history, "train_loss", "train loss (mean over the epoch)")
    _plot_series(loss_axes, epochs, history, "val_logloss", "validation log loss")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("binary cross-entropy")
    loss_axes.legend()

    _plot_series(auc_axes, epochs, history, "val_auc", "validation AUC")
    _plot_series(auc_axes, epochs, history, "val_gauc", "validation GAUC")
    auc_axes.set_xlabel("epoch")
    auc_axes.set_ylabel("AUC")
    auc_axes.legend()

    for axes in (loss_axes, auc_axes):
        axes.set_xticks(epochs)
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    if path is not None:
        figure.savefig(Path(path), dpi=110)
    return figure


def _plot_series(axes, epochs, history, key: str, label: str) -> None:
    points = [(epoch, row.get(key)) for epoch, row in zip(epochs, history) if row.get(key) is not None]
    if points:
        x, y = zip(*points)
        axes.plot(x, y, marker="o", label=label)


def history_attention(model, samples: Samples, index: int, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return DIN's weights (C, T) for sample `index`'s history under C candidate items.

    candidates: (C, F) item field ids. Every row of the batch has the same user,
    history and user fields; only the candidate changes. Returns (weights (C, T),
    history ids (T, F)) with T the sample's history length, capped at max_len.
    """
    if not hasattr(model, "predict_attention"):
        raise ValueError(f"{type(model).__name__} has no attention weights; only DIN has an activation unit")
    candidates = np.asarray(candidates, dtype=samples.candidate.dtype)
    if candidates.ndim != 2 or candidates.shape[1] != samples.num_fields:
        raise ValueError(
            f"candidates have shape {candidates.shape}, expected (C, {samples.num_fields}) item field ids"
        )

    single = make_batch(samples, [index], model.config.max_len)
    count = candidates.shape[0]
    batch = Batch(
        candidate=candidates,
        history=np.repeat(single.history, count, axis=0),  # (C, T, F)
        mask=np.repeat(single.mask, count, axis=0),
        label=np.repeat(single.label, count),
        user=np.repeat(single.user, count),
        user_fields={name: np.repeat(ids, count) for name, ids in single.user_fields.items()},
        index=np.repeat(single.index, count),
    )
    weights = model.predict_attention(batch)

    length = int(single.mask[0].sum())
    return weights[:, :length], single.history[0, :length]


def plot_attention(weights: np.ndarray, candidate_labels: Sequence[str], history_labels: Sequence[str],
                   path=None, title: str | None = None) -> Figure:
    """Draw a heatmap of attention weights: candidates (rows) x history positions (columns).

    weights: (C, T); labels: C candidate names and T history item names (for
    example "item 12 / cat 3"). Saves a PNG at `path` if given.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"weights have shape {weights.shape}, expected (C, T) candidates x history positions")
    if len(candidate_labels) != weights.shape[0] or len(history_labels) != weights.shape[1]:
        raise ValueError(
            f"got {len(candidate_labels)} candidate labels and {len(history_labels)} history labels "
            f"for weights of shape {weights.shape}; give one label per row and per column"
        )

    width = min(4.0 + 0.32 * weights.shape[1], 20.0)
    height = 1.6 + 0.4 * weights.shape[0]
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(weights, aspect="auto", cmap="viridis")
    figure.colorbar(image, ax=axes, label="attention weight")

    axes.set_yticks(np.arange(weights.shape[0]), labels=list(candidate_labels))
    axes.set_xticks(np.arange(weights.shape[1]), labels=list(history_labels), rotation=90, fontsize=7)
    axes.set_xlabel("history item (oldest left, most recent right)")
    axes.set_ylabel("candidate")
    if title:
        axes.set_title(title)
    if path is not None:
        figure.savefig(Path(path), dpi=110)
    return figure


def item_labels(ids: np.ndarray, field_names: Sequence[str]) -> list[str]:
    """Return "name=id / name=id" labels for item field ids (N, F)."""
    ids = np.asarray(ids)
    return [" / ".join(f"{name}={int(value)}" for name, value in zip(field_names, row)) for row in ids]


def plot_attention_example(model, samples: Samples, path=None, num_candidates: int = 4) -> Figure:
    """Draw the attention heatmap of one sample of `samples` under its own and other candidates.

    Picks the first sample whose history has 5 to 20 items (the longest one if
    none has), and scores its history against its own candidate and the
    candidates of the next num_candidates - 1 samples.
    """
    lengths = np.minimum(samples.hist_len, model.config.max_len)
    fitting = np.flatnonzero((lengths >= 5) & (lengths <= 20))
    index = int(fitting[0]) if fitting.size else int(np.argmax(lengths))

    rows = (index + np.arange(num_candidates)) % len(samples)
    candidates = samples.candidate[rows]  # (C, F)
    weights, history = history_attention(model, samples, index, candidates)
    title = f"attention over the history of sample {index} (user {int(samples.user[index])})"
    return plot_attention(weights, item_labels(candidates, samples.item_fields),
                          item_labels(history, samples.item_fields), path, title=title)
