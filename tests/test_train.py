"""The training loop: loss goes down, seeds reproduce, the best epoch is restored, evaluation."""
import logging

import numpy as np
import pytest

import tinydin.train as train_module
from tinydin.data.batching import iterate_batches
from tinydin.data.registry import DatasetSplits
from tinydin.data.samples import split_by_user
from tinydin.data.synthetic import SyntheticOptions, make_synthetic
from tinydin.layers.losses import BCEWithLogits
from tinydin.models import ModelConfig, Popularity, build_model, occurrence_counts
from tinydin.train import TrainConfig, default_train_config, evaluate, train

TINY_WORLD = SyntheticOptions(n_users=60, samples_per_user=10, n_categories=6, subtopics_per_category=2,
                              items_per_subtopic=4, min_len=2, max_len=8)


@pytest.fixture(scope="module")
def splits():
    samples = make_synthetic(TINY_WORLD, seed=0)
    train_split, validation, test = split_by_user(samples, (0.6, 0.2, 0.2), seed=0)
    return DatasetSplits(train_split, validation, test)


def small_model(splits, kind="din", seed=0):
    config = ModelConfig.from_samples(splits.train, embedding_dims=(4, 4), attention_hidden=(8,),
                                      mlp_hidden=(8, 4), max_len=8, seed=seed)
    return build_model(kind, config)


def quick_config(**overrides):
    values = dict(epochs=2, batch_size=16, lr=0.2, reg_lambda=0.01, patience=0, verbose=False)
    values.update(overrides)
    return TrainConfig(**values)


def test_loss_goes_down(splits):
    result = train(small_model(splits), splits, quick_config())
    assert len(result.history) == 2
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_bit_identical(splits):
    first = train(small_model(splits), splits, quick_config())
    second = train(small_model(splits), splits, quick_config())
    assert first.test == second.test
    assert [row["train_loss"] for row in first.history] == [row["train_loss"] for row in second.history]
    assert [row["val_auc"] for row in first.history] == [row["val_auc"] for row in second.history]


def test_other_seed_differs(splits):
    first = train(small_model(splits), splits, quick_config(seed=0))
    second = train(small_model(splits), splits, quick_config(seed=1))
    assert first.history[0]["train_loss"] != second.history[0]["train_loss"]


def scripted_evaluate(monkeypatch, aucs):
    """Make the per-epoch validation AUCs follow `aucs` and record the parameters at each epoch.

    Only the epoch-end calls (on the validation split, before the final
    restore) are scripted; later calls return the real metrics.
    """
    real_evaluate = train_module.evaluate
    seen = {"calls": 0, "params": []}

    def fake(model, samples, batch_size=4096):
        result = real_evaluate(model, samples, batch_size)
        if seen["calls"] < len(aucs):
            result["auc"] = aucs[seen["calls"]]
            seen["params"].append({key: value.copy() for key, value in model.params.items()})
        seen["calls"] += 1
        return result

    monkeypatch.setattr(train_module, "evaluate", fake)
    return seen


def test_best_epoch_restored(splits, monkeypatch):
    seen = scripted_evaluate(monkeypatch, [0.60, 0.70, 0.65])
    model = small_model(splits)
    result = train(model, splits, quick_config(epochs=3))

    assert result.best_epoch == 2
    for key, value in model.params.items():
        assert np.array_equal(value, seen["params"][1][key]), key


def test_early_stopping(splits, monkeypatch):
    scripted_evaluate(monkeypatch, [0.70, 0.60, 0.55, 0.50, 0.45])
    result = train(small_model(splits), splits, quick_config(epochs=5, patience=2))
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1


def test_validation_metrics_after_restore(splits):
    model = small_model(splits)
    result = train(model, splits, quick_config())
    assert result.validation["auc"] == result.history[result.best_epoch - 1]["val_auc"]
    assert result.validation == evaluate(model, splits.validation)


def test_step_schedule_lowers_lr(splits):
    result = train(small_model(splits), splits, quick_config(schedule="step", decay_factor=0.5, decay_every=1))
    assert result.history[0]["lr"] == pytest.approx(0.2)
    assert result.history[1]["lr"] == pytest.approx(0.1)


