"""The synthetic interest world: clicks driven by specific history items, with known truth.

Items have two fields, ("item", "category"). Each category is split into sub-topics,
and every item has a unit latent vector v close to its sub-topic's centre. A user
has a few interest categories and likes only some sub-topics inside each. The
history draws its items from those liked sub-topics, with some uniform noise.

A candidate is drawn from one of the user's interest categories (any sub-topic, so
it may or may not match what the user has seen) or from the whole catalogue. The
true click probability depends on the single best-matching history item:

    relevance_t = [category(h_t) == category(c)] * exp(-(1 - v_{h_t} . v_c) / temperature)
    p(click)    = sigmoid(base_logit + click_strength * max_t relevance_t)

A relevance is 1 for the same item, high for another item of the same sub-topic,
and near 0 for another sub-topic of the same category or for another category.

Why this favours attention over sum pooling: the click depends on whether one
particular history item is close to the candidate, not on how many items of its
category the history has. Sum pooling adds up to 50 item vectors into one vector
of width D, and with hundreds of sub-topics per D dimensions the sum cannot say
which sub-topics were present. An attention unit scores every item against the
candidate before pooling, so it can pick out the matching ones.

Every sample stores its true probability, and (unless histories are shared, see
`share_history_rows`) every history row stores its relevance to its own candidate,
so attention weights can be compared with the truth.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from tinydin.data.samples import Samples

# Samples scored at once when computing relevances: bounds the (chunk, T, k) gather.
_CHUNK_SAMPLES = 16384

# Above this many copied history rows, the automatic layout shares per-user sequences.
_AUTO_SHARE_ROWS = 20_000_000


@dataclass
class SyntheticOptions:
    """Sizes and difficulty of the synthetic world (defaults: 250,000 samples)."""

    n_users: int = 12_500               # users; each gets samples_per_user samples
    samples_per_user: int = 20          # samples (impressions) per user
    n_categories: int = 200             # categories; many per embedding dimension on purpose
    subtopics_per_category: int = 4     # sub-topics inside each category
    items_per_subtopic: int = 10        # items per sub-topic (catalogue = product of three)
    latent_dim: int = 8                 # width k of the hidden item vectors
    item_spread: float = 0.35           # spread of items around their sub-topic centre
    min_interests: int = 2              # minimum number of interest categories per user
    max_interests: int = 4              # maximum number of interest categories per user
    liked_subtopics: int = 2            # sub-topics a user likes inside each interest
    min_len: int = 5                    # minimum history length
    max_len: int = 50                   # maximum history length
    history_noise: float = 0.2          # probability that a history item is uniform random
    candidate_interest_rate: float = 0.5  # probability that a candidate comes from an interest
    temperature: float = 0.1            # sharpness of the relevance kernel
    base_logit: float = -2.0            # click logit with no relevant history item
    click_strength: float = 4.0         # logit added by a perfectly relevant item
    share_history_rows: bool | None = None  # True: one sequence per user, ranges overlap and
                                            # relevance is not stored; False: a copy per
                                            # sample; None: share above 20M copied rows

    def validate(self) -> None:
        """Raise ValueError naming the first option that is out of range."""
        positive = ["n_users", "samples_per_user", "n_categories", "subtopics_per_category",
                    "items_per_subtopic", "latent_dim", "min_interests", "liked_subtopics",
                    "min_len", "temperature"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"synthetic option {name}={getattr(self, name)} must be positive")
        if not self.min_interests <= self.max_interests <= self.n_categories:
            raise ValueError(
                f"interests per user must satisfy 1 <= min_interests ({self.min_interests}) "
                f"<= max_interests ({self.max_interests}) <= n_categories ({self.n_categories})"
            )
        if self.liked_subtopics > self.subtopics_per_category:
            raise ValueError(
                f"liked_subtopics={self.liked_subtopics} exceeds subtopics_per_category="
                f"{self.subtopics_per_category}"
            )
        if self.max_len < self.min_len:
            raise ValueError(f"max_len={self.max_len} is below min_len={self.min_len}")
        for name in ("history_noise", "candidate_interest_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"synthetic option {name}={value} must be a probability in 0..1")
        if self.item_spread < 0:
            raise ValueError(f"synthetic option item_spread={self.item_spread} must be >= 0")

    @property
    def n_items(self) -> int:
        return self.n_categories * self.subtopics_per_category * self.items_per_subtopic


def option_names() -> list[str]:
    """Names accepted as keyword options for the synthetic source."""
    return [f.name for f in fields(SyntheticOptions)]


def make_synthetic(options: SyntheticOptions | None = None, seed: int = 0) -> Samples:
    """Generate the synthetic interest world's samples from `seed`, ordered by user."""
    options = options or SyntheticOptions()
    options.validate()
    rng = np.random.default_rng(seed)

    world = _make_world(options, rng)
    sequences = _make_sequences(options, world, rng)  # (U, S) catalogue indices
    n_users, seq_len = sequences.shape
    n = n_users * options.samples_per_user
    sample_user = np.repeat(np.arange(n_users), options.samples_per_user)

    # Each sample uses a window of its user's sequence: length L, ending at e.
    length = rng.integers(options.min_len, options.max_len + 1, size=n)
    end = rng.integers(length, seq_len + 1)
    window_start = sample_user * seq_len + end - length  # into sequences.reshape(-1)

    share = options.share_history_rows
    if share is None:
        share = int(length.sum()) > _AUTO_SHARE_ROWS

    candidate = _draw_candidates(options, world, sample_user, rng)
    max_relevance, relevance = _score(options, world, sequences.reshape(-1), window_start,
                                      length, candidate, keep_rows=not share)
    true_prob = _sigmoid(options.base_logit + options.click_strength * max_relevance)
    label = (rng.random(n) < true_prob).astype(np.float32)

    if share:
        history_items = sequences.reshape(-1)
        hist_start = window_start
    else:
        # A copy of each window, so that every history row belongs to one sample
        # and can carry that sample's relevance.
        history_items = sequences.reshape(-1)[_window_rows(window_start, length)]
        hist_start = np.cumsum(length) - length

    return Samples(
        item_fields=("item", "category"),
        vocab_sizes=(options.n_items, options.n_categories),
        candidate=_item_fields(world, candidate),
        history=_item_fields(world, history_items),
        hist_start=hist_start.astype(np.int64),
        hist_end=(hist_start + length).astype(np.int64),
        label=label,
        user=(sample_user + 1).astype(np.int32),
        true_prob=true_prob,
        relevance=relevance,
        name="synthetic",
    )


