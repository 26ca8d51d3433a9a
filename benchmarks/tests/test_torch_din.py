"""The PyTorch reference against tinydin in float64 (skipped without torch)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.bench_torch import randomize  # noqa: E402
from benchmarks.torch_din import Dice, cross_check, from_config, parameter_pairs  # noqa: E402
from benchmarks.workloads import Workload, make_batches, model_config  # noqa: E402

WORKLOAD = Workload(batch_size=8, max_len=6, goods_vocab=40, category_vocab=5)


def small_din(**overrides):
    from tinydin.models import DIN

    din = DIN(model_config(WORKLOAD, dtype="float64", **overrides))
    randomize(din, seed=0)
    return din


@pytest.mark.parametrize("unit", ["concat", "outer"])
@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_cross_check_agrees(unit, activation):
    din = small_din(unit=unit, attention_activation=activation, mlp_activation=activation)
    batch = make_batches(WORKLOAD, 1, seed=3)[0]
    differences = cross_check(din, batch)
    assert max(differences.values()) < 1e-10


def test_cross_check_softmax_agrees():
    din = small_din(unit="outer", normalize="softmax")
    batch = make_batches(WORKLOAD, 1, seed=4)[0]
    assert max(cross_check(din, batch).values()) < 1e-10


def test_pairs_cover_every_parameter():
    din = small_din(unit="concat")
    torch_model = from_config(din.config).double()
    names = {name for name, _, _, _ in parameter_pairs(torch_model, din)}
    assert names == set(din.params)


def test_cross_check_sees_wrong_gradient():
    # A tinydin backward that returns a slightly wrong gradient for one
    # parameter must show up in that parameter's difference.
    din = small_din(unit="concat")
    batch = make_batches(WORKLOAD, 1, seed=5)[0]
    original_backward = din.backward

    def wrong_backward(dlogits):
        original_backward(dlogits)
        din.grads["mlp.dense0.W"] = din.grads["mlp.dense0.W"] * 1.01

    din.backward = wrong_backward
    differences = cross_check(din, batch)
    assert differences["mlp.dense0.W"] > 1e-6
    assert differences["mlp.dense1.W"] < 1e-10


def test_dice_masked_matches_tinydin_packed():
    from tinydin.layers.activations import Dice as TinyDice

    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4))
    mask = np.array([True, False, True, True, False, True, True, True, False, True])
    alpha = rng.standard_normal(4) * 0.3

    tiny = TinyDice(4, dtype=np.float64)
    tiny.params["alpha"][...] = alpha
    expected = tiny.forward(x[mask], training=True)

    dice = Dice(4).double()
    with torch.no_grad():
        dice.alpha.copy_(torch.from_numpy(alpha))
    out = dice(torch.from_numpy(x), torch.from_numpy(mask)).detach().numpy()

    assert np.max(np.abs(out[mask] - expected)) < 1e-12
    assert np.all(out[~mask] == 0.0)
