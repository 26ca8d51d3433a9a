"""Tests of tinydin.optim with hand-computed updates on a tiny fake model."""
import math
import tracemalloc

import numpy as np
import pytest

from tinydin.layers.base import SparseGrad
from tinydin.optim import SGD, ConstantLR, StepDecay


class FakeLayer:
    def __init__(self, params, grads=None):
        self.params = params
        self.grads = grads if grads is not None else {}


class FakeModel:
    def __init__(self, **layers):
        self.layers = layers

    def named_layers(self):
        return iter(self.layers.items())


def table_model(dtype=np.float64, row0=(0.0, 0.0)):
    """A (V + 1, D) = (6, 2) table whose batch used ids 2, 4, 2.

    The batch gradient rows for id 2 were [0.1, 0.1] and [0.1, 0.3], so the
    summed row is [0.2, 0.4]; id 4 got [-0.2, 0.0]. The SparseGrad lists each
    id once, as the embedding layer reports it.
    """
    weight = np.array(
        [
            row0,
            [2.0, -4.0],
            [1.0, -2.0],
            [6.0, 8.0],
            [0.5, 3.0],
            [-1.0, 1.0],
        ],
        dtype=dtype,
    )
    grad = SparseGrad(np.array([2, 4]), np.array([[0.2, 0.4], [-0.2, 0.0]], dtype=dtype))
    layer = FakeLayer({"weight": weight}, {"weight": grad})
    return FakeModel(emb=layer), layer


# n_j: id 2 occurs in 4 training samples, id 4 in 2.
COUNTS = np.array([0, 3, 4, 1, 2, 7])


def row_bytes(table, row):
    return table[row].tobytes()


# ---------------------------------------------------------------- mba


def test_mba_hand_rows():
    model, layer = table_model()
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
              occurrence_counts={"emb.weight": COUNTS})

    opt.step()

    weight = layer.params["weight"]
    # Row 2: [1, -2] - 0.1 * ([0.2, 0.4] + 0.5 / 4 * [1, -2]) = [0.9675, -2.015].
    # One decay step although id 2 appeared twice: alpha is an indicator.
    np.testing.assert_allclose(weight[2], [0.9675, -2.015], rtol=0, atol=1e-12)
    # Row 4: [0.5, 3] - 0.1 * ([-0.2, 0] + 0.5 / 2 * [0.5, 3]) = [0.5075, 2.925].
    np.testing.assert_allclose(weight[4], [0.5075, 2.925], rtol=0, atol=1e-12)


@pytest.mark.parametrize("row", [0, 1, 3, 5])
def test_mba_other_rows_bit_identical(row):
    model, layer = table_model(row0=(7.0, -7.0))
    before = layer.params["weight"].copy()
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
              occurrence_counts={"emb.weight": COUNTS})

    opt.step()

    assert row_bytes(layer.params["weight"], row) == row_bytes(before, row)


def test_mba_float32_in_place():
    model, layer = table_model(dtype=np.float32)
    weight = layer.params["weight"]
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
              occurrence_counts={"emb.weight": COUNTS})

    opt.step()

    assert layer.params["weight"] is weight
    assert weight.dtype == np.float32
    np.testing.assert_allclose(weight[2], [0.9675, -2.015], rtol=1e-6)
    np.testing.assert_allclose(weight[4], [0.5075, 2.925], rtol=1e-6)


def test_mba_zero_lambda_needs_no_counts():
    model, layer = table_model()

    SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.0).step()

    np.testing.assert_allclose(layer.params["weight"][2], [0.98, -2.04], rtol=0, atol=1e-12)


def test_mba_missing_counts():
    model, _ = table_model()

    with pytest.raises(ValueError, match=r"needs occurrence_counts.*emb\.weight"):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5)


def test_mba_table_missing_from_counts():
    model, _ = table_model()
    other = FakeLayer({"W": np.ones((2, 2))})
    model.layers["mlp"] = other

    with pytest.raises(ValueError, match=r"no entry for the embedding table\(s\) \['emb\.weight'\]"):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5, occurrence_counts={})


