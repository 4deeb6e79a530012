"""The synthetic release: GroupLens csv format, exact size, MovieLens shape, determinism, learnable taste.

No Spark: the files are read with the csv module, pandas and numpy.
"""

from __future__ import annotations

import calendar
import csv
import re

import numpy as np
import pandas as pd
import pytest

from movielens_als.errors import MovieLensAlsError
from movielens_als.ingest import synth
from movielens_als.ingest.synth import synthesize

N = 50_000
HALF_STARS = {f"{s / 2:.1f}" for s in range(1, 11)}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "release"
    summary = synthesize(N, out, seed=7)
    ratings = pd.read_csv(out / "ratings.csv", dtype=str, keep_default_na=False)
    with open(out / "movies.csv", encoding="utf-8", newline="") as f:
        movie_lines = f.read().split("\n")
    return summary, ratings, movie_lines


@pytest.fixture(scope="module")
def ratings(release) -> pd.DataFrame:
    frame = release[1]
    return frame.astype({"userId": int, "movieId": int, "rating": float, "timestamp": int})


@pytest.fixture(scope="module")
def movies(release) -> list[list[str]]:
    return list(csv.reader(release[2][1:-1]))


def test_exact_size_headers_and_summary(release, ratings, movies):
    summary, _, movie_lines = release
    raw = (summary.path / "ratings.csv").read_bytes().split(b"\n")
    assert raw[0] == b"userId,movieId,rating,timestamp"
    assert raw[-1] == b"" and len(raw) - 2 == len(ratings) == summary.ratings == N
    assert movie_lines[0] == "movieId,title,genres" and movie_lines[-1] == ""
    counts = ratings.groupby("userId").size()
    assert summary.users == len(counts) and list(counts.index) == list(range(1, summary.users + 1))
    assert summary.users == round(N / 153.8)
    assert summary.movies == len(movies) and summary.rated_movies == ratings.movieId.nunique()
    assert summary.max_user_ratings == counts.max()
    assert sorted(p.name for p in summary.path.iterdir()) == ["movies.csv", "ratings.csv"]  # no temp files left


def test_ratings_are_printed_half_stars(release):
    text = release[1]
    assert set(text.rating) <= HALF_STARS
    assert text.userId.str.fullmatch(r"[1-9]\d*").all() and text.movieId.str.fullmatch(r"[1-9]\d*").all()
    assert text.timestamp.str.fullmatch(r"\d{9,10}").all()


def test_rating_distribution_is_movielens_like(ratings):
    assert 3.3 < ratings.rating.mean() < 3.7
    shares = ratings.rating.value_counts(normalize=True)
    assert shares.idxmax() in (3.5, 4.0) and shares[0.5] < 0.02 and shares[5.0] > 0.05


def test_users_have_at_least_20_ratings_and_a_heavy_tail(ratings, release):
    counts = ratings.groupby("userId").size()
    assert 20 <= counts.min() <= 25  # GroupLens's floor, and users sit near it
    assert counts.max() >= 10 * counts.median()
    assert counts.max() <= synth.MAX_USER_SHARE * release[0].movies  # capped well below the catalogue


def test_no_duplicate_pairs_and_every_rated_movie_is_listed(ratings, movies):
    assert not ratings.duplicated(["userId", "movieId"]).any()
    ids = [int(row[0]) for row in movies]
    assert ids == sorted(set(ids))
    assert set(ratings.movieId) <= set(ids)
    assert len(set(ids) - set(ratings.movieId)) > 0  # like ml-25m, some movies are never rated


def test_movie_ids_have_gaps(movies):
    ids = np.array([int(row[0]) for row in movies])
    assert ids[-1] > 2 * len(ids) and (np.diff(ids) > 1).mean() > 0.3


