"""Sigmoid, PReLU and Dice: values by hand, gradient checks, and Dice's batch rules."""
import copy
import warnings

import numpy as np
import pytest

from tinydin.gradcheck import check_layer
from tinydin.layers.activations import Dice, PReLU, Sigmoid, make_activation, sigmoid, sigmoid_tanh


def random_dice(units, rng, training_stats=True):
    dice = Dice(units, np.float64)
    dice.params["alpha"][:] = rng.uniform(-0.5, 0.5, units)
    dice.running_mean[:] = rng.standard_normal(units)
    dice.running_var[:] = rng.uniform(0.5, 2.0, units)
    return dice


def assert_all_pass(rows):
    for row in rows:
        assert row.passed, f"{row.check} {row.param}: rel_error {row.rel_error:.2e}"


def test_sigmoid_extreme_inputs_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = sigmoid(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]))
    assert values[0] == 0.0
    assert values[2] == 0.5
    assert values[4] == 1.0
    assert np.isclose(values[1], 1.0 / (1.0 + np.exp(30.0)))


def test_prelu_values_by_hand():
    prelu = PReLU(2, np.float64)
    prelu.params["alpha"][:] = [0.1, -0.5]
    out = prelu.forward(np.array([[2.0, -4.0], [-3.0, 1.0]]))
    assert np.allclose(out, np.array([[2.0, 2.0], [-0.3, 1.0]]), rtol=0, atol=1e-15)


def test_dice_values_by_hand():
    # Two rows, one unit: mean 0, variance 1, so z = s up to eps.
    dice = Dice(1, np.float64)
    dice.params["alpha"][:] = 0.2
    x = np.array([[1.0], [-1.0]])
    out = dice.forward(x)
    p = 1.0 / (1.0 + np.exp(-1.0 / np.sqrt(1.0 + 1e-8)))
    assert np.isclose(out[0, 0], 1.0 * (0.2 + 0.8 * p), rtol=1e-14)
    assert np.isclose(out[1, 0], -1.0 * (0.2 + 0.8 * (1.0 - p)), rtol=1e-14)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_dice_gradients(training, masked):
    rng = np.random.default_rng(1)
    dice = random_dice(5, rng)
    x = rng.standard_normal((4, 3, 5))
    mask = rng.random((4, 3)) < 0.6 if masked else None
    assert_all_pass(check_layer(dice, [x, mask], training=training))


def test_dice_single_valid_row_gradient():
    rng = np.random.default_rng(2)
    dice = random_dice(3, rng)
    x = rng.standard_normal((4, 3))
    mask = np.array([False, True, False, False])
    out = dice.forward(x, mask)
    # One row: variance 0, z = 0, p = 0.5 exactly.
    assert np.allclose(out[1], x[1] * (dice.params["alpha"] + 0.5 * (1 - dice.params["alpha"])))
    assert_all_pass(check_layer(dice, [x, mask]))


def test_prelu_and_sigmoid_gradients():
    rng = np.random.default_rng(3)
    prelu = PReLU(4, np.float64)
    prelu.params["alpha"][:] = rng.uniform(-0.5, 0.5, 4)
    x = rng.standard_normal((6, 4))
    x[np.abs(x) < 0.01] = 0.5  # stay clear of the kink at 0 by more than eps
    assert_all_pass(check_layer(prelu, [x]))
    assert_all_pass(check_layer(Sigmoid(), [rng.standard_normal((6, 4))]))


def test_dice_batch_shift_leaves_p_unchanged():
    # In training p depends on (s - mean) / std only, so adding a constant to the
    # whole batch shifts every output by p * shift (alpha = 0 here).
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 3))
    dice = Dice(3, np.float64)
    dice.forward(x)
    z_before = dice.cache[1].copy()
    dice.forward(x + 7.5)
    z_after = dice.cache[1]
    assert np.allclose(z_before, z_after, atol=1e-12)


def test_dice_inference_row_alone_matches_batch():
    rng = np.random.default_rng(5)
    dice = random_dice(4, rng)
    batch = rng.standard_normal((10, 4))
    in_batch = dice.forward(batch, training=False)
    alone = dice.forward(batch[3:4], training=False)
    assert np.array_equal(alone[0], in_batch[3])


def test_dice_running_stats_only_in_training():
    rng = np.random.default_rng(6)
    dice = Dice(2, np.float64, momentum=0.9)
    x = rng.standard_normal((5, 2))
    dice.forward(x, training=False)
    assert np.array_equal(dice.running_mean, np.zeros(2))
    assert np.array_equal(dice.running_var, np.ones(2))
    dice.forward(x, training=True)
    assert np.allclose(dice.running_mean, 0.1 * x.mean(axis=0))
    assert np.allclose(dice.running_var, 0.9 + 0.1 * x.var(axis=0))


def test_dice_padding_changes_nothing():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3))
    mask = np.array([True, True, False, True, False, True])
    dout = rng.standard_normal((6, 3))

    first = random_dice(3, np.random.default_rng(8))
    out1 = first.forward(x, mask)
    dx1 = first.backward(dout)

    second = random_dice(3, np.random.default_rng(8))
    x2 = x.copy()
    x2[~mask] = rng.standard_normal((2, 3)) * 100.0  # garbage in padded rows
    out2 = second.forward(x2, mask)
    dx2 = second.backward(dout)

    assert np.array_equal(out1, out2)
    assert np.array_equal(dx1, dx2)
    assert np.array_equal(first.grads["alpha"], second.grads["alpha"])
    assert np.array_equal(out2[~mask], np.zeros((2, 3)))
    assert np.array_equal(dx2[~mask], np.zeros((2, 3)))


