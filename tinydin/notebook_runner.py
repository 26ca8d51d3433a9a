"""Execute the teaching notebooks from a clean kernel and save their outputs.

    python -m tinydin.notebook_runner notebooks/*.ipynb

Each notebook runs in a new "python3" kernel whose working directory is the
notebook's folder, one cell at a time with a timeout per cell. A notebook that
runs through is written back in place with its new outputs. A notebook that
fails is left as it was, and the run goes on with the next file. The command
prints one line per notebook with its wall time (kernel start included) and
exits with status 1 if any notebook failed, naming the notebook and the
failing cell.

Before the first cell the kernel reports its `sys.prefix` and where it imports
tinydin from. Both must match the Python that runs this module: a kernelspec
that points at another interpreter would execute another copy of tinydin and
save outputs that this checkout never produced.

`execute_notebook` runs one notebook and returns it without writing anything;
the tests call it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

import tinydin

DEFAULT_KERNEL = "python3"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
DEFAULT_CELL_TIMEOUT = 60.0  # seconds per cell, because a whole notebook must finish in under a minute

# Runs silently before the notebook's own cells; its one line of output is JSON.
_PROBE_SOURCE = """\
import json as _json, sys as _sys
import tinydin as _tinydin
print(_json.dumps({"prefix": _sys.prefix, "tinydin": _tinydin.__file__}))
del _json, _sys, _tinydin
"""

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class NotebookError(RuntimeError):
    """A notebook failed to execute: a cell raised, timed out or killed its kernel."""


@dataclass
class ExecutionResult:
    """An executed notebook (outputs filled in) and its wall time in seconds."""

    path: Path
    notebook: nbformat.NotebookNode
    seconds: float


def _same_path(first: str, second: str) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


def _check_kernel(client: NotebookClient, path: Path, kernel_name: str) -> None:
    """Raise NotebookError unless the kernel runs this Python and this tinydin."""
    # nbclient routes output messages through the notebook's cell list, so the
    # probe runs as a temporary last cell and is removed before anything else runs.
    probe = nbformat.v4.new_code_cell(_PROBE_SOURCE)
    client.nb.cells.append(probe)
    try:
        client.execute_cell(probe, len(client.nb.cells) - 1, store_history=False)
    except CellExecutionError as error:
        raise NotebookError(
            f"{path}: kernel '{kernel_name}' cannot import tinydin ({error.ename}: "
            f"{error.evalue}); install the package into the kernel's environment with "
            f"`pip install -e .` or point the kernel at this environment"
        ) from None
    finally:
        client.nb.cells.pop()

    lines = [out["text"] for out in probe.outputs if out.get("name") == "stdout"]
    found = json.loads("".join(lines).strip().splitlines()[-1])

    reinstall = f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}`"
    if not _same_path(found["prefix"], sys.prefix):
        raise NotebookError(
            f"{path}: kernel '{kernel_name}' runs the Python in {found['prefix']}, expected "
            f"{sys.prefix} (the one running this command); install the kernelspec into "
            f"this environment with {reinstall}"
        )
    if not _same_path(found["tinydin"], tinydin.__file__):
        raise NotebookError(
            f"{path}: kernel '{kernel_name}' imports tinydin from {found['tinydin']}, "
            f"expected {tinydin.__file__}; reinstall this checkout with `pip install -e .`"
        )


def _describe_cell(path: Path, index: int, cell) -> str:
    source = cell.source.strip()
    first_line = source.splitlines()[0] if source else ""
    return f"{path}: cell {index} (first line: {first_line!r})"


def execute_notebook(
    path: str | os.PathLike,
    *,
    kernel_name: str = DEFAULT_KERNEL,
    timeout: float = DEFAULT_CELL_TIMEOUT,
    check_kernel: bool = True,
) -> ExecutionResult:
    """Run every code cell of the notebook at `path` in a new kernel; write nothing.

    The kernel starts in the notebook's folder, with matplotlib's inline backend
    so that figures are saved as outputs. Errors are never allowed, not even in
    cells tagged "raises-exception". Raises NotebookError naming the
    notebook and the failing cell, with the kernel's traceback.
    """
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=timeout,
        force_raise_errors=True,
        # Timestamps in the cell metadata would change every committed cell on
        # every run and bury the real differences.
        record_timing=False,
    )

    # The kernel inherits this environment. Another MPLBACKEND (Agg is common in
    # CI) would run every plotting cell and save no figure.
    env = {**os.environ, "MPLBACKEND": INLINE_BACKEND}

    start = time.perf_counter()
    index, cell = -1, None
    try:
        with client.setup_kernel(cwd=str(path.parent.resolve()), env=env):
            if check_kernel:
                _check_kernel(client, path, kernel_name)

            execution_count = 0
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code":
                    continue
                execution_count += 1
                client.execute_cell(cell, index, execution_count=execution_count)
    except CellTimeoutError:
        raise NotebookError(
            f"{_describe_cell(path, index, cell)} timed out after {timeout:g} s (the "
            f"timeout per cell); make the cell faster or pass a larger --timeout"
        ) from None
    except CellExecutionError as error:
        traceback = _ANSI_ESCAPE.sub("", error.traceback or "")
        raise NotebookError(
            f"{_describe_cell(path, index, cell)} raised {error.ename}: {error.evalue}\n"
            f"{traceback}"
        ) from None
    except DeadKernelError:
        raise NotebookError(
            f"{_describe_cell(path, index, cell)} killed the kernel (out of memory or "
            f"a crash in compiled code)"
        ) from None
    seconds = time.perf_counter() - start

    return ExecutionResult(path, notebook, seconds)


def run_notebooks(
    paths: Sequence[str | os.PathLike],
    *,
    kernel_name: str = DEFAULT_KERNEL,
    timeout: float = DEFAULT_CELL_TIMEOUT,
    write: bool = True,
) -> list[str]:
    """Execute each notebook, save it in place if it ran (and `write`), print its time.

    Returns the error messages of the notebooks that failed (empty when all ran).
    """
    failures = []
    for path in paths:
        try:
            result = execute_notebook(path, kernel_name=kernel_name, timeout=timeout)
        except NotebookError as error:
            print(f"FAILED  {path}", flush=True)
            failures.append(str(error))
            continue

        if write:
            nbformat.write(result.notebook, result.path)
        print(f"{result.seconds:6.1f} s  {path}", flush=True)
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinydin.notebook_runner",
        description="Execute notebooks from a clean kernel and save their outputs in place.",
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="the .ipynb files to execute")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
        help=f"seconds one cell may run before it fails (default {DEFAULT_CELL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--kernel", default=DEFAULT_KERNEL,
        help=f"the Jupyter kernel name (default {DEFAULT_KERNEL})",
    )
    parser.add_argument(
        "--no-write", action="store_true",
        help="execute only, leaving the files unchanged",
    )
    args = parser.parse_args(argv)

    missing = [str(path) for path in args.notebooks if not path.is_file()]
    if missing:
        parser.error(f"notebook not found: {', '.join(missing)}")

    failures = run_notebooks(
        args.notebooks, kernel_name=args.kernel, timeout=args.timeout, write=not args.no_write
    )
    for message in failures:
        print(f"\n{message}", file=sys.stderr)
    if failures:
        print(f"\n{len(failures)} of {len(args.notebooks)} notebooks failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
