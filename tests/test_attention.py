import warnings

import numpy as np
import pytest

from tinydin.gradcheck import check_layer, format_rows
from tinydin.layers.attention import ActivationUnit, materialize_input, sum_per_sample

DIM = 3
# B = 3, T = 4: row 0 full, row 1 with two padded positions, row 2 fully padded.
MASK = np.array([
    [True, True, True, True],
    [True, True, False, False],
    [False, False, False, False],
])


def make_unit(unit="outer", activation="dice", hidden=(4,), materialized=False, seed=0):
    unit_layer = ActivationUnit(
        DIM, hidden, activation, unit, rng=np.random.default_rng(seed), dtype=np.float64, materialized=materialized
    )
    # Random biases and slopes: the default zeros would hide a backward pass
    # that drops a bias gradient or mixes up alpha.
    rng = np.random.default_rng(seed + 100)
    for name, value in unit_layer.params.items():
        if not name.endswith(".W"):
            value[...] = 0.5 * rng.standard_normal(value.shape)
    return unit_layer


def batch(mask=MASK, seed=1):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((mask.shape[0], DIM))
    keys = rng.standard_normal(mask.shape + (DIM,))
    return q, keys


def copy_params(source, target):
    for name, value in source.params.items():
        target.params[name][...] = value


CONFIGS = [(unit, activation) for unit in ("outer", "concat") for activation in ("dice", "prelu", "sigmoid")]


