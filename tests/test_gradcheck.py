"""The public gradient checker: it must pass a right backward and catch wrong ones."""
import numpy as np
import pytest

from tinydin.gradcheck import check_layer, format_rows, numerical_gradient, rel_error
from tinydin.layers.base import Layer


class Square(Layer):
    """out = w * x^2, with a switch that plants a bug in backward."""

    def __init__(self, bug=None):
        super().__init__()
        self.params["w"] = np.array([1.5, -0.5, 2.0])
        self.bug = bug

    def forward(self, x, training=True):
        self.cache = x
        return self.params["w"] * x**2

    def backward(self, dout):
        x = self.cache
        self.grads["w"] = dout * x**2
        if self.bug == "factor":
            return dout * self.params["w"] * x  # forgot the 2
        if self.bug == "mutate":
            dout *= 1.0
            dout[0] += 1.0
        return 2 * dout * self.params["w"] * x


def test_rel_error_by_hand():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    # max|a - n| = 0.5, max(|a| + |n|) = 3.5
    assert np.isclose(rel_error(np.array([1.0, 2.0]), np.array([1.0, 1.5])), 0.5 / 3.5)


def test_numerical_gradient_restores_array():
    x = np.array([0.3, -1.2])
    before = x.copy()
    grad = numerical_gradient(lambda: float(np.sum(x**3)), x)
    assert np.array_equal(x, before)
    assert np.allclose(grad, 3 * before**2, atol=1e-8)


def test_check_layer_passes_correct_backward():
    rows = check_layer(Square(), [np.array([0.7, -1.1, 0.4])])
    assert all(row.passed for row in rows)
    assert max(row.rel_error for row in rows) < 1e-9


def test_check_layer_catches_wrong_factor():
    rows = check_layer(Square(bug="factor"), [np.array([0.7, -1.1, 0.4])])
    input_row = [row for row in rows if row.param == "input[0]"][0]
    assert not input_row.passed
    assert input_row.rel_error > 0.1


def test_check_layer_catches_mutated_upstream():
    with pytest.raises(AssertionError, match="upstream"):
        check_layer(Square(bug="mutate"), [np.array([0.7, -1.1, 0.4])])


def test_numerical_gradient_rejects_float32():
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: float(x.sum()), x)


def test_format_rows_has_header_and_rows():
    rows = check_layer(Square(), [np.array([0.7, -1.1, 0.4])])
    lines = format_rows(rows).splitlines()
    assert lines[0].split() == ["check", "param", "shape", "rel_error", "max_abs_diff", "passed"]
    assert len(lines) == 3