def test_mba_counts_wrong_length():
    model, _ = table_model()

    with pytest.raises(ValueError, match=r"shape \(5,\), but the table has 6 rows"):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
            occurrence_counts={"emb.weight": COUNTS[:5]})


def test_mba_counts_unknown_name():
    model, _ = table_model()

    with pytest.raises(ValueError, match="'emb.W', which is not a parameter"):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
            occurrence_counts={"emb.weight": COUNTS, "emb.W": COUNTS})


def test_mba_counts_negative():
    model, _ = table_model()
    counts = COUNTS.copy()
    counts[3] = -1

    with pytest.raises(ValueError, match="must be finite numbers >= 0"):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
            occurrence_counts={"emb.weight": counts})


def test_mba_zero_count_in_batch():
    model, layer = table_model()
    counts = COUNTS.copy()
    counts[4] = 0
    before = layer.params["weight"].copy()
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
              occurrence_counts={"emb.weight": counts})

    with pytest.raises(ValueError, match="id 4 of embedding table 'emb.weight'.*count is 0"):
        opt.step()

    # The check runs before any update, so row 2 (valid) did not move either.
    assert layer.params["weight"].tobytes() == before.tobytes()


def test_mba_table_found_at_step_without_counts():
    # The table has no gradient at construction, so it is only recognised as a
    # table by its SparseGrad at the first step.
    model, layer = table_model()
    grad = layer.grads.pop("weight")
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5, occurrence_counts={})
    layer.grads["weight"] = grad

    with pytest.raises(ValueError, match="'emb.weight' has no occurrence counts"):
        opt.step()


def test_mba_real_embedding_checked_at_construction():
    embedding = pytest.importorskip("tinydin.layers.embedding")
    layer = embedding.Embedding(5, 2, rng=np.random.default_rng(0), dtype=np.float64)
    model = FakeModel(goods=layer)

    with pytest.raises(ValueError, match=r"\['goods.weight'\]"):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5, occurrence_counts={})


def test_mba_real_embedding_repeated_id():
    embedding = pytest.importorskip("tinydin.layers.embedding")
    layer = embedding.Embedding(5, 2, rng=np.random.default_rng(0), dtype=np.float64)
    model = FakeModel(goods=layer)
    weight = layer.params["weight"]
    weight[2] = [1.0, -2.0]
    weight[4] = [0.5, 3.0]
    before = weight.copy()
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5,
              occurrence_counts={"goods.weight": COUNTS})

    layer.forward(np.array([[2, 4, 2, 0]]))
    layer.backward(np.array([[[0.1, 0.1], [-0.2, 0.0], [0.1, 0.3], [5.0, 5.0]]]))
    opt.step()

    np.testing.assert_allclose(weight[2], [0.9675, -2.015], rtol=0, atol=1e-12)
    np.testing.assert_allclose(weight[4], [0.5075, 2.925], rtol=0, atol=1e-12)
    for row in (0, 1, 3, 5):
        assert row_bytes(weight, row) == row_bytes(before, row)


def test_mba_step_allocates_no_table_copy():
    num_rows, dim = 1_000_001, 8
    table = np.ones((num_rows, dim), dtype=np.float32)  # 32 MB
    ids = np.arange(1, 201) * 4000  # 200 ids spread over the table
    grad = SparseGrad(ids, np.full((ids.size, dim), 0.5, dtype=np.float32))
    layer = FakeLayer({"weight": table}, {"weight": grad})
    counts = np.ones(num_rows, dtype=np.int64)
    opt = SGD(FakeModel(emb=layer), 0.1, embedding_reg="mba", reg_lambda=0.5,
              occurrence_counts={"emb.weight": counts})

    tracemalloc.start()
    opt.step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # A (V + 1,) bool mask alone would be 1 MB and a table copy 32 MB; the
    # batch rows need 200 * 8 * 8 bytes = 12.8 kB per temporary.
    assert peak < 200_000
    assert table[4000, 0] == np.float32(1.0 - 0.1 * (0.5 + 0.5 * 1.0))