@pytest.mark.parametrize("reg", ["mba", "l2", "none"])
def test_every_regularizer_trains(splits, reg):
    result = train(small_model(splits), splits, quick_config(embedding_reg=reg, epochs=1))
    assert np.isfinite(result.history[0]["train_loss"])


def test_popularity_trains_in_one_pass(splits):
    model = Popularity(small_model(splits).config)
    result = train(model, splits, quick_config())
    assert result.best_epoch == 0
    assert result.test["auc"] == evaluate(model, splits.test)["auc"]


def test_progress_lines(splits, caplog):
    with caplog.at_level(logging.INFO, logger="tinydin.train"):
        train(small_model(splits), splits, quick_config(epochs=1, log_every=10, verbose=True))
    lines = [record.getMessage() for record in caplog.records]
    steps = len(splits.train) // 16 + (len(splits.train) % 16 > 0)
    assert any(line.startswith(f"epoch 1 step 10/{steps} | loss ") for line in lines), lines[:3]
    assert any(line.startswith("epoch 1 valid | auc ") for line in lines)


def test_quiet_logs_at_debug(splits, caplog):
    with caplog.at_level(logging.INFO, logger="tinydin.train"):
        train(small_model(splits), splits, quick_config(epochs=1))
    assert caplog.records == []


