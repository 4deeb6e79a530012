"""The rating model's blend and its neighbour feature, as arithmetic that needs no Spark: the one implementation
that the Spark path (:mod:`rating_model`, :mod:`knn`, per block of users) and the pyfunc (:mod:`pyfunc`) both run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Blend:
    """``prediction = intercept + explicit * (baseline + factors) + implicit * ranking score + knn * knn_ui``.

    Which movies a user chose to rate says something about how they rate them (the insight behind
    Koren's SVD++); the implicit ranking model's score carries it. ``knn_ui`` adds what the factors
    smooth away: how the user rated movies much like this one (ml-100k research: test RMSE 0.910 ->
    0.892). The weights are least squares on the validation split, shrunk towards the unblended model
    (0, 1, 0, 0) by ``PRIOR_ROWS`` pseudo-rows so a tiny validation split cannot produce wild weights.
    """

    intercept: float = 0.0
    explicit: float = 1.0
    implicit: float = 0.0
    knn: float = 0.0  # a blend.json saved before the knn term loads with 0

    PRIOR_ROWS = 100.0
    FEATURES = ("_explicit", "_implicit", "_knn")  # the columns weighted by explicit, implicit, knn

    def combine(self, explicit: Any, implicit: Any, knn: Any) -> Any:
        """The unclipped prediction of the three features: numpy arrays or Spark columns alike."""
        return self.intercept + self.explicit * explicit + self.implicit * implicit + self.knn * knn

    def as_dict(self) -> dict[str, float]:
        return {"intercept": self.intercept, "explicit": self.explicit, "implicit": self.implicit, "knn": self.knn}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "blend.json").write_text(json.dumps(self.as_dict()))

    @classmethod
    def load(cls, folder: Path) -> Blend:
        return cls(**json.loads((folder / "blend.json").read_text()))


_CHUNK = 16_384  # pairs per numpy pass: times k neighbours rows at a time


def pair_key(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """(user, movie) as one sortable int64."""
    return (users << np.int64(32)) | (movies & np.int64(0xFFFFFFFF))


@dataclass(frozen=True)
class NeighbourLists:
    """Each movie's neighbours with their similarities, as CSR arrays sorted by movie."""

    movies: np.ndarray  # int64, sorted
    indptr: np.ndarray  # movie ``movies[r]``'s neighbours are ``neighbour[indptr[r]:indptr[r + 1]]``
    neighbour: np.ndarray  # int64
    similarity: np.ndarray  # float64

    @classmethod
    def of(cls, movie: np.ndarray, neighbour: np.ndarray, similarity: np.ndarray) -> NeighbourLists:
        """From (movie_id, neighbour_id, similarity) rows in any order."""
        movie, neighbour = np.asarray(movie, np.int64), np.asarray(neighbour, np.int64)
        order = np.lexsort((neighbour, movie))
        movies, counts = np.unique(movie[order], return_counts=True)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(movies, indptr, neighbour[order], np.asarray(similarity, np.float64)[order])


def knn_values(
    lists: NeighbourLists,
    users: np.ndarray,
    items: np.ndarray,
    rated_users: np.ndarray,
    rated_items: np.ndarray,
    residuals: np.ndarray,
) -> np.ndarray:
    """``knn_ui = sum(s_ij * e_uj) / (1 + sum(s_ij))`` for each (``users``, ``items``) pair, over the neighbours j of
    movie i that user u rated (their residuals ``e_uj`` among the rated rows); 0 when none. A rating given twice
    counts twice, as a join would count it."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    keys, slot = np.unique(pair_key(np.asarray(rated_users, np.int64), np.asarray(rated_items, np.int64)),
                           return_inverse=True)  # fmt: skip
    residual_sum = np.bincount(slot, weights=np.asarray(residuals, np.float64), minlength=len(keys))
    times = np.bincount(slot, minlength=len(keys)).astype(np.float64)
    movies, indptr = lists.movies, lists.indptr
    row = np.minimum(np.searchsorted(movies, items), max(len(movies) - 1, 0))
    listed = (movies[row] == items) if len(movies) else np.zeros(len(items), bool)
    value = np.zeros(len(items))
    for start in range(0, len(items), _CHUNK):
        part = slice(start, start + _CHUNK)
        first = np.where(listed[part], indptr[row[part]], 0)
        n = np.where(listed[part], indptr[np.minimum(row[part] + 1, len(indptr) - 1)] - first, 0)
        pair = np.repeat(np.arange(len(n)), n)  # each pair's index, once per neighbour
        at = np.arange(pair.size) - np.repeat(np.cumsum(n) - n, n) + np.repeat(first, n)
        wanted = pair_key(users[part][pair], lists.neighbour[at])
        hit = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        found = (keys[hit] == wanted) if len(keys) else np.zeros(pair.size, bool)
        s, hit, pair = lists.similarity[at][found], hit[found], pair[found]
        num = np.bincount(pair, weights=s * residual_sum[hit], minlength=len(n))
        den = np.bincount(pair, weights=s * times[hit], minlength=len(n))
        value[part] = num / (1.0 + den)
    return value
