"""Amazon Electronics reviews as click samples (the DIN recipe for Amazon).

Files (the 2014 release of McAuley's Amazon product data, gzipped or plain):

    reviews_Electronics_5.json[.gz]  one JSON object per line, with reviewerID,
                                     asin and unixReviewTime (the 5-core subset)
    meta_Electronics.json[.gz]       one Python dict literal per line (single
                                     quotes, so not JSON), with asin and categories

Recipe (Zhou et al., KDD 2018, and their released preprocessing):

    item fields   ("item", "category"); category = the last entry of the item's last
                  category path, "(unknown)" when the item has no metadata
    behaviours    each user's reviews sorted by unixReviewTime, ties in file order
    samples       for every review k >= 1 of a user: positive (candidate = item k,
                  label 1) and negative (candidate = one fixed random item the user
                  never reviewed, label 0), both with history = reviews 0..k-1
    split         the user's last review (its positive and negative) is test, the
                  second-to-last is validation, the rest train

The validation split is not part of the published recipe, which has only train
and test. It is taken from train so that model selection never uses the test set.
Ids are remapped to 1..V: items by asin, categories by name, users by reviewerID,
each in sorted order.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinydin.data import files
from tinydin.data.download import download
from tinydin.data.files import find_file, line_error, numbered_lines
from tinydin.data.samples import Samples
from tinydin.data.sequential import cap_history, draw_negatives, sort_events

SNAP_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
REVIEWS_FILE = "reviews_Electronics_5.json.gz"
META_FILE = "meta_Electronics.json.gz"
FOLDER = "amazon-electronics"
UNKNOWN_CATEGORY = "(unknown)"

# The asin at the start of a meta line, to skip unreviewed items without parsing them.
_META_ASIN = re.compile(r"""^\{\s*['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


@dataclass
class ReviewTable:
    """Reviews in file order: reviewer and asin strings, unix seconds."""

    user: list[str]
    item: list[str]
    timestamp: np.ndarray


def read_reviews(path) -> ReviewTable:
    """Read reviews_Electronics_5.json[.gz]: one JSON object per line."""
    user, item, timestamp = [], [], []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            review = json.loads(line)
        except json.JSONDecodeError as error:
            raise line_error(path, number, f"not a JSON object ({error.msg})") from None
        if not isinstance(review, dict):
            raise line_error(path, number, "not a JSON object")
        missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if k not in review]
        if missing:
            raise line_error(path, number, f"missing {', '.join(missing)}")
        stamp = review["unixReviewTime"]
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            raise line_error(path, number, f"unixReviewTime {stamp!r} is not an integer")
        user.append(str(review["reviewerID"]))
        item.append(str(review["asin"]))
        timestamp.append(stamp)
    return ReviewTable(user=user, item=item, timestamp=np.asarray(timestamp, dtype=np.int64))


def read_meta(path, keep: set[str] | None = None) -> dict[str, str]:
    """Read meta_Electronics.json[.gz] -> asin to category (last entry of the last path).

    Lines are Python literals and are parsed with ast.literal_eval, which evaluates
    literals only and never runs code. With `keep`, lines whose asin is not in it
    are skipped before parsing (the asin is read from the line's start).
    """
    category = {}
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        if keep is not None:
            match = _META_ASIN.match(line)
            if match and match.group(1) not in keep:
                continue
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise line_error(path, number,
                             f"not a Python dict literal ({type(error).__name__})") from None
        if not isinstance(record, dict) or "asin" not in record:
            raise line_error(path, number, "expected a dict literal with an 'asin' key")
        category[str(record["asin"])] = _last_category(record.get("categories"), path, number)
    return category


def _last_category(paths, path, number: int) -> str:
    if paths is None or paths == []:
        return UNKNOWN_CATEGORY
    if not isinstance(paths, list) or not all(isinstance(p, list) for p in paths):
        raise line_error(path, number, f"categories {paths!r} is not a list of lists")
    last = paths[-1]
    return str(last[-1]) if last else UNKNOWN_CATEGORY


def build_splits(reviews: ReviewTable, category: dict[str, str], seed: int = 0):
    """Turn reviews and item categories into (train, validation, test) Samples."""
    items, item = np.unique(np.asarray(reviews.item, dtype=object).astype(str),
                            return_inverse=True)
    users, user = np.unique(np.asarray(reviews.user, dtype=object).astype(str),
                            return_inverse=True)
    item_category_names = np.asarray([category.get(a, UNKNOWN_CATEGORY) for a in items])
    category_names, item_category = np.unique(item_category_names, return_inverse=True)
    item = item + 1  # ids start at 1
    user = user + 1
    item_category = np.concatenate(([0], item_category + 1))  # indexed by item id

    events = sort_events(user, reviews.timestamp)
    sorted_item = item[events.order]
    sorted_user = user[events.order]
    history = np.stack([sorted_item, item_category[sorted_item]], axis=1).astype(np.int32)

    # Every review after a user's first is a positive with the earlier ones as history.
    target = np.flatnonzero(events.position >= 1)
    reviews_of_user = np.bincount(user)[sorted_user[target]]
    from_end = reviews_of_user - 1 - events.position[target]  # 0 = the user's last review

    rng = np.random.default_rng(seed)
    negative = draw_negatives(user, item, items.size, sorted_user[target], rng)

    # Interleave: positive then negative for each review, same history range.
    candidate = np.empty((2 * target.size, 2), dtype=np.int32)
    candidate[0::2] = history[target]
    candidate[1::2] = np.stack([negative, item_category[negative]], axis=1)
    samples = Samples(
        item_fields=("item", "category"),
        vocab_sizes=(int(items.size), int(category_names.size)),
        candidate=candidate,
        history=history,
        hist_start=np.repeat(events.first[target], 2).astype(np.int64),
        hist_end=np.repeat(target, 2).astype(np.int64),
        label=np.tile(np.array([1.0, 0.0], dtype=np.float32), target.size),
        user=np.repeat(sorted_user[target], 2).astype(np.int32),
        name="amazon",
    )

    from_end = np.repeat(from_end, 2)
    train = samples.subset(np.flatnonzero(from_end >= 2))
    validation = samples.subset(np.flatnonzero(from_end == 1))
    test = samples.subset(np.flatnonzero(from_end == 0))
    return train, validation, test


def load_amazon(data_dir=None, seed: int = 0, max_len: int | None = None, data_home=None):
    """Read the Electronics files and return (train, validation, test) Samples.

    Folder: data_dir, else $TINYDIN_AMAZON_DIR, else fetch_amazon(data_home), which
    downloads once. max_len keeps only the most recent max_len history items.
    """
    folder = resolve_amazon_dir(data_dir, data_home)
    reviews_path, meta_path = amazon_files(folder)
    reviews = read_reviews(reviews_path)
    category = read_meta(meta_path, keep=set(reviews.item))
    splits = build_splits(reviews, category, seed=seed)
    return tuple(cap_history(s, max_len) for s in splits)


def amazon_files(folder) -> tuple[Path, Path]:
    """Locate the reviews and meta files (gzipped or plain) in folder; raise if missing."""
    folder = Path(folder)
    reviews = find_file(folder, [REVIEWS_FILE, REVIEWS_FILE[:-3]])
    meta = find_file(folder, [META_FILE, META_FILE[:-3]])
    if reviews is None or meta is None:
        raise FileNotFoundError(
            f"{folder} lacks {REVIEWS_FILE if reviews is None else META_FILE} (or its "
            f"uncompressed .json); download both 2014 Electronics files or call fetch_amazon()"
        )
    return reviews, meta


def resolve_amazon_dir(data_dir=None, data_home=None) -> Path:
    """Return the folder to read: data_dir, $TINYDIN_AMAZON_DIR, or the fetched files."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get("TINYDIN_AMAZON_DIR")
    if from_env:
        return Path(from_env).expanduser()
    return fetch_amazon(data_home)


def fetch_amazon(data_home=None, base_url: str = SNAP_URL, timeout: float = 600.0) -> Path:
    """Download and verify the two Electronics files into data_home/amazon-electronics.

    Files already there are not downloaded again. No checksum is published for
    them, so each download is verified by decompressing it fully and parsing every
    line (a truncated or corrupt file raises) before it is moved into place.
    """
    home = files.data_home(data_home)
    folder = home / FOLDER
    staging = home / f".{FOLDER}.partial"

    for name, reader in ((REVIEWS_FILE, read_reviews), (META_FILE, read_meta)):
        if (folder / name).is_file():
            continue
        fetched = download(f"{base_url}/{name}", staging / name, timeout)
        try:
            reader(fetched)
        except Exception:
            fetched.unlink(missing_ok=True)
            raise
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(fetched, folder / name)

    shutil.rmtree(staging, ignore_errors=True)
    return folder
