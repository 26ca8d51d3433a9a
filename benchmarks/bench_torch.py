"""tinydin against the PyTorch autograd reference (benchmarks/torch_din.py).

Two parts:
  cross-check  tinydin's parameters loaded into the float64 torch model; the
               largest absolute difference of the logits and of every
               parameter gradient on one batch
  timing       one training step (forward, mean BCE, backward, plain SGD) of
               tinydin (embedding_reg="none", the same update as torch's SGD)
               and of the torch model with dense and with sparse embedding
               gradients, each with torch.set_num_threads(2) and with one
               thread, float32, timed in alternating rounds in this process
"""
from __future__ import annotations

import numpy as np

from benchmarks.context import Context, missing_modules, skipped
from benchmarks.report import rate, table
from benchmarks.steps import BENCH_LR, build_trainer
from benchmarks.timing import time_interleaved
from benchmarks.workloads import Workload, make_batches, make_samples, model_config

BATCH_POOL = 16
TORCH_THREADS = 2

# (label, config overrides) of the timed configurations.
TIMED = (
    ("DIN concat Dice", dict(unit="concat", attention_activation="dice", mlp_activation="dice")),
    ("DIN concat PReLU", dict(unit="concat", attention_activation="prelu", mlp_activation="prelu")),
    ("DIN outer Dice", dict(unit="outer", attention_activation="dice", mlp_activation="dice")),
)

CHECKED = (
    ("concat", "dice", "none"), ("concat", "prelu", "none"), ("concat", "sigmoid", "softmax"),
    ("outer", "dice", "none"), ("outer", "prelu", "softmax"), ("outer", "sigmoid", "none"),
)

# The torch outer unit builds a (B, T, 2D + D^2) input; above this T one step
# takes seconds, so those shapes are left out of the timing.
OUTER_MAX_LEN = 50

# The 1e-10 agreement that the cross-check must reach in float64.
CROSS_CHECK_TOLERANCE = 1e-10


def torch_missing() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return ("_PyTorch is not installed, so the PyTorch rows are skipped. Install the CPU "
                "build into the venv for a benchmark run: `.venv/bin/pip install torch==2.13.0`._")
    return None


def run_torch(context: Context) -> str:
    message = torch_missing()
    if message:
        return message
    missing = missing_modules("tinydin.models", "tinydin.optim", "tinydin.data.batching")
    if missing:
        return skipped("PyTorch comparison", missing)

    import torch

    torch.set_num_threads(TORCH_THREADS)
    parts = [
        f"torch {torch.__version__}, torch.set_num_threads({TORCH_THREADS}) "
        f"(intra-op threads now {torch.get_num_threads()}).",
        "### Correctness cross-check (float64)\n\n" + cross_check_table(context),
        "### Training step, tinydin against PyTorch autograd (float32)\n\n" + timing_table(context),
    ]
    return "\n\n".join(parts)


def cross_check_table(context: Context) -> str:
    from tinydin.models import DIN

    from benchmarks.torch_din import cross_check

    workload = Workload(batch_size=64, max_len=30, goods_vocab=2_000, category_vocab=50)
    batch = make_batches(workload, 1, context.seed)[0]
    rows = []
    for unit, activation, normalize in CHECKED:
        config = model_config(workload, unit=unit, attention_activation=activation,
                              mlp_activation="prelu" if activation == "prelu" else "dice",
                              normalize=normalize, dtype="float64")
        din = DIN(config)
        randomize(din, context.seed)
        differences = cross_check(din, batch)
        worst_name = max((name for name in differences if name != "logits"), key=differences.get)
        worst = max(differences.values())
        rows.append([unit, activation, normalize, f"{differences['logits']:.1e}",
                     f"{differences[worst_name]:.1e} ({worst_name})", len(differences) - 1,
                     "yes" if worst <= CROSS_CHECK_TOLERANCE else "**no**"])
    intro = (
        f"One batch of B = {workload.batch_size}, T = {workload.max_len} (lengths uniform in 1..T), "
        f"D = 36, goods vocabulary {workload.goods_vocab:,}. Every tinydin parameter is first moved "
        f"by N(0, 0.1^2) noise, so that zero-initialized biases and slopes do not hide a wrong "
        f"gradient, then copied into the torch model. The MLP uses Dice, or PReLU when the unit does."
    )
    header = ["unit", "unit activation", "normalize", "max abs logit diff",
              "max abs grad diff (parameter)", "parameters compared", f"within {CROSS_CHECK_TOLERANCE:g}"]
    return intro + "\n\n" + table(header, rows)