@dataclass
class _World:
    """The hidden catalogue and tastes. Items are catalogue indices 0..n_items-1."""

    item_id: np.ndarray        # (n_items,) public id 1..V of each catalogue index
    category: np.ndarray       # (n_items,) category index 0..C-1
    vector: np.ndarray         # (n_items, k) float32 unit latent vectors
    n_interests: np.ndarray    # (U,) interest categories per user
    interests: np.ndarray      # (U, max_interests) category indices, first n_interests valid
    liked: np.ndarray          # (U, max_interests, liked_subtopics) sub-topic indices 0..S-1


def _make_world(options: SyntheticOptions, rng: np.random.Generator) -> _World:
    per_category = options.subtopics_per_category * options.items_per_subtopic
    catalogue = np.arange(options.n_items)
    category = catalogue // per_category
    subtopic = catalogue // options.items_per_subtopic  # global sub-topic index

    # Sub-topic centres are random directions; items scatter around their centre.
    n_subtopics = options.n_categories * options.subtopics_per_category
    centres = _unit(rng.standard_normal((n_subtopics, options.latent_dim)))
    scatter = rng.standard_normal((options.n_items, options.latent_dim))
    vector = _unit(centres[subtopic] + options.item_spread * _unit(scatter)).astype(np.float32)

    # Public ids are shuffled so that an id carries no information about its category.
    item_id = rng.permutation(options.n_items) + 1

    n_interests = rng.integers(options.min_interests, options.max_interests + 1,
                               size=options.n_users)
    interests = np.empty((options.n_users, options.max_interests), dtype=np.int64)
    for lo in range(0, options.n_users, 8192):
        # Distinct categories per user: the first columns of a random ordering.
        keys = rng.random((min(8192, options.n_users - lo), options.n_categories),
                          dtype=np.float32)
        interests[lo:lo + 8192] = np.argsort(keys, axis=1)[:, :options.max_interests]
    keys = rng.random((options.n_users, options.max_interests, options.subtopics_per_category))
    liked = np.argsort(keys, axis=2)[:, :, :options.liked_subtopics]

    return _World(item_id=item_id, category=category, vector=vector,
                  n_interests=n_interests, interests=interests, liked=liked)


