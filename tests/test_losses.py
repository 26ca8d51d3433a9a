import warnings

import numpy as np
import pytest

from tinydin.gradcheck import check_layer, format_rows
from tinydin.layers.losses import BCEWithLogits, stable_sigmoid


def test_gradcheck_bce():
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.standard_normal(7)
    labels = np.array([1, 0, 0, 1, 1, 0, 1])
    rows = check_layer(BCEWithLogits(), [logits, labels], wrt=(0,))
    assert all(row.passed for row in rows), format_rows(rows)


def test_hand_calculation():
    # sigmoid(0) = 1/2 and sigmoid(log 3) = 3/4, so the losses are log 2 and
    # -log(1 - 3/4) = log 4, and their mean is 1.5 log 2.
    loss = BCEWithLogits().forward(np.array([0.0, np.log(3.0)]), np.array([1, 0]))
    assert loss.shape == ()
    np.testing.assert_allclose(loss, 1.5 * np.log(2.0), rtol=1e-15)


def test_matches_naive_formula():
    logits = np.linspace(-6.0, 6.0, 9)
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1])
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    expected = np.mean(-labels * np.log(probabilities) - (1 - labels) * np.log(1.0 - probabilities))
    np.testing.assert_allclose(BCEWithLogits().forward(logits, labels), expected, rtol=1e-13)


def test_backward_hand_calculation():
    loss = BCEWithLogits()
    loss.forward(np.array([0.0, np.log(3.0)]), np.array([1, 0]))
    # (sigmoid(z) - y) / B = [(1/2 - 1) / 2, (3/4 - 0) / 2]
    np.testing.assert_allclose(loss.backward(), [-0.25, 0.375], rtol=1e-15)


def test_backward_scales_by_dloss():
    loss = BCEWithLogits()
    loss.forward(np.array([0.0, np.log(3.0)]), np.array([1, 0]))
    np.testing.assert_allclose(loss.backward(np.array(2.0)), [-0.5, 0.75], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_exact_without_warnings(dtype):
    logits = np.array([1000.0, -1000.0, 1000.0, -1000.0], dtype=dtype)
    labels = np.array([1, 0, 0, 1])
    loss = BCEWithLogits()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            value = loss.forward(logits, labels)
            dlogits = loss.backward()
    # Losses 0, 0, 1000, 1000: the right answers cost nothing, the wrong ones |z|.
    assert value == 500.0
    np.testing.assert_array_equal(dlogits, [0.0, 0.0, 0.25, -0.25])
    assert dlogits.dtype == dtype


def test_sigmoid_matches_definition():
    x = np.linspace(-30.0, 30.0, 13)
    np.testing.assert_allclose(stable_sigmoid(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-15)


def test_sigmoid_extremes_without_warnings():
    with np.errstate(all="raise"):
        values = stable_sigmoid(np.array([-1000.0, 1000.0, -800.0]))
    np.testing.assert_array_equal(values, [0.0, 1.0, 0.0])


def test_label_not_binary_rejected():
    with pytest.raises(ValueError, match="label 2 at position 1 is not 0 or 1"):
        BCEWithLogits().forward(np.array([0.1, 0.2]), np.array([1, 2]))


def test_label_length_mismatch_rejected():
    with pytest.raises(ValueError, match=r"labels have shape \(3,\) but logits have \(2,\)"):
        BCEWithLogits().forward(np.array([0.1, 0.2]), np.array([1, 0, 1]))


def test_nan_logit_rejected():
    with pytest.raises(ValueError, match="logit nan at position 0 is not finite"):
        BCEWithLogits().forward(np.array([np.nan, 0.2]), np.array([1, 0]))


def test_column_logits_rejected():
    with pytest.raises(ValueError, match=r"expected a non-empty float array of shape \(B,\)"):
        BCEWithLogits().forward(np.zeros((2, 1)), np.zeros((2, 1)))


def test_backward_leaves_cache_unchanged():
    loss = BCEWithLogits()
    loss.forward(np.array([0.5, -2.0]), np.array([1, 0]))
    cache_before = [item.copy() for item in loss._cache]
    loss.backward()
    for item, before in zip(loss._cache, cache_before):
        np.testing.assert_array_equal(item, before)
