"""Checkpoints: bit-identical round trips and one-line errors for broken files."""
import json
import zipfile

import numpy as np
import pytest

from tinydin.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinydin.data.samples import split_by_user
from tinydin.data.synthetic import SyntheticOptions, make_synthetic
from tinydin.data.registry import DatasetSplits
from tinydin.models import ModelConfig, Popularity, build_model
from tinydin.train import TrainConfig, train

DATA = {"name": "synthetic", "data_dir": None, "options": {"n_users": 40}, "seed": 3}


@pytest.fixture(scope="module")
def splits():
    samples = make_synthetic(SyntheticOptions(n_users=40, samples_per_user=8, n_categories=5,
                                              subtopics_per_category=2, items_per_subtopic=4,
                                              min_len=2, max_len=6), seed=1)
    return DatasetSplits(*split_by_user(samples, (0.6, 0.2, 0.2), seed=1))


def trained(splits, kind, **overrides):
    """Return a model after one epoch, so parameters and Dice statistics have moved from their start."""
    config = ModelConfig.from_samples(splits.train, embedding_dims=(4, 3), attention_hidden=(6,),
                                      mlp_hidden=(6, 4), max_len=6, **overrides)
    model = build_model(kind, config)
    train(model, splits, TrainConfig(epochs=1, batch_size=16, lr=0.2, verbose=False))
    return model


@pytest.mark.parametrize("kind,overrides", [
    ("din", {}),
    ("din", {"unit": "concat", "normalize": "softmax", "mlp_activation": "prelu"}),
    ("base", {"pooling": "mean"}),
    ("popularity", {}),
])
def test_round_trip_bit_identical(splits, tmp_path, kind, overrides):
    model = trained(splits, kind, **overrides)
    path = save_checkpoint(tmp_path / "model.npz", model, data=DATA, extra={"best_epoch": 1})
    loaded = load_checkpoint(path)

    assert loaded.kind == kind
    assert loaded.data == DATA
    assert loaded.extra == {"best_epoch": 1}
    assert loaded.model.config == model.config
    assert np.array_equal(loaded.model.predict(splits.test), model.predict(splits.test))


def test_round_trip_keeps_dice_statistics(splits, tmp_path):
    model = trained(splits, "din")
    assert not np.all(model.state()["mlp.act0.running_mean"] == 0.0)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "model.npz", model, data=DATA)).model
    for key, value in model.state().items():
        assert np.array_equal(loaded.state()[key], value), key


def test_loaded_params_are_layer_arrays(splits, tmp_path):
    # The loaded values must live in the layers' own arrays, or training on
    # after a load would update copies.
    model = load_checkpoint(save_checkpoint(tmp_path / "model.npz", trained(splits, "din"), data=DATA)).model
    layers = dict(model.named_layers())
    assert layers["mlp.output"].params["W"] is model.params["mlp.output.W"]


def test_save_unfitted_popularity(splits, tmp_path):
    model = Popularity(ModelConfig.from_samples(splits.train))
    with pytest.raises(ValueError, match="not fitted"):
        save_checkpoint(tmp_path / "model.npz", model)


def test_save_leaves_no_temporary_file(splits, tmp_path):
    save_checkpoint(tmp_path / "model.npz", trained(splits, "base"), data=DATA)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.npz"]


# Broken files ----------------------------------------------------------------------

def rewrite(path, change):
    """Load every array of the checkpoint at `path`, apply `change(arrays)`, write it back."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    np.savez(path, **arrays)


@pytest.fixture
def saved(splits, tmp_path):
    return save_checkpoint(tmp_path / "model.npz", trained(splits, "din"), data=DATA)


def assert_one_line_error(path, pattern):
    with pytest.raises(CheckpointError, match=pattern) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "absent.npz", "no such checkpoint file")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    assert_one_line_error(saved, "not a readable checkpoint")


def test_text_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("not a checkpoint\n")
    assert_one_line_error(path, "not a readable checkpoint")


def test_corrupted_member(saved):
    # Flip bytes in the middle of the archive: a member's CRC no longer matches.
    data = bytearray(saved.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    saved.write_bytes(bytes(data))
    assert_one_line_error(saved, "not a readable checkpoint|has shape|contains NaN")


def test_missing_meta(saved):
    rewrite(saved, lambda arrays: arrays.pop("meta"))
    assert_one_line_error(saved, "missing key 'meta'")


def test_missing_parameter(saved):
    rewrite(saved, lambda arrays: arrays.pop("param/mlp.dense0.W"))
    assert_one_line_error(saved, "missing array 'param/mlp.dense0.W'")


def test_missing_statistic(saved):
    rewrite(saved, lambda arrays: arrays.pop("state/attention.act0.running_var"))
    assert_one_line_error(saved, "missing array 'state/attention.act0.running_var'")


def test_shape_mismatch(saved):
    def shrink(arrays):
        arrays["param/mlp.dense0.W"] = arrays["param/mlp.dense0.W"][:, :2]

    rewrite(saved, shrink)
    assert_one_line_error(saved, r"'param/mlp.dense0.W' has shape \(\d+, 2\)")


def test_config_mismatch(saved):
    def widen_mlp(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta["config"]["mlp_hidden"] = [7, 4]
        arrays["meta"] = np.array(json.dumps(meta))

    rewrite(saved, widen_mlp)
    assert_one_line_error(saved, "has shape .* but the stored config gives")


def test_unexpected_array(saved):
    def add(arrays):
        arrays["param/extra.W"] = np.zeros(3, dtype=np.float32)

    rewrite(saved, add)
    assert_one_line_error(saved, r"unexpected arrays \['param/extra.W'\]")


def test_invalid_config(saved):
    def break_config(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta["config"]["unit"] = "inner"
        arrays["meta"] = np.array(json.dumps(meta))

    rewrite(saved, break_config)
    assert_one_line_error(saved, "stored model config is invalid: .*unit = 'inner'")


def test_other_format_version(saved):
    def bump(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta["format_version"] = 99
        arrays["meta"] = np.array(json.dumps(meta))

    rewrite(saved, bump)
    assert_one_line_error(saved, "format version 99 is not supported")


def test_nan_parameter(saved):
    def poison(arrays):
        arrays["param/mlp.output.b"] = np.array([np.nan], dtype=np.float32)

    rewrite(saved, poison)
    assert_one_line_error(saved, "'param/mlp.output.b' contains NaN")


def test_npz_is_a_zip(saved):
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
    assert "meta.npy" in names
    assert "param/mlp.output.W.npy" in names
