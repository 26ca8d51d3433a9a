"""Samples: validation messages, subsets of shared histories, occurrence counts, user splits."""
import numpy as np
import pytest

from tinydin.data import samples as samples_module
from tinydin.data.samples import Samples, count_occurrences, count_user_occurrences, split_by_user


def toy_samples(**overrides):
    """Two users; user 1's three samples share one sequence (overlapping ranges)."""
    fields = dict(
        item_fields=("item", "cat"),
        vocab_sizes=(6, 3),
        candidate=np.array([[2, 1], [3, 2], [5, 3], [1, 1]], dtype=np.int32),
        # rows 0-3: user 1's sequence; rows 4-5: user 2's
        history=np.array([[1, 1], [2, 1], [2, 1], [4, 2], [6, 3], [5, 3]], dtype=np.int32),
        hist_start=np.array([0, 0, 0, 4], dtype=np.int64),
        hist_end=np.array([1, 3, 4, 6], dtype=np.int64),
        label=np.array([1, 0, 1, 0], dtype=np.float32),
        user=np.array([1, 1, 1, 2], dtype=np.int32),
        user_fields={"age": np.array([1, 1, 1, 2], dtype=np.int32)},
        user_vocab_sizes={"age": 2},
    )
    fields.update(overrides)
    return Samples(**fields)


def histories(s):
    return [s.history[a:b].tolist() for a, b in zip(s.hist_start, s.hist_end)]


def brute_force_counts(s, max_len=None):
    counts = [np.zeros(v + 1, dtype=np.int64) for v in s.vocab_sizes]
    for i in range(len(s)):
        start = s.hist_start[i] if max_len is None else max(s.hist_start[i], s.hist_end[i] - max_len)
        for f in range(s.num_fields):
            ids = set(s.history[start:s.hist_end[i], f].tolist())
            ids.add(int(s.candidate[i, f]))
            ids.discard(0)
            for j in ids:
                counts[f][j] += 1
    return counts


def test_samples_len_and_nbytes():
    s = toy_samples()
    assert len(s) == 4
    expected = sum(a.nbytes for a in (s.candidate, s.history, s.hist_start, s.hist_end,
                                      s.label, s.user, s.user_fields["age"]))
    assert s.nbytes == expected


def test_validation_names_bad_history_id():
    history = np.array([[1, 1], [2, 1], [2, 1], [9, 2], [6, 3], [5, 3]], dtype=np.int32)
    with pytest.raises(ValueError) as error:
        toy_samples(history=history)
    message = str(error.value)
    assert "history id 9" in message
    assert "'item'" in message
    assert "1..6" in message


def test_validation_rejects_padding_candidate():
    candidate = np.array([[2, 1], [0, 2], [5, 3], [1, 1]], dtype=np.int32)
    with pytest.raises(ValueError, match="candidate id 0 in field 'item'"):
        toy_samples(candidate=candidate)


def test_validation_allows_unknown_second_field():
    candidate = np.array([[2, 0], [3, 2], [5, 3], [1, 1]], dtype=np.int32)
    assert len(toy_samples(candidate=candidate)) == 4


def test_validation_rejects_wrong_dtype():
    with pytest.raises(TypeError, match="candidate has dtype int64, expected int32"):
        toy_samples(candidate=np.array([[2, 1], [3, 2], [5, 3], [1, 1]], dtype=np.int64))


def test_validation_rejects_wrong_shape():
    with pytest.raises(ValueError, match="label has shape"):
        toy_samples(label=np.zeros(3, dtype=np.float32))


def test_validation_rejects_range_past_end():
    with pytest.raises(ValueError, match="past the 6 history rows"):
        toy_samples(hist_end=np.array([1, 3, 4, 7], dtype=np.int64))


def test_validation_rejects_reversed_range():
    with pytest.raises(ValueError, match="sample 1 has hist_end 0 before hist_start 2"):
        toy_samples(hist_start=np.array([0, 2, 0, 4], dtype=np.int64),
                    hist_end=np.array([1, 0, 4, 6], dtype=np.int64))


def test_validation_rejects_non_binary_label():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        toy_samples(label=np.array([1, 0.5, 1, 0], dtype=np.float32))


def test_validation_names_bad_user_field():
    with pytest.raises(ValueError, match="user id 3 in field 'age'"):
        toy_samples(user_fields={"age": np.array([1, 3, 1, 2], dtype=np.int32)})


def test_subset_keeps_histories():
    s = toy_samples()
    sub = s.subset([3, 1])
    assert histories(sub) == [histories(s)[3], histories(s)[1]]
    assert sub.candidate.tolist() == [[1, 1], [3, 2]]
    assert sub.user_fields["age"].tolist() == [2, 1]


def test_subset_drops_unused_rows():
    s = toy_samples()
    sub = s.subset([0, 1])
    # Samples 0 and 1 use rows 0..2 only, shared once.
    assert sub.history.shape[0] == 3
    assert histories(sub) == histories(s)[:2]


def test_subset_keeps_relevance_aligned():
    relevance = np.arange(6, dtype=np.float32) / 10
    s = toy_samples(relevance=relevance)
    sub = s.subset([3])
    assert sub.relevance.tolist() == pytest.approx([0.4, 0.5])