def _draw_interest_items(options: SyntheticOptions, world: _World, users: np.ndarray,
                         liked_only: bool, rng: np.random.Generator) -> np.ndarray:
    """Draw one item per entry of `users` from a random interest of that user."""
    slot = (rng.random(users.shape) * world.n_interests[users]).astype(np.int64)
    category = world.interests[users, slot]
    if liked_only:
        which = rng.integers(0, options.liked_subtopics, size=users.shape)
        subtopic = world.liked[users, slot, which]
    else:
        subtopic = rng.integers(0, options.subtopics_per_category, size=users.shape)
    item = rng.integers(0, options.items_per_subtopic, size=users.shape)
    return (category * options.subtopics_per_category + subtopic) * options.items_per_subtopic + item


def _make_sequences(options: SyntheticOptions, world: _World,
                    rng: np.random.Generator) -> np.ndarray:
    """Draw one behaviour sequence per user: (U, max_len + samples_per_user) catalogue indices."""
    seq_len = options.max_len + options.samples_per_user
    users = np.repeat(np.arange(options.n_users)[:, None], seq_len, axis=1)  # (U, S)
    sequences = _draw_interest_items(options, world, users, liked_only=True, rng=rng)

    noise = rng.random(users.shape) < options.history_noise
    sequences[noise] = rng.integers(0, options.n_items, size=int(noise.sum()))
    return sequences


def _draw_candidates(options: SyntheticOptions, world: _World, sample_user: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Candidates: from an interest category (any sub-topic) or from the whole catalogue."""
    candidate = _draw_interest_items(options, world, sample_user, liked_only=False, rng=rng)
    anywhere = rng.random(sample_user.shape) >= options.candidate_interest_rate
    candidate[anywhere] = rng.integers(0, options.n_items, size=int(anywhere.sum()))
    return candidate


def _score(options: SyntheticOptions, world: _World, flat_sequences: np.ndarray,
           window_start: np.ndarray, length: np.ndarray, candidate: np.ndarray,
           keep_rows: bool):
    """Relevance of every history item to its sample's candidate.

    Returns (max relevance per sample (N,) float64, flat relevance rows (sum L,)
    float32 in window order, or None when keep_rows is False).
    """
    n = candidate.shape[0]
    max_relevance = np.zeros(n, dtype=np.float64)
    rows = [] if keep_rows else None
    positions = np.arange(options.max_len)

    for lo in range(0, n, _CHUNK_SAMPLES):
        hi = min(lo + _CHUNK_SAMPLES, n)
        valid = positions[None, :] < length[lo:hi, None]  # (b, T)
        index = np.where(valid, window_start[lo:hi, None] + positions[None, :], 0)
        items = flat_sequences[index]  # (b, T)
        cand = candidate[lo:hi]

        same_category = world.category[items] == world.category[cand][:, None]
        cosine = np.einsum("btk,bk->bt", world.vector[items], world.vector[cand])
        relevance = np.exp(-(1.0 - cosine) / options.temperature)
        relevance = np.where(valid & same_category, relevance, 0.0).astype(np.float32)

        max_relevance[lo:hi] = relevance.max(axis=1)
        if keep_rows:
            # valid is a prefix of each row, so row-major order is window order.
            rows.append(relevance[valid])

    flat = np.concatenate(rows) if keep_rows else None
    return max_relevance, flat


def _window_rows(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Concatenate the index ranges [start_i, start_i + length_i) into one array."""
    first = np.cumsum(length) - length
    return np.repeat(start, length) + np.arange(int(length.sum())) - np.repeat(first, length)


def _item_fields(world: _World, items: np.ndarray) -> np.ndarray:
    """(n,) catalogue indices -> (n, 2) int32 ids (item id, category id)."""
    return np.stack([world.item_id[items], world.category[items] + 1], axis=1).astype(np.int32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC from ranks with tied scores sharing their average rank; NaN for one class.

    Used here for the oracle summary of generated data; tinydin.metrics contains the
    metric the models are evaluated with.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) == 1
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")

    # Average rank of each group of tied scores (ranks start at 1).
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    _, group, counts = np.unique(sorted_scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    average_rank = last_rank - (counts - 1) / 2.0
    ranks = np.empty(scores.size)
    ranks[order] = average_rank[group]

    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def options_dict(options: SyntheticOptions) -> dict:
    """The options as a plain dict, for dataset info."""
    return asdict(options)