def test_popularity_is_skewed(ratings):
    per_movie = ratings.groupby("movieId").size().sort_values(ascending=False).to_numpy()
    top = max(1, len(per_movie) // 100)
    assert per_movie[:top].sum() / len(ratings) > 0.05  # 5x a uniform share
    assert per_movie[: len(per_movie) // 10].sum() / len(ratings) > 0.3
    assert per_movie[0] > 20 * np.median(per_movie)


def test_timestamps_are_in_ml25m_range_and_ordered_per_user(ratings):
    first, last = calendar.timegm((1995, 1, 9, 0, 0, 0)), calendar.timegm((2019, 11, 22, 0, 0, 0))
    assert ratings.timestamp.between(first, last - 1).all()
    assert (ratings.userId.diff().fillna(1) >= 0).all()  # sorted by user ...
    same_user = ratings.userId.diff() == 0
    assert (ratings.timestamp.diff()[same_user] >= 0).all()  # ... then by time


def test_movies_csv_uses_grouplens_quoting_and_utf8(release, movies):
    lines = release[2][1:-1]
    assert all(len(row) == 3 for row in movies)
    for line, (movie_id, title, _) in zip(lines, movies, strict=True):
        quoted = "," in title or '"' in title
        expected = '"' + title.replace('"', '""') + '"' if quoted else title
        assert line.startswith(f"{movie_id},{expected},"), line
    titles = [row[1] for row in movies]
    assert "American President, The (1995)" in titles and '"Great Performances" Cats (1998)' in titles
    assert any("," in t for t in titles[len(synth.FIXED_TITLES) :])  # made-up titles need quoting too
    assert any(not t.isascii() for t in titles[len(synth.FIXED_TITLES) :])
    assert any(re.search(r"[\u0400-\u04ff]", t) for t in titles)  # Cyrillic
    assert any(re.search(r"[\u3040-\u9fff]", t) for t in titles)  # Japanese
    assert all(re.search(r" \((19|20)\d\d\)$", t) for t in titles)


def test_genres_are_movielens_genres(movies):
    genres = [row[2] for row in movies]
    for value in genres:
        names = value.split("|")
        assert value == synth.NO_GENRES or (set(names) <= set(synth.GENRES) and names == sorted(names))
    assert 0.02 < sum(g == synth.NO_GENRES for g in genres) / len(genres) < 0.15


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    synthesize(20_000, tmp_path / "a", seed=1)
    synthesize(20_000, tmp_path / "b", seed=1)
    synthesize(20_000, tmp_path / "c", seed=2)
    for name in ("ratings.csv", "movies.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_existing_files_are_replaced_and_a_failure_leaves_them_whole(tmp_path, monkeypatch):
    (tmp_path / "ratings.csv").write_text("old ratings\n")
    (tmp_path / "movies.csv").write_text("old movies\n")
    monkeypatch.setattr(synth, "CHUNK_RATINGS", 5_000)  # several batches, so the failure comes mid-file
    real, calls = synth._ratings, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(synth, "_ratings", failing)
    with pytest.raises(OSError, match="disk full"):
        synthesize(20_000, tmp_path)
    assert (tmp_path / "ratings.csv").read_text() == "old ratings\n"
    assert (tmp_path / "movies.csv").read_text() == "old movies\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["movies.csv", "ratings.csv"]

    monkeypatch.setattr(synth, "_ratings", real)
    summary = synthesize(20_000, tmp_path)
    assert len((tmp_path / "ratings.csv").read_text().splitlines()) == summary.ratings + 1 == 20_001


def test_batches_do_not_change_the_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "CHUNK_RATINGS", 3_000)
    summary = synthesize(20_000, tmp_path)
    frame = pd.read_csv(tmp_path / "ratings.csv")
    assert len(frame) == summary.ratings and not frame.duplicated(["userId", "movieId"]).any()
    assert frame.groupby("userId").size().min() == 20


def test_taste_beats_popularity_for_top_10(ratings):
    """A Spark-free proxy for ALS learnability: a rank-16 SVD of the 0/1 train matrix against popularity."""
    users = ratings.userId.to_numpy() - 1
    items = pd.factorize(ratings.movieId)[0]
    held_out = np.random.default_rng(1).random(len(ratings)) < 0.2
    train = np.zeros((users.max() + 1, items.max() + 1))
    train[users[~held_out], items[~held_out]] = 1
    test = np.zeros_like(train)
    test[users[held_out], items[held_out]] = 1

    def precision_at_10(scores: np.ndarray) -> float:
        top = np.argsort(-np.where(train > 0, -np.inf, scores), axis=1)[:, :10]
        return np.take_along_axis(test, top, axis=1).sum() / (10 * len(train))

    u, s, vt = np.linalg.svd(train, full_matrices=False)
    svd = precision_at_10((u[:, :16] * s[:16]) @ vt[:16])
    popularity = precision_at_10(np.broadcast_to(train.sum(axis=0), train.shape))
    assert svd > 1.2 * popularity, (svd, popularity)


@pytest.mark.parametrize("n_ratings", [999, 0, -5, 10**9, 20_000.0, "20000", True, None])
def test_bad_n_ratings_is_a_one_line_error(tmp_path, n_ratings):
    with pytest.raises(MovieLensAlsError, match="n_ratings must be") as info:
        synthesize(n_ratings, tmp_path)
    assert "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())


def test_bad_seed_is_an_error(tmp_path):
    with pytest.raises(MovieLensAlsError, match="seed must be"):
        synthesize(20_000, tmp_path, seed=-1)
