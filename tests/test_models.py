"""DIN, BaseModel and Popularity: shapes, padding, gradients, inference and baselines."""
import numpy as np
import pytest

from tinydin.data.batching import Batch, make_batch
from tinydin.data.samples import Samples
from tinydin.layers.embedding import Embedding
from tinydin.models import (DIN, BaseModel, ModelConfig, Popularity, _randomize, _tiny_batch, _tiny_config,
                            build_model, check_model, model_gradcheck_cases, occurrence_counts)


def tiny_samples():
    """Build four samples over items 1..6 (categories 1..3), users 1 and 2, one user field."""
    history = np.array([[1, 1], [2, 1], [3, 2], [4, 3], [1, 1], [4, 2]], dtype=np.int32)
    return Samples(
        item_fields=("item", "category"),
        vocab_sizes=(6, 3),
        candidate=np.array([[2, 1], [6, 3], [2, 1], [3, 2]], dtype=np.int32),
        history=history,
        hist_start=np.array([0, 0, 3, 6], dtype=np.int64),
        hist_end=np.array([3, 2, 6, 6], dtype=np.int64),
        label=np.array([1, 0, 1, 0], dtype=np.float32),
        user=np.array([1, 1, 2, 2], dtype=np.int32),
        user_fields={"age": np.array([1, 1, 2, 0], dtype=np.int32)},
        user_vocab_sizes={"age": 2},
    )


def small_config(samples, **overrides):
    values = dict(embedding_dims=(3, 2), user_embedding_dims=(2,), attention_hidden=(4,),
                  mlp_hidden=(5, 3), max_len=4, dtype="float64", seed=3)
    values.update(overrides)
    return ModelConfig.from_samples(samples, **values)


def random_model(kind, seed=0, **overrides):
    config = _tiny_config(**overrides)
    model = build_model(kind, config)
    _randomize(model, np.random.default_rng(seed))
    return model


def widen(batch, extra):
    """Return the batch with `extra` more padded history columns."""
    num_rows, width, num_fields = batch.history.shape
    history = np.zeros((num_rows, width + extra, num_fields), dtype=batch.history.dtype)
    history[:, :width] = batch.history
    return Batch(batch.candidate, history, history[:, :, 0] != 0, batch.label, batch.user,
                 batch.user_fields, batch.index)


# Shapes and wiring ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["din", "base"])
def test_forward_shapes(kind):
    model = random_model(kind)
    batch = _tiny_batch((5, 3, 0, 2), model.config, np.random.default_rng(1))
    logits = model.forward(batch)
    assert logits.shape == (4,)
    assert logits.dtype == np.float64


def test_attention_shape_matches_history():
    model = random_model("din")
    batch = _tiny_batch((5, 3, 0, 2), model.config, np.random.default_rng(1))
    assert model.predict_attention(batch).shape == (4, 5)


def test_params_are_layer_arrays():
    model = random_model("din")
    layers = dict(model.named_layers())
    for name, value in model.params.items():
        layer_name, _, key = name.rpartition(".")
        assert layers[layer_name].params[key] is value, name


def test_table_names_are_stable():
    model = random_model("din")
    tables = sorted(name for name, layer in model.named_layers() if isinstance(layer, Embedding))
    assert tables == ["item_bias", "item_embedding.category", "item_embedding.item", "user_embedding.age"]


def test_backward_fills_every_grad():
    model = random_model("din")
    batch = _tiny_batch((5, 3, 0, 2), model.config, np.random.default_rng(1))
    model.forward(batch)
    model.backward(np.array([0.1, -0.2, 0.3, -0.4]))
    assert set(model.grads) == set(model.params)


def test_empty_batch_leaves_no_stale_grads():
    model = random_model("din")
    rng = np.random.default_rng(1)
    model.forward(_tiny_batch((5, 3), model.config, rng))
    model.backward(np.array([0.5, -0.5]))
    model.forward(_tiny_batch((0, 0), model.config, rng))  # no valid history position at all
    model.backward(np.array([0.5, -0.5]))

    inner = dict(model.named_layers())["attention.layer0"]
    assert inner.grads == {}  # the optimizer skips it instead of reusing the last step's gradient
    assert np.all(model.grads["attention.layer0.W"] == 0.0)


