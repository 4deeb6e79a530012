"""The four views' answers, from a backend: what each one asks, checked, and the answer or one AppError line."""

from __future__ import annotations

import math
from dataclasses import dataclass

from movielens_als.app.backend import AppError, Backend, Health, Movie
from movielens_als.columns import PERSONAL, POPULAR

TOP_N = 10  # answers per view: the serving tables' top-N
SEARCH_LIMIT = 20
MAX_RATED = 100  # ratings one "Rate and see" request may carry


@dataclass(frozen=True)
class Pick:
    rank: int
    movie: Movie
    score: float
    because: Movie | None  # the rated movie closest to this one in the item factors


@dataclass(frozen=True)
class Answer:
    source: str
    picks: tuple[Pick, ...]


def for_you(backend: Backend, user: str) -> tuple[int, Answer]:
    """A known user's served top-N (source ``personal``), or why there is none."""
    user_id = _user_id(user)
    answer = _answer(backend, {"user_id": user_id, "n": TOP_N})
    if answer.source != PERSONAL:
        raise AppError(
            f"user {user_id} is not known to the champion model (not in the ratings it was trained on, or fewer "
            f"than {backend.min_ratings()} ratings): try Rate and see"
        )
    return user_id, answer


def rate_and_see(backend: Backend, ratings: dict) -> Answer:
    """Fresh ratings folded in (``folded``), or the popular movies below ``min_ratings`` (``popular``)."""
    movie_ids, values = _ratings(backend, ratings)
    return _answer(backend, {"movie_ids": movie_ids, "ratings": values, "n": TOP_N})


def save(backend: Backend, ratings: dict) -> tuple[int, Answer]:
    """Give the person a new user id and send their ratings with it: the endpoint logs the request in its inference
    table, where the next run's land harvests them (so that user gets personal recommendations after it)."""
    movie_ids, values = _ratings(backend, ratings)
    user_id = backend.new_user_id()
    return user_id, _answer(backend, {"user_id": user_id, "movie_ids": movie_ids, "ratings": values, "n": TOP_N})


def _ratings(backend: Backend, ratings: dict) -> tuple[list[int], list[float]]:
    if not isinstance(ratings, dict) or not ratings:
        raise AppError("rate at least one movie to see recommendations")
    if len(ratings) > MAX_RATED:
        raise AppError(f"{len(ratings)} ratings: at most {MAX_RATED} at once")
    scale = backend.scale()
    movie_ids, values = [], []
    for key, value in ratings.items():
        movie_id = _integer(key, "movie id")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AppError(f"the rating of movie {movie_id} must be a number, got {value!r}")
        steps = (value - scale.low) / scale.step
        if not scale.low <= value <= scale.high or abs(steps - round(steps)) > 1e-9:
            raise AppError(
                f"the rating of movie {movie_id} must be {scale.low:g} to {scale.high:g} "
                f"in steps of {scale.step:g}, got {value:g}"
            )
        movie_ids.append(movie_id)
        values.append(float(value))
    return movie_ids, values


def similar(backend: Backend, title: str) -> tuple[Movie, list[tuple[Movie, float]]]:
    title = (title or "").strip()
    if not title:
        raise AppError("give a movie title, e.g. Star Wars (1977)")
    found = backend.similar(title, TOP_N)
    if found is None:
        close = backend.search(title.split(" (")[0], 3)
        hint = f": did you mean {' or '.join(m.title for m in close)}?" if close else ""
        raise AppError(f"no movie is titled {title!r}{hint}")
    movie, others = found
    if not others:
        raise AppError(f"{movie.title} has too few ratings for similar movies")
    return found


def search(backend: Backend, text: str) -> list[Movie]:
    text = (text or "").strip()
    return backend.search(text, SEARCH_LIMIT) if len(text) >= 2 else []


def health(backend: Backend) -> Health:
    return backend.health()


def _answer(backend: Backend, record: dict) -> Answer:
    rows = sorted(backend.query([record]), key=lambda row: row["rank"])
    known = backend.movies({row["movie_id"] for row in rows} | {row["because"] for row in rows if _has(row)})
    picks = tuple(
        Pick(
            int(row["rank"]),
            known.get(int(row["movie_id"])) or Movie(int(row["movie_id"]), str(row.get("title") or "")),
            float(row["score"]),
            known.get(int(row["because"])) if _has(row) else None,
        )
        for row in rows
    )
    return Answer(rows[0]["source"] if rows else POPULAR, picks)


def _has(row: dict) -> bool:
    value = row.get("because")
    return value is not None and value == value  # NaN: a pandas frame's missing value


def _user_id(text: str) -> int:
    return _integer((text or "").strip(), "user id")


def _integer(value, what: str) -> int:
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or not 0 < int(text) < 2**31:
        raise AppError(f"the {what} must be a positive whole number, got {str(value)[:40]!r}")
    return int(text)
