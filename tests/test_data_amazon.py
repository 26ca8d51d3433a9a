"""Amazon Electronics: gzipped and plain files, Python-literal meta, the recipe by hand."""
import gzip
import http.server
import json
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tinydin.data.amazon import (ReviewTable, build_splits, fetch_amazon, load_amazon,
                                 read_meta, read_reviews)
from tinydin.data.files import DataFormatError

# Items A1..E5 -> ids 1..5. Users U1 -> 1, U2 -> 2. U2 reviews C3 and D4 at the same
# second (200): file order, C3 first, must be kept.
REVIEWS = [
    {"reviewerID": "U2", "asin": "A1", "unixReviewTime": 300, "overall": 5.0},
    {"reviewerID": "U2", "asin": "B2", "unixReviewTime": 100, "overall": 4.0},
    {"reviewerID": "U1", "asin": "E5", "unixReviewTime": 5, "overall": 3.0},
    {"reviewerID": "U2", "asin": "C3", "unixReviewTime": 200, "overall": 2.0},
    {"reviewerID": "U1", "asin": "A1", "unixReviewTime": 1, "overall": 5.0},
    {"reviewerID": "U2", "asin": "D4", "unixReviewTime": 200, "overall": 1.0},
    {"reviewerID": "U1", "asin": "B2", "unixReviewTime": 3, "overall": 4.0},
]
# Python literals, not JSON: single quotes, a double-quoted title with an apostrophe.
# D4 has no meta line; Z9 is never reviewed.
META = [
    "{'asin': 'A1', 'categories': [['Electronics', 'Cameras']]}",
    "{'asin': 'B2', 'categories': [['Electronics', 'Audio', 'Headphones'], ['Electronics', 'Cables']]}",
    "{'asin': 'C3', 'title': \"Bob's camera\", 'price': 9.5, 'categories': [['Electronics', 'Cameras']]}",
    "{'asin': 'Z9', 'categories': [['Electronics', 'Toys']]}",
    "{'asin': 'E5', 'categories': [['Electronics']]}",
]
# Categories in name order: (unknown) 1, Cables 2, Cameras 3, Electronics 4.
A1, B2, C3, D4, E5 = [1, 3], [2, 2], [3, 3], [4, 1], [5, 4]
# U2 never reviewed E5, so all of U2's negatives are E5; U1's come from C3 or D4.
EXPECTED_TRAIN = [(2, C3, 1.0, [B2]), (2, E5, 0.0, [B2])]
EXPECTED_VALIDATION_U2 = [(2, D4, 1.0, [B2, C3]), (2, E5, 0.0, [B2, C3])]
EXPECTED_TEST_U2 = [(2, A1, 1.0, [B2, C3, D4]), (2, E5, 0.0, [B2, C3, D4])]


def write_files(folder: Path, gzipped: bool, reviews=REVIEWS, meta=META):
    folder.mkdir(parents=True, exist_ok=True)
    review_text = "".join(json.dumps(r) + "\n" for r in reviews)
    meta_text = "".join(line + "\n" for line in meta)
    if gzipped:
        with gzip.open(folder / "reviews_Electronics_5.json.gz", "wt") as handle:
            handle.write(review_text)
        with gzip.open(folder / "meta_Electronics.json.gz", "wt") as handle:
            handle.write(meta_text)
    else:
        (folder / "reviews_Electronics_5.json").write_text(review_text)
        (folder / "meta_Electronics.json").write_text(meta_text)
    return folder


def as_rows(samples):
    return [(int(samples.user[i]), samples.candidate[i].tolist(), float(samples.label[i]),
             samples.history[samples.hist_start[i]:samples.hist_end[i]].tolist())
            for i in range(len(samples))]


@pytest.mark.parametrize("gzipped", [True, False])
def test_recipe_by_hand(tmp_path, gzipped):
    train, validation, test = load_amazon(write_files(tmp_path, gzipped), seed=0)
    assert as_rows(train) == EXPECTED_TRAIN
    assert as_rows(validation)[2:] == EXPECTED_VALIDATION_U2
    assert as_rows(test)[2:] == EXPECTED_TEST_U2