def test_state_collects_every_dice():
    model = random_model("din")
    # One Dice in the activation unit and two in the MLP, two statistics each.
    assert sorted(model.state()) == [
        "attention.act0.running_mean", "attention.act0.running_var",
        "mlp.act0.running_mean", "mlp.act0.running_var",
        "mlp.act1.running_mean", "mlp.act1.running_var",
    ]


def test_load_state_restores_statistics():
    model = random_model("din")
    saved = {key: value.copy() for key, value in model.state().items()}
    batch = _tiny_batch((5, 3, 0, 2), model.config, np.random.default_rng(1))
    model.forward(batch, training=True)  # moves the running statistics
    assert not np.array_equal(model.state()["mlp.act0.running_mean"], saved["mlp.act0.running_mean"])
    model.load_state(saved)
    for key, value in saved.items():
        assert np.array_equal(model.state()[key], value), key


# Padding ----------------------------------------------------------------------

@pytest.mark.parametrize("kind,overrides", [
    ("din", {}),
    ("din", {"normalize": "softmax", "unit": "concat"}),
    ("base", {"pooling": "mean"}),
])
@pytest.mark.parametrize("training", [True, False])
def test_padded_columns_change_nothing(kind, overrides, training):
    model = random_model(kind, **overrides)
    batch = _tiny_batch((3, 1, 0, 2), model.config, np.random.default_rng(2))
    state = {key: value.copy() for key, value in model.state().items()}

    narrow = model.forward(batch, training=training)
    model.load_state(state)
    wide = model.forward(widen(batch, 2), training=training)
    np.testing.assert_allclose(wide, narrow, rtol=1e-13, atol=1e-15)


def test_fully_padded_row_is_finite():
    model = random_model("din")
    batch = _tiny_batch((0, 0), model.config, np.random.default_rng(3))
    logits = model.forward(batch)
    assert np.all(np.isfinite(logits))
    assert np.all(model.predict_attention(batch) == 0.0)


def test_history_longer_than_max_len():
    model = random_model("din", max_len=3)
    batch = _tiny_batch((5, 1), _tiny_config(), np.random.default_rng(4))
    with pytest.raises(ValueError, match="history length 5 exceeds the model's max_len 3"):
        model.forward(batch)


def test_missing_user_field():
    model = random_model("din")
    batch = _tiny_batch((2, 1), _tiny_config(user_fields=(), user_vocab_sizes=(), user_embedding_dims=()),
                        np.random.default_rng(4))
    with pytest.raises(ValueError, match="no user field 'age'"):
        model.forward(batch)


# Gradients ---------------------------------------------------------------------

REPRESENTATIVE = [
    "din outer dice none",
    "din concat prelu softmax",
    "din outer sigmoid softmax",
    "din no bias, no user fields",
    "din batch of one",
    "base mean dice",
]


@pytest.fixture(scope="module")
def gradcheck_cases():
    return {name: (model, batch) for name, model, batch in model_gradcheck_cases()}


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_model_gradients(gradcheck_cases, name):
    model, batch = gradcheck_cases[name]
    for row in check_model(name, model, batch):
        assert row.passed, f"{name} {row.param}: rel_error {row.rel_error:.2e}"


def test_gradcheck_cases_cover_options(gradcheck_cases):
    names = " | ".join(gradcheck_cases)
    for word in ["outer", "concat", "dice", "prelu", "sigmoid", "softmax", "none", "batch of one", "base sum",
                 "base mean", "prelu mlp"]:
        assert word in names, word


def test_gradcheck_batches_have_padding(gradcheck_cases):
    model, batch = gradcheck_cases["din outer dice none"]
    lengths = batch.mask.sum(axis=1)
    assert 0 in lengths  # a fully padded row
    assert lengths.max() > lengths.min()


def test_gradcheck_flags_wrong_backward():
    name, model, batch = model_gradcheck_cases()[0]
    original = model._pool_backward

    def drop_attention_path(dpooled):
        dq, dkeys = original(dpooled)
        return None, dkeys  # drops dq of the activation unit

    model._pool_backward = drop_attention_path
    rows = check_model(name, model, batch)
    failed = [row.param for row in rows if not row.passed]
    assert "item_embedding.item.weight" in failed


# Inference ---------------------------------------------------------------------

