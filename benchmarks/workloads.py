"""Random workloads shaped like Amazon Electronics, for the step benchmarks.

The DIN paper's Amazon Electronics set has 63,001 goods in 801 categories; an
item vector is two fields of 18 (D = 36). A benchmark sample here is

    history length L ~ uniform(1..T)
    history goods ids and candidate goods id ~ uniform(1..V_goods)
    category id = a fixed random category of each goods id
    label ~ Bernoulli(0.5)

Uniform ids are the worst case for the sparse updates (about one unique row
per lookup); real data repeats popular items, which makes those updates
cheaper. The batches go through tinydin's own `make_batch`, so padding and
masks are the ones training uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GOODS_VOCAB = 63_001
CATEGORY_VOCAB = 801
FIELD_DIM = 18


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration of the data: B, T and the goods vocabulary V."""

    batch_size: int
    max_len: int
    goods_vocab: int = GOODS_VOCAB
    category_vocab: int = CATEGORY_VOCAB


def make_samples(workload: Workload, num_samples: int, seed: int = 0):
    """Return a tinydin Samples of `num_samples` random samples; see the module docstring."""
    from tinydin.data.samples import Samples

    rng = np.random.default_rng(seed)
    category_of = rng.integers(1, workload.category_vocab + 1, size=workload.goods_vocab + 1)

    lengths = rng.integers(1, workload.max_len + 1, size=num_samples)
    hist_end = np.cumsum(lengths)
    hist_start = hist_end - lengths
    goods_history = rng.integers(1, workload.goods_vocab + 1, size=int(hist_end[-1]))
    goods_candidate = rng.integers(1, workload.goods_vocab + 1, size=num_samples)

    def with_category(goods: np.ndarray) -> np.ndarray:
        return np.stack([goods, category_of[goods]], axis=1).astype(np.int32)  # (N, F = 2)

    return Samples(
        item_fields=("goods_id", "cate_id"),
        vocab_sizes=(workload.goods_vocab, workload.category_vocab),
        candidate=with_category(goods_candidate),
        history=with_category(goods_history),
        hist_start=hist_start.astype(np.int64),
        hist_end=hist_end.astype(np.int64),
        label=(rng.random(num_samples) < 0.5).astype(np.float32),
        user=np.arange(1, num_samples + 1, dtype=np.int32),
        name="benchmark",
    )


def make_batches(workload: Workload, count: int, seed: int = 0) -> list:
    """Return `count` tinydin Batch objects of the workload, built with make_batch."""
    from tinydin.data.batching import make_batch

    samples = make_samples(workload, workload.batch_size * count, seed)
    size = workload.batch_size
    return [make_batch(samples, np.arange(i * size, (i + 1) * size), workload.max_len) for i in range(count)]


def model_config(workload: Workload, **overrides):
    """Return a tinydin ModelConfig for the workload: two fields of 18, T = max_len."""
    from tinydin.models import ModelConfig

    values = dict(
        item_fields=("goods_id", "cate_id"),
        vocab_sizes=(workload.goods_vocab, workload.category_vocab),
        embedding_dims=(FIELD_DIM, FIELD_DIM),
        max_len=workload.max_len,
    )
    values.update(overrides)
    return ModelConfig(**values)


def valid_positions(batches: list) -> float:
    """Return the mean number of valid history positions per batch (N in the FLOP formulas)."""
    return float(np.mean([batch.mask.sum() for batch in batches]))


def padded_positions(batches: list) -> float:
    """Return the mean B * Tb per batch: the positions a padded implementation computes."""
    return float(np.mean([batch.mask.size for batch in batches]))
