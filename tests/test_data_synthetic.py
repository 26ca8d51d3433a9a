"""Synthetic interest world: determinism, the click rule, relevance, layouts, options."""
import numpy as np
import pytest

from tinydin.data.synthetic import SyntheticOptions, make_synthetic, rank_auc

SMALL = dict(n_users=300, samples_per_user=6, n_categories=12, subtopics_per_category=3,
             items_per_subtopic=4, min_len=2, max_len=9)


def small(**overrides):
    return SyntheticOptions(**{**SMALL, **overrides})


def histories(s):
    return [s.history[a:b].tolist() for a, b in zip(s.hist_start, s.hist_end)]


def test_shapes_and_sizes():
    s = make_synthetic(small(), seed=0)
    assert len(s) == 300 * 6
    assert s.item_fields == ("item", "category")
    assert s.vocab_sizes == (12 * 3 * 4, 12)
    assert s.hist_len.min() >= 2
    assert s.hist_len.max() <= 9
    assert s.relevance.shape == (s.history.shape[0],)
    assert set(np.unique(s.user).tolist()) == set(range(1, 301))


def test_same_seed_same_data():
    first, again = make_synthetic(small(), seed=4), make_synthetic(small(), seed=4)
    assert np.array_equal(first.candidate, again.candidate)
    assert np.array_equal(first.history, again.history)
    assert np.array_equal(first.label, again.label)


def test_other_seed_other_data():
    first, other = make_synthetic(small(), seed=4), make_synthetic(small(), seed=5)
    assert not np.array_equal(first.candidate, other.candidate)


def test_true_prob_follows_max_relevance():
    options = small()
    s = make_synthetic(options, seed=1)
    best = np.array([s.relevance[a:b].max() if b > a else 0.0
                     for a, b in zip(s.hist_start, s.hist_end)])
    expected = 1 / (1 + np.exp(-(options.base_logit + options.click_strength * best)))
    assert np.allclose(s.true_prob, expected, rtol=1e-6, atol=1e-7)


def test_relevance_zero_across_categories():
    s = make_synthetic(small(), seed=2)
    owner = np.repeat(np.arange(len(s)), s.hist_len)
    other_category = s.history[:, 1] != s.candidate[owner, 1]
    assert other_category.any()
    assert np.all(s.relevance[other_category] == 0)


def test_relevance_one_for_same_item():
    s = make_synthetic(small(), seed=2)
    owner = np.repeat(np.arange(len(s)), s.hist_len)
    same_item = s.history[:, 0] == s.candidate[owner, 0]
    assert same_item.any()
    assert np.allclose(s.relevance[same_item], 1.0, atol=1e-5)


def test_item_belongs_to_one_category():
    s = make_synthetic(small(), seed=3)
    pairs = np.unique(np.concatenate([s.candidate, s.history]), axis=0)
    assert np.unique(pairs[:, 0]).size == pairs.shape[0]


def test_labels_follow_true_prob():
    s = make_synthetic(small(n_users=1000), seed=0)
    assert rank_auc(s.true_prob, s.label) > 0.6
    # The click rate matches the mean probability within 4 standard errors.
    error = np.sqrt(np.mean(s.true_prob * (1 - s.true_prob)) / len(s))
    assert abs(s.label.mean() - s.true_prob.mean()) < 4 * error


def test_shared_layout_same_samples():
    copied = make_synthetic(small(share_history_rows=False), seed=6)
    shared = make_synthetic(small(share_history_rows=True), seed=6)
    assert shared.relevance is None
    assert shared.history.shape[0] == 300 * (9 + 6)
    assert histories(shared) == histories(copied)
    assert np.array_equal(shared.true_prob, copied.true_prob)


def test_automatic_layout_copies_small():
    assert make_synthetic(small(), seed=0).relevance is not None


@pytest.mark.parametrize("overrides, message", [
    ({"n_users": 0}, "n_users=0 must be positive"),
    ({"max_len": 1}, "max_len=1 is below min_len=2"),
    ({"history_noise": 1.5}, "history_noise=1.5 must be a probability"),
    ({"liked_subtopics": 4}, "liked_subtopics=4 exceeds subtopics_per_category=3"),
    ({"max_interests": 13}, "max_interests \\(13\\) <= n_categories \\(12\\)"),
])
def test_invalid_options(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic(small(**overrides))


def test_rank_auc_by_hand():
    # Positives 0.8 and 0.4, negatives 0.4 and 0.1: pairs won 1 + 1 + 0.5 + 1 of 4.
    scores = np.array([0.8, 0.4, 0.4, 0.1])
    labels = np.array([1, 1, 0, 0])
    assert rank_auc(scores, labels) == pytest.approx(3.5 / 4)


def test_rank_auc_one_class_nan():
    assert np.isnan(rank_auc(np.array([0.1, 0.2]), np.array([1, 1])))