def test_predict_probabilities():
    samples = tiny_samples()
    model = DIN(small_config(samples))
    probabilities = model.predict(samples)
    assert probabilities.shape == (4,)
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_predict_independent_of_batch_size():
    samples = tiny_samples()
    model = DIN(small_config(samples))
    _randomize(model, np.random.default_rng(5))
    whole = model.predict(samples, batch_size=4)
    one_by_one = model.predict(samples, batch_size=1)
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-12)


def test_predict_batch_equals_samples():
    samples = tiny_samples()
    model = BaseModel(small_config(samples))
    batch = make_batch(samples, [2, 0], max_len=4)
    from_batch = model.predict(batch)
    from_samples = model.predict(samples)
    np.testing.assert_allclose(from_batch, from_samples[[2, 0]], rtol=1e-12)


def test_predict_keeps_statistics():
    samples = tiny_samples()
    model = DIN(small_config(samples))
    before = {key: value.copy() for key, value in model.state().items()}
    model.predict(samples)
    for key, value in before.items():
        assert np.array_equal(model.state()[key], value), key


def test_attention_zero_at_padding():
    samples = tiny_samples()
    model = DIN(small_config(samples))
    _randomize(model, np.random.default_rng(6))
    batch = make_batch(samples, [0, 1, 3], max_len=4)
    weights = model.predict_attention(batch)
    assert np.all(weights[~batch.mask] == 0.0)
    assert np.all(weights[batch.mask] != 0.0)


def test_softmax_attention_sums_to_one():
    samples = tiny_samples()
    model = DIN(small_config(samples, normalize="softmax"))
    _randomize(model, np.random.default_rng(7))
    batch = make_batch(samples, [0, 1, 3], max_len=4)
    sums = model.predict_attention(batch).sum(axis=1)
    np.testing.assert_allclose(sums[:2], [1.0, 1.0], rtol=1e-12)
    assert sums[2] == 0.0  # sample 3 has no history


def test_history_attention_per_candidate():
    from tinydin.plots import history_attention

    samples = tiny_samples()
    model = DIN(small_config(samples))
    _randomize(model, np.random.default_rng(8))
    candidates = np.array([[2, 1], [5, 2]], dtype=np.int32)
    weights, history = history_attention(model, samples, 0, candidates)
    assert weights.shape == (2, 3)
    assert history.tolist() == [[1, 1], [2, 1], [3, 2]]

    # Row c equals the weights of a batch that holds sample 0 with candidate c.
    batch = make_batch(samples, [0], max_len=4)
    batch.candidate = candidates[1:]
    np.testing.assert_allclose(weights[1], model.predict_attention(batch)[0], rtol=1e-12)


def test_attention_heatmap_file(tmp_path):
    from tinydin.plots import plot_attention

    path = tmp_path / "attention.png"
    figure = plot_attention(np.array([[0.1, 0.5, 0.0], [0.3, 0.2, 0.9]]), ["a", "b"], ["x", "y", "z"], path)
    assert path.stat().st_size > 1000
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["x", "y", "z"]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["a", "b"]


def test_attention_heatmap_label_count():
    from tinydin.plots import plot_attention

    with pytest.raises(ValueError, match="got 1 candidate labels and 3 history labels"):
        plot_attention(np.zeros((2, 3)), ["a"], ["x", "y", "z"])


# Popularity ---------------------------------------------------------------------

def test_popularity_by_hand():
    samples = tiny_samples()
    model = Popularity(small_config(samples), prior_strength=2.0).fit(samples)
    # Global rate 2/4 = 0.5. Item 2: 2 clicks in 2 impressions -> (2 + 1) / (2 + 2).
    # Item 6: 0 of 1 -> (0 + 1) / (1 + 2). Item 3: 0 of 1 -> 1/3. Unseen: 0.5.
    expected = np.array([0.75, 1 / 3, 0.75, 1 / 3])
    np.testing.assert_allclose(model.predict(samples), expected, rtol=1e-15)
    assert model.rates[1] == 0.5
    assert model.rates[4] == 0.5


def test_popularity_before_fit():
    samples = tiny_samples()
    with pytest.raises(RuntimeError, match="before fit"):
        Popularity(small_config(samples)).predict(samples)


def test_popularity_rejects_unknown_id():
    samples = tiny_samples()
    model = Popularity(small_config(samples)).fit(samples)
    batch = make_batch(samples, [0], max_len=4)
    batch.candidate = np.array([[7, 1]], dtype=np.int32)
    with pytest.raises(ValueError, match="candidate id 7 in field 'item' is outside the table"):
        model.predict(batch)


