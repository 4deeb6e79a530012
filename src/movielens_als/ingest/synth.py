"""A synthetic MovieLens release of any size, deterministic for a seed: a stand-in for ml-25m.

The scale benchmark needs releases of 1M to 25M ratings that ``land`` reads exactly like a real GroupLens
csv release (ml-25m layout: ``ratings.csv``, ``movies.csv``, UTF-8, GroupLens quoting), and that keep the
shape ALS cost and quality depend on: users with >= 20 ratings and a heavy tail (ml-25m's top user rated
half the catalogue), Zipf-like movie popularity, gappy movie ids, half-star ratings from biases plus a
low-rank taste term, and taste-driven choice of what each user rates, so implicit-feedback ALS has a
signal to learn. At 25M ratings the shape follows ml-25m; smaller releases scale it down.
"""

from __future__ import annotations

import calendar
import csv
import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from movielens_als.errors import MovieLensAlsError

# ml-25m as published by GroupLens (its README and counts of its files).
ML25M_RATINGS = 25_000_095
ML25M_USERS = 162_541
ML25M_MOVIES = 62_423
ML25M_RATED_MOVIES = 59_047
ML25M_MAX_MOVIE_ID = 209_171
ML25M_FIRST_TS = calendar.timegm((1995, 1, 9, 0, 0, 0))
ML25M_LAST_TS = calendar.timegm((2019, 11, 21, 23, 59, 59))
MIN_USER_RATINGS = 20  # GroupLens only includes users with at least 20 ratings
MIN_RATINGS, MAX_RATINGS = 1_000, 100_000_000

# Shape knobs, tuned so a 25M release lands near ml-25m and small ones stay learnable (see the tests).
MOVIE_SCALE_EXPONENT, MIN_MOVIES = 0.5, 1_000  # catalogues grow slower than ratings: ml-1m 3.9k movies, ml-25m 62k
USER_COUNT_SIGMA = 1.39  # lognormal spread of ratings per user: median ~71, top ~20-30k at ml-25m's mean of ~154
MAX_USER_SHARE = 0.55  # ml-25m's top user rated 32,202 of its 59,047 rated movies
POPULARITY_EXPONENT, POPULARITY_HEAD = 2.0, 0.01  # weight (rank + head * movies) ** -exponent: flat head, long tail
RANK = 12
CHOICE_TASTE = 3.0  # how strongly taste picks what a user rates: what implicit ALS learns from
RATING_MEAN, RATING_TASTE, RATING_NOISE = 2.95, 0.5, 0.6  # below ml's 3.53: the chosen movies skew to liked ones
OVERSAMPLE = 4  # popularity draws per wanted rating, before taste picks among the distinct ones
CHUNK_RATINGS = 1_000_000  # ratings generated and written per batch of users: bounds memory
# ml-25m's genres, each with how many of its movies carry it.
GENRES = {
    "Action": 7348, "Adventure": 4145, "Animation": 2929, "Children": 2935, "Comedy": 16870, "Crime": 5319,
    "Documentary": 5605, "Drama": 25606, "Fantasy": 2731, "Film-Noir": 353, "Horror": 5989, "IMAX": 195,
    "Musical": 1054, "Mystery": 2925, "Romance": 7719, "Sci-Fi": 3595, "Thriller": 8654, "War": 1874, "Western": 1399,
}  # fmt: skip
NO_GENRES, NO_GENRES_SHARE = "(no genres listed)", 0.08
HALF_STARS = pa.array([f"{s / 2:.1f}" for s in range(1, 11)])
RATINGS_SCHEMA = pa.schema(
    [("userId", pa.int32()), ("movieId", pa.int32()), ("rating", pa.dictionary(pa.int8(), pa.string())),
     ("timestamp", pa.int64())]
)  # fmt: skip
# Real titles that exercise GroupLens quoting and UTF-8, always in the catalogue; the others are made up.
FIXED_TITLES = (
    "American President, The (1995)", '"Great Performances" Cats (1998)', "Brother (Брат) (1997)",
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)",
    "Spirited Away (Sen to Chihiro no kamikakushi) (2001)",
)  # fmt: skip
ADJECTIVES = ("Last", "Dark", "Lost", "Silent", "Golden", "Little", "Wild", "Broken", "Secret", "Red", "Hidden")
NOUNS = ("Night", "River", "Love", "Dragon", "City", "Summer", "Ghost", "King", "Heart", "Road", "Star", "Garden")
FOREIGN_WORDS = ("Café", "Señor", "Noël", "Über", "Fräulein", "Москва", "Любовь", "東京", "夢の城", "Ça")


