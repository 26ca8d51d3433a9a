"""MovieLens: readers for every format, both recipes by hand, errors, download, real data."""
import csv
import hashlib
import http.server
import os
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tinydin.data.download import parse_md5
from tinydin.data.files import DataFormatError
from tinydin.data.movielens import (build_samples, detect_format, fetch_movielens,
                                    load_movielens, read_movielens)

# Two users. User 7 rates movies 10 and 30 at the same second (t=100): file order
# (10 before 30) must be kept. Rows are not in time order.
RATINGS = [  # user, movie, rating, timestamp
    (7, 10, "4.0", 100),
    (7, 20, "3.5", 50),
    (7, 30, "5.0", 100),
    (7, 40, "2.0", 200),
    (3, 40, "4.5", 10),
    (3, 10, "1.0", 20),
]
MOVIES = [  # id, title, genres (first listed genre is the category)
    (10, "Movie, The (1999)", "Comedy|Drama"),
    (20, "Another (2000)", "Action"),
    (30, "Third (2001)", "(no genres listed)"),
    (40, "Fourth (2002)", "Drama|Western"),
]

# Expected after remapping. Movies 10, 20, 30, 40 -> 1..4. Genres in name order:
# "(no genres listed)" 1, Action 2, Comedy 3, Drama 4. Users 3 -> 1, 7 -> 2.
# Sorted behaviours: user 1: 40, 10; user 2: 20, 10, 30, 40.
M10, M20, M30, M40 = [1, 3], [2, 2], [3, 1], [4, 4]
EXPECTED_RATING = [  # (user, candidate, label, history)
    (1, M10, 0.0, [M40]),
    (2, M10, 1.0, [M20]),
    (2, M30, 1.0, [M20, M10]),
    (2, M40, 0.0, [M20, M10, M30]),
]


def write_csv_release(folder: Path, ratings=RATINGS, movies=MOVIES):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ratings.csv", "w", newline="", encoding="utf-8") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        for user, movie, rating, stamp in ratings:
            handle.write(f"{user},{movie},{rating},{stamp}\n")
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows(movies)
    (folder / "README.txt").write_text("toy licence\n")
    return folder