def test_l2_step_allocation_is_measured():
    # The same measurement does see vocabulary-sized temporaries: the dense
    # L2 step allocates at least one (V, D) array.
    num_rows, dim = 1_000_001, 8
    table = np.ones((num_rows, dim), dtype=np.float32)
    grad = SparseGrad(np.array([3]), np.full((1, dim), 0.5, dtype=np.float32))
    layer = FakeLayer({"weight": table}, {"weight": grad})
    opt = SGD(FakeModel(emb=layer), 0.1, embedding_reg="l2", reg_lambda=0.5)

    tracemalloc.start()
    opt.step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak > table.nbytes // 2


# ---------------------------------------------------------------- l2 and none


def test_l2_hand_rows():
    model, layer = table_model(row0=(7.0, -7.0))
    opt = SGD(model, 0.1, embedding_reg="l2", reg_lambda=0.5)

    opt.step()

    weight = layer.params["weight"]
    # Batch row 2: [1, -2] - 0.1 * ([0.2, 0.4] + 0.5 * [1, -2]) = [0.93, -1.94].
    np.testing.assert_allclose(weight[2], [0.93, -1.94], rtol=0, atol=1e-12)
    # Batch row 4: [0.5, 3] - 0.1 * ([-0.2, 0] + 0.5 * [0.5, 3]) = [0.495, 2.85].
    np.testing.assert_allclose(weight[4], [0.495, 2.85], rtol=0, atol=1e-12)
    # Rows outside the batch shrink by lr * lambda = 5 %.
    np.testing.assert_allclose(weight[1], [1.9, -3.8], rtol=0, atol=1e-12)
    np.testing.assert_allclose(weight[3], [5.7, 7.6], rtol=0, atol=1e-12)
    np.testing.assert_allclose(weight[5], [-0.95, 0.95], rtol=0, atol=1e-12)


def test_l2_padding_row_untouched():
    model, layer = table_model(row0=(7.0, -7.0))
    before = layer.params["weight"].copy()

    SGD(model, 0.1, embedding_reg="l2", reg_lambda=0.5).step()

    assert row_bytes(layer.params["weight"], 0) == row_bytes(before, 0)


def test_none_applies_gradient_only():
    model, layer = table_model(row0=(7.0, -7.0))
    before = layer.params["weight"].copy()

    # reg_lambda is ignored by "none".
    SGD(model, 0.1, embedding_reg="none", reg_lambda=0.5).step()

    weight = layer.params["weight"]
    np.testing.assert_allclose(weight[2], [0.98, -2.04], rtol=0, atol=1e-12)
    np.testing.assert_allclose(weight[4], [0.52, 3.0], rtol=0, atol=1e-12)
    for row in (0, 1, 3, 5):
        assert row_bytes(weight, row) == row_bytes(before, row)


# ---------------------------------------------------------------- dense parameters


def dense_model():
    layer = FakeLayer(
        {
            "W": np.array([[1.0, 2.0], [3.0, 4.0]]),
            "b": np.array([1.0, -1.0]),
            "alpha": np.array([0.25, 0.25]),
        },
        {
            "W": np.array([[0.1, 0.0], [0.0, -0.1]]),
            "b": np.array([0.2, 0.2]),
            "alpha": np.array([0.0, 0.0]),
        },
    )
    return FakeModel(mlp=layer), layer


def test_weight_decay_on_W():
    model, layer = dense_model()

    SGD(model, 0.5, weight_decay=0.1).step()

    # W - 0.5 * (gW + 0.1 * W)
    expected = np.array([[0.9, 1.9], [2.85, 3.85]])
    np.testing.assert_allclose(layer.params["W"], expected, rtol=0, atol=1e-12)


def test_weight_decay_skips_bias():
    model, layer = dense_model()

    SGD(model, 0.5, weight_decay=0.1).step()

    # b - 0.5 * gb, with no decay term.
    np.testing.assert_allclose(layer.params["b"], [0.9, -1.1], rtol=0, atol=1e-12)


