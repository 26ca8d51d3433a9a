"""Command line: train -> evaluate end to end on tiny data, compare, and one-line user errors."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tinydin.train as train_module
from tinydin.cli import main

# A synthetic world of 40 users, small enough to train in about a second.
TINY = ["--data-option", "n_users=40", "--data-option", "samples_per_user=8", "--data-option", "n_categories=5",
        "--data-option", "subtopics_per_category=2", "--data-option", "items_per_subtopic=4",
        "--data-option", "min_len=2", "--data-option", "max_len=6"]


@pytest.fixture
def fast_defaults(monkeypatch):
    """Shrink the dataset defaults so that CLI runs take about a second."""
    real = train_module.default_train_config

    def quick(dataset, model_kind="din", **overrides):
        values = {"epochs": 2, "batch_size": 16, "log_every": 5}
        values.update(overrides)
        return real(dataset, model_kind, **values)

    monkeypatch.setattr(train_module, "default_train_config", quick)


def error_line(capsys):
    """Return stderr after checking that it is exactly one line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# Success paths -----------------------------------------------------------------------

def test_train_then_evaluate(tmp_path, capsys, fast_defaults):
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", *TINY, "--model", "din", "--unit", "concat",
                 "--activation", "prelu", "--out", str(out), "--quiet"]) == 0
    assert (out / "model.npz").is_file()
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "attention.png").stat().st_size > 1000

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["model_config", "train_config", "best_epoch", "validation", "test", "history", "data"]:
        assert key in metrics, key
    for key in ["auc", "gauc", "logloss"]:
        assert key in metrics["test"], key
    assert metrics["model_config"]["unit"] == "concat"
    assert metrics["model_config"]["mlp_activation"] == "prelu"
    assert len(metrics["history"]) == 2

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "model.npz")]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["test"]["auc"] == metrics["test"]["auc"]
    assert evaluation["test"]["logloss"] == metrics["test"]["logloss"]


def test_train_bias_and_decay_flags(tmp_path, fast_defaults):
    out = tmp_path / "flags"
    assert main(["train", "--data", "synthetic", *TINY, "--model", "din", "--weight-decay", "0.001",
                 "--item-bias-init", "click_rate", "--item-bias-reg-lambda", "0", "--out", str(out),
                 "--quiet"]) == 0
    train_config = json.loads((out / "metrics.json").read_text())["train_config"]
    assert train_config["weight_decay"] == 0.001
    assert train_config["item_bias_init"] == "click_rate"
    assert train_config["item_bias_reg_lambda"] == 0.0


def test_train_popularity(tmp_path, fast_defaults):
    out = tmp_path / "popularity"
    assert main(["train", "--data", "synthetic", *TINY, "--model", "popularity", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 0


def test_compare_table(tmp_path, capsys, fast_defaults):
    out = tmp_path / "compare"
    assert main(["compare", "--data", "synthetic", *TINY, "--seeds", "0", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for row in ["| DIN ", "| BaseModel ", "| Popularity ", "| oracle (true p) "]:
        assert row in printed, row
    assert "median [min, max] over seeds" in printed

    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 6  # 3 models x 2 seeds
    for run in results["runs"]:
        if run["model"] == "base" and run["test"]["auc"] > 0.5:
            assert run["rela_impr"] == 0.0  # the BaseModel against itself
        if run["model"] == "base" and run["test"]["auc"] <= 0.5:
            assert run["rela_impr"] is None  # undefined at or below chance


# User errors: one line on stderr, exit status 2 ----------------------------------------

def test_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "--data", "criteo"])
    assert caught.value.code == 2
    line = error_line(capsys)
    assert "invalid choice: 'criteo'" in line


def test_unknown_option_value(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "--data", "synthetic", "--unit", "inner"])
    assert caught.value.code == 2
    assert "argument --unit: invalid choice: 'inner'" in error_line(capsys)


def test_missing_command(capsys):
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    error_line(capsys)


def test_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["train", "--data", "movielens", "--data-dir", str(missing)]) == 2
    line = error_line(capsys)
    assert str(missing) in line
    assert "--data-dir" in line


def test_task_on_synthetic(capsys):
    assert main(["train", "--data", "synthetic", "--task", "next"]) == 2
    assert "--task applies to movielens and amazon only; synthetic has one task" in error_line(capsys)


def test_evaluate_other_dataset(tmp_path, capsys, fast_defaults):
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", *TINY, "--model", "base", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "model.npz"), "--data", "movielens"]) == 2
    assert "was trained on synthetic" in error_line(capsys)


def test_gradcheck_passes_json(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("tinydin.selfcheck")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "tinydin.selfcheck", fake)
    assert main(["gradcheck", "--json", str(tmp_path / "rows.json")]) == 0
    assert calls == [["--seed", "0", "--json", str(tmp_path / "rows.json")]]


def test_bad_data_option(capsys):
    assert main(["train", "--data", "synthetic", "--data-option", "n_users"]) == 2
    assert "--data-option 'n_users' is not KEY=VALUE" in error_line(capsys)


def test_unknown_data_option(capsys):
    assert main(["train", "--data", "synthetic", "--data-option", "colour=blue"]) == 2
    assert "colour" in error_line(capsys)


def test_invalid_learning_rate(capsys):
    assert main(["train", "--data", "synthetic", *TINY, "--lr", "-1"]) == 2
    assert "lr = -1.0" in error_line(capsys)


def test_bad_checkpoint(tmp_path, capsys):
    path = tmp_path / "model.npz"
    path.write_text("not a checkpoint")
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    line = error_line(capsys)
    assert str(path) in line
    assert "not a readable checkpoint" in line


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "absent.npz")]) == 2
    assert "no such checkpoint file" in error_line(capsys)


def test_duplicate_seeds(capsys):
    assert main(["compare", "--data", "synthetic", "--seeds", "1", "1"]) == 2
    assert "repeats a seed" in error_line(capsys)


def test_gradcheck_forwards_seed_and_json(monkeypatch, tmp_path):
    import tinydin.selfcheck

    received = []
    monkeypatch.setattr(tinydin.selfcheck, "main", lambda argv: received.append(argv) or 1)
    path = str(tmp_path / "rows.json")
    assert main(["gradcheck", "--seed", "3", "--json", path]) == 1
    assert received == [["--seed", "3", "--json", path]]


def test_module_entry_point():
    # The real process: `python -m tinydin` with an invalid value prints one line and exits 2.
    env = dict(os.environ)
    completed = subprocess.run([sys.executable, "-m", "tinydin", "train", "--data", "synthetic", "--model", "dien"],
                               capture_output=True, text=True, env=env, cwd=Path(__file__).parent, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1
    assert "invalid choice: 'dien'" in completed.stderr