@dataclass(frozen=True)
class SynthSummary:
    ratings: int  # rows written to ratings.csv
    users: int
    movies: int  # rows in movies.csv
    rated_movies: int
    max_user_ratings: int
    path: Path  # the release folder


@dataclass(frozen=True)
class _Model:
    """Per user (index = userId - 1) and per rateable movie (index into ``pool_ids``)."""

    counts: np.ndarray
    user_bias: np.ndarray
    user_taste: np.ndarray  # (users, RANK); user and movie taste scaled so their dot product has unit variance
    start: np.ndarray  # each user's active window, unix seconds
    span: np.ndarray
    pool_ids: np.ndarray  # movie ids that can be rated
    movie_bias: np.ndarray
    movie_taste: np.ndarray
    log_popularity: np.ndarray
    cdf: np.ndarray  # cumulative popularity, for draws with replacement


def synthesize(n_ratings: int, out: str | os.PathLike, seed: int = 0) -> SynthSummary:
    """Write a MovieLens-shaped csv release (ratings.csv, movies.csv) of exactly n_ratings ratings into `out`."""
    if isinstance(n_ratings, bool) or not isinstance(n_ratings, numbers.Integral):
        raise MovieLensAlsError(f"n_ratings must be an integer, got {n_ratings!r}")
    if not MIN_RATINGS <= n_ratings <= MAX_RATINGS:
        raise MovieLensAlsError(f"n_ratings must be from {MIN_RATINGS:,} to {MAX_RATINGS:,}, got {n_ratings:,}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise MovieLensAlsError(f"seed must be a non-negative integer, got {seed!r}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(seed))
    n_movies = max(MIN_MOVIES, round(ML25M_MOVIES * (n_ratings / ML25M_RATINGS) ** MOVIE_SCALE_EXPONENT))
    movie_ids = np.cumsum(rng.geometric(ML25M_MOVIES / ML25M_MAX_MOVIE_ID, n_movies))  # gaps like ml-25m's
    taste = rng.standard_normal((n_movies, RANK), dtype=np.float32) / np.float32(RANK**0.25)
    model = _model(rng, int(n_ratings), movie_ids, taste)
    with _replacing(folder / "ratings.csv") as ratings_tmp, _replacing(folder / "movies.csv") as movies_tmp:
        _write_movies(rng, movies_tmp, movie_ids, taste)
        rated = _write_ratings(rng, ratings_tmp, model)
    return SynthSummary(int(n_ratings), len(model.counts), n_movies, rated, int(model.counts.max()), folder)


