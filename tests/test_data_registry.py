"""load_dataset: names, options, splits and the info summary."""
import numpy as np
import pytest

from tinydin.data import load_dataset

TINY = dict(n_users=200, samples_per_user=4, n_categories=10, subtopics_per_category=2,
            items_per_subtopic=3, min_len=1, max_len=6)


def test_synthetic_splits_by_user():
    data = load_dataset("synthetic", seed=1, **TINY)
    users = [set(s.user.tolist()) for s in (data.train, data.validation, data.test)]
    assert len(users[0]) == 160
    assert len(users[1]) == 20
    assert len(users[2]) == 20
    assert not users[0] & users[2]
    assert not users[1] & users[2]


def test_synthetic_info():
    data = load_dataset("synthetic", seed=1, **TINY)
    assert data.info["options"]["n_users"] == 200
    assert data.info["options"]["seed"] == 1
    assert data.info["sizes"]["test"]["samples"] == len(data.test)
    assert 0.5 < data.info["oracle"]["test_auc"] <= 1.0


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'criteo'; expected one of synthetic"):
        load_dataset("criteo")


def test_unknown_option():
    with pytest.raises(ValueError, match="unknown option 'n_user' for dataset 'synthetic'"):
        load_dataset("synthetic", n_user=10)


def test_unknown_movielens_option():
    with pytest.raises(ValueError, match="unknown option 'tsk' for dataset 'movielens'"):
        load_dataset("movielens", tsk="next")


def test_synthetic_rejects_data_dir(tmp_path):
    with pytest.raises(ValueError, match="data_dir must be None"):
        load_dataset("synthetic", data_dir=tmp_path)


def test_movielens_from_data_dir(tmp_path):
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 21):
        for k, movie in enumerate((1, 2, 3)):
            lines.append(f"{user},{movie},{4.0 if (user + k) % 2 else 2.0},{k}")
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,a,Drama\n2,b,Comedy\n3,c,Drama\n")
    data = load_dataset("movielens", data_dir=tmp_path, seed=0, task="rating", max_len=1)
    assert len(data.train) + len(data.validation) + len(data.test) == 20 * 2
    assert data.info["sizes"]["train"]["users"] == 16
    assert np.all(data.train.hist_len == 1)
    assert data.info["options"]["task"] == "rating"


def test_amazon_from_data_dir(tmp_path):
    reviews = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3),
               ("u2", "c", 1), ("u2", "a", 2), ("u2", "d", 3)]
    (tmp_path / "reviews_Electronics_5.json").write_text("".join(
        f'{{"reviewerID": "{u}", "asin": "{a}", "unixReviewTime": {t}}}\n' for u, a, t in reviews))
    (tmp_path / "meta_Electronics.json").write_text(
        "{'asin': 'a', 'categories': [['E', 'X']]}\n{'asin': 'b', 'categories': [['E', 'Y']]}\n")
    data = load_dataset("amazon", data_dir=tmp_path, seed=0)
    assert data.info["sizes"]["train"]["samples"] == 0
    assert data.info["sizes"]["validation"]["samples"] == 4
    assert data.info["sizes"]["test"]["samples"] == 4
    # Categories: X, Y, and "(unknown)" for c and d, which have no meta line.
    assert data.info["sizes"]["vocab_sizes"] == {"item": 4, "category": 3}


def test_amazon_rating_task_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown amazon task 'rating'"):
        load_dataset("amazon", data_dir=tmp_path, task="rating")