def test_weight_decay_skips_alpha():
    model, layer = dense_model()

    SGD(model, 0.5, weight_decay=0.1).step()

    # Zero gradient and no decay: alpha keeps its value exactly.
    assert layer.params["alpha"].tolist() == [0.25, 0.25]


def test_dense_float32_in_place():
    W = np.ones((2, 2), dtype=np.float32)
    layer = FakeLayer({"W": W}, {"W": np.full((2, 2), 0.5)})

    SGD(FakeModel(mlp=layer), 0.1).step()

    assert layer.params["W"] is W
    assert W.dtype == np.float32
    assert W[0, 0] == np.float32(0.95)


def test_param_without_grad_untouched():
    model, layer = dense_model()
    del layer.grads["b"]

    SGD(model, 0.5, weight_decay=0.1).step()

    assert layer.params["b"].tolist() == [1.0, -1.0]


def test_nan_grad_leaves_all_params():
    model, layer = dense_model()
    layer.grads["b"] = np.array([np.nan, 0.0])
    before_W = layer.params["W"].copy()

    with pytest.raises(FloatingPointError, match="'mlp.b' contains NaN or inf"):
        SGD(model, 0.5).step()

    # W comes first in the layer and was checked valid, but it must not move.
    assert layer.params["W"].tobytes() == before_W.tobytes()


def test_dense_grad_wrong_shape():
    model, layer = dense_model()
    layer.grads["W"] = np.zeros((2, 3))

    with pytest.raises(ValueError, match=r"'mlp.W' has shape \(2, 3\), expected .* \(2, 2\)"):
        SGD(model, 0.5).step()


def test_sparse_grad_with_padding_id():
    model, layer = table_model()
    layer.grads["weight"] = SparseGrad(np.array([0, 2]), np.zeros((2, 2)))

    with pytest.raises(ValueError, match=r"sorted, unique and in 1\.\.5"):
        SGD(model, 0.1, embedding_reg="none").step()


def test_sparse_grad_unsorted_ids():
    model, layer = table_model()
    layer.grads["weight"] = SparseGrad(np.array([4, 2]), np.zeros((2, 2)))

    with pytest.raises(ValueError, match="sorted, unique"):
        SGD(model, 0.1, embedding_reg="none").step()


def test_sparse_grad_row_width():
    model, layer = table_model()
    layer.grads["weight"] = SparseGrad(np.array([2]), np.zeros((1, 3)))

    with pytest.raises(ValueError, match=r"expected ids \(U,\) and rows \(U, 2\)"):
        SGD(model, 0.1, embedding_reg="none").step()


def test_dense_grad_on_table():
    model, layer = table_model()
    opt = SGD(model, 0.1, embedding_reg="none")
    layer.grads["weight"] = np.zeros((6, 2))

    with pytest.raises(ValueError, match="is a dense array; tables take a SparseGrad"):
        opt.step()


def test_shared_array_twice():
    shared = np.ones((2, 2))
    model = FakeModel(a=FakeLayer({"W": shared}), b=FakeLayer({"W": shared}))

    with pytest.raises(ValueError, match="'b.W' is the same array as 'a.W'"):
        SGD(model, 0.1)


# ---------------------------------------------------------------- schedules and arguments


def test_step_decay_values():
    schedule = StepDecay(0.1, 0.5, every_steps=3)

    values = [schedule.lr_at(step) for step in range(8)]

    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]
    assert values == pytest.approx(expected, rel=1e-15)


def test_constant_lr_values():
    schedule = ConstantLR(0.3)

    assert [schedule.lr_at(step) for step in (0, 1, 1000)] == [0.3, 0.3, 0.3]


def test_sgd_lr_follows_schedule():
    W = np.zeros(1)
    layer = FakeLayer({"W": W}, {"W": np.ones(1)})
    opt = SGD(FakeModel(mlp=layer), None, schedule=StepDecay(1.0, 0.5, every_steps=2))

    seen = []
    for _ in range(4):
        seen.append(opt.lr)
        opt.step()

    assert seen == [1.0, 1.0, 0.5, 0.5]
    # Each step used its own rate: 0 - (1 + 1 + 0.5 + 0.5).
    assert W[0] == -3.0
    assert opt.lr == 0.25


