"""The recommender model's artifacts, written from Spark at train time: arrays :class:`.model.Recommender` loads.

Everything here is catalogue-sized (factors, titles, the popular ranking) except each user's rated
movies, which the model needs to exclude them and to fold fresh ratings in beside them. Those travel
as files: Spark writes them to a scratch folder in the volume and numpy reads them, so no
ratings-sized result passes through the Spark driver (``collect``/``toArrow``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movielens_als.columns import ALL_GENRES, ITEM, RATING, USER
from movielens_als.config import RECOMMEND
from movielens_als.ml.factors import Factors, write_parquet
from movielens_als.ml.hyperparams import RankingParams
from movielens_als.ml.implicit import beta_terms, gram
from movielens_als.ml.popular import popular_movies_fn
from movielens_als.ml.ranking_model import implicit_frame


def recommender_params(ranking: RankingParams, run_id: str) -> dict:
    """What answering needs besides the arrays: fold-in hyperparameters and the recommend task's defaults."""
    chosen = ranking.as_dict()
    return {
        "run_id": run_id,
        **{name: chosen[name] for name in ("rank", "alpha", "reg_param", "beta", "implicit_value")},
        "min_ratings": RECOMMEND.min_ratings,
        "default_n": RECOMMEND.top_n,
        "popular_min_count": RECOMMEND.popular_min_count,
        "popular_damping": RECOMMEND.popular_damping,
    }


def save_recommender(
    folder: Path,
    serving: Factors,
    ratings: DataFrame,
    movies: DataFrame | None,
    params: dict,
    scratch: Path,
) -> None:
    """Write the arrays, titles and ``params.json`` of a recommender model into ``folder``.

    ``ratings``: (user_id, movie_id, rating) the serving factors were fitted on; ``movies``: the catalogue
    (None: answers carry no titles); ``params``: the ranking
    hyperparameters (alpha, reg_param, beta, implicit_value) plus min_ratings, default_n, popular_min_count
    and popular_damping.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if movies is None:
        movies = ratings.sparkSession.createDataFrame([], "movie_id INT, title STRING, genres ARRAY<STRING>")
    user_ids, users = _matrix(serving.users)
    item_ids, items = _matrix(serving.items)
    indptr, seen_items, seen_values = _seen(ratings, params["implicit_value"], user_ids, item_ids, scratch)
    popular = (
        popular_movies_fn(ratings, movies, params["popular_min_count"], params["popular_damping"])
        .where(F.col("genre") == ALL_GENRES)
        .orderBy("rank")
        .select(ITEM, "score")
        .toArrow()
    )
    popular_rows = np.searchsorted(item_ids, popular[ITEM].to_numpy())
    scale = ratings.agg(F.min(RATING).alias("low"), F.max(RATING).alias("high")).first()
    arrays = {
        "user_ids": user_ids, "users": users, "item_ids": item_ids, "items": items, "item_gram": gram(items),
        "seen_indptr": indptr, "seen_items": seen_items, "seen_values": seen_values,
        "popular_rows": popular_rows, "popular_scores": popular["score"].to_numpy().astype(np.float64),
    }  # fmt: skip
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    write_parquet(movies.select(F.col(ITEM).cast("long"), F.col("title").cast("string")), folder / "titles.parquet")
    meta = {
        **params,
        "num_items": len(item_ids),
        # Fold-in's regulariser term, as the serving fit's user half-steps had it: beta * mean positive ratings.
        "beta_n": beta_terms(params["beta"], int((seen_values > 0).sum()), len(user_ids), len(item_ids))[0],
        "rating_min": float(scale["low"]),
        "rating_max": float(scale["high"]),
    }
    (folder / "params.json").write_text(json.dumps(meta, sort_keys=True, indent=2))


def _matrix(factors: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(sorted ids, float32 matrix) of a factor table: one row per user or movie."""
    table = factors.select(F.col("id").cast("int"), F.col("features").cast("array<float>")).toArrow()
    ids = table["id"].to_numpy()
    features = table["features"].combine_chunks()
    rank = len(features[0]) if len(features) else 0
    matrix = features.flatten().to_numpy(zero_copy_only=False).reshape(len(ids), rank)
    order = np.argsort(ids, kind="stable")
    return ids[order].astype(np.int32), matrix[order].astype(np.float32)


def _seen(
    ratings: DataFrame, implicit_value: str, user_ids: np.ndarray, item_ids: np.ndarray, scratch: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's rated item rows and implicit values as CSR arrays over ``user_ids``."""
    path = scratch / "seen"
    shutil.rmtree(path, ignore_errors=True)
    implicit_frame(ratings, implicit_value).select(
        F.col(USER).cast("int"), F.col(ITEM).cast("int"), F.col("value").cast("float")
    ).write.mode("overwrite").parquet(str(path))
    try:
        table = pq.read_table(path, schema=pa.schema([(USER, pa.int32()), (ITEM, pa.int32()), ("value", pa.float32())]))
    finally:
        shutil.rmtree(path, ignore_errors=True)
    users = np.searchsorted(user_ids, table[USER].to_numpy())
    items = np.searchsorted(item_ids, table[ITEM].to_numpy())
    values = table["value"].to_numpy()
    order = np.lexsort((items, users))
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=len(user_ids)), out=indptr[1:])
    return indptr, items[order].astype(np.int32), values[order]