def randomize(din, seed: int) -> None:
    """Add N(0, 0.1^2) noise to every parameter in place, keeping padding rows at zero."""
    rng = np.random.default_rng(seed + 1)
    for name, value in din.params.items():
        value += (rng.standard_normal(value.shape) * 0.1).astype(value.dtype)
        if name.endswith(".weight"):
            value[0] = 0.0


# (column name, sparse embedding gradients, torch intra-op threads) of each torch variant.
TORCH_VARIANTS = (
    ("torch dense 2t", False, TORCH_THREADS),
    ("torch sparse 2t", True, TORCH_THREADS),
    ("torch dense 1t", False, 1),
    ("torch sparse 1t", True, 1),
)
SPEEDUP_TARGET = 1.5


def timing_table(context: Context) -> str:
    import torch

    from benchmarks.torch_din import batch_tensors, from_config, has_score_bias, load_from_tinydin

    rows = []
    verdicts = []
    for batch_size, max_len in context.shapes:
        workload = Workload(batch_size, max_len)
        samples = make_samples(workload, batch_size * BATCH_POOL, context.seed)
        batches = make_batches(workload, BATCH_POOL, context.seed)
        tensors = [batch_tensors(batch) for batch in batches]

        for label, overrides in TIMED:
            if overrides["unit"] == "outer" and max_len > OUTER_MAX_LEN:
                continue
            config = model_config(workload, **overrides)
            trainer = build_trainer("din", config, samples, embedding_reg="none")
            calls = {"tinydin": lambda i: trainer.step(batches[i % BATCH_POOL])}
            for name, sparse, threads in TORCH_VARIANTS:
                torch_model = from_config(config, sparse=sparse, score_bias=has_score_bias(trainer.model))
                load_from_tinydin(torch_model, trainer.model)
                optimizer = torch.optim.SGD(torch_model.parameters(), lr=BENCH_LR)
                calls[name] = torch_step(torch_model, optimizer, tensors, threads)

            try:
                timings = time_interleaved(calls, context.warmup, context.repeats)
            finally:
                torch.set_num_threads(TORCH_THREADS)
            ours = timings["tinydin"].median
            two_threads = min(timings[name].median for name, _, threads in TORCH_VARIANTS if threads == TORCH_THREADS)
            best_torch = min(timings[name].median for name, _, _ in TORCH_VARIANTS)
            rows.append(
                [label, batch_size, max_len, timings["tinydin"].ms(), rate(batch_size / ours)]
                + [timings[name].ms() for name, _, _ in TORCH_VARIANTS]
                + [f"{two_threads / ours:.2f}", f"{best_torch / ours:.2f}"]
            )
            if label == "DIN concat Dice" and (batch_size, max_len) == (256, 50):
                for against, torch_seconds in (("PyTorch with set_num_threads(2)", two_threads),
                                               ("the fastest PyTorch variant", best_torch)):
                    ratio = torch_seconds / ours
                    verdicts.append(
                        f"Target: DIN concat Dice, B = 256, T = 50: tinydin's training throughput is "
                        f"{ratio:.2f} times that of {against} (target at least {SPEEDUP_TARGET}): "
                        + ("**met**." if ratio >= SPEEDUP_TARGET else f"**missed** by {SPEEDUP_TARGET - ratio:.2f}.")
                    )

    header = (["model", "B", "T", "tinydin ms (p10-p90)", "tinydin samples/s"]
              + [f"{name} ms (p10-p90)" for name, _, _ in TORCH_VARIANTS]
              + ["speed-up vs torch 2t", "speed-up vs best torch"])
    intro = (
        f"Plain SGD on both sides (tinydin embedding_reg=\"none\"). \"dense\" is nn.Embedding's "
        f"default (a dense (V + 1, D) gradient per table and a full-table SGD update); \"sparse\" "
        f"uses sparse=True. \"2t\" runs torch with torch.set_num_threads({TORCH_THREADS}), \"1t\" "
        f"with one thread, because on this shared machine one thread is often faster. tinydin runs "
        f"with the BLAS threads of the machine table. Medians over {context.repeats} or more timed "
        f"steps after {context.warmup} warm-up steps each, all five implementations alternating in "
        f"5 rounds. Speed-up = torch step time / tinydin step time. The outer unit is timed only "
        f"up to T = {OUTER_MAX_LEN}."
    )
    return "\n\n".join([intro, table(header, rows)] + verdicts)


def torch_step(model, optimizer, tensors, threads: int):
    """Return a call(i) that runs one torch training step on the i-th prepared batch with `threads` threads."""
    import torch

    loss_function = torch.nn.functional.binary_cross_entropy_with_logits

    def call(i: int) -> float:
        torch.set_num_threads(threads)
        candidate, history, label = tensors[i % len(tensors)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(candidate, history), label)
        loss.backward()
        optimizer.step()
        return loss.item()

    return call
