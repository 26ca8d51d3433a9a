import warnings

import numpy as np
import pytest

from tinydin.gradcheck import check_layer, format_rows
from tinydin.layers.pooling import (
    MeanPooling,
    SumPooling,
    WeightedSumPooling,
    masked_softmax,
    outer_per_sample,
    zero_nonfinite_padding,
)

# B = 3, T = 4: row 0 full, row 1 with two padded positions, row 2 fully padded.
MASK = np.array([
    [True, True, True, True],
    [True, True, False, False],
    [False, False, False, False],
])


def batch(seed=0, dim=3):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(MASK.shape)
    keys = rng.standard_normal(MASK.shape + (dim,))
    return scores, keys


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_gradcheck_weighted(normalize):
    scores, keys = batch()
    rows = check_layer(WeightedSumPooling(normalize), [scores, keys, MASK], wrt=(0, 1))
    assert all(row.passed for row in rows), format_rows(rows)


def test_none_hand_calculation():
    scores = np.array([[2.0, -1.0, 5.0]])
    keys = np.array([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])
    mask = np.array([[True, True, False]])
    pooled = WeightedSumPooling("none").forward(scores, keys, mask)
    np.testing.assert_array_equal(pooled, [[2.0, -1.0]])


def test_softmax_hand_calculation():
    # exp(0) = 1 and exp(log 3) = 3, so the weights are 1/4 and 3/4.
    scores = np.array([[0.0, np.log(3.0), 50.0]])
    keys = np.array([[[4.0, 0.0], [0.0, 4.0], [9.0, 9.0]]])
    mask = np.array([[True, True, False]])
    pooling = WeightedSumPooling("softmax")

    pooled = pooling.forward(scores, keys, mask)

    np.testing.assert_allclose(pooling.weights, [[0.25, 0.75, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(pooled, [[1.0, 3.0]], rtol=1e-15)


def test_none_keeps_unnormalized_weights():
    scores, keys = batch()
    pooling = WeightedSumPooling("none")
    pooling.forward(scores, keys, MASK)
    np.testing.assert_array_equal(pooling.weights, np.where(MASK, scores, 0.0))


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_empty_row_pools_to_zero(normalize):
    scores, keys = batch()
    pooling = WeightedSumPooling(normalize)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            pooled = pooling.forward(scores, keys, MASK)
            dscores, dkeys = pooling.backward(np.ones((3, 3)))
    assert np.all(pooled[2] == 0.0)
    assert np.all(pooling.weights[2] == 0.0)
    assert np.all(dscores[2] == 0.0)
    assert np.all(dkeys[2] == 0.0)


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_padding_gets_zero_gradient(normalize):
    scores, keys = batch()
    pooling = WeightedSumPooling(normalize)
    pooling.forward(scores, keys, MASK)
    dscores, dkeys = pooling.backward(np.random.default_rng(1).standard_normal((3, 3)))
    assert np.all(dscores[~MASK] == 0.0)
    assert np.all(dkeys[~MASK] == 0.0)


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_appended_padding_changes_nothing(normalize):
    scores, keys = batch()
    rng = np.random.default_rng(4)
    dpooled = rng.standard_normal((3, 3))
    # Two more positions, padded everywhere, with arbitrary scores and keys.
    long_scores = np.concatenate([scores, 100.0 * rng.standard_normal((3, 2))], axis=1)
    long_keys = np.concatenate([keys, 100.0 * rng.standard_normal((3, 2, 3))], axis=1)
    long_mask = np.concatenate([MASK, np.zeros((3, 2), dtype=bool)], axis=1)

    short = WeightedSumPooling(normalize)
    pooled = short.forward(scores, keys, MASK)
    dscores, dkeys = short.backward(dpooled)
    long = WeightedSumPooling(normalize)
    long_pooled = long.forward(long_scores, long_keys, long_mask)
    long_dscores, long_dkeys = long.backward(dpooled)

    np.testing.assert_allclose(long_pooled, pooled, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(long_dscores[:, :4], dscores, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(long_dkeys[:, :4], dkeys, rtol=1e-14, atol=1e-15)
    assert np.all(long_dscores[:, 4:] == 0.0)
    assert np.all(long_dkeys[:, 4:] == 0.0)


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_nonfinite_padding_does_not_leak(normalize):
    scores, keys = batch()
    scores[~MASK] = np.nan
    keys[~MASK] = np.inf
    pooling = WeightedSumPooling(normalize)
    with np.errstate(all="raise"):
        pooled = pooling.forward(scores, keys, MASK)
        dscores, dkeys = pooling.backward(np.ones((3, 3)))
    assert np.all(np.isfinite(pooled))
    assert np.all(np.isfinite(dscores))
    assert np.all(np.isfinite(dkeys))


def test_nan_valid_score_rejected():
    scores, keys = batch()
    scores[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf at valid history positions"):
        WeightedSumPooling().forward(scores, keys, MASK)


def test_softmax_large_scores_stable():
    scores = np.array([[1000.0, 1000.0 + np.log(3.0), -1000.0]])
    mask = np.array([[True, True, False]])
    with np.errstate(all="raise"):
        weights = masked_softmax(scores, mask)
    np.testing.assert_allclose(weights, [[0.25, 0.75, 0.0]], rtol=1e-12)


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_backward_mutates_neither_dout_nor_cache(normalize):
    scores, keys = batch()
    pooling = WeightedSumPooling(normalize)
    pooling.forward(scores, keys, MASK)
    cache_before = [np.copy(item) for item in pooling._cache]
    dpooled = np.random.default_rng(5).standard_normal((3, 3))
    dpooled_before = dpooled.copy()

    pooling.backward(dpooled)

    np.testing.assert_array_equal(dpooled, dpooled_before)
    for item, before in zip(pooling._cache, cache_before):
        np.testing.assert_array_equal(item, before)


def test_int_mask_rejected():
    scores, keys = batch()
    with pytest.raises(ValueError, match="expected bool"):
        WeightedSumPooling().forward(scores, keys, MASK.astype(int))


def test_unknown_normalize_rejected():
    with pytest.raises(ValueError, match="normalize='l1' is not supported"):
        WeightedSumPooling("l1")


def test_sum_hand_calculation():
    keys = np.array([[[1.0, 2.0], [3.0, 4.0], [50.0, 60.0]], [[7.0, 8.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = np.array([[True, True, False], [False, False, False]])
    pooled = SumPooling().forward(keys, mask)
    np.testing.assert_array_equal(pooled, [[4.0, 6.0], [0.0, 0.0]])


def test_mean_hand_calculation():
    keys = np.array([[[1.0, 2.0], [3.0, 4.0], [50.0, 60.0]], [[7.0, 8.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = np.array([[True, True, False], [False, False, False]])
    pooled = MeanPooling().forward(keys, mask)
    np.testing.assert_array_equal(pooled, [[2.0, 3.0], [0.0, 0.0]])


@pytest.mark.parametrize("pooling_class", [SumPooling, MeanPooling])
def test_gradcheck_sum_and_mean(pooling_class):
    _, keys = batch()
    rows = check_layer(pooling_class(), [keys, MASK], wrt=(0,))
    assert all(row.passed for row in rows), format_rows(rows)


@pytest.mark.parametrize("pooling_class", [SumPooling, MeanPooling])
def test_sum_and_mean_padding_gradient_zero(pooling_class):
    _, keys = batch()
    pooling = pooling_class()
    pooling.forward(keys, MASK)
    dkeys = pooling.backward(np.random.default_rng(6).standard_normal((3, 3)))
    assert np.all(dkeys[~MASK] == 0.0)


def test_zero_nonfinite_padding_keeps_finite_keys():
    _, keys = batch()
    assert zero_nonfinite_padding(keys, MASK) is keys


def test_zero_nonfinite_padding_zeroes_padding():
    _, keys = batch()
    keys[1, 3] = np.inf
    cleaned = zero_nonfinite_padding(keys, MASK)
    assert np.all(cleaned[~MASK] == 0.0)
    np.testing.assert_array_equal(cleaned[MASK], keys[MASK])


def test_outer_per_sample_hand_calculation():
    weights = np.array([[2.0, 0.0], [-1.0, 3.0]])
    vectors = np.array([[1.0, 4.0], [5.0, -2.0]])
    expected = np.array([[[2.0, 8.0], [0.0, 0.0]], [[-5.0, 2.0], [15.0, -6.0]]])
    np.testing.assert_array_equal(outer_per_sample(weights, vectors), expected)


@pytest.mark.parametrize("pooling_class", [SumPooling, MeanPooling])
def test_sum_and_mean_nonfinite_padding_does_not_leak(pooling_class):
    _, keys = batch()
    keys[~MASK] = np.inf
    with np.errstate(all="raise"):
        pooled = pooling_class().forward(keys, MASK)
    assert np.all(np.isfinite(pooled))
    assert np.all(pooled[2] == 0.0)
