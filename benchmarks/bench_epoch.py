"""One training epoch on real and Amazon-sized data, each job in its own process.

The jobs run benchmarks/epoch_worker.py, so that each peak resident set size
(ru_maxrss) belongs to that job alone. Each worker gets OPENBLAS_NUM_THREADS
set to the BLAS thread count of the run.

  ml-latest-small   tinydin.data.load_dataset("movielens") from
                    $TINYDIN_MOVIELENS_DIR, as the command line loads it; one
                    epoch of DIN (Dice, MBA, B = 256, T = 50) on the training
                    split, with the outer and with the concat unit
  Amazon-sized      the synthetic generator at 2.6 million samples, histories
                    of 1..100 items over 64,080 goods in 801 categories,
                    generated and saved by one process, then loaded and
                    trained for one epoch (DIN concat, Dice, MBA, B = 256,
                    T = 100) by another

Targets: ml-latest-small epoch under 15 s; Amazon-sized epoch peak memory
under 2 GB.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.context import Context, missing_modules, skipped
from benchmarks.machine import blas_threads
from benchmarks.report import rate, table

WORKER = Path(__file__).resolve().parent / "epoch_worker.py"
MOVIELENS_TARGET_SECONDS = 15.0
AMAZON_TARGET_BYTES = 2 * 2 ** 30
# --quick stops the Amazon-sized epoch after this many batches.
QUICK_BATCHES = 300
# No job of a benchmark run may take longer than this.
JOB_TIMEOUT_SECONDS = 3600


def run_worker(*args: str) -> dict:
    """Run epoch_worker.py with `args` and return its JSON result, or {"error": text}."""
    # The worker is a fresh process: give its OpenBLAS the thread count this run uses.
    env = dict(os.environ)
    threads = blas_threads()
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        completed = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True,
                                   timeout=JOB_TIMEOUT_SECONDS, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {JOB_TIMEOUT_SECONDS} s"}
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit status {completed.returncode}: {last}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2 ** 30:.2f}"


def run_epoch(context: Context) -> str:
    missing = missing_modules("tinydin.models", "tinydin.optim", "tinydin.data")
    if missing:
        return skipped("Epoch benchmark", missing)
    return "\n\n".join([movielens_part(), amazon_part(context)])


def movielens_part() -> str:
    folder = os.environ.get("TINYDIN_MOVIELENS_DIR")
    if not folder:
        return ("#### ml-latest-small\n\n_Skipped: TINYDIN_MOVIELENS_DIR is not set. Point it at an "
                "ml-latest-small folder (with ratings.csv and movies.csv) to run this part._")

    rows = []
    verdicts = []
    for unit in ("outer", "concat"):
        result = run_worker("movielens", "--unit", unit, "--batch-size", "256", "--max-len", "50")
        if "error" in result:
            rows.append([f"DIN {unit} Dice", result["error"], "", "", "", "", "", ""])
            continue
        rows.append([
            f"DIN {unit} Dice", f"{result['samples']:,}", result["batches"],
            f"{result['load_seconds']:.1f}", f"{result['setup_seconds']:.1f}",
            f"{result['epoch_seconds']:.1f}", rate(result["samples_per_second"]), gib(result["peak_rss"]),
        ])
        seconds = result["epoch_seconds"]
        verdicts.append(
            f"Target: ml-latest-small epoch under {MOVIELENS_TARGET_SECONDS:.0f} s, DIN {unit}: "
            f"{seconds:.1f} s, " + ("**met**." if seconds < MOVIELENS_TARGET_SECONDS
                                    else f"**missed** by {seconds - MOVIELENS_TARGET_SECONDS:.1f} s.")
        )
    header = ["model", "training samples", "batches", "load s", "setup s (counts, model)", "epoch s",
              "samples/s", "peak RSS GiB"]
    intro = (
        "\"setup\" is building the model and the SGD optimizer, including the MBA occurrence "
        "counts (tinydin.models.occurrence_counts). The epoch time covers shuffling, batch "
        "building and the training steps."
    )
    return "\n\n".join(["#### ml-latest-small", intro, table(header, rows)] + verdicts)


def amazon_part(context: Context) -> str:
    lines = ["#### Amazon-sized synthetic set"]
    with tempfile.TemporaryDirectory(prefix="tinydin-bench-") as folder:
        path = os.path.join(folder, "amazon_like.npz")
        generated = run_worker("generate", "--out", path)
        if "error" in generated:
            return "\n\n".join(lines + [f"_Generation failed: {generated['error']}_"])

        train_args = ["train", "--data", path, "--unit", "concat", "--batch-size", "256", "--max-len", "100"]
        if context.quick:
            train_args += ["--max-batches", str(QUICK_BATCHES)]
        trained = run_worker(*train_args)

    lines.append(table(
        ["job", "samples", "history rows stored", "mean history", "seconds", "peak RSS GiB"],
        [["generate and save", f"{generated['samples']:,}", f"{generated['history_rows']:,}",
          f"{generated['mean_history']:.1f}", f"{generated['generate_seconds']:.1f}",
          gib(generated["peak_rss"])]],
    ))
    if "error" in trained:
        return "\n\n".join(lines + [f"_Training failed: {trained['error']}_"])

    partial = trained["batches"] < trained["total_batches"]
    lines.append(table(
        ["job", "batches run", "load s", "setup s", "epoch s", "samples/s", "peak RSS after load GiB",
         "peak RSS GiB"],
        [["load and train DIN concat Dice", f"{trained['batches']:,} of {trained['total_batches']:,}",
          f"{trained['load_seconds']:.1f}", f"{trained['setup_seconds']:.1f}",
          f"{trained['epoch_seconds']:.1f}", rate(trained["samples_per_second"]),
          gib(trained["peak_rss_after_load"]), gib(trained["peak_rss"])]],
    ))
    if partial:
        lines.append(f"_--quick: the epoch stopped after {trained['batches']:,} batches; the peak "
                     f"memory of a whole epoch is not measured by this run._")
    peak = max(trained["peak_rss"], generated["peak_rss"])
    if partial:
        lines.append(f"Target (Amazon-sized epoch peak memory under {gib(AMAZON_TARGET_BYTES)} GiB): not "
                     f"judged, because the epoch did not finish.")
        return "\n\n".join(lines)
    lines.append(
        f"Target: Amazon-sized epoch peak memory under {gib(AMAZON_TARGET_BYTES)} GiB: training "
        f"process {gib(trained['peak_rss'])} GiB, generating process {gib(generated['peak_rss'])} GiB, "
        + ("**met**." if peak < AMAZON_TARGET_BYTES else f"**missed** by {gib(peak - AMAZON_TARGET_BYTES)} GiB.")
    )
    return "\n\n".join(lines)
