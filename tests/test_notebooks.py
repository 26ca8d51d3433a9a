"""Every notebook runs from a clean kernel without an error; the runner reports failures.

The notebooks are executed in memory (nothing is written back), in a new
"python3" kernel whose working directory is notebooks/. That kernel must be the
Python running these tests, so that it imports the tinydin of this checkout.
"""
import hashlib
import sys
from pathlib import Path

import nbformat
import pytest

import tinydin
from tinydin.notebook_runner import NotebookError, execute_notebook, run_notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

pytestmark = pytest.mark.slow


def write_notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


def stdout_of(cell) -> str:
    return "".join(out["text"] for out in cell.outputs if out.get("name") == "stdout")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kernel_uses_this_python(tmp_path):
    probe = write_notebook(
        tmp_path / "probe.ipynb",
        "import os, sys, tinydin",
        "print(sys.prefix)",
        "print(tinydin.__file__)",
        "print(os.getcwd())",
    )

    # check_kernel=False: this test must not rely on the runner's own check.
    cells = execute_notebook(probe, check_kernel=False).notebook.cells

    assert stdout_of(cells[1]).strip() == sys.prefix
    assert stdout_of(cells[2]).strip() == tinydin.__file__
    assert stdout_of(cells[3]).strip() == str(tmp_path.resolve())


def test_runner_names_failing_cell(tmp_path):
    broken = write_notebook(tmp_path / "broken.ipynb", "x = 1", "y = x / 0", "z = 2")

    with pytest.raises(NotebookError) as raised:
        execute_notebook(broken)

    message = str(raised.value)
    assert str(broken) in message
    assert "cell 1 " in message
    assert "ZeroDivisionError" in message


def test_runner_ignores_raises_exception_tag(tmp_path):
    path = tmp_path / "tagged.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("raise ValueError('tagged')")]
    notebook.cells[0].metadata["tags"] = ["raises-exception"]
    nbformat.write(notebook, path)

    with pytest.raises(NotebookError, match="ValueError: tagged"):
        execute_notebook(path)


def test_runner_saves_figures_under_agg(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = write_notebook(
        tmp_path / "figure.ipynb",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    )

    outputs = execute_notebook(path).notebook.cells[0].outputs

    assert any("image/png" in out.get("data", {}) for out in outputs)


def test_run_notebooks_writes_outputs(tmp_path, capsys):
    good = write_notebook(tmp_path / "good.ipynb", "print(6 * 7)")
    broken = write_notebook(tmp_path / "broken.ipynb", "raise KeyError('missing')")
    broken_before = sha256(broken)

    failures = run_notebooks([good, broken])

    assert len(failures) == 1
    assert "broken.ipynb" in failures[0]
    assert stdout_of(nbformat.read(good, as_version=4).cells[0]) == "42\n"
    assert sha256(broken) == broken_before
    assert "good.ipynb" in capsys.readouterr().out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, record_property):
    before = sha256(path)

    result = execute_notebook(path)

    # Shown with `pytest -rA` and stored in --junitxml reports.
    record_property("seconds", round(result.seconds, 1))
    print(f"{path.name}: {result.seconds:.1f} s")
    assert sha256(path) == before

    # A RuntimeWarning (overflow, invalid value) in a lesson means a NaN or inf
    # that the prose does not explain.
    warnings = [
        out["text"]
        for cell in result.notebook.cells
        for out in cell.get("outputs", [])
        if out.get("name") == "stderr" and "Warning" in out["text"]
    ]
    assert warnings == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_outputs_committed(path):
    # Readers on a code host see the committed outputs without running anything.
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]

    unexecuted = [index for index, cell in enumerate(code_cells) if cell.execution_count is None]

    assert unexecuted == []