def _model(rng: np.random.Generator, n_ratings: int, movie_ids: np.ndarray, taste: np.ndarray) -> _Model:
    n_users = round(n_ratings * ML25M_USERS / ML25M_RATINGS)
    # Like ml-25m, some catalogue movies have no ratings at all.
    pool = np.sort(rng.permutation(len(movie_ids))[: round(len(movie_ids) * ML25M_RATED_MOVIES / ML25M_MOVIES)])
    counts = _user_counts(rng, n_ratings, n_users, int(MAX_USER_SHARE * len(pool)))
    rank = rng.permutation(len(pool)) + 1.0
    log_pop = -POPULARITY_EXPONENT * np.log(rank + POPULARITY_HEAD * len(pool))
    movie_bias = 0.3 * (0.5 - rank / len(pool)) + rng.normal(0, 0.35, len(pool))  # popular movies rate a bit higher
    cdf = np.cumsum(np.exp(log_pop - log_pop.max()))
    # Most users rate in one sitting, a few over years (86,400 s a day).
    span = np.minimum(np.exp(rng.normal(np.log(2 * 86_400), 2.5, n_users)), ML25M_LAST_TS - ML25M_FIRST_TS)
    start = ML25M_FIRST_TS + rng.random(n_users) * (ML25M_LAST_TS - ML25M_FIRST_TS - span)
    user_taste = rng.standard_normal((n_users, RANK), dtype=np.float32) / np.float32(RANK**0.25)
    user_bias = rng.normal(0, 0.4, n_users)
    return _Model(counts, user_bias, user_taste, start, span, movie_ids[pool], movie_bias, taste[pool], log_pop, cdf)


def _user_counts(rng: np.random.Generator, n_ratings: int, n_users: int, cap: int) -> np.ndarray:
    """Ratings per user: 20 plus a lognormal share of the rest, at most `cap`, summing exactly to n_ratings."""
    weight = rng.lognormal(0.0, USER_COUNT_SIGMA, n_users)
    room, free = cap - MIN_USER_RATINGS, np.ones(n_users, bool)
    while True:  # water-filling: users whose share would pass the cap get the cap, the rest share what is left
        left = n_ratings - MIN_USER_RATINGS * n_users - room * int((~free).sum())
        share = weight * left / weight[free].sum()
        if not (over := free & (share > room)).any():
            break
        free &= ~over
    counts = np.where(free, MIN_USER_RATINGS + np.floor(share).astype(np.int64), cap)
    heaviest_free = np.flatnonzero(free)[np.argsort(-weight[free], kind="stable")]
    counts[heaviest_free[: n_ratings - int(counts.sum())]] += 1  # the rounding shortfall, fewer than the free users
    return counts


def _write_ratings(rng: np.random.Generator, path: Path, m: _Model) -> int:
    """Write ratings.csv batch by batch of users; return how many distinct movies were rated."""
    rated = np.zeros(len(m.pool_ids), bool)
    ends = np.unique(np.searchsorted(np.cumsum(m.counts), np.arange(CHUNK_RATINGS, m.counts.sum(), CHUNK_RATINGS)))
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with open(path, "wb") as f:
        f.write(b"userId,movieId,rating,timestamp\n")
        with pacsv.CSVWriter(f, RATINGS_SCHEMA, write_options=options) as writer:
            for users in np.split(np.arange(len(m.counts)), ends[ends > 0]):
                user, movie, stars, when = _ratings(rng, m, users)
                rated[movie] = True
                ids = pa.array(m.pool_ids[movie], pa.int32())
                stars = pa.DictionaryArray.from_arrays(stars, HALF_STARS)
                columns = [pa.array(user + 1, pa.int32()), ids, stars, pa.array(when)]
                writer.write_table(pa.table(columns, schema=RATINGS_SCHEMA))
    return int(rated.sum())


