"""Sections that cannot run report why instead of failing."""
import sys

from benchmarks.bench_torch import torch_missing
from benchmarks.context import missing_modules, skipped


def test_torch_missing_message(monkeypatch):
    # A None entry in sys.modules makes `import torch` raise ImportError.
    monkeypatch.setitem(sys.modules, "torch", None)
    message = torch_missing()
    assert "PyTorch is not installed" in message
    assert "pip install torch==2.13.0" in message


def test_missing_module_named():
    missing = missing_modules("json", "tinydin.no_such_module")
    assert len(missing) == 1
    assert missing[0].startswith("tinydin.no_such_module")


def test_skipped_names_section():
    line = skipped("Epoch benchmark", ["tinydin.models (No module named 'tinydin.models')"])
    assert line.startswith("_Epoch benchmark skipped: tinydin.models")
