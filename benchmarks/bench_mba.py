"""One SGD update with "mba", "l2" and "none", for two goods vocabularies.

The mini-batch aware regularizer (Zhou et al., KDD 2018, Eqs. 4-7) touches
only the rows a batch uses, so its cost should not depend on the table size;
dense L2 touches every row, so it should grow with V. The benchmark fills the
gradients of a DIN (concat, Dice) with one forward and backward pass on a
B = 256, T = 50 batch, then times optimizer.step() alone, again and again
with the same gradients, for tables of 63,001 and 1,000,001 goods ids. A
second table times the whole training step (forward, backward, update) with
each regularizer.
"""
from __future__ import annotations

from benchmarks.context import Context, missing_modules, skipped
from benchmarks.report import table
from benchmarks.steps import build_trainer
from benchmarks.timing import time_interleaved
from benchmarks.workloads import Workload, make_batches, make_samples, model_config

VOCABULARIES = (63_001, 1_000_001)
REGULARIZERS = ("mba", "l2", "none")
BATCH_POOL = 8
# MBA's update time at the larger vocabulary may exceed the smaller one's by this much.
MBA_TOLERANCE = 0.10


def run_mba(context: Context) -> str:
    missing = missing_modules("tinydin.models", "tinydin.optim")
    if missing:
        return skipped("Regularizer benchmark", missing)

    update_calls = {}
    step_calls = {}
    for vocab in VOCABULARIES:
        workload = Workload(256, 50, goods_vocab=vocab)
        samples = make_samples(workload, 256 * BATCH_POOL, context.seed)
        batches = make_batches(workload, BATCH_POOL, context.seed)
        config = model_config(workload, unit="concat")
        for reg in REGULARIZERS:
            trainer = build_trainer("din", config, samples, embedding_reg=reg)
            # One backward pass fills the gradients that every timed update reuses.
            trainer.step(batches[0])
            update_calls[(reg, vocab)] = lambda i, trainer=trainer: trainer.optimizer.step()
            step_calls[(reg, vocab)] = lambda i, trainer=trainer, batches=batches: trainer.step(batches[i % BATCH_POOL])

        # The floor of any sparse update: read and write back the same rows of
        # the goods table, with no arithmetic. It grows with V only through
        # cache misses, because the rows are scattered over a larger table.
        goods = trainer.model.params["item_embedding.goods_id.weight"]
        ids = trainer.model.grads["item_embedding.goods_id.weight"].ids
        update_calls[("gather+scatter", vocab)] = lambda i, goods=goods, ids=ids: goods.__setitem__(ids, goods[ids])

    updates = time_interleaved(update_calls, context.warmup, context.repeats)
    steps = time_interleaved(step_calls, context.warmup, context.repeats)

    small, large = VOCABULARIES
    rows = []
    for reg in REGULARIZERS + ("gather+scatter",):
        if reg == "gather+scatter":
            rows.append([
                "goods rows only: table[ids] = table[ids]", updates[(reg, small)].ms(),
                updates[(reg, large)].ms(),
                f"{updates[(reg, large)].median / updates[(reg, small)].median:.2f}", "", "", "",
            ])
            continue
        rows.append([
            reg,
            updates[(reg, small)].ms(), updates[(reg, large)].ms(),
            f"{updates[(reg, large)].median / updates[(reg, small)].median:.2f}",
            steps[(reg, small)].ms(), steps[(reg, large)].ms(),
            f"{steps[(reg, large)].median / steps[(reg, small)].median:.2f}",
        ])

    growth = updates[("mba", large)].median / updates[("mba", small)].median - 1.0
    verdict = (
        f"Target: MBA's update time at V = {large:,} within {MBA_TOLERANCE:.0%} of V = {small:,}: "
        f"it is {growth:+.1%}, "
        + ("**met**." if growth <= MBA_TOLERANCE else f"**missed** by {growth - MBA_TOLERANCE:.1%}.")
    )
    header = ["regularizer", f"update ms, V = {small:,}", f"update ms, V = {large:,}", "update ratio",
              f"train step ms, V = {small:,}", f"train step ms, V = {large:,}", "step ratio"]
    intro = (
        f"DIN concat Dice, float32, D = 36, B = 256, T = 50, lambda = 1e-4 for mba and l2. "
        f"Medians (p10-p90) over {context.repeats} or more calls after {context.warmup} warm-up calls; "
        f"all (regularizer, V) pairs alternate in 5 rounds, so they share the machine's load. The last "
        f"row reads and writes back the goods-table rows of one batch with no arithmetic: the "
        f"memory-access floor of any sparse update at that table size."
    )
    return "\n\n".join([intro, table(header, rows), verdict])
