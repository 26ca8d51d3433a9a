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
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.context import Context  # noqa: E402
from benchmarks.machine import describe_machine, load_average, machine_table, blas_threads, set_blas_threads  # noqa: E402

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


def write_report(out: Path | None, parts: list[str], finished: bool) -> None:
    """Write the report to `out`, or to standard output once the run has finished."""
    text = "\n\n".join(parts) + "\n"
    if out is None:
        if finished:
            sys.stdout.write(text)
        return
    if not finished:
        text += "\n_Run still in progress: later sections are missing._\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if finished:
        print(f"[bench] wrote {out}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the Markdown report to this file (default: standard output)")
    parser.add_argument("--only", type=parse_sections, default=list(SECTIONS),
                        help=f"comma-separated sections to run, from {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="one shape (B = 256, T = 50) and a partial Amazon-sized epoch")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement (at least 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each measurement")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="number of OpenBLAS threads NumPy uses during the run (default 1, because on a "
                             "shared 2-core machine a second thread mostly waits for a core; the step "
                             "section also times the configured count); 0 leaves it as configured")
    args = parser.parse_args(argv)
    if args.repeats < 30:
        parser.error(f"--repeats {args.repeats} is below 30; medians need at least 30 timed calls")
    if args.blas_threads < 0:
        parser.error(f"--blas-threads {args.blas_threads} is invalid; pass 0 (leave as configured) or more")

    context = Context(quick=args.quick, warmup=args.warmup, repeats=args.repeats,
                      configured_blas_threads=blas_threads())
    if args.blas_threads > 0 and not set_blas_threads(args.blas_threads):
        print("[bench] NOTE: no OpenBLAS library found, so --blas-threads had no effect", file=sys.stderr)
    machine = describe_machine()
    machine["BLAS threads configured outside the run"] = str(context.configured_blas_threads)
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
        try:
            body = section_runner(name)(context)
        except Exception as error:  # noqa: BLE001 - one failed section must not lose the others
            traceback.print_exc()
            body = f"_This section failed: {type(error).__name__}: {error}. The traceback went to standard error._"
        seconds = time.perf_counter() - section_start
        print(f"[bench] {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
        parts.append(f"## {SECTION_TITLES[name]}\n\n{body}\n\n_Section time {seconds:.0f} s; load "
                     f"average after it: {load_average()}._")
        # Write after every section, so a run stopped part-way keeps what it measured.
        write_report(args.out, parts, finished=False)

    if NOTES.exists():
        parts.append(NOTES.read_text(encoding="utf-8").strip())
    parts.append(f"_Total run time {time.perf_counter() - started:.0f} s; load average at the end: "
                 f"{load_average()}._")
    write_report(args.out, parts, finished=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
