"""Evaluation metrics of CTR models: AUC, group AUC, log loss and RelaImpr.

AUC from ranks. Sort all N = P + N_neg scores, give each score its 1-based rank,
and give tied scores the average of the ranks they span. Then

    AUC = (R_pos - P (P + 1) / 2) / (P * N_neg)

with R_pos the sum of the positives' ranks. This equals the pairwise definition:
the fraction of (positive, negative) pairs in which the positive scores higher,
with a tie counting one half. Averaged ranks make the result independent of the
order of the rows.

Group AUC, Zhou et al., "Deep Interest Network for Click-Through Rate
Prediction" (KDD 2018), Eq. 10: the AUC of each user, weighted by that user's
number of impressions w_i,

    GAUC = sum_i w_i AUC_i / sum_i w_i

over the users whose impressions contain both labels. A user with only clicks
or only non-clicks has no AUC and is skipped.

Relative improvement over a base model, the same paper's Eq. 11, in percent:

    RelaImpr = ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) * 100

Log loss: the mean binary cross-entropy -mean(y log p + (1 - y) log(1 - p)).

Shapes: every function takes 1-D arrays of one length N (impressions), e.g.
(B,) model outputs; flatten (N, 1) outputs with .ravel() first.
"""
from __future__ import annotations

import numpy as np


def _check_labels(y_true, name: str = "y_true") -> np.ndarray:
    """Return labels as a bool array, after checking that they are 1-D and in {0, 1}."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one label per impression), got shape {y.shape}; "
            f"flatten it with .ravel()"
        )
    if y.size == 0:
        raise ValueError(f"{name} is empty; a metric needs at least one impression")
    if y.dtype == bool:
        return y
    if y.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric 0/1 labels, got dtype {y.dtype}")

    # NaN fails both comparisons, so it is reported here too.
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{index}] = {y[index].item()} is not a valid label; labels must be 0 "
            f"(no click) or 1 (click)"
        )
    return y == 1


def _check_values(values, num_rows: int, name: str) -> np.ndarray:
    """Return scores or probabilities as float64, after checking shape and finiteness."""
    v = np.asarray(values)
    if v.ndim != 1 or v.shape[0] != num_rows:
        raise ValueError(
            f"{name} must be 1-D with one value per label ({num_rows}), got shape "
            f"{v.shape}; flatten (N, 1) model outputs with .ravel()"
        )
    if v.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {v.dtype}")
    v = v.astype(np.float64, copy=False)

    finite = np.isfinite(v)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name}[{index}] = {v[index]} is not finite; a metric needs finite values, "
            f"so check the model for a diverged (NaN or inf) output"
        )
    return v


def _ranks_within_groups(scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Rank scores from 1 inside each group, giving tied scores their average rank.

    scores: (N,) float64; codes: (N,) integer group codes. Returns (N,) float64
    ranks in the original row order.
    """
    n = scores.shape[0]

    # Sort by group, then by score inside the group.
    order = np.lexsort((scores, codes))
    sorted_scores = scores[order]
    sorted_codes = codes[order]

    # A tie block is a run of equal scores inside one group.
    group_starts = np.empty(n, dtype=bool)
    group_starts[0] = True
    group_starts[1:] = sorted_codes[1:] != sorted_codes[:-1]
    block_starts = group_starts.copy()
    block_starts[1:] |= sorted_scores[1:] != sorted_scores[:-1]

    # Position (in sorted order) where each element's group begins.
    positions = np.arange(n)
    group_first = np.maximum.accumulate(np.where(group_starts, positions, 0))

    # A block spanning sorted positions [start, end) has the ranks
    # start - g + 1 .. end - g inside its group (g = group start); all of its
    # elements get the mean of those ranks.
    start = np.flatnonzero(block_starts)
    end = np.append(start[1:], n)
    offset = group_first[start]
    mean_rank = ((start - offset + 1) + (end - offset)) / 2.0

    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, end - start)
    return ranks


