"""Run tinydin's speed and memory benchmarks and write the results as Markdown.

    .venv/bin/python benchmarks/run.py --out docs/benchmarks.md      (make bench)
    .venv/bin/python benchmarks/run.py --only step,torch --quick     (a quick subset)

Sections, in the order they run:
  flops    FLOP formula, count per configuration, measured float32 GEMM rate
  step     training-step and inference throughput of DIN and the BaseModel
  outer    the outer-product activation unit: bilinear against materialized
  mba      one SGD update with mba, l2 and none for 63,001 and 1,000,001 goods
  profile  forward/backward/update split and cProfile of the DIN step
  epoch    one epoch on ml-latest-small and on an Amazon-sized synthetic set
  torch    cross-check and training-step comparison with PyTorch autograd

Sections that need a part of tinydin that does not exist yet, or torch when it
is not installed, print why they were skipped. Nothing here is a test: the
numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.context import Context  # noqa: E402
from benchmarks.machine import describe_machine, load_average, machine_table, set_blas_threads  # noqa: E402

NOTES = Path(__file__).resolve().parent / "notes.md"

SECTION_TITLES = {
    "flops": "FLOPs per training step and the GEMM ceiling",
    "step": "Training step and inference throughput",
    "outer": "Outer-product unit: bilinear against materialized",
    "mba": "SGD update cost: mba, l2 and none against vocabulary size",
    "profile": "Where a training step spends its time",
    "epoch": "One epoch: time and peak memory",
    "torch": "PyTorch autograd reference",
}
SECTIONS = tuple(SECTION_TITLES)


def section_runner(name: str):
    """Import a section's module only when it runs, so a subset needs only its own parts."""
    if name in ("flops", "step", "profile"):
        from benchmarks import bench_step

        return {"flops": bench_step.run_flops, "step": bench_step.run_step,
                "profile": bench_step.run_profile}[name]
    if name == "outer":
        from benchmarks.bench_outer import run_outer

        return run_outer
    if name == "mba":
        from benchmarks.bench_mba import run_mba

        return run_mba
    if name == "epoch":
        from benchmarks.bench_epoch import run_epoch

        return run_epoch
    from benchmarks.bench_torch import run_torch

    return run_torch


def parse_sections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}"
        )
    return [name for name in SECTIONS if name in names]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the Markdown report to this file (default: standard output)")
    parser.add_argument("--only", type=parse_sections, default=list(SECTIONS),
                        help=f"comma-separated sections to run, from {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="one shape (B = 256, T = 50) and a partial Amazon-sized epoch")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement (at least 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each measurement")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="set the number of OpenBLAS threads NumPy uses (default: leave it as configured)")
    args = parser.parse_args(argv)
    if args.repeats < 30:
        parser.error(f"--repeats {args.repeats} is below 30; medians need at least 30 timed calls")
    if args.blas_threads is not None:
        if args.blas_threads < 1:
            parser.error(f"--blas-threads {args.blas_threads} is invalid; pass 1 or more")
        if not set_blas_threads(args.blas_threads):
            parser.error("--blas-threads needs NumPy linked to OpenBLAS, and no OpenBLAS library was found")

    context = Context(quick=args.quick, warmup=args.warmup, repeats=args.repeats)
    machine = describe_machine()
    started = time.perf_counter()

    parts = [
        "# tinydin benchmarks",
        "Written by `benchmarks/run.py`; every number below comes from the run described in the "
        "machine table. The machine is shared with other jobs, so figures are medians with the "
        "10th-90th percentile range beside them, and ratios come from implementations timed in "
        "alternating rounds of the same run. Re-run with `make bench`.",
        "## Machine\n\n" + machine_table(machine),
    ]
    for name in args.only:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section_start = time.perf_counter()
        body = section_runner(name)(context)
        seconds = time.perf_counter() - section_start
        print(f"[bench] {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
        parts.append(f"## {SECTION_TITLES[name]}\n\n{body}\n\n_Section time {seconds:.0f} s; load "
                     f"average after it: {load_average()}._")

    if NOTES.exists():
        parts.append(NOTES.read_text(encoding="utf-8").strip())
    parts.append(f"_Total run time {time.perf_counter() - started:.0f} s; load average at the end: "
                 f"{load_average()}._")

    text = "\n\n".join(parts) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"[bench] wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