def test_dice_fully_masked_is_finite():
    dice = Dice(3, np.float64)
    x = np.ones((4, 3))
    out = dice.forward(x, np.zeros(4, dtype=bool))
    dx = dice.backward(np.ones((4, 3)))
    assert np.array_equal(out, np.zeros((4, 3)))
    assert np.array_equal(dx, np.zeros((4, 3)))
    assert np.array_equal(dice.running_mean, np.zeros(3))


def test_dice_alpha_receives_gradient():
    rng = np.random.default_rng(9)
    dice = Dice(3, np.float64)
    dice.forward(rng.standard_normal((6, 3)))
    dice.backward(rng.standard_normal((6, 3)))
    assert np.all(dice.grads["alpha"] != 0.0)


@pytest.mark.parametrize("name", ["dice", "prelu", "sigmoid"])
def test_backward_mutates_neither_dout_nor_cache(name):
    rng = np.random.default_rng(10)
    layer = make_activation(name, 4, np.float64)
    layer.forward(rng.standard_normal((5, 4)), rng.random(5) < 0.7)
    cache = copy.deepcopy(layer.cache)
    dout = rng.standard_normal((5, 4))
    dout_before = dout.copy()
    layer.backward(dout)
    assert np.array_equal(dout, dout_before)
    for saved, now in zip(cache, layer.cache):
        assert np.array_equal(np.asarray(saved), np.asarray(now))


def test_make_activation_unknown_name():
    with pytest.raises(ValueError, match="'relu' is not known"):
        make_activation("relu", 3)


def test_dice_mask_shape_mismatch():
    with pytest.raises(ValueError, match="mask has shape"):
        Dice(3).forward(np.zeros((4, 3), np.float32), np.ones(5, dtype=bool))


def test_sigmoid_no_underflow_under_errstate_raise():
    with np.errstate(all="raise"):
        for dtype in (np.float32, np.float64):
            values = sigmoid(np.array([-1000.0, 1000.0], dtype=dtype))
            assert values[0] == 0.0
            assert values[1] == 1.0


def test_sigmoid_subnormal_input_no_warning():
    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).smallest_subnormal
        x = np.array([-3 * tiny, tiny, 0.0], dtype=dtype)
        with np.errstate(all="raise"):
            exact = sigmoid(x)
            fast = sigmoid_tanh(x)
        assert np.all(exact == 0.5)
        assert np.all(fast == 0.5)


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 2.3e-16), (np.float32, 1.2e-7)])
def test_sigmoid_tanh_matches_definition(dtype, tolerance):
    x = np.linspace(-40.0, 40.0, 2001).astype(dtype)
    # The reference runs in float64 from the same rounded inputs.
    expected = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    values = sigmoid_tanh(x)
    assert values.dtype == dtype
    assert np.max(np.abs(values - expected)) <= tolerance


def test_sigmoid_tanh_extremes_no_warning():
    for dtype in (np.float32, np.float64):
        with np.errstate(all="raise"):
            values = sigmoid_tanh(np.array([-np.finfo(dtype).max, -1000.0, 1000.0, np.finfo(dtype).max], dtype=dtype))
        np.testing.assert_array_equal(values, [0.0, 0.0, 1.0, 1.0])


def test_sigmoid_tanh_integer_input():
    values = sigmoid_tanh(np.array([0, 2]))
    assert values.dtype == np.float64
    assert values[0] == 0.5
    assert np.isclose(values[1], 1.0 / (1.0 + np.exp(-2.0)), rtol=0, atol=2.3e-16)


@pytest.mark.parametrize("training", [True, False])
def test_dice_unmasked_equals_all_true_mask(training):
    # Without a mask Dice skips the row selections, and the numbers must not change.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((7, 4))
    dout = rng.standard_normal((7, 4))
    unmasked = random_dice(4, np.random.default_rng(12))
    masked = random_dice(4, np.random.default_rng(12))

    out_unmasked = unmasked.forward(x, training=training)
    out_masked = masked.forward(x, np.ones(7, dtype=bool), training=training)
    dx_unmasked = unmasked.backward(dout)
    dx_masked = masked.backward(dout)

    np.testing.assert_allclose(out_unmasked, out_masked, rtol=1e-14, atol=0)
    np.testing.assert_allclose(dx_unmasked, dx_masked, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(unmasked.grads["alpha"], masked.grads["alpha"], rtol=1e-13, atol=0)
    np.testing.assert_allclose(unmasked.running_mean, masked.running_mean, rtol=1e-14, atol=0)
    np.testing.assert_allclose(unmasked.running_var, masked.running_var, rtol=1e-14, atol=0)


def test_dice_float32_stays_float32():
    rng = np.random.default_rng(13)
    dice = Dice(3, np.float32)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    out = dice.forward(x)
    dx = dice.backward(rng.standard_normal((5, 3)).astype(np.float32))
    assert out.dtype == np.float32
    assert dx.dtype == np.float32
    assert dice.grads["alpha"].dtype == np.float32
    assert dice.running_var.dtype == np.float32