def test_sgd_lr_and_schedule_agree():
    layer = FakeLayer({"W": np.zeros(1)})

    opt = SGD(FakeModel(mlp=layer), 0.2, schedule=StepDecay(0.2, 0.5, 10))

    assert opt.lr == 0.2


def test_sgd_lr_and_schedule_differ():
    layer = FakeLayer({"W": np.zeros(1)})

    with pytest.raises(ValueError, match="differs from the schedule"):
        SGD(FakeModel(mlp=layer), 0.1, schedule=StepDecay(0.2, 0.5, 10))


def test_sgd_needs_lr():
    with pytest.raises(ValueError, match="needs a learning rate"):
        SGD(FakeModel(), None)


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf])
def test_sgd_rejects_bad_lr(lr):
    with pytest.raises(ValueError, match="learning rate must be a finite number above 0"):
        SGD(FakeModel(), lr)


def test_sgd_rejects_string_lr():
    with pytest.raises(ValueError, match="must be a positive number"):
        SGD(FakeModel(), "0.1")


def test_unknown_reg_lists_choices():
    with pytest.raises(ValueError, match="'mbA' is not known; choose one of 'mba', 'l2', 'none'"):
        SGD(FakeModel(), 0.1, embedding_reg="mbA")


@pytest.mark.parametrize("name", ["reg_lambda", "weight_decay"])
def test_negative_coefficient(name):
    with pytest.raises(ValueError, match=f"{name} -1.0 is invalid"):
        SGD(FakeModel(), 0.1, **{name: -1.0})


@pytest.mark.parametrize("factor", [0.0, 1.5, -0.5])
def test_step_decay_bad_factor(factor):
    with pytest.raises(ValueError, match="factor"):
        StepDecay(0.1, factor, 10)


@pytest.mark.parametrize("every", [0, 2.5, True])
def test_step_decay_bad_every_steps(every):
    with pytest.raises(ValueError, match="every_steps"):
        StepDecay(0.1, 0.5, every)


def test_model_without_named_layers():
    with pytest.raises(TypeError, match="no named_layers"):
        SGD(object(), 0.1)


def test_mba_rejects_decay_factor_above_one():
    from tinydin.layers.embedding import Embedding

    class OneTable:
        def __init__(self):
            self.table = Embedding(4, 2, rng=np.random.default_rng(0), dtype=np.float64)

        def named_layers(self):
            return [("items", self.table)]

    counts = {"items.weight": np.array([0, 2, 5, 1, 9])}
    # lr * lambda / min n_j = 0.5 * 2.1 / 1 = 1.05
    with pytest.raises(ValueError, match="needs this at most 1"):
        SGD(OneTable(), lr=0.5, embedding_reg="mba", reg_lambda=2.1, occurrence_counts=counts)
    SGD(OneTable(), lr=0.5, embedding_reg="mba", reg_lambda=2.0, occurrence_counts=counts)


def test_mba_float32_matches_float64():
    # The float32 step computes lambda / n_j and the update in float32; it must
    # agree with the float64 step to float32 precision.
    model64, layer64 = table_model(np.float64)
    model32, layer32 = table_model(np.float32)
    for model in (model64, model32):
        SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5, occurrence_counts={"emb.weight": COUNTS}).step()
    np.testing.assert_allclose(layer32.params["weight"], layer64.params["weight"], rtol=2e-7, atol=0)


def test_mba_counts_read_at_construction():
    model, layer = table_model()
    counts = COUNTS.copy()
    opt = SGD(model, 0.1, embedding_reg="mba", reg_lambda=0.5, occurrence_counts={"emb.weight": counts})
    counts[2] = 0  # too late: the optimizer keeps lambda / n_j from construction

    opt.step()

    np.testing.assert_allclose(layer.params["weight"][2], [0.9675, -2.015], rtol=0, atol=1e-12)
