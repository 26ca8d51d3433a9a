import numpy as np
import pytest

from tinydin.gradcheck import check_layer, format_rows
from tinydin.layers.base import SparseGrad
from tinydin.layers.embedding import Embedding, ItemEmbedding, stable_argsort_ids, sum_runs


def one_hot(ids, num_rows):
    """(..., num_rows) indicator rows: an independent definition of the lookup."""
    return (np.asarray(ids)[..., None] == np.arange(num_rows)).astype(np.float64)


def make_table(num_ids=6, dim=3, seed=0):
    table = Embedding(num_ids, dim, rng=np.random.default_rng(seed), dtype=np.float64, name="goods_id", scale=1.0)
    # A nonzero padding row, so that any leak from row 0 shows up.
    table.params["weight"][0] = np.arange(1.0, dim + 1.0) * 7.0
    return table


IDS = np.array([[3, 1, 3, 0], [6, 3, 0, 0]])  # repeated id 3, padding 0


def test_forward_equals_one_hot_matmul():
    table = make_table()
    weight = table.params["weight"]
    # Padding contributes nothing, so the one-hot column of id 0 is dropped.
    expected = one_hot(IDS, 7)[..., 1:] @ weight[1:]

    out = table.forward(IDS)

    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out, expected)


def test_forward_padding_is_zero():
    table = make_table()
    out = table.forward(IDS)
    assert np.all(out[IDS == 0] == 0.0)


def test_backward_equals_one_hot_transpose():
    table = make_table()
    table.forward(IDS)
    dout = np.random.default_rng(1).standard_normal((2, 4, 3))
    expected = one_hot(IDS, 7).reshape(-1, 7).T @ dout.reshape(-1, 3)
    expected[0] = 0.0  # padding receives nothing

    table.backward(dout)
    grad = table.grads["weight"]

    assert isinstance(grad, SparseGrad)
    np.testing.assert_array_equal(grad.ids, [1, 3, 6])
    assert grad.rows.shape == (3, 3)
    np.testing.assert_allclose(grad.to_dense(7), expected, rtol=0, atol=1e-14)