def test_subset_empty_history():
    s = toy_samples(hist_start=np.array([0, 0, 6, 4], dtype=np.int64),
                    hist_end=np.array([1, 3, 6, 6], dtype=np.int64))
    sub = s.subset([2, 3])
    assert histories(sub) == [[], [[6, 3], [5, 3]]]


def test_subset_rejects_out_of_range_index():
    with pytest.raises(IndexError, match="sample index 4 is out of range for 4 samples"):
        toy_samples().subset([0, 4])


def test_count_occurrences_by_hand():
    counts = count_occurrences(toy_samples())
    # Item ids per sample: {2, 1}, {3, 1, 2}, {5, 1, 2, 4}, {1, 6, 5}; item 2 is
    # twice in the histories of samples 1 and 2 and counts once for each.
    assert counts[0].tolist() == [0, 4, 3, 1, 1, 2, 1]
    assert counts[1].tolist() == [0, 4, 2, 2]


def test_count_occurrences_matches_brute_force():
    rng = np.random.default_rng(3)
    n, rows = 300, 2000
    start = rng.integers(0, rows, n)
    end = np.minimum(rows, start + rng.integers(0, 40, n))
    s = Samples(
        item_fields=("item", "cat"), vocab_sizes=(50, 7),
        candidate=np.stack([rng.integers(1, 51, n), rng.integers(0, 8, n)], 1).astype(np.int32),
        history=np.stack([rng.integers(1, 51, rows), rng.integers(0, 8, rows)], 1).astype(np.int32),
        hist_start=start.astype(np.int64), hist_end=end.astype(np.int64),
        label=rng.integers(0, 2, n).astype(np.float32), user=np.ones(n, dtype=np.int32),
    )
    for got, want in zip(count_occurrences(s), brute_force_counts(s)):
        assert np.array_equal(got, want)
    for max_len in (1, 5):
        for got, want in zip(count_occurrences(s, max_len=max_len), brute_force_counts(s, max_len)):
            assert np.array_equal(got, want)


def test_count_occurrences_large_ids_brute_force(monkeypatch):
    # Ids of 16 bits or more take a second radix pass, and candidates often
    # repeat an id of their own history, which must count once.
    rng = np.random.default_rng(4)
    n, rows = 200, 1500
    start = rng.integers(0, rows, n)
    end = np.minimum(rows, start + rng.integers(0, 30, n))
    history = rng.choice([3, 65535, 65536, 70000, 69999], size=rows).astype(np.int32)
    candidate = rng.choice([3, 65536, 70000], size=n).astype(np.int32)
    s = Samples(
        item_fields=("item",), vocab_sizes=(70000,),
        candidate=candidate[:, None], history=history[:, None],
        hist_start=start.astype(np.int64), hist_end=end.astype(np.int64),
        label=rng.integers(0, 2, n).astype(np.float32), user=np.ones(n, dtype=np.int32),
    )
    expected = brute_force_counts(s)
    monkeypatch.setattr(samples_module, "_COUNT_CHUNK_ROWS", 100)
    for got, want in zip(count_occurrences(s), expected):
        assert np.array_equal(got, want)


def test_count_occurrences_capped_by_hand():
    counts = count_occurrences(toy_samples(), max_len=1)
    # Candidate plus the most recent history item: {2, 1}, {3, 2}, {5, 4}, {1, 5}.
    assert counts[0].tolist() == [0, 2, 2, 1, 1, 2, 0]


def test_count_occurrences_rejects_zero_max_len():
    with pytest.raises(ValueError, match="max_len 0 is invalid"):
        count_occurrences(toy_samples(), max_len=0)


def test_count_occurrences_small_chunks(monkeypatch):
    s = toy_samples()
    expected = count_occurrences(s)
    monkeypatch.setattr(samples_module, "_COUNT_CHUNK_ROWS", 2)
    for got, want in zip(count_occurrences(s), expected):
        assert np.array_equal(got, want)


def test_count_user_occurrences():
    counts = count_user_occurrences(toy_samples())
    assert counts["age"].tolist() == [0, 3, 1]


def test_split_by_user_disjoint_and_complete():
    rng = np.random.default_rng(0)
    n = 500
    users = rng.integers(1, 101, n).astype(np.int32)
    s = Samples(
        item_fields=("item",), vocab_sizes=(5,),
        candidate=np.ones((n, 1), dtype=np.int32), history=np.ones((1, 1), dtype=np.int32),
        hist_start=np.zeros(n, dtype=np.int64), hist_end=np.ones(n, dtype=np.int64),
        label=np.zeros(n, dtype=np.float32), user=users,
    )
    train, validation, test = split_by_user(s, seed=1)
    sets = [set(part.user.tolist()) for part in (train, validation, test)]
    assert not sets[0] & sets[1]
    assert not sets[0] & sets[2]
    assert not sets[1] & sets[2]
    assert sets[0] | sets[1] | sets[2] == set(users.tolist())
    assert len(train) + len(validation) + len(test) == n
    n_users = len(set(users.tolist()))
    assert len(sets[0]) == round(0.8 * n_users)


def test_split_by_user_seeded():
    s = toy_samples()
    first = split_by_user(s, (0.5, 0.5, 0.0), seed=5)
    again = split_by_user(s, (0.5, 0.5, 0.0), seed=5)
    assert first[0].user.tolist() == again[0].user.tolist()


def test_split_by_user_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_user(toy_samples(), (0.8, 0.3, 0.1))
