"""Data sources: the synthetic interest world, MovieLens and Amazon Electronics.

    from tinydin.data import load_dataset, iterate_batches
    data = load_dataset("synthetic", seed=0)         # or "movielens", "amazon"
    for batch in iterate_batches(data.train, batch_size=256, max_len=50, shuffle=True, rng=0):
        ...

Every source produces Samples (flat history storage with per-sample ranges);
batching pads each batch to its own longest history, capped at max_len.
"""
from tinydin.data.amazon import fetch_amazon, load_amazon
from tinydin.data.batching import Batch, iterate_batches, make_batch
from tinydin.data.files import DataFormatError
from tinydin.data.movielens import fetch_movielens, load_movielens
from tinydin.data.registry import DATASETS, DatasetSplits, load_dataset
from tinydin.data.samples import (Samples, count_occurrences, count_user_occurrences,
                                  split_by_user)
from tinydin.data.synthetic import SyntheticOptions, make_synthetic

__all__ = [
    "Batch", "DATASETS", "DataFormatError", "DatasetSplits", "Samples", "SyntheticOptions",
    "count_occurrences", "count_user_occurrences", "fetch_amazon", "fetch_movielens",
    "iterate_batches", "load_amazon", "load_dataset", "load_movielens", "make_batch",
    "make_synthetic", "split_by_user",
]
