"""The two baselines every run is measured against: recommenders' quick-start ALS and the most rated movies."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RATING, USER
from movielens_als.ml.als import als_estimator, fit_als
from movielens_als.ml.factors import Factors
from movielens_als.ml.splitting import rows_fingerprint_fn

BASELINE_PARAMS = {
    "rank": 10,
    "maxIter": 15,
    "regParam": 0.05,
    "implicitPrefs": False,
    "coldStartStrategy": "drop",
    "seed": 42,
}


def fit_quickstart_baseline(train_df: DataFrame) -> ALSModel:
    """The recommenders quick-start ALS (explicit, rank 10, maxIter 15, regParam 0.05, seed 42)."""
    return fit_als(als_estimator(train_df.sparkSession, ratingCol=RATING, **BASELINE_PARAMS), train_df)


def quickstart_factors(train_df: DataFrame, cache: Path | None = None, rows: str | None = None) -> Factors:
    """The quick-start ALS's factors on ``train_df``. With ``cache``, a folder of earlier fits named by what they
    were fitted on (the rows' count and hash, the parameters): a split that has not changed is not fitted again.
    ``rows``: ``train_df``'s :func:`rows_fingerprint_fn` when the caller has it already."""
    if cache is None:
        return Factors.of(fit_quickstart_baseline(train_df))
    folder = cache / f"quickstart-{fingerprint_fn(train_df, rows)}"
    if (folder / "items.parquet").is_file():
        return Factors.load(train_df.sparkSession, folder)
    factors = Factors.of(fit_quickstart_baseline(train_df))
    staged = cache / f".{folder.name}-{uuid.uuid4().hex}"  # renamed whole: a crash never leaves half a model
    factors.save(staged)
    try:
        staged.rename(folder)
    except OSError:  # another evaluate saved the same fit first
        shutil.rmtree(staged, ignore_errors=True)
    return factors


def fingerprint_fn(train_df: DataFrame, rows: str | None = None) -> str:
    """A name for these (user, movie, rating) rows and the quick-start parameters."""
    params = hashlib.sha256(json.dumps(BASELINE_PARAMS, sort_keys=True).encode()).hexdigest()[:8]
    return f"{rows or rows_fingerprint_fn(train_df)}-{params}"


def popularity_top_k(train_df: DataFrame, users: DataFrame, k: int) -> DataFrame:
    """Each user's ``k`` most rated movies they have not rated, ties by movie id: the non-personalised baseline.

    Scoring every movie for every user (the ALS top-k) would cost users x movies for a ranking that is
    the same for all; a user's best unseen movies are among the first ``k + seen`` of the one popularity
    list, so each user looks only that far: rows in proportion to the ratings.
    """
    counts = train_df.groupBy(ITEM).agg(F.count(F.lit(1)).alias("score"))
    by_popularity = Window.orderBy(F.desc("score"), F.col(ITEM))  # catalogue-sized: one ordered window
    ranked = counts.withColumn("position", F.row_number().over(by_popularity))
    seen = train_df.groupBy(USER).agg(F.count(F.lit(1)).alias("n_seen"))
    depth = F.lit(k) + F.coalesce(F.col("n_seen"), F.lit(0))
    wanted = (
        users.select(USER)
        .distinct()
        .join(seen, USER, "left")
        .select(USER, F.explode(F.sequence(F.lit(1), depth)).alias("position"))
    )
    unseen = wanted.join(F.broadcast(ranked), "position").join(train_df.select(USER, ITEM), [USER, ITEM], "left_anti")
    per_user = Window.partitionBy(USER).orderBy("position")
    return (
        unseen.withColumn("rank", F.row_number().over(per_user).cast("int"))
        .where(F.col("rank") <= k)
        .select(USER, ITEM, F.col("score").cast("double"), "rank")
    )