def test_user_with_three_reviews(tmp_path):
    _, validation, test = load_amazon(write_files(tmp_path, True), seed=0)
    # U1 in time order: A1, B2, E5. Validation = B2, test = E5.
    assert as_rows(validation)[0] == (1, B2, 1.0, [A1])
    assert as_rows(test)[0] == (1, E5, 1.0, [A1, B2])


def test_negatives_never_reviewed(tmp_path):
    folder = write_files(tmp_path, True)
    for seed in range(5):
        _, validation, test = load_amazon(folder, seed=seed)
        for split in (validation, test):
            u1_negative = as_rows(split)[1]
            assert u1_negative[0] == 1
            assert u1_negative[2] == 0.0
            assert u1_negative[1] in (C3, D4)


def test_vocab_sizes(tmp_path):
    train, _, _ = load_amazon(write_files(tmp_path, True))
    assert train.vocab_sizes == (5, 4)
    assert train.item_fields == ("item", "category")


def test_read_meta_categories(tmp_path):
    write_files(tmp_path, False)
    category = read_meta(tmp_path / "meta_Electronics.json")
    assert category == {"A1": "Cameras", "B2": "Cables", "C3": "Cameras",
                        "Z9": "Toys", "E5": "Electronics"}


def test_read_meta_keep_skips(tmp_path):
    write_files(tmp_path, False)
    category = read_meta(tmp_path / "meta_Electronics.json", keep={"A1"})
    assert category == {"A1": "Cameras"}


def test_meta_code_not_run(tmp_path):
    marker = tmp_path / "pwned"
    meta = META + [f"__import__('os').system('touch {marker}')"]
    write_files(tmp_path, False, meta=meta)
    with pytest.raises(DataFormatError, match=r"meta_Electronics.json, line 6: not a Python dict"):
        read_meta(tmp_path / "meta_Electronics.json")
    assert not marker.exists()


def test_malformed_review_names_line(tmp_path):
    write_files(tmp_path, True)
    path = tmp_path / "reviews_Electronics_5.json.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    lines[2] = '{"reviewerID": "U1", "asin": "E5"'
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"reviews_Electronics_5.json.gz, line 3: not a JSON"):
        read_reviews(path)


def test_review_missing_time_names_line(tmp_path):
    reviews = REVIEWS + [{"reviewerID": "U1", "asin": "C3"}]
    write_files(tmp_path, False, reviews=reviews)
    with pytest.raises(DataFormatError, match="line 8: missing unixReviewTime"):
        read_reviews(tmp_path / "reviews_Electronics_5.json")


def test_truncated_gzip_reported(tmp_path):
    write_files(tmp_path, True)
    path = tmp_path / "reviews_Electronics_5.json.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataFormatError, match="truncated or not gzip"):
        read_reviews(path)


def test_missing_files_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="reviews_Electronics_5.json.gz"):
        load_amazon(tmp_path)


def test_two_review_users_only_test():
    reviews = ReviewTable(user=["a", "a", "b", "b"], item=["x", "y", "x", "z"],
                          timestamp=np.array([1, 2, 1, 2]))
    train, validation, test = build_splits(reviews, {"x": "c1", "y": "c2", "z": "c1"})
    assert len(train) == 0
    assert len(validation) == 0
    assert len(test) == 4


# --------------------------------------------------------------------------- download


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        RecordingHandler.requests.append(self.path)


@pytest.fixture
def local_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    RecordingHandler.requests = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RecordingHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_fetch_downloads_once(local_server, tmp_path):
    served, url = local_server
    write_files(served, True)
    folder = fetch_amazon(data_home=tmp_path / "home", base_url=url)
    assert folder == tmp_path / "home" / "amazon-electronics"
    assert as_rows(load_amazon(folder)[0]) == EXPECTED_TRAIN
    count = len(RecordingHandler.requests)
    fetch_amazon(data_home=tmp_path / "home", base_url=url)
    assert len(RecordingHandler.requests) == count


def test_fetch_rejects_truncated(local_server, tmp_path):
    served, url = local_server
    write_files(served, True)
    path = served / "meta_Electronics.json.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataFormatError, match="truncated"):
        fetch_amazon(data_home=tmp_path / "home", base_url=url)
    assert not (tmp_path / "home" / "amazon-electronics" / "meta_Electronics.json.gz").exists()