def auc(y_true, y_score) -> float:
    """Compute the ROC AUC from ranks, counting tied scores as one half.

    y_true: (N,) labels in {0, 1} (ints, floats or bools).
    y_score: (N,) finite scores; any monotone transform (logits or probabilities)
    gives the same AUC.

    Raises ValueError for mismatched shapes, labels outside {0, 1}, non-finite
    scores, or labels of a single class (the AUC is then undefined).
    """
    positive = _check_labels(y_true)
    scores = _check_values(y_score, positive.shape[0], "y_score")

    num_pos = int(positive.sum())
    num_neg = positive.shape[0] - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"AUC is undefined for a single class: got {num_pos} positive and "
            f"{num_neg} negative labels; evaluate on data that contains both"
        )

    ranks = _ranks_within_groups(scores, np.zeros(scores.shape[0], dtype=np.int64))

    rank_sum = ranks[positive].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def gauc(y_true, y_score, groups, return_skipped: bool = False):
    """Compute the impression-weighted group AUC over users that have both labels.

    y_true: (N,) labels in {0, 1}; y_score: (N,) finite scores; groups: (N,)
    user ids (any sortable values: ints or strings).

    Returns the GAUC as a float. With return_skipped=True, returns the tuple
    (gauc, num_skipped), where num_skipped is the number of users left out
    because all of their impressions have one label.

    The whole computation is one sort over (group, score), with no Python loop
    over users. Raises ValueError for invalid inputs, or when no user has both
    labels.
    """
    positive = _check_labels(y_true)
    scores = _check_values(y_score, positive.shape[0], "y_score")

    groups = np.asarray(groups)
    if groups.shape != positive.shape:
        raise ValueError(
            f"groups must be 1-D with one user id per label ({positive.shape[0]}), "
            f"got shape {groups.shape}"
        )
    if groups.dtype.kind == "f" and not np.isfinite(groups).all():
        raise ValueError("groups contains NaN or inf; every impression needs a valid user id")

    # Map user ids to codes 0..G-1 so that any id type sorts as integers.
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.reshape(-1)
    num_groups = int(codes.max()) + 1

    impressions = np.bincount(codes, minlength=num_groups)  # (G,)
    num_pos = np.bincount(codes, weights=positive, minlength=num_groups)  # (G,)
    num_neg = impressions - num_pos

    ranks = _ranks_within_groups(scores, codes)
    rank_sum = np.bincount(codes, weights=np.where(positive, ranks, 0.0), minlength=num_groups)

    valid = (num_pos > 0) & (num_neg > 0)
    num_skipped = int(num_groups - valid.sum())
    if not valid.any():
        raise ValueError(
            f"GAUC is undefined: none of the {num_groups} users has both a positive and "
            f"a negative label; evaluate on data where some users have both"
        )

    user_pos = num_pos[valid]
    user_neg = num_neg[valid]
    user_auc = (rank_sum[valid] - user_pos * (user_pos + 1) / 2.0) / (user_pos * user_neg)
    weights = impressions[valid]
    value = float((weights * user_auc).sum() / weights.sum())

    if return_skipped:
        return value, num_skipped
    return value


def log_loss(y_true, p, eps: float = 1e-15) -> float:
    """Compute the mean binary cross-entropy of probabilities p against labels.

    y_true: (N,) labels in {0, 1}; p: (N,) predicted click probabilities in
    [0, 1]. The probability given to the true label is clipped below at eps, so
    a confident wrong prediction costs -log(eps) (about 34.54 for the default) instead
    of infinity. The computation runs in float64 whatever the dtype of p.

    Raises ValueError for mismatched shapes, invalid labels, or p outside [0, 1]
    or not finite (pass probabilities, not logits).
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps {eps} must be in (0, 0.5); the usual value is 1e-15")

    positive = _check_labels(y_true)
    prob = _check_values(p, positive.shape[0], "p")

    outside = (prob < 0.0) | (prob > 1.0)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"p[{index}] = {prob[index]} is outside [0, 1]; log_loss takes probabilities, "
            f"so apply a sigmoid to logits first"
        )

    # Clip the probability given to the true label, not p itself: 1 - (1 - eps)
    # is not eps in floating point, so clipping p would make the cost of a
    # confident mistake depend on the label.
    prob_of_label = np.where(positive, prob, 1.0 - prob)
    losses = -np.log(np.maximum(prob_of_label, eps))
    return float(losses.mean())


def rela_impr(auc: float, base_auc: float) -> float:
    """Compute RelaImpr, the relative AUC improvement over a base model, in percent.

    ((auc - 0.5) / (base_auc - 0.5) - 1) * 100. Subtracting 0.5 measures each
    model against random guessing, so 0 means "as good as the base model" and
    100 means "twice as far above chance".

    Raises ValueError when either AUC is outside [0, 1] or not finite, or when
    base_auc <= 0.5 (the ratio is then undefined or changes sign).
    """
    for name, value in (("auc", auc), ("base_auc", base_auc)):
        if not (np.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} {value} is not a valid AUC; expected a value in [0, 1]")
    if base_auc <= 0.5:
        raise ValueError(
            f"base_auc {base_auc} must be above 0.5; RelaImpr divides by base_auc - 0.5, "
            f"so it is undefined for a base model at or below random guessing"
        )
    return float(((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0)
