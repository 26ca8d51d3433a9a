"""Measure the data layer's sizes, memory and speed; the numbers in docs/data.md come from here.

    python -m tinydin.data.measure synthetic         default synthetic world, oracle AUC
    python -m tinydin.data.measure category-baseline AUC of category-level matching alone
    python -m tinydin.data.measure synthetic-large   2.6M samples, histories up to 100
    python -m tinydin.data.measure sequential-3m     3M rating-recipe samples, histories up to 100
    python -m tinydin.data.measure amazon-scale      generated reviews the size of Electronics 5-core
    python -m tinydin.data.measure batch             make_batch time, B=256, T=50
    python -m tinydin.data.measure movielens         ml-latest-small from $TINYDIN_MOVIELENS_DIR

Each run is one scenario in a fresh process, so "peak RSS" (the process's maximum
resident memory, from getrusage) belongs to that scenario alone. Times are wall
clock and depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import timeit

import numpy as np

from tinydin.data.amazon import ReviewTable, build_splits
from tinydin.data.batching import make_batch
from tinydin.data.movielens import RatingTable, build_samples
from tinydin.data.registry import load_dataset
from tinydin.data.samples import count_occurrences
from tinydin.data.synthetic import SyntheticOptions, make_synthetic, rank_auc


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _report(name: str, value) -> None:
    print(f"{name:<32} {value}")


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def measure_synthetic() -> None:
    data, seconds = _timed(lambda: load_dataset("synthetic", seed=0))
    _report("load_dataset seconds", f"{seconds:.1f}")
    for split in ("train", "validation", "test"):
        sizes = data.info["sizes"][split]
        _report(f"{split} samples / click rate", f"{sizes['samples']} / {sizes['click_rate']:.4f}")
    for key, value in data.info["oracle"].items():
        _report(f"oracle {key}", f"{value:.4f}")
    total = data.train.nbytes + data.validation.nbytes + data.test.nbytes
    _report("nbytes, all splits (MB)", f"{total / 1e6:.1f}")
    _, seconds = _timed(lambda: count_occurrences(data.train))
    _report("count_occurrences(train) s", f"{seconds:.1f}")


def measure_category_baseline() -> None:
    """AUC of a score that uses only category-level matches, on the default synthetic data.

    Score = the click rate, on train, of samples with the same number of history
    items in the candidate's category (capped at 30). What such a score misses, up
    to the oracle, is what only item-level matching can recover.
    """
    data = load_dataset("synthetic", seed=0)

    def matches(samples):
        owner = np.repeat(np.arange(len(samples)), samples.hist_len)
        same = samples.history[:, 1] == samples.candidate[owner, 1]
        return np.minimum(np.bincount(owner, weights=same, minlength=len(samples)), 30).astype(int)

    train_key, test_key = matches(data.train), matches(data.test)
    clicks = np.bincount(train_key, weights=data.train.label, minlength=31)
    seen = np.bincount(train_key, minlength=31)
    rate = (clicks + 1) / (seen + 4)  # smoothed, so an unseen count still gets a score
    _report("category-count test AUC", f"{rank_auc(rate[test_key], data.test.label):.4f}")
    _report("oracle test AUC", f"{data.info['oracle']['test_auc']:.4f}")


def measure_synthetic_large() -> None:
    options = SyntheticOptions(n_users=130_000, max_len=100)
    samples, seconds = _timed(lambda: make_synthetic(options, seed=0))
    _report("samples", len(samples))
    _report("history rows (shared)", samples.history.shape[0])
    _report("generation seconds", f"{seconds:.1f}")
    _report("nbytes (MB)", f"{samples.nbytes / 1e6:.0f}")


def measure_sequential_3m() -> None:
    rng = np.random.default_rng(0)
    n_users, per_user, n_movies = 30_000, 101, 20_000
    user = np.repeat(np.arange(1, n_users + 1), per_user)
    table = RatingTable(
        user=user, movie=rng.integers(1, n_movies + 1, user.size),
        rating=rng.integers(1, 11, user.size).astype(np.float32) / 2,
        timestamp=rng.integers(0, 10**9, user.size),
        genre={m: f"g{m % 19}" for m in range(1, n_movies + 1)}, source="generated",
    )
    samples, seconds = _timed(lambda: build_samples(table))
    _report("samples", len(samples))
    _report("longest history", int(samples.hist_len.max()))
    _report("build seconds", f"{seconds:.1f}")
    _report("nbytes (MB)", f"{samples.nbytes / 1e6:.0f}")
    _, seconds = _timed(lambda: count_occurrences(samples))
    _report("count_occurrences seconds", f"{seconds:.1f}")


def measure_amazon_scale() -> None:
    # The published size of reviews_Electronics_5 is 192,403 reviewers, 63,001
    # items and 1,689,188 reviews. The review counts here are drawn (at least 5
    # each, mean about 8.8, at most 101) and the 801 categories are an assumption.
    rng = np.random.default_rng(0)
    n_users, n_items = 192_403, 63_001
    counts = np.minimum(5 + rng.geometric(1 / 4.8, n_users) - 1, 101)
    user = np.repeat(np.arange(n_users), counts)
    item = rng.integers(0, n_items, user.size)
    reviews = ReviewTable(user=[f"U{u:07d}" for u in user], item=[f"I{i:07d}" for i in item],
                          timestamp=rng.integers(0, 10**6, user.size))
    category = {f"I{i:07d}": f"c{i % 801}" for i in range(n_items)}
    splits, seconds = _timed(lambda: build_splits(reviews, category, seed=0))
    _report("reviews", user.size)
    _report("samples, all splits", sum(len(s) for s in splits))
    _report("build seconds", f"{seconds:.1f}")
    _report("nbytes, all splits (MB)", f"{sum(s.nbytes for s in splits) / 1e6:.0f}")


def measure_batch() -> None:
    samples = make_synthetic(SyntheticOptions(), seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(samples), 256) for _ in range(200)]
    best = min(timeit.repeat(lambda: [make_batch(samples, b, 50) for b in batches],
                             number=1, repeat=5))
    _report("make_batch B=256 T=50 (us)", f"{best / len(batches) * 1e6:.0f}")


def measure_movielens() -> None:
    for task in ("rating", "next"):
        data, seconds = _timed(lambda: load_dataset("movielens", seed=0, task=task))
        sizes = data.info["sizes"]
        _report(f"{task}: load seconds", f"{seconds:.2f}")
        _report(f"{task}: vocab sizes", sizes["vocab_sizes"])
        for split in ("train", "validation", "test"):
            s = sizes[split]
            _report(f"{task}: {split}", f"{s['samples']} samples, {s['users']} users, "
                                        f"click rate {s['click_rate']:.4f}")


SCENARIOS = {
    "synthetic": measure_synthetic,
    "category-baseline": measure_category_baseline,
    "synthetic-large": measure_synthetic_large,
    "sequential-3m": measure_sequential_3m,
    "amazon-scale": measure_amazon_scale,
    "batch": measure_batch,
    "movielens": measure_movielens,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinydin.data.measure",
                                     description="Measure one data-layer scenario.")
    parser.add_argument("scenario", choices=sorted(SCENARIOS), help="what to measure")
    args = parser.parse_args(argv)
    SCENARIOS[args.scenario]()
    _report("peak RSS (MB)", f"{_peak_rss_mb():.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