def _ratings(rng: np.random.Generator, m: _Model, users: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ratings of a batch of users: (user index, pool index, half stars - 1, unix seconds), by user then time."""
    # Heavy users rate much of the catalogue: sample them exactly (Gumbel top-k of popularity * exp(taste) over all
    # movies), as popularity draws would need ever more tries to find their last distinct movies.
    heavy = m.counts[users] > len(m.pool_ids) // 30
    parts = [_choose_light(rng, m, users[~heavy])]
    for u in users[heavy]:
        key = m.log_popularity + CHOICE_TASTE * (m.movie_taste @ m.user_taste[u]) + rng.gumbel(size=len(m.pool_ids))
        parts.append((np.full(m.counts[u], u), np.argpartition(-key, m.counts[u] - 1)[: m.counts[u]]))
    user, movie = (np.concatenate(column) for column in zip(*parts, strict=True))
    score = RATING_MEAN + m.user_bias[user] + m.movie_bias[movie] + RATING_TASTE * _taste(m, user, movie)
    score += rng.normal(0, RATING_NOISE, len(user))
    stars = (np.clip(np.rint(score * 2), 1, 10) - 1).astype(np.int8)
    # Sorting user + a fraction in [0, 1) orders by user, then by the fraction that places the rating in the window.
    place = user + rng.random(len(user))
    order = np.argsort(place)
    user, movie, stars = user[order], movie[order], stars[order]
    return user, movie, stars, (m.start[user] + m.span[user] * (place[order] - user)).astype(np.int64)


def _choose_light(rng: np.random.Generator, m: _Model, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Popularity draws with replacement, deduplicated and topped up; taste then picks each user's k among them."""
    k, pool = m.counts[users], len(m.pool_ids)
    codes, draws = np.empty(0, np.int64), OVERSAMPLE * k
    while draws.any():
        owner = np.repeat(np.arange(len(users)), draws)
        movie = np.searchsorted(m.cdf, rng.random(len(owner)) * m.cdf[-1], side="right")
        codes = np.sort(np.concatenate([codes, owner * pool + movie]))
        codes = codes[np.concatenate([[True], codes[1:] != codes[:-1]])]  # np.unique hashes: 50x slower here
        short = k - np.bincount(codes // pool, minlength=len(users))
        draws = np.where(short > 0, 2 * short + 8, 0)
    owner, movie = codes // pool, codes % pool
    key = np.clip(CHOICE_TASTE * _taste(m, users[owner], movie) + rng.gumbel(size=len(codes)), -31, 31)
    order = np.argsort(owner * 64.0 + (31 - key))  # one float sort: by owner, then key descending
    first = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(users)))[:-1]])
    keep = order[np.arange(len(order)) - first[owner[order]] < k[owner[order]]]
    return users[owner[keep]], movie[keep]


def _taste(m: _Model, user: np.ndarray, movie: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", m.user_taste[user], m.movie_taste[movie])


def _write_movies(rng: np.random.Generator, path: Path, movie_ids: np.ndarray, taste: np.ndarray) -> None:
    n, names = len(movie_ids), list(GENRES)
    # Genres follow taste a little, as real ones do, and are as common as in ml-25m; listed alphabetically like it.
    key = np.log(list(GENRES.values())) + taste @ rng.normal(0, 1, (RANK, len(names))).astype(np.float32)
    picked = np.argsort(-(key + rng.gumbel(size=key.shape)), axis=1)
    n_genres = np.where(rng.random(n) < NO_GENRES_SHARE, 0, rng.choice(4, n, p=[0.35, 0.35, 0.2, 0.1]) + 1)
    years = 2019 - np.minimum(rng.exponential(18, n), 117).astype(int)
    words = rng.integers(0, 1 << 30, (n, 4))
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # minimal quoting is GroupLens's: titles with , or " only
        writer.writerow(["movieId", "title", "genres"])
        for i in range(n):
            title = FIXED_TITLES[i] if i < len(FIXED_TITLES) else f"{_title(*words[i])} ({years[i]})"
            genres = "|".join(names[g] for g in sorted(picked[i, : n_genres[i]])) or NO_GENRES
            writer.writerow([int(movie_ids[i]), title, genres])


def _title(form: int, a: int, b: int, c: int) -> str:
    adjective, noun, other = ADJECTIVES[a % len(ADJECTIVES)], NOUNS[b % len(NOUNS)], NOUNS[c % len(NOUNS)]
    forms = (f"{adjective} {noun}", f"{noun}, The", f"{noun} of the {other}", f'"{adjective} {noun}" {other}',
             f"{adjective} {noun} ({FOREIGN_WORDS[c % len(FOREIGN_WORDS)]} {noun.lower()})",
             f"{noun}, {other} and Me", f"{adjective} {other} {c % 9 + 2}")  # fmt: skip
    return forms[form % len(forms)]


@contextmanager
def _replacing(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`, moved over it on success and deleted on failure: never half a file."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
