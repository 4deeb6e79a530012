"""The ranking model: implicit ALS on which movies a user rated (confidence ``1 + alpha * value``, regulariser
``reg_param * (n + beta * N)``: :mod:`.ials`), for top-k."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RATING, USER
from movielens_als.config import RECOMMEND
from movielens_als.ml.factors import Factors
from movielens_als.ml.hyperparams import RankingParams
from movielens_als.ml.ials import Blocked, block_ratings, fit_ials
from movielens_als.ml.topk import Layout, top_k_fn, top_k_layout


def implicit_frame(df: DataFrame, implicit_value: str) -> DataFrame:
    """(user, item, value) for implicit ALS: value 1 per rating, or the rating itself."""
    value = F.lit(1.0) if implicit_value == "one" else F.col(RATING).cast("double")
    return df.select(USER, ITEM, value.alias("value"))


def ranking_blocks(df: DataFrame, implicit_value: str) -> Blocked:
    """``df``'s ratings blocked for iALS once, for every fit of ``implicit_value`` on them (a tuning grid's)."""
    return block_ratings(implicit_frame(df, implicit_value))


def fit_ranking_model(
    df: DataFrame | Blocked,
    params: RankingParams,
    seed: int,
    start: Factors | None = None,
    max_iter: int | None = None,
) -> Factors:
    """Implicit ALS: preference 1 for rated items, confidence ``1 + alpha * value``, regulariser
    ``reg_param * (n + beta * N)`` (``beta`` 0: Spark's implicit ALS). ``df``: ratings, or their
    :func:`ranking_blocks` for ``params.implicit_value``. ``start``: a fit to begin from (its users' factors), for
    ``max_iter`` iterations instead of the hyperparameters' (``make bench-warm``)."""
    return fit_ials(
        df if isinstance(df, Blocked) else implicit_frame(df, params.implicit_value),
        rank=params.rank,
        reg_param=params.reg_param,
        alpha=params.alpha,
        beta=params.beta,
        max_iter=max_iter or params.max_iter,
        seed=seed,
        start=start,
    )


def _left(model: Factors, users: DataFrame) -> DataFrame:
    return model.users.join(users.select(F.col(USER).alias("id")).distinct(), "id")


def _excluded(seen: DataFrame) -> DataFrame:
    return seen.select(F.col(USER).alias("left_id"), F.col(ITEM).alias("right_id"))


def model_layout(model: Factors, users: DataFrame, seen: DataFrame, block_size: int = RECOMMEND.block_size) -> Layout:
    """The top-k :class:`Layout` of ``model``'s ``users`` and movies without ``seen``, kept for several
    :func:`model_top_k` passes over models of the same ids (a tuning grid's fits of the same ratings)."""
    return top_k_layout(_left(model, users).select("id"), model.items.select("id"), _excluded(seen), block_size, True)


def model_top_k(
    model: Factors,
    users: DataFrame,
    seen: DataFrame,
    k: int,
    block_size: int = RECOMMEND.block_size,
    layout: Layout | None = None,
) -> DataFrame:
    """(user_id, movie_id, score, rank): the top ``k`` movies of each of ``users`` that ``seen`` does not hold
    (``layout``: their :func:`model_layout`, when several models are scored).

    The same blocked top-k as the serving table, so tuning and evaluation score what is served.
    """
    excluded = None if layout is not None else _excluded(seen)
    ranked = top_k_fn(_left(model, users), model.items, k, excluded=excluded, block_size=block_size, layout=layout)
    return ranked.select(F.col("left_id").alias(USER), F.col("right_id").alias(ITEM), F.col("score"), F.col("rank"))
