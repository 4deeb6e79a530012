"""The ranking model: implicit ALS on which movies a user rated (confidence ``1 + alpha * value``, regulariser
``reg_param * (n + beta * N)``: :mod:`.ials`), for top-k."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RATING, USER
from movielens_als.config import RECOMMEND
from movielens_als.ml.factors import Factors
from movielens_als.ml.ials import fit_ials
from movielens_als.ml.topk import top_k_fn


def implicit_frame(df: DataFrame, implicit_value: str) -> DataFrame:
    """(user, item, value) for implicit ALS: value 1 per rating, or the rating itself."""
    value = F.lit(1.0) if implicit_value == "one" else F.col(RATING).cast("double")
    return df.select(USER, ITEM, value.alias("value"))


def fit_ranking_model(
    df: DataFrame, params: dict[str, Any], seed: int, start: Factors | None = None, max_iter: int | None = None
) -> Factors:
    """Implicit ALS: preference 1 for rated items, confidence ``1 + alpha * value``, regulariser
    ``reg_param * (n + beta * N)`` (``beta`` 0: Spark's implicit ALS). ``start``: a fit to begin from (its users'
    factors), for ``max_iter`` iterations instead of the hyperparameters' (``make bench-warm``)."""
    return fit_ials(
        implicit_frame(df, params["implicit_value"]),
        rank=params["rank"],
        reg_param=params["reg_param"],
        alpha=params["alpha"],
        beta=params["beta"],
        max_iter=max_iter or params["max_iter"],
        seed=seed,
        start=start,
    )


def model_top_k(
    model: Factors, users: DataFrame, seen: DataFrame, k: int, block_size: int = RECOMMEND.block_size
) -> DataFrame:
    """(user_id, movie_id, score, rank): the top ``k`` movies of each of ``users`` that ``seen`` does not hold.

    The same blocked top-k as the serving table, so tuning and evaluation score what is served.
    """
    left = model.users.join(users.select(F.col(USER).alias("id")).distinct(), "id")
    excluded = seen.select(F.col(USER).alias("left_id"), F.col(ITEM).alias("right_id"))
    return top_k_fn(left, model.items, k, excluded=excluded, block_size=block_size).select(
        F.col("left_id").alias(USER), F.col("right_id").alias(ITEM), F.col("score"), F.col("rank")
    )
