"""The two models as MLflow pyfunc models: pandas and numpy over the saved factor tables, no Spark needed.

``predict`` takes (user_id, movie_id) rows and returns ``prediction``: the ranking model's
preference score (the serving factors' dot product) or the rating model's blended, clipped
rating, the same numbers Spark computes from the same files. Unknown ids score NaN (ranking) or
fall back to the biases they have (rating), as in Spark.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from movielens_als.columns import ITEM, PREDICTION, USER
from movielens_als.ml.blend import Blend, NeighbourLists, knn_values


def _factors(folder: Path) -> tuple[dict[int, int], np.ndarray, dict[int, int], np.ndarray]:
    def table(name: str) -> tuple[dict[int, int], np.ndarray]:
        pdf = pd.read_parquet(folder / f"{name}.parquet")
        matrix = np.stack(pdf["features"].to_numpy()).astype(np.float64) if len(pdf) else np.zeros((0, 0))
        return {int(i): row for row, i in enumerate(pdf["id"])}, matrix

    users, u = table("users")
    items, i = table("items")
    return users, u, items, i


def _dot(model_input: pd.DataFrame, factors) -> np.ndarray:
    """Dot products of each row's user and movie factors; NaN where either is unknown."""
    users, u, items, i = factors
    rows = np.array([users.get(int(x), -1) for x in model_input[USER]], dtype=np.int64)
    cols = np.array([items.get(int(x), -1) for x in model_input[ITEM]], dtype=np.int64)
    out = np.full(len(model_input), np.nan)
    known = (rows >= 0) & (cols >= 0)
    out[known] = np.einsum("ij,ij->i", u[rows[known]], i[cols[known]])
    return out


class RankingPyfunc(mlflow.pyfunc.PythonModel):
    """The serving factors: what ``recommend`` ranks with."""

    def load_context(self, context) -> None:
        self.factors = _factors(Path(context.artifacts["model"]) / "serving")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({PREDICTION: _dot(model_input, self.factors)})


class RatingPyfunc(mlflow.pyfunc.PythonModel):
    """Baseline + residual factors, blended with the ranking score and the neighbour feature, clipped to the
    rating scale."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"])
        self.meta = json.loads((folder / "baseline" / "baseline.json").read_text())
        self.blend = Blend.load(folder)
        self.user_bias = pd.read_parquet(folder / "baseline" / "user_bias.parquet").set_index(USER)["user_bias"]
        self.item_bias = pd.read_parquet(folder / "baseline" / "item_bias.parquet").set_index(ITEM)["item_bias"]
        self.residual = _factors(folder / "residual")
        self.implicit = _factors(folder / "implicit")
        self.neighbours = self.residuals = None
        knn = folder / "knn"
        if knn.exists():  # a model saved before the knn term has none, and a blend weight of 0 for it
            lists = pd.read_parquet(knn / "neighbours")
            self.neighbours = NeighbourLists.of(*(lists[c].to_numpy() for c in (ITEM, "neighbour_id", "similarity")))
            residuals = pd.read_parquet(knn / "residuals")
            self.residuals = tuple(residuals[c].to_numpy() for c in (USER, ITEM, "residual"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        baseline = (
            self.meta["global_mean"]
            + model_input[USER].map(self.user_bias).fillna(0.0).to_numpy()
            + model_input[ITEM].map(self.item_bias).fillna(0.0).to_numpy()
        )
        explicit = baseline + np.nan_to_num(_dot(model_input, self.residual))
        score = np.nan_to_num(_dot(model_input, self.implicit))
        knn = 0.0
        if self.blend.knn:
            users, items = model_input[USER].to_numpy(), model_input[ITEM].to_numpy()
            knn = knn_values(self.neighbours, users, items, *self.residuals)
        value = self.blend.combine(explicit, score, knn)
        return pd.DataFrame({PREDICTION: np.clip(value, self.meta["rating_min"], self.meta["rating_max"])})
