"""tinydin against the PyTorch autograd reference (benchmarks/torch_din.py).

Two parts:
  cross-check  tinydin's parameters loaded into the float64 torch model; the
               largest absolute difference of the logits and of every
               parameter gradient on one batch
  timing       one training step (forward, mean BCE, backward, plain SGD) of
               tinydin (embedding_reg="none", the same update as torch's SGD)
               and of the torch model with dense and with sparse embedding
               gradients, float32, timed in alternating rounds in this one
               process with torch.set_num_threads(2)
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
            for sparse in (False, True):
                torch_model = from_config(config, sparse=sparse, score_bias=has_score_bias(trainer.model))
                load_from_tinydin(torch_model, trainer.model)
                optimizer = torch.optim.SGD(torch_model.parameters(), lr=BENCH_LR)
                name = "torch sparse" if sparse else "torch dense"
                calls[name] = torch_step(torch_model, optimizer, tensors)

            timings = time_interleaved(calls, context.warmup, context.repeats)
            ours = timings["tinydin"].median
            best_torch = min(timings["torch dense"].median, timings["torch sparse"].median)
            rows.append([
                label, batch_size, max_len,
                timings["tinydin"].ms(), rate(batch_size / ours),
                timings["torch dense"].ms(), timings["torch sparse"].ms(),
                rate(batch_size / best_torch), f"{best_torch / ours:.2f}",
            ])
            if label == "DIN concat Dice" and (batch_size, max_len) == (256, 50):
                ratio = best_torch / ours
                verdicts.append(
                    f"Target: DIN concat Dice, B = 256, T = 50: tinydin's training throughput is "
                    f"{ratio:.2f} times the faster PyTorch variant's (target at least 1.5): "
                    + ("**met**." if ratio >= 1.5 else f"**missed** by {1.5 - ratio:.2f}.")
                )

    header = ["model", "B", "T", "tinydin ms (p10-p90)", "tinydin samples/s",
              "torch dense ms (p10-p90)", "torch sparse ms (p10-p90)", "best torch samples/s",
              "tinydin speed-up"]
    intro = (
        f"Plain SGD on both sides (tinydin embedding_reg=\"none\"). \"torch dense\" is nn.Embedding's "
        f"default (a dense (V + 1, D) gradient per table and a full-table SGD update); \"torch sparse\" "
        f"uses sparse=True. Medians over {context.repeats} or more timed steps after "
        f"{context.warmup} warm-up steps each, the three implementations alternating in 5 rounds. "
        f"Speed-up = best torch step time / tinydin step time. The outer unit is timed "
        f"only up to T = {OUTER_MAX_LEN}."
    )
    return "\n\n".join([intro, table(header, rows)] + verdicts)


def torch_step(model, optimizer, tensors):
    """Return a call(i) that runs one torch training step on the i-th prepared batch."""
    import torch

    loss_function = torch.nn.functional.binary_cross_entropy_with_logits

    def call(i: int) -> float:
        candidate, history, label = tensors[i % len(tensors)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(candidate, history), label)
        loss.backward()
        optimizer.step()
        return loss.item()

    return call
