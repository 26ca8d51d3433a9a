"""Batching: padding to the batch's longest history, the cap at T, the mask, iteration."""
import numpy as np
import pytest

from tinydin.data.batching import iterate_batches, make_batch
from tinydin.data.samples import Samples


def ragged_samples():
    """Histories of length 3, 0, 5 and 1 in flat storage."""
    history = np.array([[1, 1], [2, 1], [3, 2],
                        [4, 2], [5, 3], [6, 3], [7, 1], [8, 2],
                        [9, 3]], dtype=np.int32)
    return Samples(
        item_fields=("item", "cat"), vocab_sizes=(9, 3),
        candidate=np.array([[1, 1], [2, 1], [3, 2], [4, 2]], dtype=np.int32),
        history=history,
        hist_start=np.array([0, 3, 3, 8], dtype=np.int64),
        hist_end=np.array([3, 3, 8, 9], dtype=np.int64),
        label=np.array([1, 0, 1, 0], dtype=np.float32),
        user=np.array([1, 2, 3, 4], dtype=np.int32),
        user_fields={"gender": np.array([1, 2, 2, 1], dtype=np.int32)},
        user_vocab_sizes={"gender": 2},
    )


def test_batch_pads_to_longest():
    batch = make_batch(ragged_samples(), [0, 3], max_len=10)
    assert batch.history.shape == (2, 3, 2)
    assert batch.history[:, :, 0].tolist() == [[1, 2, 3], [9, 0, 0]]
    assert batch.history[1, :, 1].tolist() == [3, 0, 0]


def test_batch_mask():
    batch = make_batch(ragged_samples(), [0, 3], max_len=10)
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]


def test_batch_cap_keeps_most_recent():
    batch = make_batch(ragged_samples(), [2, 0], max_len=2)
    assert batch.history[:, :, 0].tolist() == [[7, 8], [2, 3]]


def test_batch_empty_history_width_one():
    batch = make_batch(ragged_samples(), [1], max_len=5)
    assert batch.history.shape == (1, 1, 2)
    assert batch.history.tolist() == [[[0, 0]]]
    assert batch.mask.tolist() == [[False]]


def test_batch_other_fields():
    batch = make_batch(ragged_samples(), np.array([2, 1]), max_len=5)
    assert batch.candidate.tolist() == [[3, 2], [2, 1]]
    assert batch.label.tolist() == [1.0, 0.0]
    assert batch.user.tolist() == [3, 2]
    assert batch.user_fields["gender"].tolist() == [2, 2]
    assert batch.index.tolist() == [2, 1]


def test_batch_rejects_bad_max_len():
    with pytest.raises(ValueError, match="max_len 0 must be a positive integer"):
        make_batch(ragged_samples(), [0], max_len=0)


def test_batch_matches_loop_reference():
    rng = np.random.default_rng(7)
    n, rows = 60, 400
    start = rng.integers(0, rows, n)
    end = np.minimum(rows, start + rng.integers(0, 30, n))
    s = Samples(
        item_fields=("item",), vocab_sizes=(20,),
        candidate=rng.integers(1, 21, (n, 1)).astype(np.int32),
        history=rng.integers(1, 21, (rows, 1)).astype(np.int32),
        hist_start=start.astype(np.int64), hist_end=end.astype(np.int64),
        label=np.zeros(n, dtype=np.float32), user=np.ones(n, dtype=np.int32),
    )
    index = rng.permutation(n)[:25]
    batch = make_batch(s, index, max_len=12)
    for b, i in enumerate(index):
        kept = s.history[max(start[i], end[i] - 12):end[i], 0].tolist()
        width = batch.history.shape[1]
        assert batch.history[b, :, 0].tolist() == kept + [0] * (width - len(kept))


def test_iterate_covers_every_sample_once():
    seen = [b.index for b in iterate_batches(ragged_samples(), batch_size=3, max_len=4)]
    assert [len(i) for i in seen] == [3, 1]
    assert np.concatenate(seen).tolist() == [0, 1, 2, 3]


def test_iterate_shuffle_seeded():
    first = [b.index.tolist() for b in iterate_batches(ragged_samples(), 2, 4, shuffle=True, rng=3)]
    again = [b.index.tolist() for b in iterate_batches(ragged_samples(), 2, 4, shuffle=True, rng=3)]
    assert first == again
    assert sorted(sum(first, [])) == [0, 1, 2, 3]


def test_batch_no_stored_history():
    s = Samples(
        item_fields=("item",), vocab_sizes=(3,),
        candidate=np.array([[1], [2]], dtype=np.int32), history=np.zeros((0, 1), dtype=np.int32),
        hist_start=np.zeros(2, dtype=np.int64), hist_end=np.zeros(2, dtype=np.int64),
        label=np.zeros(2, dtype=np.float32), user=np.array([1, 2], dtype=np.int32),
    )
    batch = make_batch(s, [0, 1], max_len=4)
    assert batch.history.shape == (2, 1, 1)
    assert not batch.mask.any()
