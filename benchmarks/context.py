"""Options and shared measurements that every benchmark section receives."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

# (B, T) pairs of the full run and of --quick.
FULL_SHAPES = ((32, 50), (32, 200), (256, 50), (256, 200))
QUICK_SHAPES = ((256, 50),)


@dataclass
class Context:
    """Run options, plus values measured once and shared (the GEMM rate)."""

    quick: bool = False
    warmup: int = 5
    repeats: int = 50
    seed: int = 0
    gemm_gflops: float | None = None
    configured_blas_threads: int | None = None  # NumPy's BLAS threads before run.py changed them
    notes: list[str] = field(default_factory=list)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return QUICK_SHAPES if self.quick else FULL_SHAPES

    def gemm(self) -> float:
        """Return the float32 GEMM GFLOP/s of this machine, measured on first use."""
        if self.gemm_gflops is None:
            from benchmarks.flops import measure_gemm_gflops

            self.gemm_gflops, _ = measure_gemm_gflops()
        return self.gemm_gflops


def missing_modules(*names: str) -> list[str]:
    """Return the names among `names` that cannot be imported (tinydin parts not written yet)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing.append(f"{name} ({error})")
    return missing


def skipped(section: str, missing: list[str]) -> str:
    """Return the Markdown line a section prints when the code it measures does not exist."""
    return f"_{section} skipped: {', '.join(missing)} could not be imported in this checkout._"
