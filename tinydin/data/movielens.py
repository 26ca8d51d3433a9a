"""MovieLens ratings as click samples, in the DIN recipe and a next-item variant.

Task "rating" (the recipe of Zhou et al., KDD 2018, for MovieLens):

    label(u, k)   = 1 if rating_k >= 4 else 0
    history(u, k) = the movies u rated before rating k (all of them, any rating)

for every rating k of user u except the first, with each user's ratings sorted by
timestamp and equal timestamps kept in file order. It measures how well a model
predicts whether a user will like a movie they are known to watch.

Task "next" (the Amazon recipe applied to ratings): every rated movie is a
behaviour. For every rating after the first, the rated movie is a positive (1) and
one fixed random movie the user never rated is a negative (0), both with the same
history. It measures how well a model tells what a user watches next from what
they do not.

Item fields: ("movie", "genre"). The genre is the first listed genre, and
"(no genres listed)" is its own genre. Movie and genre ids are remapped to 1..V
(movies in increasing original id, genres in name order) over the rated movies;
users to 1..U in increasing original id.

Readers (chosen by the files present in data_dir):
    ratings.csv + movies.csv   ml-latest-small, ml-latest, ml-20m, ml-25m (CSV with header)
    ratings.dat + movies.dat   ml-1m ("::"-separated, latin-1)
    u.data + u.item            ml-100k (tab-separated ratings; "|"-separated items with
                               19 genre flag columns, latin-1)
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinydin.data.download import download, extract_zip, verify_md5
from tinydin.data import files
from tinydin.data.files import DataFormatError, line_error, numbered_lines
from tinydin.data.samples import Samples
from tinydin.data.sequential import cap_history, draw_negatives, sort_events

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

# Files each release must contain; README.txt / README carry the licence.
RELEASES = {
    "ml-latest-small": ["ratings.csv", "movies.csv", "README.txt"],
    "ml-latest": ["ratings.csv", "movies.csv", "README.txt"],
    "ml-20m": ["ratings.csv", "movies.csv", "README.txt"],
    "ml-25m": ["ratings.csv", "movies.csv", "README.txt"],
    "ml-1m": ["ratings.dat", "movies.dat", "README"],
    "ml-100k": ["u.data", "u.item", "README"],
}

# ml-100k's genre flag columns, in the order of its u.genre file.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

NO_GENRE = "(no genres listed)"
TASKS = ("rating", "next")


@dataclass
class RatingTable:
    """Raw ratings in file order, with original ids.

    user, movie: (R,) int64 original ids
    rating:      (R,) float32 stars
    timestamp:   (R,) int64 unix seconds
    genre:       original movie id -> first listed genre
    source:      the folder read, and its format
    """

    user: np.ndarray
    movie: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    genre: dict[int, str]
    source: str


# --------------------------------------------------------------------------- readers


def detect_format(data_dir) -> str:
    """Return "csv", "dat" or "100k" from the files in data_dir; raise if none fits."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"MovieLens folder {folder} does not exist")
    if (folder / "ratings.csv").is_file() and (folder / "movies.csv").is_file():
        return "csv"
    if (folder / "ratings.dat").is_file() and (folder / "movies.dat").is_file():
        return "dat"
    if (folder / "u.data").is_file() and (folder / "u.item").is_file():
        return "100k"
    present = sorted(p.name for p in folder.iterdir())[:10]
    raise FileNotFoundError(
        f"{folder} contains no MovieLens release: expected ratings.csv + movies.csv "
        f"(ml-latest-small, ml-20m, ml-25m), ratings.dat + movies.dat (ml-1m) or "
        f"u.data + u.item (ml-100k); found {present}"
    )


def read_movielens(data_dir) -> RatingTable:
    """Read the ratings and each movie's first genre from a MovieLens folder."""
    folder = Path(data_dir)
    kind = detect_format(folder)
    if kind == "csv":
        columns = read_ratings_csv(folder / "ratings.csv")
        genre = read_movies_csv(folder / "movies.csv")
    elif kind == "dat":
        columns = _read_separated(folder / "ratings.dat", "::", "latin-1",
                                  "UserID::MovieID::Rating::Timestamp")
        genre = read_movies_dat(folder / "movies.dat")
    else:
        columns = _read_separated(folder / "u.data", "\t", "latin-1",
                                  "user id<TAB>item id<TAB>rating<TAB>timestamp")
        genre = read_u_item(folder / "u.item")
    user, movie, rating, timestamp = columns
    return RatingTable(user=user, movie=movie, rating=rating, timestamp=timestamp,
                       genre=genre, source=f"{folder} ({kind})")


_RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")


