"""Tests of tinydin.metrics against hand values and a brute-force pairwise AUC."""
import math

import numpy as np
import pytest

from tinydin.metrics import auc, gauc, log_loss, rela_impr


def pairwise_auc(y, s):
    """AUC by its definition: over every (positive, negative) pair, 1 if the
    positive scores higher, 0.5 if tied, 0 otherwise; then the mean."""
    pos = s[y == 1]
    neg = s[y == 0]
    total = 0.0
    for a in pos:
        for b in neg:
            if a > b:
                total += 1.0
            elif a == b:
                total += 0.5
    return total / (len(pos) * len(neg))


# ---------------------------------------------------------------- auc


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    # Only 6 distinct scores among 300 rows: most pairs are tied or cross a tie.
    s = rng.integers(0, 6, 300).astype(np.float64)

    assert auc(y, s) == pytest.approx(pairwise_auc(y, s), abs=1e-12)


def test_auc_matches_pairwise_without_ties():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 200)
    s = rng.standard_normal(200)

    assert auc(y, s) == pytest.approx(pairwise_auc(y, s), abs=1e-12)


def test_auc_hand_example():
    # Pairs (pos, neg): (0.9, 0.1) win, (0.9, 0.5) win, (0.5, 0.1) win,
    # (0.5, 0.5) tie: (1 + 1 + 1 + 0.5) / 4.
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.5, 0.5, 0.1])

    assert auc(y, s) == pytest.approx(3.5 / 4)


def test_auc_perfect_and_reversed():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4])

    assert auc(y, s) == 1.0
    assert auc(y, -s) == 0.0


def test_auc_all_tied_is_half():
    y = np.array([0, 1, 1, 0, 1])
    s = np.full(5, 0.3)

    assert auc(y, s) == 0.5


def test_auc_order_independent():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 10, 500).astype(np.float32)
    perm = rng.permutation(500)

    # Ranks are half-integers, so their sums are exact and the results equal.
    assert auc(y[perm], s[perm]) == auc(y, s)


def test_auc_accepts_bool_and_float_labels():
    s = np.array([0.2, 0.8, 0.5])

    assert auc(np.array([False, True, True]), s) == auc(np.array([0.0, 1.0, 1.0]), s)


def test_auc_single_class_names_counts():
    with pytest.raises(ValueError, match="3 positive and 0 negative"):
        auc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]))


def test_auc_only_negatives():
    with pytest.raises(ValueError, match="0 positive and 2 negative"):
        auc(np.array([0, 0]), np.array([0.1, 0.2]))


def test_auc_nan_score():
    with pytest.raises(ValueError, match=r"y_score\[1\] = nan is not finite"):
        auc(np.array([0, 1]), np.array([0.1, np.nan]))


def test_auc_inf_score():
    with pytest.raises(ValueError, match="not finite"):
        auc(np.array([0, 1]), np.array([np.inf, 0.3]))


def test_auc_bad_label():
    with pytest.raises(ValueError, match=r"y_true\[2\] = 2 is not a valid label"):
        auc(np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]))


def test_auc_nan_label():
    with pytest.raises(ValueError, match="not a valid label"):
        auc(np.array([0.0, np.nan]), np.array([0.1, 0.2]))


def test_auc_length_mismatch():
    with pytest.raises(ValueError, match="one value per label"):
        auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))


def test_auc_column_scores_rejected():
    # (N, 1) against (N,) would broadcast to (N, N) if it were not checked.
    with pytest.raises(ValueError, match="ravel"):
        auc(np.array([0, 1]), np.array([[0.1], [0.2]]))


def test_auc_2d_labels_rejected():
    with pytest.raises(ValueError, match="must be 1-D"):
        auc(np.array([[0, 1]]), np.array([0.1, 0.2]))


def test_auc_empty():
    with pytest.raises(ValueError, match="empty"):
        auc(np.array([], dtype=int), np.array([]))


def test_auc_string_scores():
    with pytest.raises(ValueError, match="numeric"):
        auc(np.array([0, 1]), np.array(["a", "b"]))


# ---------------------------------------------------------------- gauc


def hand_example():
    """Three users, rows interleaved.

    user "a": labels 1 0 1 0, scores .8 .4 .45 .5. Pairs: .8 beats .4 and .5,
              .45 beats .4 only: AUC 3/4, weight 4.
    user "b": labels 0 1 0, scores .9 .7 .7. The positive .7 loses to .9 and
              ties .7: AUC (0 + 0.5) / 2 = 1/4, weight 3.
    user "c": labels 1 1: one class, skipped.
    GAUC = (4 * 3/4 + 3 * 1/4) / 7 = 3.75 / 7. The unweighted mean would be 0.5.
    """
    groups = np.array(["a", "b", "c", "a", "b", "a", "c", "b", "a"])
    y = np.array([1, 0, 1, 0, 1, 1, 1, 0, 0])
    s = np.array([0.8, 0.9, 0.1, 0.4, 0.7, 0.45, 0.2, 0.7, 0.5])
    return y, s, groups


def test_gauc_hand_example():
    y, s, groups = hand_example()

    assert gauc(y, s, groups) == pytest.approx(3.75 / 7, abs=1e-12)


def test_gauc_reports_skipped_user():
    y, s, groups = hand_example()

    value, skipped = gauc(y, s, groups, return_skipped=True)

    assert value == pytest.approx(3.75 / 7, abs=1e-12)
    assert skipped == 1


def test_gauc_default_returns_float():
    y, s, groups = hand_example()

    assert isinstance(gauc(y, s, groups), float)