@pytest.mark.parametrize("unit, activation", CONFIGS)
def test_gradcheck_with_padding(unit, activation):
    layer = make_unit(unit, activation)
    q, keys = batch()
    rows = check_layer(layer, [q, keys, MASK], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_gradcheck_two_hidden_layers(unit):
    layer = make_unit(unit, "dice", hidden=(4, 3))
    q, keys = batch()
    rows = check_layer(layer, [q, keys, MASK], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_gradcheck_materialized(unit):
    layer = make_unit(unit, "dice", materialized=True)
    q, keys = batch()
    rows = check_layer(layer, [q, keys, MASK], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_gradcheck_inference_mode(unit):
    layer = make_unit(unit, "dice")
    layer.activations[0].running_mean[...] = [0.3, -0.2, 0.1, 0.0]
    layer.activations[0].running_var[...] = [0.5, 2.0, 1.0, 1.5]
    q, keys = batch()
    rows = check_layer(layer, [q, keys, MASK], wrt=(0, 1), training=False)
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("unit", ["outer", "concat"])
@pytest.mark.parametrize("mask", [np.array([[True, True, False]]), np.array([[False, True, False]])])
def test_gradcheck_batch_of_one(unit, mask):
    # The second mask leaves one valid position, so Dice's variance is 0 and
    # only eps keeps it finite.
    layer = make_unit(unit, "dice")
    q, keys = batch(mask)
    rows = check_layer(layer, [q, keys, mask], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_padding_scores_zero(unit):
    layer = make_unit(unit)
    q, keys = batch()
    scores = layer.forward(q, keys, MASK)
    assert np.all(scores[~MASK] == 0.0)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_padding_gradient_zero(unit):
    layer = make_unit(unit)
    q, keys = batch()
    layer.forward(q, keys, MASK)
    dq, dkeys = layer.backward(np.random.default_rng(2).standard_normal(MASK.shape))
    assert np.all(dkeys[~MASK] == 0.0)
    assert np.all(dq[2] == 0.0)  # sample 2 has no valid position


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_padded_upstream_gradient_ignored(unit):
    layer = make_unit(unit)
    q, keys = batch()
    dscores = np.random.default_rng(2).standard_normal(MASK.shape)
    layer.forward(q, keys, MASK)
    dq, dkeys = layer.backward(np.where(MASK, dscores, 0.0))
    grads = {name: grad.copy() for name, grad in layer.grads.items()}

    layer.forward(q, keys, MASK)
    dq_noisy, dkeys_noisy = layer.backward(dscores)

    np.testing.assert_array_equal(dq_noisy, dq)
    np.testing.assert_array_equal(dkeys_noisy, dkeys)
    for name, grad in grads.items():
        np.testing.assert_array_equal(layer.grads[name], grad, err_msg=name)


@pytest.mark.parametrize("unit", ["outer", "concat"])
@pytest.mark.parametrize("materialized", [False, True])
def test_nonfinite_padding_does_not_leak(unit, materialized):
    layer = make_unit(unit, materialized=materialized)
    q, keys = batch()
    keys[~MASK] = np.inf
    keys[1, 3] = np.nan

    scores = layer.forward(q, keys, MASK)
    dq, dkeys = layer.backward(np.ones(MASK.shape))

    assert np.all(np.isfinite(scores))
    assert np.all(np.isfinite(dq))
    assert np.all(np.isfinite(dkeys))
    for name, grad in layer.grads.items():
        assert np.all(np.isfinite(grad)), name


def run_once(layer, q, keys, mask, dscores):
    scores = layer.forward(q, keys, mask, training=True)
    dq, dkeys = layer.backward(dscores)
    grads = {name: np.copy(grad) for name, grad in layer.grads.items()}
    return scores, dq, dkeys, grads


@pytest.mark.parametrize("unit, activation", CONFIGS)
def test_appended_padding_changes_nothing(unit, activation):
    q, keys = batch()
    rng = np.random.default_rng(3)
    dscores = rng.standard_normal(MASK.shape)
    # Two more positions per row, padded, with large arbitrary keys and upstream gradients.
    long_keys = np.concatenate([keys, 50.0 * rng.standard_normal((3, 2, DIM))], axis=1)
    long_mask = np.concatenate([MASK, np.zeros((3, 2), dtype=bool)], axis=1)
    long_dscores = np.concatenate([dscores, rng.standard_normal((3, 2))], axis=1)

    scores, dq, dkeys, grads = run_once(make_unit(unit, activation), q, keys, MASK, dscores)
    long_layer = make_unit(unit, activation)
    long_scores, long_dq, long_dkeys, long_grads = run_once(long_layer, q, long_keys, long_mask, long_dscores)

    np.testing.assert_allclose(long_scores[:, :4], scores, rtol=1e-12, atol=1e-14)
    assert np.all(long_scores[:, 4:] == 0.0)
    np.testing.assert_allclose(long_dq, dq, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(long_dkeys[:, :4], dkeys, rtol=1e-12, atol=1e-14)
    assert np.all(long_dkeys[:, 4:] == 0.0)
    for name, grad in grads.items():
        np.testing.assert_allclose(long_grads[name], grad, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_appended_empty_sample_changes_nothing(unit):
    # A whole extra sample of padding must not move Dice's batch statistics.
    q, keys = batch()
    rng = np.random.default_rng(4)
    dscores = rng.standard_normal(MASK.shape)
    more_q = np.concatenate([q, rng.standard_normal((1, DIM))])
    more_keys = np.concatenate([keys, rng.standard_normal((1, 4, DIM))])
    more_mask = np.concatenate([MASK, np.zeros((1, 4), dtype=bool)])
    more_dscores = np.concatenate([dscores, rng.standard_normal((1, 4))])

    scores, dq, _, grads = run_once(make_unit(unit), q, keys, MASK, dscores)
    more_scores, more_dq, _, more_grads = run_once(make_unit(unit), more_q, more_keys, more_mask, more_dscores)

    np.testing.assert_allclose(more_scores[:3], scores, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(more_dq[:3], dq, rtol=1e-12, atol=1e-14)
    for name, grad in grads.items():
        np.testing.assert_allclose(more_grads[name], grad, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("unit", ["outer", "concat"])
@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_folded_equals_materialized(unit, activation):
    folded = make_unit(unit, activation)
    explicit = make_unit(unit, activation, materialized=True, seed=7)
    copy_params(folded, explicit)
    q, keys = batch()
    dscores = np.random.default_rng(5).standard_normal(MASK.shape)

    scores, dq, dkeys, grads = run_once(folded, q, keys, MASK, dscores)
    explicit_scores, explicit_dq, explicit_dkeys, explicit_grads = run_once(explicit, q, keys, MASK, dscores)

    np.testing.assert_allclose(scores, explicit_scores, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dq, explicit_dq, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dkeys, explicit_dkeys, rtol=0, atol=1e-12)
    for name, grad in explicit_grads.items():
        np.testing.assert_allclose(grads[name], grad, rtol=0, atol=1e-12, err_msg=name)


def test_outer_input_layout():
    # With no hidden layer the score is x W + b, so the documented layout
    # [k, vec(q k^T) row-major, q] can be checked entry by entry.
    layer = make_unit("outer", hidden=())
    q, keys = batch()
    weight = layer.params["layer0.W"][:, 0]
    bias = layer.params["layer0.b"][0]

    scores = layer.forward(q, keys, MASK)

    for b, t in zip(*np.nonzero(MASK)):
        x = np.concatenate([keys[b, t], np.outer(q[b], keys[b, t]).ravel(), q[b]])
        assert abs(scores[b, t] - (x @ weight + bias)) < 1e-12


def test_concat_input_layout():
    layer = make_unit("concat", hidden=())
    q, keys = batch()
    weight = layer.params["layer0.W"][:, 0]
    bias = layer.params["layer0.b"][0]

    scores = layer.forward(q, keys, MASK)

    for b, t in zip(*np.nonzero(MASK)):
        k = keys[b, t]
        x = np.concatenate([q[b], k, q[b] - k, q[b] * k])
        assert abs(scores[b, t] - (x @ weight + bias)) < 1e-12


def test_concat_product_is_diagonal_outer():
    # q * k fed to a dense layer is the outer-product layer with a diagonal M.
    concat = make_unit("concat", hidden=())
    outer = make_unit("outer", hidden=())
    product_weight = concat.params["layer0.W"][3 * DIM:]
    concat.params["layer0.W"][:3 * DIM] = 0.0
    outer.params["layer0.W"][...] = 0.0
    for i in range(DIM):
        outer.params["layer0.W"][DIM + i * DIM + i] = product_weight[i]
    outer.params["layer0.b"][...] = concat.params["layer0.b"]
    q, keys = batch()

    np.testing.assert_allclose(outer.forward(q, keys, MASK), concat.forward(q, keys, MASK), rtol=0, atol=1e-14)


def test_dice_statistics_use_valid_rows_only():
    layer = make_unit("outer", "dice")
    q, keys = batch()
    sample_index, position_index = np.nonzero(MASK)
    x = materialize_input(q[sample_index], keys[sample_index, position_index], "outer")
    pre = x @ layer.params["layer0.W"] + layer.params["layer0.b"]  # (N, H) first-layer pre-activations
    expected = 0.99 * 0.0 + 0.01 * pre.mean(axis=0)  # the running mean starts at 0, momentum 0.99

    layer.forward(q, keys, MASK, training=True)

    np.testing.assert_allclose(layer.state()["act0.running_mean"], expected, rtol=1e-12)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_backward_mutates_neither_dout_nor_cache(unit):
    layer = make_unit(unit)
    q, keys = batch()
    layer.forward(q, keys, MASK)
    cache_before = [np.copy(item) for item in layer._cache + layer._first_cache]
    dscores = np.random.default_rng(6).standard_normal(MASK.shape)
    dscores_before = dscores.copy()

    layer.backward(dscores)

    np.testing.assert_array_equal(dscores, dscores_before)
    for item, before in zip(layer._cache + layer._first_cache, cache_before):
        np.testing.assert_array_equal(item, before)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_all_padded_batch(unit):
    layer = make_unit(unit)
    q, keys = batch()
    mask = np.zeros_like(MASK)
    state_before = {key: value.copy() for key, value in layer.state().items()}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = layer.forward(q, keys, mask, training=True)
        dq, dkeys = layer.backward(np.ones(MASK.shape))

    assert np.all(scores == 0.0)
    assert np.all(dq == 0.0)
    assert np.all(dkeys == 0.0)
    for name in layer.params:
        assert np.all(layer.grads[name] == 0.0), name
    for key, value in state_before.items():
        np.testing.assert_array_equal(layer.state()[key], value)


def test_params_are_inner_arrays():
    layer = make_unit("outer", "dice", hidden=(4, 3))
    assert sorted(layer.params) == [
        "act0.alpha", "act1.alpha", "layer0.W", "layer0.b", "layer1.W", "layer1.b", "layer2.W", "layer2.b",
    ]
    assert layer.params["layer0.W"] is layer.dense_layers[0].params["W"]
    assert layer.params["act1.alpha"] is layer.activations[1].params["alpha"]


def test_grads_are_inner_arrays():
    layer = make_unit("concat", "dice")
    q, keys = batch()
    layer.forward(q, keys, MASK)
    layer.backward(np.ones(MASK.shape))
    assert layer.grads["layer0.W"] is layer.dense_layers[0].grads["W"]
    assert layer.grads["act0.alpha"] is layer.activations[0].grads["alpha"]
    assert layer.grads["layer0.W"].shape == (4 * DIM, 4)


def test_outer_weight_shape():
    layer = make_unit("outer")
    assert layer.params["layer0.W"].shape == (2 * DIM + DIM * DIM, 4)


def test_state_round_trip():
    layer = make_unit("outer", "dice", hidden=(4, 3))
    q, keys = batch()
    layer.forward(q, keys, MASK, training=True)
    saved = {key: value.copy() for key, value in layer.state().items()}
    assert sorted(saved) == ["act0.running_mean", "act0.running_var", "act1.running_mean", "act1.running_var"]

    restored = make_unit("outer", "dice", hidden=(4, 3))
    restored.load_state(saved)

    for key, value in saved.items():
        np.testing.assert_array_equal(restored.state()[key], value)


def test_load_state_missing_key_rejected():
    layer = make_unit("outer", "dice")
    with pytest.raises(ValueError, match=r"missing \['act0.running_var'\]"):
        layer.load_state({"act0.running_mean": np.zeros(4)})


def test_sum_per_sample_hand_calculation():
    values = np.array([[1.0], [2.0], [4.0], [8.0]])
    counts = np.array([2, 0, 1, 1])  # sample 1 has no row
    np.testing.assert_array_equal(sum_per_sample(values, counts), [[3.0], [0.0], [4.0], [8.0]])


def test_wrong_item_width_rejected():
    layer = make_unit("outer")
    with pytest.raises(ValueError, match="built for item width 3"):
        layer.forward(np.zeros((3, 4)), np.zeros((3, 4, 4)), MASK)


def test_int_mask_rejected():
    layer = make_unit("concat")
    q, keys = batch()
    with pytest.raises(ValueError, match="expected bool"):
        layer.forward(q, keys, MASK.astype(int))


def test_unknown_unit_rejected():
    with pytest.raises(ValueError, match="unit='inner' is not supported"):
        ActivationUnit(DIM, unit="inner", rng=np.random.default_rng(0))


def test_unknown_activation_rejected():
    with pytest.raises(ValueError, match="activation 'relu' is not known"):
        ActivationUnit(DIM, activation="relu", rng=np.random.default_rng(0))


def test_unit_without_output_bias_has_no_final_b():
    unit_layer = ActivationUnit(DIM, (4,), "prelu", "concat", rng=np.random.default_rng(0),
                                dtype=np.float64, output_bias=False)
    assert "layer1.b" not in unit_layer.params
    assert "layer0.b" in unit_layer.params
    q, keys = batch()
    rows = check_layer(unit_layer, [q, keys, MASK], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("unit", ["outer", "concat"])
def test_unit_no_hidden_no_bias_gradients(unit):
    unit_layer = ActivationUnit(DIM, (), "dice", unit, rng=np.random.default_rng(3),
                                dtype=np.float64, output_bias=False)
    assert list(unit_layer.params) == ["layer0.W"]
    q, keys = batch()
    rows = check_layer(unit_layer, [q, keys, MASK], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


def test_fully_padded_batch_clears_inner_grads():
    unit_layer = make_unit("concat", "dice")
    q, keys = batch()
    unit_layer.forward(q, keys, MASK)
    unit_layer.backward(np.ones(MASK.shape))
    empty = np.zeros_like(MASK)
    unit_layer.forward(q, keys, empty)
    unit_layer.backward(np.ones(MASK.shape))
    for name, layer in unit_layer.named_layers():
        for key, grad in layer.grads.items():
            assert not np.any(grad), f"{name}.{key} kept a gradient from the earlier batch"


@pytest.mark.parametrize("unit", ["outer", "concat"])
@pytest.mark.parametrize("materialized", [False, True])
def test_fortran_order_keys_same_result(unit, materialized):
    # The packed rows are found through a flat index into the B * T positions,
    # which must not depend on the memory order of the caller's keys.
    q, keys = batch()
    dscores = np.random.default_rng(3).standard_normal(MASK.shape)
    c_layer = make_unit(unit, materialized=materialized)
    f_layer = make_unit(unit, materialized=materialized)

    c_scores = c_layer.forward(q, keys, MASK)
    c_dq, c_dkeys = c_layer.backward(dscores)
    f_scores = f_layer.forward(q, np.asfortranarray(keys), MASK)
    f_dq, f_dkeys = f_layer.backward(dscores)

    np.testing.assert_allclose(f_scores, c_scores, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(f_dq, c_dq, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(f_dkeys, c_dkeys, rtol=1e-13, atol=1e-15)
    assert np.all(f_dkeys[~MASK] == 0.0)
