"""What a request may ask, checked before any work: each bad field is one readable message naming the row.

A request row is ``{"user_id": 196, "n": 10}`` (a known user), ``{"movie_ids": [...], "ratings": [...], "n": 10}``
(fresh ratings, folded in), or both. The model's signature takes every field as it comes (MLflow's own type
coercion would silently turn ``1.5`` into user 1), so the types are checked here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from movielens_als.errors import MovieLensAlsError

FIELDS = ("user_id", "movie_ids", "ratings", "n")


class RequestError(MovieLensAlsError):
    """A request the model cannot answer as asked: the client's to fix (HTTP 400)."""


@dataclass(frozen=True)
class Limits:
    rating_min: float
    rating_max: float
    default_n: int
    max_n: int = 1000
    max_ratings: int = 5000
    max_rows: int = 1000


@dataclass(frozen=True)
class Request:
    user_id: int | None
    movie_ids: np.ndarray  # int64, no duplicates
    ratings: np.ndarray  # float64, same length
    n: int


def parse_requests(frame: pd.DataFrame, limits: Limits) -> list[Request]:
    """One Request per row of ``frame``, or RequestError for the first thing wrong."""
    if len(frame) > limits.max_rows:
        raise RequestError(f"{len(frame)} rows in one call: at most {limits.max_rows}")
    unknown = [c for c in frame.columns if c not in FIELDS]
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}: a request has {', '.join(FIELDS)}")
    records = frame.to_dict("records")
    return [_request(i, {k: v for k, v in r.items() if not _missing(v)}, limits) for i, r in enumerate(records)]


def _request(row: int, fields: dict, limits: Limits) -> Request:
    where = f"row {row}"
    n = _integer(fields.get("n", limits.default_n), f"{where}: n")
    if not 1 <= n <= limits.max_n:
        raise RequestError(f"{where}: n must be an integer from 1 to {limits.max_n}, got {n}")
    user = _integer(fields["user_id"], f"{where}: user_id") if "user_id" in fields else None
    if ("movie_ids" in fields) != ("ratings" in fields):
        raise RequestError(f"{where}: movie_ids and ratings go together")
    if user is None and "movie_ids" not in fields:
        raise RequestError(f"{where}: missing fields: give user_id, or movie_ids with ratings, or both")
    ids = _list(fields.get("movie_ids", []), f"{where}: movie_ids")
    values = _list(fields.get("ratings", []), f"{where}: ratings")
    if len(ids) != len(values):
        raise RequestError(f"{where}: {len(ids)} movie_ids but {len(values)} ratings: they must pair up")
    if len(ids) > limits.max_ratings:
        raise RequestError(f"{where}: {len(ids)} ratings: at most {limits.max_ratings} in one request")
    movie_ids = np.array([_integer(v, f"{where}: movie_ids[{j}]") for j, v in enumerate(ids)], dtype=np.int64)
    ratings = np.array([_number(v, f"{where}: ratings[{j}]") for j, v in enumerate(values)], dtype=np.float64)
    off = np.flatnonzero((ratings < limits.rating_min) | (ratings > limits.rating_max))
    if len(off):
        j = off[0]
        raise RequestError(
            f"{where}: ratings[{j}] = {ratings[j]:g} is off the rating scale "
            f"{limits.rating_min:g}..{limits.rating_max:g}"
        )
    unique, counts = np.unique(movie_ids, return_counts=True)
    if (counts > 1).any():
        raise RequestError(f"{where}: movie {unique[counts > 1][0]} is rated twice")
    return Request(user, movie_ids, ratings, n)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _number(value, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RequestError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RequestError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _integer(value, what: str) -> int:
    number = _number(value, what)
    if not number.is_integer() or abs(number) >= 2**31:
        raise RequestError(f"{what} must be an integer id or count, got {value!r}")
    return int(number)


def _list(value, what: str) -> list:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RequestError(f"{what} must be a list, got {value!r}")
    return list(value)