def test_gauc_one_user_equals_auc():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 100)
    s = rng.integers(0, 8, 100).astype(np.float64)

    assert gauc(y, s, np.zeros(100, dtype=int)) == pytest.approx(auc(y, s), abs=1e-12)


def test_gauc_matches_per_user_loop():
    rng = np.random.default_rng(5)
    n = 400
    groups = rng.integers(0, 40, n)
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 5, n).astype(np.float64)

    numerator = 0.0
    denominator = 0
    skipped = 0
    for user in np.unique(groups):
        rows = groups == user
        if y[rows].min() == y[rows].max():
            skipped += 1
            continue
        numerator += rows.sum() * pairwise_auc(y[rows], s[rows])
        denominator += rows.sum()

    value, num_skipped = gauc(y, s, groups, return_skipped=True)

    assert value == pytest.approx(numerator / denominator, abs=1e-12)
    assert num_skipped == skipped


def test_gauc_order_independent():
    rng = np.random.default_rng(6)
    n = 300
    groups = rng.integers(0, 30, n)
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 4, n).astype(np.float64)
    perm = rng.permutation(n)

    assert gauc(y[perm], s[perm], groups[perm]) == gauc(y, s, groups)


def test_gauc_ties_do_not_cross_users():
    # Equal scores in different users are not a tie: each user here ranks
    # its positive above its negative, so every user AUC is 1.
    groups = np.array([1, 1, 2, 2])
    y = np.array([1, 0, 1, 0])
    s = np.array([0.5, 0.1, 0.9, 0.5])

    assert gauc(y, s, groups) == 1.0


def test_gauc_all_users_single_class():
    with pytest.raises(ValueError, match="none of the 2 users"):
        gauc(np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3]), np.array([7, 7, 8]))


def test_gauc_groups_length_mismatch():
    with pytest.raises(ValueError, match="one user id per label"):
        gauc(np.array([1, 0]), np.array([0.1, 0.2]), np.array([1, 1, 1]))


def test_gauc_nan_group():
    with pytest.raises(ValueError, match="groups contains NaN"):
        gauc(np.array([1, 0]), np.array([0.1, 0.2]), np.array([1.0, np.nan]))


def test_gauc_nan_score():
    with pytest.raises(ValueError, match="not finite"):
        gauc(np.array([1, 0]), np.array([0.1, np.nan]), np.array([1, 1]))


# ---------------------------------------------------------------- log_loss


def test_log_loss_hand_value():
    # -(log 0.8 + log(1 - 0.4)) / 2
    expected = -(math.log(0.8) + math.log(0.6)) / 2

    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_confident_mistake():
    # Label 0 with p = 1 and label 1 with p = 0 each cost -log(1e-15) = 15 ln 10.
    value = log_loss(np.array([0, 1]), np.array([1.0, 0.0]))

    assert value == pytest.approx(15 * math.log(10), rel=1e-12)


def test_log_loss_confident_right_is_zero():
    assert log_loss(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_log_loss_float32_input():
    p32 = np.array([0.25, 0.75], dtype=np.float32)
    expected = -(math.log(0.75) + math.log(0.75)) / 2

    assert log_loss(np.array([0, 1]), p32) == pytest.approx(expected, rel=1e-7)


def test_log_loss_rejects_above_one():
    with pytest.raises(ValueError, match=r"p\[1\] = 1.5 is outside \[0, 1\]"):
        log_loss(np.array([0, 1]), np.array([0.5, 1.5]))


def test_log_loss_rejects_logits():
    with pytest.raises(ValueError, match="sigmoid"):
        log_loss(np.array([0, 1]), np.array([-2.0, 0.5]))


def test_log_loss_rejects_nan():
    with pytest.raises(ValueError, match="not finite"):
        log_loss(np.array([0, 1]), np.array([np.nan, 0.5]))


def test_log_loss_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        log_loss(np.array([0, 1]), np.array([0.5, 0.5]), eps=0.0)


def test_log_loss_bad_label():
    with pytest.raises(ValueError, match="not a valid label"):
        log_loss(np.array([0, -1]), np.array([0.5, 0.5]))


# ---------------------------------------------------------------- rela_impr


def test_rela_impr_small_gain():
    # ((0.7337 - 0.5) / (0.7300 - 0.5) - 1) * 100 = 0.0037 / 0.23 * 100 = 1.6087 %
    assert rela_impr(0.7337, 0.7300) == pytest.approx(0.37 / 0.23, rel=1e-9)


def test_rela_impr_quarter():
    # (0.25 / 0.20 - 1) * 100 = 25
    assert rela_impr(0.75, 0.70) == pytest.approx(25.0)


def test_rela_impr_loss_is_negative():
    # (0.05 / 0.10 - 1) * 100 = -50
    assert rela_impr(0.55, 0.60) == pytest.approx(-50.0)


def test_rela_impr_same_auc_is_zero():
    assert rela_impr(0.81, 0.81) == 0.0


@pytest.mark.parametrize("base", [0.5, 0.4])
def test_rela_impr_base_at_or_below_chance(base):
    with pytest.raises(ValueError, match="must be above 0.5"):
        rela_impr(0.7, base)


def test_rela_impr_auc_outside_unit_interval():
    with pytest.raises(ValueError, match="auc 1.2 is not a valid AUC"):
        rela_impr(1.2, 0.7)


def test_rela_impr_nan():
    with pytest.raises(ValueError, match="not a valid AUC"):
        rela_impr(float("nan"), 0.7)