def read_ratings_csv(path):
    """Read ratings.csv (header userId,movieId,rating,timestamp) into four arrays.

    Fast path: numpy's C parser. If it fails, or a value is out of range, the
    file is scanned again line by line to raise a DataFormatError with the line.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), None)
    if header is None or [h.strip() for h in header] != list(_RATING_COLUMNS):
        raise line_error(path, 1, f"header is {header}, expected {','.join(_RATING_COLUMNS)}")

    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2,
                           encoding="utf-8")
    except ValueError:
        table = None
    if table is not None and (table.size == 0 or table.shape[1] == 4):
        columns = _columns_from_table(table)
        if columns is not None:
            return columns
    return _scan_ratings_csv(path)


def _columns_from_table(table: np.ndarray):
    """Split a parsed (R, 4) float table into typed columns, or None if a value is invalid."""
    if table.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.float32), empty.copy()
    ids = table[:, [0, 1, 3]]
    if not np.all(np.isfinite(table)) or np.any(ids != np.round(ids)) or np.any(table[:, :2] < 1):
        return None
    if np.any(table[:, 2] < 0) or np.any(table[:, 2] > 5):
        return None
    return (table[:, 0].astype(np.int64), table[:, 1].astype(np.int64),
            table[:, 2].astype(np.float32), table[:, 3].astype(np.int64))


def _scan_ratings_csv(path: Path):
    user, movie, rating, timestamp = [], [], [], []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if not row:
                continue  # a blank line, which the fast path skips too
            values = _parse_rating(row, path, reader.line_num,
                                   "userId,movieId,rating,timestamp")
            user.append(values[0])
            movie.append(values[1])
            rating.append(values[2])
            timestamp.append(values[3])
    return _to_columns(user, movie, rating, timestamp)


def _read_separated(path: Path, separator: str, encoding: str, layout: str):
    """Read a headerless ratings file with four separated fields per line."""
    user, movie, rating, timestamp = [], [], [], []
    for number, line in numbered_lines(path, encoding):
        if not line.strip():
            continue
        values = _parse_rating(line.split(separator), path, number, layout)
        user.append(values[0])
        movie.append(values[1])
        rating.append(values[2])
        timestamp.append(values[3])
    return _to_columns(user, movie, rating, timestamp)


def _parse_rating(fields: list[str], path, number: int, layout: str):
    if len(fields) != 4:
        raise line_error(path, number, f"{len(fields)} fields, expected 4 ({layout})")
    try:
        user, movie, timestamp = int(fields[0]), int(fields[1]), int(fields[3])
        rating = float(fields[2])
    except ValueError:
        raise line_error(path, number, f"cannot read {fields} as {layout} "
                                        f"(integers, and a number for the rating)") from None
    if user < 1 or movie < 1:
        raise line_error(path, number, f"user id {user} or movie id {movie} is below 1")
    if not 0.0 <= rating <= 5.0:
        raise line_error(path, number, f"rating {rating} is outside 0..5")
    return user, movie, rating, timestamp


def _to_columns(user, movie, rating, timestamp):
    return (np.asarray(user, dtype=np.int64), np.asarray(movie, dtype=np.int64),
            np.asarray(rating, dtype=np.float32), np.asarray(timestamp, dtype=np.int64))


def _first_genre(genres: str) -> str:
    first = genres.split("|")[0].strip()
    return first if first else NO_GENRE


def read_movies_csv(path) -> dict[int, str]:
    """Read movies.csv (movieId,title,genres; titles may hold quoted commas) -> id to first genre."""
    path = Path(path)
    genre = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["movieId", "title", "genres"]:
            raise line_error(path, 1, f"header is {header}, expected movieId,title,genres")
        for row in reader:
            if len(row) != 3:
                raise line_error(path, reader.line_num,
                                 f"{len(row)} fields, expected 3 (movieId,title,genres); "
                                 f"a title with a comma must be in double quotes")
            genre[_parse_movie_id(row[0], path, reader.line_num)] = _first_genre(row[2])
    return genre


def read_movies_dat(path) -> dict[int, str]:
    """Read ml-1m movies.dat (MovieID::Title::Genres, latin-1) -> id to first genre."""
    genre = {}
    for number, line in numbered_lines(path, "latin-1"):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) < 3:
            raise line_error(path, number, f"{len(fields)} fields, expected 3 (MovieID::Title::Genres)")
        genre[_parse_movie_id(fields[0], path, number)] = _first_genre(fields[-1])
    return genre


def read_u_item(path) -> dict[int, str]:
    """Read ml-100k u.item (24 "|"-separated fields, the last 19 genre flags) -> id to first genre."""
    genre = {}
    for number, line in numbered_lines(path, "latin-1"):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(ML100K_GENRES):
            raise line_error(path, number,
                             f"{len(fields)} fields, expected 24 (id|title|release date|"
                             f"video release date|IMDb URL|19 genre flags)")
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise line_error(path, number, f"genre flags {flags} must each be 0 or 1")
        chosen = [name for name, flag in zip(ML100K_GENRES, flags) if flag == "1"]
        genre[_parse_movie_id(fields[0], path, number)] = chosen[0] if chosen else NO_GENRE
    return genre


def _parse_movie_id(text: str, path, number: int) -> int:
    try:
        movie = int(text)
    except ValueError:
        raise line_error(path, number, f"movie id {text!r} is not an integer") from None
    if movie < 1:
        raise line_error(path, number, f"movie id {movie} is below 1")
    return movie


# --------------------------------------------------------------------------- recipe


def build_samples(table: RatingTable, task: str = "rating", seed: int = 0) -> Samples:
    """Turn a RatingTable into samples for task "rating" or "next" (see the module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown MovieLens task {task!r}; expected one of {', '.join(TASKS)}")

    # Remap ids: movies and users in increasing original id, genres in name order.
    movie_ids, movie = np.unique(table.movie, return_inverse=True)
    users, user = np.unique(table.user, return_inverse=True)
    missing = [int(m) for m in movie_ids if int(m) not in table.genre]
    if missing:
        raise DataFormatError(
            f"{len(missing)} rated movies have no entry in the movies file of "
            f"{table.source} (first: movie id {missing[0]}); the two files come from "
            f"different releases"
        )
    movie_genre_names = [table.genre[int(m)] for m in movie_ids]
    genre_names, movie_genre = np.unique(np.asarray(movie_genre_names), return_inverse=True)
    movie = movie + 1  # ids start at 1
    user = user + 1
    movie_genre = np.concatenate(([0], movie_genre + 1))  # indexed by new movie id

    events = sort_events(user, table.timestamp)
    sorted_movie = movie[events.order]
    sorted_user = user[events.order]
    history = np.stack([sorted_movie, movie_genre[sorted_movie]], axis=1).astype(np.int32)

    # One sample per behaviour after the user's first: history = the earlier ones.
    target = np.flatnonzero(events.position >= 1)
    hist_start = events.first[target]
    hist_end = target.astype(np.int64)

    if task == "rating":
        candidate = history[target]
        label = (table.rating[events.order][target] >= 4.0).astype(np.float32)
        sample_user = sorted_user[target]
    else:
        rng = np.random.default_rng(seed)
        negative = draw_negatives(user, movie, movie_ids.size, sorted_user[target], rng)
        negative_fields = np.stack([negative, movie_genre[negative]], axis=1).astype(np.int32)

        # Interleave: positive then negative for each behaviour, same history range.
        candidate = np.empty((2 * target.size, 2), dtype=np.int32)
        candidate[0::2] = history[target]
        candidate[1::2] = negative_fields
        label = np.tile(np.array([1.0, 0.0], dtype=np.float32), target.size)
        hist_start = np.repeat(hist_start, 2)
        hist_end = np.repeat(hist_end, 2)
        sample_user = np.repeat(sorted_user[target], 2)

    return Samples(
        item_fields=("movie", "genre"),
        vocab_sizes=(int(movie_ids.size), int(genre_names.size)),
        candidate=np.ascontiguousarray(candidate, dtype=np.int32),
        history=history,
        hist_start=hist_start.astype(np.int64),
        hist_end=hist_end.astype(np.int64),
        label=label,
        user=sample_user.astype(np.int32),
        name="movielens",
    )


def load_movielens(data_dir=None, task: str = "rating", seed: int = 0,
                   max_len: int | None = None, variant: str = "ml-latest-small",
                   data_home=None) -> Samples:
    """Read a MovieLens folder and build samples.

    Folder: data_dir, else $TINYDIN_MOVIELENS_DIR (a local ml-latest-small copy),
    else fetch_movielens(variant, data_home), which downloads once. max_len keeps
    only the most recent max_len history items of each sample (None keeps all).
    """
    folder = resolve_movielens_dir(data_dir, variant, data_home)
    samples = build_samples(read_movielens(folder), task=task, seed=seed)
    return cap_history(samples, max_len)


def resolve_movielens_dir(data_dir=None, variant: str = "ml-latest-small", data_home=None) -> Path:
    """Return the folder to read: data_dir, $TINYDIN_MOVIELENS_DIR, or a fetched release."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get("TINYDIN_MOVIELENS_DIR")
    if from_env and variant == "ml-latest-small":
        return Path(from_env).expanduser()
    return fetch_movielens(variant, data_home)


def fetch_movielens(name: str = "ml-latest-small", data_home=None,
                    base_url: str = GROUPLENS_URL, timeout: float = 60.0) -> Path:
    """Download, verify and extract a GroupLens MovieLens release; return its folder.

    If data_home/<name> already contains the release's files, nothing is downloaded.
    Otherwise <base_url>/<name>.zip is downloaded into data_home, its MD5 is
    checked against <base_url>/<name>.zip.md5 when that file can be fetched (a
    mismatch raises), the archive's CRCs and expected files are checked, and it
    is extracted to data_home/<name>. data_home defaults to $TINYDIN_DATA_HOME,
    else ~/.cache/tinydin.
    """
    if name not in RELEASES:
        raise ValueError(
            f"unknown MovieLens release {name!r}; expected one of {', '.join(RELEASES)}"
        )
    home = files.data_home(data_home)
    folder = home / name
    expected = RELEASES[name]
    if all((folder / f).is_file() for f in expected):
        return folder

    archive = download(f"{base_url}/{name}.zip", home / f"{name}.zip", timeout)
    verify_md5(archive, f"{base_url}/{name}.zip.md5")
    try:
        folder = extract_zip(archive, home, name, expected)
    finally:
        archive.unlink(missing_ok=True)
    return folder
