"""Dense layer: values against a hand computation and a gradient check."""
import numpy as np
import pytest

from tinydin.gradcheck import check_layer
from tinydin.layers.dense import Dense, sum_rows


def test_dense_forward_by_hand():
    layer = Dense(2, 1, rng=np.random.default_rng(0), dtype=np.float64)
    layer.params["W"][:] = [[2.0], [-1.0]]
    layer.params["b"][:] = [0.5]
    out = layer.forward(np.array([[1.0, 3.0], [0.0, 1.0]]))
    assert np.array_equal(out, np.array([[-0.5], [-0.5]]))


def test_dense_gradients_with_leading_dims():
    rng = np.random.default_rng(1)
    layer = Dense(5, 3, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(3)
    rows = check_layer(layer, [rng.standard_normal((2, 4, 5))])
    for row in rows:
        assert row.passed, f"{row.param}: {row.rel_error:.2e}"
    assert [row.param for row in rows] == ["W", "b", "input[0]"]


def test_dense_wrong_width_message():
    layer = Dense(4, 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="width 4"):
        layer.forward(np.zeros((3, 5), np.float32))


def test_dense_keeps_float32():
    layer = Dense(4, 2, rng=np.random.default_rng(0))
    out = layer.forward(np.ones((3, 4), np.float32))
    assert out.dtype == np.float32


def test_dense_without_bias():
    rng = np.random.default_rng(2)
    layer = Dense(3, 2, rng=rng, dtype=np.float64, bias=False)
    assert list(layer.params) == ["W"]
    x = rng.standard_normal((4, 3))
    assert np.array_equal(layer.forward(x), x @ layer.params["W"])
    rows = check_layer(layer, [x])
    assert [row.param for row in rows] == ["W", "input[0]"]
    assert all(row.passed for row in rows)


def test_sum_rows_hand_calculation():
    rows = np.array([[1.0, -2.0], [3.0, 0.5], [-4.0, 1.5]], dtype=np.float32)
    sums = sum_rows(rows)
    assert sums.dtype == np.float32
    np.testing.assert_array_equal(sums, [0.0, 0.0])


def test_sum_rows_no_rows():
    np.testing.assert_array_equal(sum_rows(np.zeros((0, 3))), [0.0, 0.0, 0.0])


def test_dense_single_output_gradients():
    # One output unit takes the broadcast-product branch of backward.
    rng = np.random.default_rng(3)
    layer = Dense(4, 1, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(1)
    x = rng.standard_normal((3, 5, 4))
    rows = check_layer(layer, [x])
    for row in rows:
        assert row.passed, f"{row.param}: {row.rel_error:.2e}"
    dout = rng.standard_normal((3, 5, 1))
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(dout), dout @ layer.params["W"].T)
