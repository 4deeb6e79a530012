"""The rating model's neighbour feature: each movie's nearest movies by cosine of the ranking model's item factors,
and a user's baseline residuals on those neighbours, ``knn_ui = sum(s_ij * e_uj) / (1 + sum(s_ij))``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RATING, USER
from movielens_als.ml.als import als_blocks
from movielens_als.ml.blend import NeighbourLists, knn_values
from movielens_als.ml.factors import Factors, read_parquet, write_parquet
from movielens_als.ml.ials import block_key, partition_keys
from movielens_als.ml.topk import top_k_fn


class Baseline(Protocol):
    """What the residuals need of the rating model's bias baseline: a ``baseline`` column for each rating."""

    def predict(self, df: DataFrame, out: str = "baseline") -> DataFrame: ...


NEIGHBOUR = "neighbour_id"


def item_neighbours_fn(items: DataFrame, k: int, power: float) -> DataFrame:
    """(movie_id, neighbour_id, similarity): each movie's top ``k`` other movies by cosine of ``items``
    (id, features), positive cosines only, ``similarity = cosine ** power``.

    Through the blocked exact top-k that ``similar_movies`` uses, so the item x item matrix is never
    built. A negative cosine says little about how a user rates the movie, and a negative weight
    would turn the normaliser ``1 + sum(s)`` below 1: they are dropped, not kept at 0.
    """
    self_pairs = items.select(F.col("id").alias("left_id"), F.col("id").alias("right_id"))
    ranked = top_k_fn(items, items, k, excluded=self_pairs, cosine=True)
    similarity = F.pow("score", F.lit(power)).alias("similarity")
    return ranked.where(F.col("score") > 0).select(
        F.col("left_id").alias(ITEM), F.col("right_id").alias(NEIGHBOUR), similarity
    )


def residuals_fn(baseline: Baseline, ratings: DataFrame) -> DataFrame:
    """(user_id, movie_id, residual): ``rating - (mu + b_user + b_item)`` of each rating."""
    return baseline.predict(ratings.select(USER, ITEM, RATING)).select(
        USER, ITEM, (F.col(RATING) - F.col("baseline")).alias("residual")
    )


def knn_feature_fn(df: DataFrame, neighbours: DataFrame, residuals: DataFrame, out: str = "_knn") -> DataFrame:
    """``df`` with ``out = sum(s_ij * e_uj) / (1 + sum(s_ij))`` over the neighbours j of movie i that user u
    rated (0 when none): the user's residuals on similar movies, shrunk towards 0 when there are few.

    The neighbour lists (k per movie: model-sized) go to every task; the (u, i) pairs and the residuals meet in
    blocks of users, where numpy looks up each pair's k neighbours among the user's residuals. Joining
    pairs x k rows with the residuals in Spark instead shuffled and spilled gigabytes at 5M ratings.
    """
    arrow = neighbours.select(
        F.col(ITEM).cast("long").alias(ITEM),
        F.col(NEIGHBOUR).cast("long").alias(NEIGHBOUR),
        F.col("similarity").cast("double").alias("similarity"),
    ).toArrow()
    lists = NeighbourLists.of(*(arrow[c].to_numpy() for c in (ITEM, NEIGHBOUR, "similarity")))
    solve = _knn_block(lists, out)
    keys = partition_keys(df.sparkSession, max(KNN_BLOCKS, 2 * als_blocks(df.sparkSession)))
    user, movie = F.col(USER).cast("int"), F.col(ITEM).cast("int")
    pairs = user_blocks(df.select(user.alias(USER), movie.alias(ITEM)), keys)
    rated = user_blocks(residuals.select(user.alias(USER), movie.alias(ITEM), F.col("residual").cast("double")), keys)
    feature = (
        pairs.groupBy("pkey")
        .cogroup(rated.groupBy("pkey"))
        .applyInPandas(solve, f"{USER}_ INT, {ITEM}_ INT, {out} DOUBLE")
    )
    on = (df[USER] == feature[f"{USER}_"]) & (df[ITEM] == feature[f"{ITEM}_"])
    joined = df.join(feature, on, "left").drop(f"{USER}_", f"{ITEM}_")
    return joined.withColumn(out, F.coalesce(out, F.lit(0.0)))