# Config and helpers ----------------------------------------------------------------

def test_config_from_samples():
    config = ModelConfig.from_samples(tiny_samples())
    assert config.item_fields == ("item", "category")
    assert config.vocab_sizes == (6, 3)
    assert config.user_fields == ("age",)
    assert config.user_vocab_sizes == (2,)
    assert config.item_dim == 36  # two fields of 18


def test_config_round_trip():
    config = small_config(tiny_samples(), unit="concat")
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("overrides,message", [
    ({"unit": "inner"}, "unit = 'inner' is not supported"),
    ({"normalize": "sum"}, "normalize = 'sum' is not supported"),
    ({"mlp_activation": "sigmoid"}, "mlp_activation = 'sigmoid' is not supported"),
    ({"embedding_dims": (4,)}, "embedding_dims has 1 entries for 2 item fields"),
    ({"vocab_sizes": (6, 0)}, "must contain positive integers"),
    ({"max_len": 0}, "max_len"),
    ({"dtype": "float16"}, "dtype = 'float16' is not supported"),
    ({"item_bias": 1}, "item_bias = 1 must be True or False"),
])
def test_config_rejects(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(tiny_samples(), **overrides)


def test_build_model_unknown_kind():
    with pytest.raises(ValueError, match="model kind 'dien' is not known"):
        build_model("dien", _tiny_config())


def test_occurrence_counts_by_hand():
    samples = tiny_samples()
    model = DIN(small_config(samples))
    counts = occurrence_counts(model, samples)
    # Samples 0 and 1 share history rows 0-1. Item 4 occurs twice in sample 2
    # and counts once; item 5 occurs nowhere.
    assert counts["item_embedding.item.weight"].tolist() == [0, 3, 3, 2, 1, 0, 1]
    assert counts["item_embedding.category.weight"].tolist() == [0, 3, 3, 2]
    # The item bias counts candidates only: item 2 twice, items 3 and 6 once.
    assert counts["item_bias.weight"].tolist() == [0, 0, 2, 1, 0, 0, 1]
    assert counts["user_embedding.age.weight"].tolist() == [0, 2, 1]


# Item bias started from click rates -------------------------------------------------

def test_item_bias_init_by_hand():
    samples = tiny_samples().subset(np.array([0, 1, 2]))
    model = DIN(small_config(samples))
    model.init_item_bias_from_rates(samples, prior_strength=2.0)
    # Labels 1, 0, 1: global rate 2/3, log-odds log 2. Item 2: 2 clicks in 2
    # impressions -> (2 + 4/3) / (2 + 2) = 5/6, log-odds log 5. Item 6: 0 of 1
    # -> (0 + 4/3) / (1 + 2) = 4/9, log-odds log(4/5). Unseen items: the prior.
    expected = np.array([0.0, 0.0, np.log(2.5), 0.0, 0.0, 0.0, np.log(0.4)])
    np.testing.assert_allclose(model.bias_table.params["weight"][:, 0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.output.params["b"], [np.log(2.0)], rtol=1e-12)


def test_item_bias_init_matches_popularity():
    samples = tiny_samples()
    model = DIN(small_config(samples))
    model.init_item_bias_from_rates(samples)
    # With the MLP's last layer silenced, the logit is the bias alone.
    model.output.params["W"][...] = 0.0
    popularity = Popularity(small_config(samples)).fit(samples)
    np.testing.assert_allclose(model.predict(samples), popularity.predict(samples), rtol=1e-12)


def test_item_bias_init_keeps_padding_row():
    samples = tiny_samples()
    model = BaseModel(small_config(samples))
    model.init_item_bias_from_rates(samples)
    assert model.bias_table.params["weight"][0, 0] == 0.0


def test_item_bias_init_without_bias():
    samples = tiny_samples()
    model = DIN(small_config(samples, item_bias=False))
    with pytest.raises(ValueError, match="has no item bias"):
        model.init_item_bias_from_rates(samples)


def test_item_bias_init_one_label():
    samples = tiny_samples().subset(np.array([0, 2]))  # two clicks, no non-click
    model = DIN(small_config(samples))
    with pytest.raises(ValueError, match="click rate is 1.0, so its log-odds are infinite"):
        model.init_item_bias_from_rates(samples)
