"""Sequential recipes: one user's behaviours in time order become samples that share them.

A user with behaviours b_0, b_1, ..., b_{n-1} (sorted by timestamp, ties kept in
file order) yields one sample per behaviour after the first:

    sample k (k = 1..n-1): candidate b_k, history b_0 .. b_{k-1}

All samples of a user point into the same stored sequence, so the history array
contains each behaviour once (M = number of behaviours) and the ranges overlap.

Negatives for the next-item recipes (Amazon; MovieLens task "next") are drawn once,
uniformly from the items the user never interacted with, one per positive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinydin.data.samples import Samples


@dataclass
class EventOrder:
    """Behaviours sorted by (user, timestamp), stable on ties.

    order:    (R,) int64 permutation of the input rows into sorted order
    position: (R,) int64 k of each sorted behaviour inside its user's sequence
    first:    (R,) int64 sorted index of its user's first behaviour
    """

    order: np.ndarray
    position: np.ndarray
    first: np.ndarray


def sort_events(user: np.ndarray, timestamp: np.ndarray) -> EventOrder:
    """Sort behaviours by user, then by time; equal timestamps keep their input order."""
    # Two stable passes: by time, then by user, which keeps time order inside a user
    # and file order inside a tie.
    order = np.argsort(timestamp, kind="stable")
    order = order[np.argsort(user[order], kind="stable")]

    sorted_user = user[order]
    is_first = np.ones(order.size, dtype=bool)
    is_first[1:] = sorted_user[1:] != sorted_user[:-1]
    first = np.maximum.accumulate(np.where(is_first, np.arange(order.size), 0))
    position = np.arange(order.size) - first
    return EventOrder(order=order.astype(np.int64), position=position.astype(np.int64),
                      first=first.astype(np.int64))


def draw_negatives(user: np.ndarray, item: np.ndarray, n_items: int, targets: np.ndarray,
                   rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
    """Draw one item id in 1..n_items per entry of `targets` that its user never had.

    user, item:  (R,) the user's behaviours, item ids in 1..n_items
    targets:     (P,) user ids that each need one negative
    Returns (P,) int64 item ids. Rejection sampling first; a user for whom most
    items are taken gets an exact draw from the complement of their items.
    """
    stride = np.int64(n_items) + 1
    taken = np.unique(user.astype(np.int64) * stride + item)
    targets = targets.astype(np.int64)

    def is_taken(candidates: np.ndarray, owners: np.ndarray) -> np.ndarray:
        keys = owners * stride + candidates
        if taken.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        at = np.minimum(np.searchsorted(taken, keys), taken.size - 1)
        return taken[at] == keys

    negatives = rng.integers(1, n_items + 1, size=targets.size)
    pending = np.flatnonzero(is_taken(negatives, targets))
    for _ in range(max_rounds):
        if pending.size == 0:
            break
        negatives[pending] = rng.integers(1, n_items + 1, size=pending.size)
        pending = pending[is_taken(negatives[pending], targets[pending])]

    # Users who had almost every item: draw from what is left, exactly.
    all_items = np.arange(1, n_items + 1)
    for owner in np.unique(targets[pending]):
        rows = pending[targets[pending] == owner]
        own_items = (taken[(taken // stride) == owner] % stride)
        free = np.setdiff1d(all_items, own_items, assume_unique=True)
        if free.size == 0:
            raise ValueError(
                f"user {owner} interacted with all {n_items} items, so no negative can be "
                f"drawn for them; remove this user or use a recipe without negatives"
            )
        negatives[rows] = rng.choice(free, size=rows.size)
    return negatives.astype(np.int64)


def cap_history(samples: Samples, max_len: int | None) -> Samples:
    """Keep only the most recent max_len stored items of every sample (None: keep all).

    Only the ranges move; the history array is shared, then compacted by subset().
    """
    if max_len is None:
        return samples
    if int(max_len) != max_len or max_len < 1:
        raise ValueError(f"max_len {max_len!r} must be a positive integer or None")
    start = np.maximum(samples.hist_start, samples.hist_end - int(max_len))
    capped = Samples(
        item_fields=samples.item_fields, vocab_sizes=samples.vocab_sizes,
        candidate=samples.candidate, history=samples.history,
        hist_start=start, hist_end=samples.hist_end, label=samples.label,
        user=samples.user, user_fields=samples.user_fields,
        user_vocab_sizes=samples.user_vocab_sizes, true_prob=samples.true_prob,
        relevance=samples.relevance, name=samples.name,
    )
    return capped.subset(np.arange(len(capped)))
