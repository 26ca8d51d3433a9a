"""One data-loading or training-epoch job in its own process, reporting peak memory.

bench_epoch.py runs this script once per job, so that ru_maxrss (the peak
resident memory of the process) covers that job alone. It prints one JSON
object on its last line of standard output.

Jobs:
  movielens           load ml-latest-small from $TINYDIN_MOVIELENS_DIR with
                      tinydin.data.load_dataset and train one epoch on its
                      training split
  generate --out F    generate the Amazon-sized synthetic set and save it to F
  train --data F      load a saved set and train one epoch on all of it

An epoch is iterate_batches (shuffled) plus one training step per batch, so
its time includes batch building. --max-batches stops early (the report then
says how many of the epoch's batches ran).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

# Amazon Electronics as used in the DIN paper: 63,001 goods in 801 categories;
# the official preprocessing yields about 2.6 million training samples. The
# synthetic generator draws items as categories x sub-topics x items, so
# 801 x 8 x 10 = 64,080 goods is the nearest catalogue of that form.
AMAZON_LIKE_OPTIONS = dict(
    n_users=130_000, samples_per_user=20, n_categories=801, subtopics_per_category=8,
    items_per_subtopic=10, min_len=1, max_len=100, share_history_rows=True,
)


def peak_rss_bytes() -> int:
    """Return the peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def save_samples(samples, path: str) -> None:
    arrays = dict(
        candidate=samples.candidate, history=samples.history, hist_start=samples.hist_start,
        hist_end=samples.hist_end, label=samples.label, user=samples.user,
        vocab_sizes=np.asarray(samples.vocab_sizes, dtype=np.int64),
        item_fields=np.asarray(samples.item_fields),
    )
    np.savez(path, **arrays)


def load_samples(path: str):
    from tinydin.data.samples import Samples

    with np.load(path) as stored:
        return Samples(
            item_fields=tuple(str(name) for name in stored["item_fields"]),
            vocab_sizes=tuple(int(v) for v in stored["vocab_sizes"]),
            candidate=stored["candidate"], history=stored["history"],
            hist_start=stored["hist_start"], hist_end=stored["hist_end"],
            label=stored["label"], user=stored["user"], name="synthetic",
        )


def train_epoch(samples, unit: str, batch_size: int, max_len: int, max_batches: int | None) -> dict:
    """Train a fresh DIN (Dice, MBA) for one epoch over `samples`; return timing and sizes."""
    from tinydin.data.batching import iterate_batches
    from tinydin.models import ModelConfig

    from benchmarks.steps import build_trainer

    config = ModelConfig.from_samples(samples, unit=unit, max_len=max_len)
    start = time.perf_counter()
    trainer = build_trainer("din", config, samples, embedding_reg="mba")
    setup_seconds = time.perf_counter() - start

    total_batches = -(-len(samples) // batch_size)
    batches = 0
    losses = []
    start = time.perf_counter()
    for batch in iterate_batches(samples, batch_size, max_len, shuffle=True, rng=0):
        losses.append(trainer.step(batch))
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    seconds = time.perf_counter() - start
    return {
        "unit": unit, "batch_size": batch_size, "max_len": max_len,
        "samples": len(samples), "batches": batches, "total_batches": total_batches,
        "setup_seconds": setup_seconds, "epoch_seconds": seconds,
        "samples_per_second": min(batches * batch_size, len(samples)) / seconds,
        "first_loss": losses[0], "last_loss": float(np.mean(losses[-20:])),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=("movielens", "generate", "train"))
    parser.add_argument("--out", help="file to write the generated samples to (.npz)")
    parser.add_argument("--data", help="file of saved samples to train on (.npz)")
    parser.add_argument("--unit", default="outer", choices=("outer", "concat"), help="activation unit input layout")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per batch")
    parser.add_argument("--max-len", type=int, default=50, help="history cap T")
    parser.add_argument("--max-batches", type=int, default=None, help="stop the epoch after this many batches")
    args = parser.parse_args(argv)

    result: dict = {"job": args.job}
    if args.job == "movielens":
        from tinydin.data import load_dataset

        folder = os.environ.get("TINYDIN_MOVIELENS_DIR")
        if not folder:
            print("TINYDIN_MOVIELENS_DIR is not set; point it at an ml-latest-small folder", file=sys.stderr)
            return 2
        start = time.perf_counter()
        splits = load_dataset("movielens", data_dir=folder)
        result["load_seconds"] = time.perf_counter() - start
        result["peak_rss_after_load"] = peak_rss_bytes()
        result.update(train_epoch(splits.train, args.unit, args.batch_size, args.max_len, args.max_batches))
    elif args.job == "generate":
        if not args.out:
            parser.error("generate needs --out FILE")
        from tinydin.data.synthetic import SyntheticOptions, make_synthetic

        start = time.perf_counter()
        samples = make_synthetic(SyntheticOptions(**AMAZON_LIKE_OPTIONS), seed=0)
        result["generate_seconds"] = time.perf_counter() - start
        result["samples"] = len(samples)
        result["history_rows"] = int(samples.history.shape[0])
        result["mean_history"] = float(np.mean(samples.hist_len))
        result["samples_nbytes"] = samples.nbytes
        save_samples(samples, args.out)
    else:
        if not args.data:
            parser.error("train needs --data FILE")
        start = time.perf_counter()
        samples = load_samples(args.data)
        result["load_seconds"] = time.perf_counter() - start
        result["samples_nbytes"] = samples.nbytes
        result["peak_rss_after_load"] = peak_rss_bytes()
        result.update(train_epoch(samples, args.unit, args.batch_size, args.max_len, args.max_batches))

    result["peak_rss"] = peak_rss_bytes()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
