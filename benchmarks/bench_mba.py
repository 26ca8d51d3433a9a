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

import numpy as np

from benchmarks.context import Context, missing_modules, skipped
from benchmarks.report import table
from benchmarks.steps import build_trainer
from benchmarks.timing import time_interleaved
from benchmarks.workloads import Workload, make_batches, make_samples, model_config

VOCABULARIES = (63_001, 1_000_001)
REGULARIZERS = ("mba", "l2", "none")
# Tables whose row count grows with the goods vocabulary.
VOCAB_TABLES = ("item_embedding.goods_id.weight", "item_bias.weight")
# The memory-access floor, timed beside the regularizers: label of each row.
FLOOR_ROWS = {
    "read": "batch rows of goods and item-bias tables only: np.take(table, ids, axis=0)",
    "write": "batch rows of goods and item-bias tables only: table[ids] = rows",
}

BATCH_POOL = 8
# MBA's update time at the larger vocabulary may exceed the smaller one's by this much.
MBA_TOLERANCE = 0.10


def read_rows(tables):
    """Return a copy of the batch rows of each (table, ids) pair, read as the optimizer reads them."""
    return [np.take(table, ids, axis=0) for table, ids in tables]


def write_rows(tables, rows):
    """Write each array of `rows` back to the batch rows of its (table, ids) pair."""
    for (table, ids), values in zip(tables, rows):
        table[ids] = values


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

        # The floor of any sparse update: read the batch rows of the tables
        # with V + 1 rows (goods and item bias) and write them back, as the
        # optimizer does, with no arithmetic. It grows with V only through
        # memory access, because the same number of rows is scattered over a
        # larger table.
        tables = [(trainer.model.params[name], trainer.model.grads[name].ids) for name in VOCAB_TABLES]
        update_calls[("read", vocab)] = lambda i, tables=tables: read_rows(tables)
        batch_rows = read_rows(tables)
        update_calls[("write", vocab)] = lambda i, tables=tables, rows=batch_rows: write_rows(tables, rows)

    updates = time_interleaved(update_calls, context.warmup, context.repeats)
    steps = time_interleaved(step_calls, context.warmup, context.repeats)

    small, large = VOCABULARIES
    rows = []
    for reg in REGULARIZERS + tuple(FLOOR_ROWS):
        if reg in FLOOR_ROWS:
            rows.append([
                FLOOR_ROWS[reg], updates[(reg, small)].ms(), updates[(reg, large)].ms(),
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
    update_growth = updates[("mba", large)].median - updates[("mba", small)].median
    floor_growth = sum(updates[(part, large)].median - updates[(part, small)].median for part in FLOOR_ROWS)
    verdict += (
        f" From V = {small:,} to V = {large:,} the MBA update grows by {update_growth * 1e3:.3f} ms; "
        f"reading and writing back the batch rows of those two tables alone (the last two rows) grows by "
        f"{floor_growth * 1e3:.3f} ms."
    )
    header = ["regularizer", f"update ms, V = {small:,}", f"update ms, V = {large:,}", "update ratio",
              f"train step ms, V = {small:,}", f"train step ms, V = {large:,}", "step ratio"]
    intro = (
        f"DIN concat Dice, float32, D = 36, B = 256, T = 50, lambda = 1e-4 for mba and l2. "
        f"Medians (p10-p90) over {context.repeats} or more calls after {context.warmup} warm-up calls; "
        f"all (regularizer, V) pairs alternate in 5 rounds, so they share the machine's load. The last "
        f"two rows read the rows of one batch in the two tables with V + 1 rows (goods and item bias) "
        f"and write them back, as the optimizer does, with no arithmetic: the memory-access floor of "
        f"any sparse update at that table size."
    )
    return "\n\n".join([intro, table(header, rows), verdict])