KNN_BLOCKS = 16  # at least this many user blocks: a block's residuals are one pandas frame and one task's sort


def user_blocks(df: DataFrame, keys: tuple[int, ...]) -> DataFrame:
    """``df`` with ``pkey``, its user's block key (:func:`~movielens_als.ml.ials.partition_keys`), block ``b`` in
    partition ``b``. Asked for by number, so adaptive execution keeps every partition: in the session's 4 shuffle
    partitions (two cores), a task's share of 25M ratings outgrew a 4 GB driver's execution memory."""
    return df.withColumn("pkey", block_key(F.col(USER), keys)).repartition(len(keys), "pkey")


def _knn_block(lists: NeighbourLists, out: str):
    """The pandas function of one user block: its (u, i) pairs against its users' residuals."""

    def solve(pairs: pd.DataFrame, rated: pd.DataFrame) -> pd.DataFrame:
        pairs = pairs.drop_duplicates([USER, ITEM])
        users, items = pairs[USER].to_numpy(np.int64), pairs[ITEM].to_numpy(np.int64)
        value = knn_values(lists, users, items, rated[USER].to_numpy(), rated[ITEM].to_numpy(),
                           rated["residual"].to_numpy())  # fmt: skip
        return pd.DataFrame({f"{USER}_": users, f"{ITEM}_": items, out: value})

    return solve


@dataclass
class Knn:
    """What the neighbour feature needs at prediction time: each movie's neighbours (from the ranking model's
    item factors) and the residuals of the ratings the rating model was fitted on."""

    neighbours: DataFrame  # movie_id, neighbour_id, similarity
    residuals: DataFrame  # user_id, movie_id, residual

    def transform(self, df: DataFrame, out: str = "_knn") -> DataFrame:
        return knn_feature_fn(df, self.neighbours, self.residuals, out)

    def save(self, folder: Path, scratch: Path | None = None) -> None:
        """``neighbours`` and ``residuals`` as Parquet folders. Residuals are ratings-sized (neighbours are k per
        movie): with ``scratch`` (a folder Spark's executors can write, e.g. in the volume) Spark writes them there
        and the files are copied, so they never pass through the driver; without, through Arrow (small data)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, df in (("neighbours", self.neighbours), ("residuals", self.residuals)):
            target = folder / name
            shutil.rmtree(target, ignore_errors=True)
            if scratch is None:
                target.mkdir()
                write_parquet(df, target / "part-0.parquet")
                continue
            staged = scratch / f"knn_{name}"
            df.write.mode("overwrite").parquet(str(staged))
            try:
                shutil.copytree(staged, target, ignore=shutil.ignore_patterns("_*", ".*"))
            finally:
                shutil.rmtree(staged, ignore_errors=True)

    @classmethod
    def load(cls, spark: SparkSession, folder: Path) -> Knn:
        neighbours = read_parquet(spark, folder / "neighbours", {ITEM: "int", NEIGHBOUR: "int", "similarity": "double"})
        residuals = read_parquet(spark, folder / "residuals", {USER: "int", ITEM: "int", "residual": "double"})
        return cls(neighbours, residuals)


def fit_knn(baseline: Baseline, ratings: DataFrame, implicit: Factors, k: int, power: float) -> Knn:
    """The neighbour feature of a rating model whose final baseline is ``baseline``, fitted on ``ratings``;
    neighbours by cosine of the ranking model's item factors (``implicit``)."""
    # Checkpointed: the top-k is a costly job, and every prediction would otherwise run it again.
    return Knn(item_neighbours_fn(implicit.items, k, power).localCheckpoint(), residuals_fn(baseline, ratings))
