"""Describe the machine a benchmark ran on: CPU, cores, NumPy, BLAS and threads.

Every table in docs/benchmarks.md carries this description, because a number
without its machine cannot be compared with anything. The BLAS thread count and
kernel name come from threadpoolctl when it is installed, and otherwise from
the OpenBLAS library that NumPy loaded (the same C functions threadpoolctl
calls), found through /proc/self/maps.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform
import sys

import numpy as np

# Variables that change how OpenBLAS picks its kernels or threads. Some machines
# here set OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE because older OpenBLAS builds
# misbehave on their CPU; a current NumPy then runs a slower kernel.
BLAS_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def cpu_model() -> str:
    """Return the "model name" line of /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """Return the CPU feature flags of /proc/cpuinfo (empty when it is unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, a hint of what else ran."""
    try:
        with open("/proc/loadavg", encoding="utf-8") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "unknown"


def _openblas_library():
    """Return the OpenBLAS library NumPy loaded as a ctypes handle, or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as handle:
            paths = {line.split()[-1] for line in handle if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        if path.endswith(".so") or ".so." in path:
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def _call_openblas(lib, suffix: str, restype):
    """Call the OpenBLAS function ending in `suffix` under any of its symbol prefixes."""
    for prefix in ("scipy_openblas_", "openblas_"):
        for tail in ("64_", ""):
            function = getattr(lib, f"{prefix}{suffix}{tail}", None)
            if function is not None:
                function.restype = restype
                return function()
    return None


def blas_info() -> dict[str, str]:
    """Return the BLAS library, version, kernel (core type) and thread count NumPy uses."""
    info = {"library": "unknown", "version": "unknown", "kernel": "unknown", "threads": "unknown"}
    try:
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["library"] = str(config.get("name", "unknown"))
        info["version"] = str(config.get("version", "unknown"))
    except Exception:  # noqa: BLE001 - show_config's layout differs across NumPy versions
        pass

    try:
        import threadpoolctl

        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") == "blas":
                info["threads"] = str(pool.get("num_threads"))
                info["kernel"] = str(pool.get("architecture"))
                info["version"] = str(pool.get("version", info["version"]))
                info["source"] = "threadpoolctl"
                return info
    except ImportError:
        pass

    lib = _openblas_library()
    if lib is not None:
        corename = _call_openblas(lib, "get_corename", ctypes.c_char_p)
        threads = _call_openblas(lib, "get_num_threads", ctypes.c_int)
        if corename:
            info["kernel"] = corename.decode()
        if threads is not None:
            info["threads"] = str(threads)
        info["source"] = "OpenBLAS C API"
    return info


def set_blas_threads(count: int) -> bool:
    """Set the number of threads NumPy's OpenBLAS uses; return False when it cannot be set."""
    lib = _openblas_library()
    if lib is None:
        return False
    for prefix in ("scipy_openblas_", "openblas_"):
        for tail in ("64_", ""):
            function = getattr(lib, f"{prefix}set_num_threads{tail}", None)
            if function is not None:
                function.argtypes = [ctypes.c_int]
                function(int(count))
                return True
    return False


def blas_threads() -> int | None:
    """Return the number of threads NumPy's OpenBLAS uses now, or None when unknown."""
    lib = _openblas_library()
    if lib is None:
        return None
    return _call_openblas(lib, "get_num_threads", ctypes.c_int)


def torch_version() -> str | None:
    """Return the installed torch version without importing torch, or None.

    Importing torch starts its OpenMP thread pool, which would share the cores
    with NumPy's BLAS threads in every section; only the PyTorch section
    imports it, and it reports torch's thread counts itself.
    """
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict[str, str]:
    """Collect everything a results table states about its machine, as name -> text."""
    blas = blas_info()
    description = {
        "CPU": cpu_model(),
        "cores (os.cpu_count)": str(os.cpu_count()),
        "AVX-512": "yes" if "avx512f" in cpu_flags() else "no",
        "Python": platform.python_version(),
        "NumPy": np.__version__,
        "BLAS": f"{blas['library']} {blas['version']}",
        "BLAS kernel": blas["kernel"],
        "BLAS threads during the run": blas["threads"],
        "load average at start": load_average(),
    }
    for name in BLAS_ENV_VARS:
        description[name] = os.environ.get(name, "unset")
    description["torch"] = torch_version() or "not installed"
    description["command"] = " ".join([os.path.basename(sys.executable)] + sys.argv)
    return description


def machine_table(description: dict[str, str]) -> str:
    """Format the machine description as a two-column Markdown table."""
    lines = ["| | |", "| --- | --- |"]
    for name, value in description.items():
        lines.append(f"| {name} | `{value}` |" if name == "command" else f"| {name} | {value} |")
    return "\n".join(lines)