def test_curves_plot(splits, tmp_path):
    from tinydin.plots import plot_curves

    result = train(small_model(splits), splits, quick_config())
    figure = plot_curves(result.history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    loss_axes, auc_axes = figure.axes
    assert [line.get_label() for line in auc_axes.get_lines()] == ["validation AUC", "validation GAUC"]
    assert list(loss_axes.get_lines()[0].get_ydata()) == [row["train_loss"] for row in result.history]


def test_click_rate_init_before_first_step(splits):
    model = small_model(splits)
    # A learning rate this small leaves the bias where the warm start put it.
    train(model, splits, quick_config(epochs=1, lr=1e-9, item_bias_init="click_rate"))

    # Independent of the model: smoothed log-odds with m = 10, minus the global log-odds.
    items, labels = splits.train.candidate[:, 0], splits.train.label.astype(np.float64)
    num_rows = model.config.vocab_sizes[0] + 1
    prior = labels.mean()
    rates = (np.bincount(items, weights=labels, minlength=num_rows) + 10 * prior) / (
        np.bincount(items, minlength=num_rows) + 10)
    expected = np.log(rates / (1 - rates)) - np.log(prior / (1 - prior))
    expected[0] = 0.0
    np.testing.assert_allclose(model.bias_table.params["weight"][:, 0], expected, atol=1e-5)


def test_zero_init_leaves_bias_zero_before_training(splits):
    model = small_model(splits)
    train(model, splits, quick_config(epochs=1, lr=1e-9))
    assert np.abs(model.bias_table.params["weight"]).max() < 1e-6


def one_step(splits, **overrides):
    """Run one forward, backward and optimizer step; return the model before and after, and its grads."""
    model = small_model(splits)
    model.bias_table.params["weight"][1:] = 0.5  # nonzero, so that decay shows
    config = quick_config(embedding_reg="mba", reg_lambda=2.0, **overrides)
    schedule = train_module._make_schedule(config, steps_per_epoch=10)
    optimizers = train_module._make_optimizers(model, splits.train, config, schedule)
    batch = next(iterate_batches(splits.train, 16, model.config.max_len, shuffle=False))
    before = {key: value.copy() for key, value in model.params.items()}
    loss_layer = BCEWithLogits()
    loss_layer.forward(model.forward(batch, training=True), batch.label)
    model.backward(loss_layer.backward(1.0))
    grads = {key: value for key, value in model.grads.items()}
    for optimizer in optimizers:
        optimizer.step()
    return model, before, grads, len(optimizers)


def test_bias_lambda_zero_skips_decay(splits):
    model, before, grads, count = one_step(splits, item_bias_reg_lambda=0.0)
    assert count == 2
    ids, rows = grads["item_bias.weight"].ids, grads["item_bias.weight"].rows
    expected = before["item_bias.weight"][ids] - 0.2 * rows  # plain SGD, no MBA term
    np.testing.assert_allclose(model.params["item_bias.weight"][ids], expected, rtol=1e-6)


def test_bias_lambda_leaves_tables_decayed(splits):
    model, before, grads, _ = one_step(splits, item_bias_reg_lambda=0.0)
    counts = occurrence_counts(model, splits.train)["item_embedding.item.weight"]
    grad = grads["item_embedding.item.weight"]
    old = before["item_embedding.item.weight"][grad.ids]
    expected = old - 0.2 * (grad.rows + (2.0 / counts[grad.ids])[:, None] * old)
    np.testing.assert_allclose(model.params["item_embedding.item.weight"][grad.ids], expected, rtol=1e-5)


def test_bias_lambda_none_uses_reg_lambda(splits):
    model, before, grads, count = one_step(splits)
    assert count == 1
    counts = occurrence_counts(model, splits.train)["item_bias.weight"]
    grad = grads["item_bias.weight"]
    old = before["item_bias.weight"][grad.ids]
    expected = old - 0.2 * (grad.rows + (2.0 / counts[grad.ids])[:, None] * old)
    np.testing.assert_allclose(model.params["item_bias.weight"][grad.ids], expected, rtol=1e-5)


# evaluate -------------------------------------------------------------------------

def test_evaluate_keys(splits):
    metrics = evaluate(small_model(splits), splits.test)
    for key in ["auc", "gauc", "logloss", "n", "positive_rate", "mean_prediction", "oracle_auc"]:
        assert key in metrics, key
    assert metrics["n"] == len(splits.test)


def test_evaluate_oracle_matches_truth(splits):
    from tinydin.metrics import auc

    metrics = evaluate(small_model(splits), splits.test)
    assert metrics["oracle_auc"] == auc(splits.test.label, splits.test.true_prob)


def test_evaluate_gauc_undefined(splits):
    # One sample per user: no user has both labels, so GAUC is undefined.
    test = splits.test
    first_of_user = np.unique(test.user, return_index=True)[1]
    subset = test.subset(np.sort(first_of_user))
    if subset.label.min() == subset.label.max():
        pytest.skip("the first samples of the users all have one label")
    metrics = evaluate(small_model(splits), subset)
    assert metrics["gauc"] is None


# configs ----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    ({"epochs": 0}, "epochs = 0 must be a positive integer"),
    ({"lr": -1.0}, "lr = -1.0 must be a finite number above 0"),
    ({"schedule": "cosine"}, "schedule = 'cosine' is not known"),
    ({"embedding_reg": "l1"}, "embedding_reg = 'l1' is not known"),
    ({"patience": -1}, "patience = -1"),
    ({"reg_lambda": float("nan")}, "reg_lambda = nan"),
    ({"item_bias_init": "mean"}, "item_bias_init = 'mean' is not known"),
    ({"item_bias_reg_lambda": -1.0}, "item_bias_reg_lambda = -1.0 must be a finite number >= 0"),
])
def test_train_config_rejects(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


def test_defaults_for_every_dataset():
    for dataset in ["synthetic", "movielens", "amazon"]:
        for kind in ["din", "base"]:
            assert isinstance(default_train_config(dataset, kind), TrainConfig)


def test_defaults_per_model():
    din = default_train_config("synthetic", "din")
    base = default_train_config("synthetic", "base")
    assert (din.lr, din.schedule) == (0.3, "step")
    assert (base.lr, base.schedule) == (0.1, "constant")


def test_defaults_take_overrides():
    config = default_train_config("movielens", "din", epochs=1, verbose=False)
    assert config.epochs == 1
    assert config.reg_lambda == 25.0


@pytest.mark.parametrize("kind", ["din", "base"])
def test_movielens_defaults_start_bias_from_rates(kind):
    config = default_train_config("movielens", kind)
    assert config.item_bias_init == "click_rate"
    assert config.item_bias_reg_lambda == 0.0


@pytest.mark.parametrize("kind", ["din", "base"])
def test_movielens_defaults_pass_decay_check(kind):
    # The rarest MovieLens ids occur in one training sample, and SGD rejects
    # lr * lambda / n_j above 1.
    config = default_train_config("movielens", kind)
    assert config.lr * config.reg_lambda <= 1.0 + 1e-12


def test_defaults_unknown_dataset():
    with pytest.raises(ValueError, match="dataset 'criteo' has no training defaults"):
        default_train_config("criteo")