def write_1m_release(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{m}::{int(float(r))}::{t}" for u, m, r, t in RATINGS]
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = [f"{m}::{title.replace('Movie, The', 'Amélie')}::{g}" for m, title, g in MOVIES]
    (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    return folder


GENRE_FLAGS = {10: {5, 8}, 20: {1}, 30: set(), 40: {8, 18}}  # u.genre column numbers


def write_100k_release(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{m}\t{int(float(r))}\t{t}" for u, m, r, t in RATINGS]
    (folder / "u.data").write_text("\n".join(lines) + "\n", encoding="latin-1")
    items = []
    for movie, title, _ in MOVIES:
        flags = ["1" if g in GENRE_FLAGS[movie] else "0" for g in range(19)]
        items.append("|".join([str(movie), "Café " + title, "01-Jan-1995", "", "http://x"] + flags))
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    return folder


def as_rows(samples):
    rows = []
    for i in range(len(samples)):
        history = samples.history[samples.hist_start[i]:samples.hist_end[i]].tolist()
        rows.append((int(samples.user[i]), samples.candidate[i].tolist(),
                     float(samples.label[i]), history))
    return rows


def test_rating_task_by_hand(tmp_path):
    samples = build_samples(read_movielens(write_csv_release(tmp_path)), task="rating")
    assert as_rows(samples) == EXPECTED_RATING
    assert samples.vocab_sizes == (4, 4)
    assert samples.item_fields == ("movie", "genre")


def test_rating_task_shares_history(tmp_path):
    samples = build_samples(read_movielens(write_csv_release(tmp_path)))
    # One stored row per rating, whatever the number of samples.
    assert samples.history.shape == (6, 2)


@pytest.mark.parametrize("writer", [write_1m_release, write_100k_release])
def test_other_formats_same_samples(tmp_path, writer):
    samples = build_samples(read_movielens(writer(tmp_path)))
    assert as_rows(samples) == EXPECTED_RATING


def test_detect_format(tmp_path):
    assert detect_format(write_csv_release(tmp_path / "a")) == "csv"
    assert detect_format(write_1m_release(tmp_path / "b")) == "dat"
    assert detect_format(write_100k_release(tmp_path / "c")) == "100k"


def test_detect_format_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="contains no MovieLens release"):
        detect_format(tmp_path)


# For task "next": user 9 (remapped to 3) and movie 50 (remapped to 5, Action) are
# added, so user 7, who rated movies 10-40, has exactly one movie left: movie 50.
NEXT_RATINGS = RATINGS + [(9, 50, "3.0", 5), (9, 20, "4.0", 6)]
NEXT_MOVIES = MOVIES + [(50, "Fifth (2003)", "Action")]
M50 = [5, 2]


def next_samples(tmp_path, seed=3):
    folder = write_csv_release(tmp_path, ratings=NEXT_RATINGS, movies=NEXT_MOVIES)
    return build_samples(read_movielens(folder), task="next", seed=seed)


def test_next_task_positives_by_hand(tmp_path):
    rows = next_samples(tmp_path)
    positives = [row for row in as_rows(rows) if row[2] == 1.0]
    assert positives == [row[:2] + (1.0,) + row[3:] for row in EXPECTED_RATING] + [
        (3, M20, 1.0, [M50])]


def test_next_task_pairs_share_history(tmp_path):
    rows = as_rows(next_samples(tmp_path))
    assert [r[2] for r in rows] == [1.0, 0.0] * 5
    for positive, negative in zip(rows[0::2], rows[1::2]):
        assert negative[0] == positive[0]
        assert negative[3] == positive[3]


def test_next_task_forced_negative(tmp_path):
    rows = as_rows(next_samples(tmp_path))
    negatives_of_user_2 = [r[1] for r in rows if r[0] == 2 and r[2] == 0.0]
    assert negatives_of_user_2 == [M50, M50, M50]


def test_next_task_negatives_never_rated(tmp_path):
    rated = {1: {4, 1}, 2: {1, 2, 3, 4}, 3: {5, 2}}
    for seed in range(5):
        for user, candidate, label, _ in as_rows(next_samples(tmp_path, seed)):
            if label == 0.0:
                assert candidate[0] not in rated[user]


def test_next_task_negatives_fixed_by_seed(tmp_path):
    first = next_samples(tmp_path, seed=11).candidate.tolist()
    again = next_samples(tmp_path, seed=11).candidate.tolist()
    assert first == again


def test_next_task_user_rated_everything(tmp_path):
    # Without movie 50, user 7 rated all four movies, so no negative exists.
    with pytest.raises(ValueError, match="user 2 interacted with all 4 items"):
        build_samples(read_movielens(write_csv_release(tmp_path)), task="next")


def test_unknown_task(tmp_path):
    with pytest.raises(ValueError, match="unknown MovieLens task 'clicks'"):
        build_samples(read_movielens(write_csv_release(tmp_path)), task="clicks")


def test_quoted_comma_title_parsed(tmp_path):
    folder = write_csv_release(tmp_path)
    assert '"Movie, The (1999)"' in (folder / "movies.csv").read_text()
    assert read_movielens(folder).genre[10] == "Comedy"


def test_malformed_ratings_csv_names_line(tmp_path):
    folder = write_csv_release(tmp_path)
    lines = (folder / "ratings.csv").read_text().splitlines()
    lines[3] = "7,20,three,50"
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as error:
        read_movielens(folder)
    assert str(error.value).startswith(f"{folder / 'ratings.csv'}, line 4:")


def test_ratings_csv_missing_field_names_line(tmp_path):
    folder = write_csv_release(tmp_path)
    with open(folder / "ratings.csv", "a") as handle:
        handle.write("3,20,4.0\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv, line 8: 3 fields, expected 4"):
        read_movielens(folder)


def test_ratings_csv_bad_header(tmp_path):
    folder = write_csv_release(tmp_path)
    text = (folder / "ratings.csv").read_text().replace("userId", "user")
    (folder / "ratings.csv").write_text(text)
    with pytest.raises(DataFormatError, match="line 1: header"):
        read_movielens(folder)


def test_malformed_movies_dat_names_line(tmp_path):
    folder = write_1m_release(tmp_path)
    with open(folder / "movies.dat", "a", encoding="latin-1") as handle:
        handle.write("50::No genres\n")
    with pytest.raises(DataFormatError, match=r"movies.dat, line 5: 2 fields"):
        read_movielens(folder)


def test_malformed_u_item_names_line(tmp_path):
    folder = write_100k_release(tmp_path)
    lines = (folder / "u.item").read_text(encoding="latin-1").splitlines()
    lines[1] = lines[1].rsplit("|", 1)[0] + "|2"
    (folder / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"u.item, line 2: genre flags"):
        read_movielens(folder)


def test_malformed_u_data_names_line(tmp_path):
    folder = write_100k_release(tmp_path)
    with open(folder / "u.data", "a", encoding="latin-1") as handle:
        handle.write("3\t20\t4\n")
    with pytest.raises(DataFormatError, match=r"u.data, line 7: 3 fields, expected 4"):
        read_movielens(folder)


def test_rated_movie_missing_from_movies(tmp_path):
    folder = write_csv_release(tmp_path, movies=MOVIES[:3])
    with pytest.raises(DataFormatError, match="movie id 40"):
        build_samples(read_movielens(folder))


def test_load_max_len_caps_ranges(tmp_path):
    samples = load_movielens(write_csv_release(tmp_path), max_len=1)
    histories = [row[3] for row in as_rows(samples)]
    assert histories == [[M40], [M20], [M10], [M30]]


# --------------------------------------------------------------------------- download


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        RecordingHandler.requests.append(self.path)


@pytest.fixture
def local_server(tmp_path):
    """Serve tmp_path/served on 127.0.0.1 and yield (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    RecordingHandler.requests = []
    handler = partial(RecordingHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def make_release_zip(served: Path, tmp_path: Path, name="ml-latest-small", md5=True):
    source = write_csv_release(tmp_path / "source" / name)
    archive = served / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in source.iterdir():
            zipped.write(path, f"{name}/{path.name}")
    if md5:
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        (served / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {digest}\n")
    return archive


def test_fetch_downloads_and_extracts(local_server, tmp_path):
    served, url = local_server
    make_release_zip(served, tmp_path)
    folder = fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)
    assert folder == tmp_path / "home" / "ml-latest-small"
    assert as_rows(load_movielens(folder)) == EXPECTED_RATING
    assert "/ml-latest-small.zip.md5" in RecordingHandler.requests


def test_fetch_skips_existing(local_server, tmp_path):
    served, url = local_server
    make_release_zip(served, tmp_path)
    fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)
    count = len(RecordingHandler.requests)
    fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)
    assert len(RecordingHandler.requests) == count


def test_fetch_without_md5_file(local_server, tmp_path):
    served, url = local_server
    make_release_zip(served, tmp_path, md5=False)
    folder = fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)
    assert (folder / "ratings.csv").is_file()


def test_fetch_md5_mismatch(local_server, tmp_path):
    served, url = local_server
    make_release_zip(served, tmp_path)
    (served / "ml-latest-small.zip.md5").write_text("0" * 32 + "  ml-latest-small.zip\n")
    with pytest.raises(ValueError, match="MD5 of the downloaded ml-latest-small.zip"):
        fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)
    assert not (tmp_path / "home" / "ml-latest-small").exists()
    assert not (tmp_path / "home" / "ml-latest-small.zip").exists()


def test_fetch_corrupt_zip(local_server, tmp_path):
    served, url = local_server
    (served / "ml-latest-small.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="is not a valid zip archive"):
        fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)


def test_fetch_zip_missing_files(local_server, tmp_path):
    served, url = local_server
    with zipfile.ZipFile(served / "ml-latest-small.zip", "w") as zipped:
        zipped.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n")
    with pytest.raises(ValueError, match="lacks ml-latest-small/movies.csv"):
        fetch_movielens("ml-latest-small", data_home=tmp_path / "home", base_url=url)


def test_fetch_unreachable_host(tmp_path):
    # Port 9 on loopback (discard) has no server here: the connection is refused.
    with pytest.raises(OSError, match="download of http://127.0.0.1:9/ml-1m.zip failed"):
        fetch_movielens("ml-1m", data_home=tmp_path, base_url="http://127.0.0.1:9")


def test_fetch_file_url(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    make_release_zip(served, tmp_path, name="ml-latest-small")
    folder = fetch_movielens("ml-latest-small", data_home=tmp_path / "home",
                             base_url=served.as_uri())
    assert as_rows(load_movielens(folder)) == EXPECTED_RATING


def test_fetch_unknown_release(tmp_path):
    with pytest.raises(ValueError, match="unknown MovieLens release 'ml-2m'"):
        fetch_movielens("ml-2m", data_home=tmp_path)


def test_parse_md5_formats():
    digest = "0123456789abcdef0123456789ABCDEF"
    assert parse_md5(f"MD5 (ml-1m.zip) = {digest}\n") == digest.lower()
    assert parse_md5(f"{digest}  ml-1m.zip\n") == digest.lower()
    assert parse_md5("no digest here") is None


# --------------------------------------------------------------------------- real data


REAL_DIR = os.environ.get("TINYDIN_MOVIELENS_DIR")
needs_real = pytest.mark.skipif(
    not REAL_DIR, reason="TINYDIN_MOVIELENS_DIR is not set: it must point at a local "
                         "ml-latest-small copy (ratings.csv, movies.csv)")


def reference_rating_task(folder):
    """Plain-Python recipe: per user, stable sort by time, skip the first rating."""
    per_user = {}
    with open(Path(folder) / "ratings.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            per_user.setdefault(row["userId"], []).append(
                (int(row["timestamp"]), float(row["rating"])))
    samples = clicks = 0
    for ratings in per_user.values():
        ratings.sort(key=lambda pair: pair[0])
        samples += len(ratings) - 1
        clicks += sum(rating >= 4 for _, rating in ratings[1:])
    return len(per_user), samples, clicks


@needs_real
def test_real_ml_latest_small():
    table = read_movielens(REAL_DIR)
    samples = build_samples(table)
    users, n_samples, clicks = reference_rating_task(REAL_DIR)
    assert users == 610
    assert np.unique(table.user).size == 610
    assert table.user.size == 100836
    assert len(samples) == 100836 - 610
    assert len(samples) == n_samples
    assert int(samples.label.sum()) == clicks
    assert samples.history.shape[0] == 100836


def test_fast_and_line_parsers_agree(tmp_path):
    from tinydin.data.movielens import _scan_ratings_csv, read_ratings_csv

    path = write_csv_release(tmp_path) / "ratings.csv"
    for fast, scanned in zip(read_ratings_csv(path), _scan_ratings_csv(path)):
        assert np.array_equal(fast, scanned)


def test_environment_folder_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYDIN_MOVIELENS_DIR", str(write_csv_release(tmp_path)))
    assert as_rows(load_movielens()) == EXPECTED_RATING
