"""The recommender model: the champion answering requests, as an MLflow pyfunc that needs no Spark.

Its artifacts (written by :mod:`.artifacts` at train time) are what answering needs: the serving
factors of the ranking model, the item Gram matrix, each known user's rated movies (CSR arrays),
titles, the popular-movies ranking and the fold-in hyperparameters. Each request row gets up to
``n`` answer rows (``request``, ``rank``, ``movie_id``, ``title``, ``score``, ``source``, and ``because``: the
rated movie closest to it in the item factors):

- ``personal``: a known user with at least ``min_ratings`` ratings, ranked by the stored user factor:
  the same movies in the same order as ``user_recommendations``;
- ``folded``: fresh ratings (with a known user's stored ones, fresh winning) folded in with the ranking
  model's implicit update (:mod:`.foldin`), every rated movie excluded;
- ``popular``: fewer known movies than ``min_ratings``: the popular ranking, rated movies excluded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from movielens_als.columns import FOLDED, PERSONAL, POPULAR
from movielens_als.serving.foldin import fold_in, top_n
from movielens_als.serving.requests import Limits, Request, RequestError, parse_requests

# Any-typed inputs: MLflow's coercion would turn user_id 1.5 into 1 and refuse [5, 4] as ratings;
# :mod:`.requests` checks every field with a message that names it.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(AnyType(), name, required=False) for name in ("user_id", "movie_ids", "ratings", "n")]),
    outputs=Schema(
        [
            ColSpec("long", "request"),
            ColSpec("long", "rank"),
            ColSpec("long", "movie_id"),
            ColSpec("string", "title"),
            ColSpec("double", "score"),
            ColSpec("string", "source"),
            ColSpec("long", "because", required=False),
        ]
    ),
)


@dataclass
class Recommender:
    """The loaded artifacts, and the answer to parsed requests."""

    params: dict
    user_ids: np.ndarray  # sorted int64
    users: np.ndarray  # float64, one row per user_ids entry
    item_ids: np.ndarray  # sorted int64
    items: np.ndarray  # float64
    item_gram: np.ndarray
    seen_indptr: np.ndarray  # user row -> slice of seen_items / seen_values
    seen_items: np.ndarray  # item rows (positions in item_ids)
    seen_values: np.ndarray  # the implicit value each was trained with
    titles: np.ndarray  # object, per item row ("" when unknown)
    popular_rows: np.ndarray  # item rows, most popular first
    popular_scores: np.ndarray

    @classmethod
    def load(cls, folder: Path) -> Recommender:
        arrays = {name: np.load(folder / f"{name}.npy") for name in _ARRAYS}
        params = json.loads((folder / "params.json").read_text())
        titles = pd.read_parquet(folder / "titles.parquet")
        item_ids = arrays["item_ids"].astype(np.int64)
        title_of = np.full(len(item_ids), "", dtype=object)
        rows, known = _rows(item_ids, titles["movie_id"].to_numpy())
        title_of[rows[known]] = titles["title"].to_numpy()[known]
        return cls(
            params=params,
            user_ids=arrays["user_ids"].astype(np.int64),
            users=arrays["users"].astype(np.float64),
            item_ids=item_ids,
            items=arrays["items"].astype(np.float64),
            item_gram=arrays["item_gram"],
            seen_indptr=arrays["seen_indptr"],
            seen_items=arrays["seen_items"],
            seen_values=arrays["seen_values"].astype(np.float64),
            titles=title_of,
            popular_rows=arrays["popular_rows"],
            popular_scores=arrays["popular_scores"],
        )

    @property
    def limits(self) -> Limits:
        return Limits(self.params["rating_min"], self.params["rating_max"], self.params["default_n"])

    def answer(self, requests: list[Request]) -> pd.DataFrame:
        # One frame at the end: building a DataFrame per request costs more than answering it.
        parts = [self._one(request) for request in requests]
        sizes = [len(rows) for rows, _, _, _ in parts]
        rows = np.concatenate([rows for rows, _, _, _ in parts]) if parts else np.empty(0, dtype=np.int64)
        because = [self._because(picked, rated) for picked, _, _, rated in parts]
        return pd.DataFrame(
            {
                "request": np.repeat(np.arange(len(parts), dtype=np.int64), sizes),
                "rank": np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in sizes] or [np.empty(0, np.int64)]),
                "movie_id": self.item_ids[rows],
                "title": self.titles[rows],
                "score": np.concatenate([scores for _, scores, _, _ in parts] or [np.empty(0)]).astype(np.float64),
                "source": np.repeat(np.array([source for _, _, source, _ in parts], dtype=object), sizes),
                "because": np.concatenate(because or [np.empty(0, dtype=object)]),
            }
        )

    def _because(self, picked: np.ndarray, rated: np.ndarray) -> np.ndarray:
        """Per answered movie, the rated movie whose item factors are closest to it (cosine); None with no ratings.

        The line an app shows under a recommendation ("because you rated ..."): the same factors ``similar_movies``
        ranks with, restricted to what this person rated.
        """
        if not len(rated) or not len(picked):
            return np.full(len(picked), None, dtype=object)
        unit = self._unit_items
        closest = np.argmax(np.einsum("ik,jk->ij", unit[picked], unit[rated]), axis=1)
        return np.array([int(i) for i in self.item_ids[rated[closest]]], dtype=object)

    @cached_property
    def _unit_items(self) -> np.ndarray:
        norms = np.linalg.norm(self.items, axis=1, keepdims=True)
        return self.items / np.where(norms > 0, norms, 1.0)

    def _one(self, request: Request) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        """(item rows, scores, source, rated item rows) of one request's answer, best first."""
        stored_rows, stored_values = self._stored(request.user_id)
        fresh_rows, known = _rows(self.item_ids, request.movie_ids)
        fresh_rows = fresh_rows[known]
        if len(fresh_rows):
            # Fresh ratings win over stored ones of the same movie; unknown movies have no factors to fold in.
            keep = ~np.isin(stored_rows, fresh_rows)
            rated = np.concatenate([stored_rows[keep], fresh_rows])
            values = np.concatenate([stored_values[keep], self._implicit(request.ratings[known])])
        else:
            rated, values = stored_rows, stored_values
        if len(rated) < self.params["min_ratings"] or not (len(fresh_rows) or self._known(request.user_id)):
            rows = self.popular_rows
            order = -np.arange(len(rows), dtype=np.float64)  # the ranking as stored
            picked = top_n(order, rows, np.flatnonzero(np.isin(rows, rated)), request.n)
            return rows[picked], self.popular_scores[picked], POPULAR, rated
        if len(fresh_rows):
            vector = fold_in(
                self.items, self.item_gram, rated, values, self.params["alpha"], self.params["reg_param"], self._beta_n
            )
            source = FOLDED
        else:
            vector = self.users[np.searchsorted(self.user_ids, request.user_id)]
            source = PERSONAL
        # einsum, not BLAS: a multi-threaded gemv per request is slower under concurrent requests.
        scores = np.einsum("ij,j->i", self.items, vector)
        picked = top_n(scores, self.item_ids, rated, request.n)
        return picked, scores[picked], source, rated

    @property
    def _beta_n(self) -> float:
        """The serving fit's ``beta * mean n``. Older artifacts: ``beta * N_items`` (the regulariser they were
        fitted with), and before ``beta``, Spark's ALS: 0."""
        if "beta_n" in self.params:
            return float(self.params["beta_n"])
        return float(self.params.get("beta", 0.0)) * self.params.get("num_items", len(self.item_ids))

    def _known(self, user_id: int | None) -> bool:
        if user_id is None:
            return False
        row = np.searchsorted(self.user_ids, user_id)
        return bool(row < len(self.user_ids) and self.user_ids[row] == user_id)

    def _stored(self, user_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        """A known user's rated item rows and implicit values; empty for anyone else."""
        if not self._known(user_id):
            return np.empty(0, dtype=np.int64), np.empty(0)
        row = np.searchsorted(self.user_ids, user_id)
        start, end = self.seen_indptr[row], self.seen_indptr[row + 1]
        return self.seen_items[start:end].astype(np.int64), self.seen_values[start:end]

    def _implicit(self, ratings: np.ndarray) -> np.ndarray:
        """The value implicit ALS trained with: the rating, or 1 for every rated movie."""
        return ratings if self.params["implicit_value"] == "rating" else np.ones_like(ratings)


_ARRAYS = ("user_ids", "users", "item_ids", "items", "item_gram", "seen_indptr", "seen_items", "seen_values",
           "popular_rows", "popular_scores")  # fmt: skip


def _rows(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in ``sorted_ids`` and which of them are there at all."""
    ids = np.asarray(ids, dtype=np.int64)
    rows = np.searchsorted(sorted_ids, ids)
    inside = rows < len(sorted_ids)
    known = inside.copy()
    known[inside] = sorted_ids[rows[inside]] == ids[inside]
    return np.where(known, rows, 0), known


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """The pyfunc face of :class:`Recommender`: bad requests are MLflow's INVALID_PARAMETER_VALUE (HTTP 400)."""

    def load_context(self, context) -> None:
        self.recommender = Recommender.load(Path(context.artifacts["model"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        try:
            requests = parse_requests(model_input, self.recommender.limits)
        except RequestError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return self.recommender.answer(requests)


def sample_requests(model: mlflow.pyfunc.PyFuncModel) -> pd.DataFrame:
    """A known user's request and a fold-in request built from the model's own artifacts: a load-and-answer check."""
    recommender: Recommender = model.unwrap_python_model().recommender
    counts = np.diff(recommender.seen_indptr)
    user = int(recommender.user_ids[np.argmax(counts >= recommender.params["min_ratings"])])
    movies = recommender.item_ids[recommender.popular_rows[:5]]
    rating = float(recommender.params["rating_max"])
    return pd.DataFrame(
        [
            {"user_id": user, "movie_ids": None, "ratings": None, "n": 10},
            {"user_id": None, "movie_ids": movies.tolist(), "ratings": [rating] * len(movies), "n": 10},
        ]
    )