def test_backward_keeps_ids_with_zero_rows():
    table = make_table()
    table.forward(np.array([2, 4]))
    table.backward(np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(table.grads["weight"].ids, [2, 4])
    np.testing.assert_array_equal(table.grads["weight"].rows[0], [0.0, 0.0, 0.0])


def test_backward_all_padding_is_empty():
    table = make_table()
    table.forward(np.zeros((2, 3), dtype=np.int64))
    table.backward(np.ones((2, 3, 3)))
    assert table.grads["weight"].ids.size == 0
    assert table.grads["weight"].rows.shape == (0, 3)


def test_backward_mutates_neither_dout_nor_cache():
    table = make_table()
    ids = IDS.copy()
    table.forward(ids)
    cache_before = table._ids.copy()
    dout = np.random.default_rng(2).standard_normal((2, 4, 3))
    dout_before = dout.copy()

    table.backward(dout)

    np.testing.assert_array_equal(dout, dout_before)
    np.testing.assert_array_equal(table._ids, cache_before)


def test_cache_survives_caller_reusing_ids():
    table = make_table()
    ids = IDS.copy()
    table.forward(ids)
    ids[:] = 1  # the caller refills its buffer before backward
    table.backward(np.ones((2, 4, 3)))
    np.testing.assert_array_equal(table.grads["weight"].ids, [1, 3, 6])


def test_gradcheck_table():
    table = make_table()
    rows = check_layer(table, [IDS], wrt=())
    assert all(row.passed for row in rows), format_rows(rows)


def test_id_above_table_names_field():
    table = Embedding(63001, 4, rng=np.random.default_rng(0), name="goods_id")
    message = "id 70001 in field 'goods_id' is outside the table (1..63001); ids start at 1 and 0 is padding"
    with pytest.raises(ValueError) as error:
        table.forward(np.array([[5, 70001]]))
    assert str(error.value) == message


def test_negative_id_rejected():
    table = make_table()
    with pytest.raises(ValueError, match=r"id -1 in field 'goods_id' is outside the table \(1..6\)"):
        table.forward(np.array([2, -1]))


def test_float_ids_rejected():
    table = make_table()
    with pytest.raises(ValueError, match="expected an integer dtype"):
        table.forward(np.array([1.0, 2.0]))


def test_backward_wrong_shape_rejected():
    table = make_table()
    table.forward(IDS)
    with pytest.raises(ValueError, match=r"expected \(2, 4, 3\)"):
        table.backward(np.ones((2, 4, 2)))


def test_forward_padding_zero_with_zero_row():
    # Row 0 as initialized (all zero) takes the path without the masked write.
    table = Embedding(6, 3, rng=np.random.default_rng(0), dtype=np.float64)
    out = table.forward(IDS)
    assert np.all(out[IDS == 0] == 0.0)
    np.testing.assert_array_equal(out[IDS != 0], table.params["weight"][IDS[IDS != 0]])


def test_forward_padding_zero_after_row_change():
    table = Embedding(6, 3, rng=np.random.default_rng(0), dtype=np.float64)
    table.forward(IDS)
    table.params["weight"][0, 1] = 1e-3  # a finite-difference nudge of row 0
    out = table.forward(IDS)
    assert np.all(out[IDS == 0] == 0.0)


def test_backward_ids_above_65535():
    # Ids of 16 bits or more take extra passes of the radix sort.
    table = Embedding(70000, 2, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.array([69999, 3, 0, 65536, 69999, 65535, 3])
    dout = np.random.default_rng(1).standard_normal((7, 2))
    table.forward(ids)
    table.backward(dout)
    grad = table.grads["weight"]
    np.testing.assert_array_equal(grad.ids, [3, 65535, 65536, 69999])
    np.testing.assert_allclose(grad.rows[0], dout[1] + dout[6], rtol=1e-15)
    np.testing.assert_array_equal(grad.rows[1], dout[5])
    np.testing.assert_array_equal(grad.rows[2], dout[3])
    np.testing.assert_allclose(grad.rows[3], dout[0] + dout[4], rtol=1e-15)


@pytest.mark.parametrize("high", [5, 70000, 2**40])
def test_stable_argsort_ids_matches_numpy(high):
    ids = np.random.default_rng(4).integers(0, high, 500)
    np.testing.assert_array_equal(stable_argsort_ids(ids), np.argsort(ids, kind="stable"))


@pytest.mark.parametrize("lengths", [[1, 1, 3, 1, 1, 1], [2, 3, 1, 4], [1, 1, 1], [5]])
def test_sum_runs_equals_reduceat(lengths):
    # The first case has mostly runs of one row, the second mostly long runs.
    rows = np.random.default_rng(5).standard_normal((sum(lengths), 3))
    starts = np.cumsum(lengths) - lengths
    expected = np.add.reduceat(rows, starts, axis=0)
    np.testing.assert_array_equal(sum_runs(rows, starts, np.array(lengths)), expected)


def test_init_padding_row_zero():
    table = Embedding(10, 4, rng=np.random.default_rng(0))
    assert table.params["weight"].shape == (11, 4)
    assert table.params["weight"].dtype == np.float32
    assert np.all(table.params["weight"][0] == 0.0)


def make_items(seed=0):
    items = ItemEmbedding(("goods_id", "cate_id"), (6, 3), (3, 2), rng=np.random.default_rng(seed), dtype=np.float64, scale=1.0)
    items.params["goods_id.weight"][0] = 9.0
    items.params["cate_id.weight"][0] = -9.0
    return items


ITEM_IDS = np.array([[[3, 1], [5, 2], [0, 0]], [[3, 3], [0, 0], [0, 0]]])  # (B=2, T=3, F=2)


def test_items_concatenate_fields_in_order():
    items = make_items()
    goods = items.params["goods_id.weight"]
    cates = items.params["cate_id.weight"]
    expected = np.concatenate(
        [one_hot(ITEM_IDS[..., 0], 7)[..., 1:] @ goods[1:], one_hot(ITEM_IDS[..., 1], 4)[..., 1:] @ cates[1:]],
        axis=-1,
    )

    out = items.forward(ITEM_IDS)

    assert out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, expected)


def test_items_params_share_tables():
    items = make_items()
    assert items.params["goods_id.weight"] is items.tables["goods_id"].params["weight"]
    assert items.params["cate_id.weight"] is items.tables["cate_id"].params["weight"]


def test_items_gradcheck():
    items = make_items()
    rows = check_layer(items, [ITEM_IDS], wrt=())
    assert all(row.passed for row in rows), format_rows(rows)


def test_items_many_equals_separate_lookups():
    items = make_items()
    candidate = np.array([[4, 2], [3, 1]])  # (B, F)
    expected_q = items.forward(candidate)
    expected_keys = items.forward(ITEM_IDS)

    q, keys = items.forward_many(candidate, ITEM_IDS)

    np.testing.assert_array_equal(q, expected_q)
    np.testing.assert_array_equal(keys, expected_keys)


def test_items_many_sums_both_gradients():
    items = make_items()
    candidate = np.array([[4, 2], [3, 1]])
    rng = np.random.default_rng(3)
    dq = rng.standard_normal((2, 5))
    dkeys = rng.standard_normal((2, 3, 5))
    # Goods ids: candidate ids and history ids both feed rows of the goods table.
    expected = one_hot(candidate[:, 0], 7).T @ dq[:, :3] + one_hot(ITEM_IDS[..., 0], 7).reshape(-1, 7).T @ dkeys[..., :3].reshape(-1, 3)
    expected[0] = 0.0

    items.forward_many(candidate, ITEM_IDS)
    items.backward_many(dq, dkeys)

    np.testing.assert_allclose(items.grads["goods_id.weight"].to_dense(7), expected, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(items.grads["goods_id.weight"].ids, [3, 4, 5])


def test_items_bias_table():
    bias = ItemEmbedding(("goods_id",), (6,), (1,), rng=np.random.default_rng(0), dtype=np.float64)
    out = bias.forward(np.array([[2], [0]]))
    assert out.shape == (2, 1)
    assert out[0, 0] == bias.params["goods_id.weight"][2, 0]
    assert out[1, 0] == 0.0


def test_items_wrong_field_count_rejected():
    items = make_items()
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\)"):
        items.forward(np.array([[1, 2, 3]]))


def test_items_error_names_field():
    items = make_items()
    with pytest.raises(ValueError, match=r"id 4 in field 'cate_id' is outside the table \(1..3\)"):
        items.forward(np.array([[1, 4]]))


def test_items_backward_many_count_checked():
    items = make_items()
    items.forward_many(np.array([[1, 1]]), np.array([[[2, 2]]]))
    with pytest.raises(ValueError, match="got 1 gradients"):
        items.backward_many(np.ones((1, 5)))
