"""The recommend task: top-N per user, cold-start popular movies and similar movies.

The core is pure functions over DataFrames (``top_n_fn``, ``popular_movies_fn``,
``similar_movies_fn``) so tests feed them small known factor matrices; ``recommend`` loads the
serving model of a training run (the ranking model refitted on every rating), calls them and
replaces the three serving tables. Top-N and similar movies both rank with :mod:`topk`, the
blocked exact top-k that tuning and evaluation use too.
"""

from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.config import RECOMMEND as DEFAULTS
from movielens_als.errors import MovieLensAlsError
from movielens_als.faults import failpoint
from movielens_als.ids import utc_now
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import Column, TableSpec
from movielens_als.ml import models
from movielens_als.ml.factors import Factors
from movielens_als.ml.popular import popular_movies_fn
from movielens_als.ml.topk import top_k_fn
from movielens_als.progress import Progress
from movielens_als.result import TaskResult
from movielens_als.serving.health import SERVING_HEALTH, Thresholds, alerts, serving_health_fn

MAX_TOP_N = 100

USER_RECOMMENDATIONS = TableSpec(
    "user_recommendations",
    "Top-N movies per user from the implicit ALS ranking model, rated movies excluded; replaced per recommend run.",
    (
        Column("user_id", "INT", "MovieLens user id", nullable=False),
        Column("rank", "INT", "1 = best; ties broken by score desc, movie_id asc", nullable=False),
        Column("movie_id", "INT", "Recommended movie", nullable=False),
        Column("score", "DOUBLE", "Dot product of user and item factors (implicit preference, not a rating)"),
        Column("model_run_id", "STRING", "Training run whose serving model produced the row"),
        Column("model_version", "BIGINT", "Version of the registered ranking model (the champion) served"),
        Column("generated_at", "TIMESTAMP", "UTC time of the recommend run"),
    ),
)

POPULAR_MOVIES = TableSpec(
    "popular_movies",
    "Cold-start fallback: movies ranked by damped (Bayesian) average rating, overall (genre 'All') and per genre.",
    (
        Column("genre", "STRING", "A MovieLens genre, or 'All' for the overall ranking", nullable=False),
        Column("rank", "INT", "1 = most popular in the genre; ties broken by movie_id", nullable=False),
        Column("movie_id", "INT", "Movie", nullable=False),
        Column("num_ratings", "BIGINT", "Ratings of the movie"),
        Column("avg_rating", "DOUBLE", "Plain mean rating"),
        Column("score", "DOUBLE", "(sum of ratings + damping * global mean) / (num_ratings + damping)"),
        Column("model_run_id", "STRING", "Training run of the champion when the row was written"),
        Column("model_version", "BIGINT", "Version of the registered ranking model served beside the row"),
        Column("generated_at", "TIMESTAMP", "UTC time of the recommend run"),
    ),
)

SIMILAR_MOVIES = TableSpec(
    "similar_movies",
    "Because you watched: top-N movies by cosine similarity of the ranking model's item factors.",
    (
        Column("movie_id", "INT", "Movie watched", nullable=False),
        Column("rank", "INT", "1 = most similar; ties broken by similar_movie_id", nullable=False),
        Column("similar_movie_id", "INT", "Similar movie", nullable=False),
        Column("similarity", "DOUBLE", "Cosine similarity of the two movies' item factors, -1..1"),
        Column("model_run_id", "STRING", "Training run whose serving model produced the row"),
        Column("model_version", "BIGINT", "Version of the registered ranking model (the champion) served"),
        Column("generated_at", "TIMESTAMP", "UTC time of the recommend run"),
    ),
)


SERVING_TABLES = (USER_RECOMMENDATIONS, POPULAR_MOVIES, SIMILAR_MOVIES)
DEFAULT_THRESHOLDS = Thresholds(DEFAULTS.max_churn, DEFAULTS.max_coverage_drop)


def validate_top_n(top_n: int) -> int:
    """``top_n`` if it is an int in 1..100, else MovieLensAlsError."""
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= MAX_TOP_N:
        raise MovieLensAlsError(f"invalid top_n {top_n!r}: expected an integer from 1 to {MAX_TOP_N}")
    return top_n


# --- the three serving tables ---------------------------------------------------------------


def top_n_fn(
    user_factors: DataFrame,
    item_factors: DataFrame,
    seen: DataFrame,
    n: int,
    *,
    block_size: int = DEFAULTS.block_size,
) -> DataFrame:
    """(user_id, rank, movie_id, score): each user's top ``n`` unseen items by factor dot product.

    ``seen``: (user_id, movie_id) pairs to exclude (the user's ratings). Ties: score desc, movie_id asc.
    """
    validate_top_n(n)
    excluded = seen.select(F.col("user_id").alias("left_id"), F.col("movie_id").alias("right_id")).distinct()
    ranked = top_k_fn(user_factors, item_factors, n, excluded=excluded, block_size=block_size)
    return ranked.select(F.col("left_id").alias("user_id"), "rank", F.col("right_id").alias("movie_id"), "score")


def similar_movies_fn(
    item_factors: DataFrame,
    n: int,
    *,
    candidates: DataFrame | None = None,
    block_size: int = DEFAULTS.block_size,
) -> DataFrame:
    """(movie_id, rank, similar_movie_id, similarity): top ``n`` by cosine of item factors, self excluded.

    ``candidates`` (movie_id) limits which movies may be suggested as similar.
    """
    validate_top_n(n)
    right = item_factors
    if candidates is not None:
        right = item_factors.join(candidates.select(F.col("movie_id").alias("id")).distinct(), "id")
    self_pairs = item_factors.select(F.col("id").alias("left_id"), F.col("id").alias("right_id"))
    ranked = top_k_fn(item_factors, right, n, excluded=self_pairs, cosine=True, block_size=block_size)
    return ranked.select(
        F.col("left_id").alias("movie_id"),
        "rank",
        F.col("right_id").alias("similar_movie_id"),
        F.col("score").alias("similarity"),
    )


def active_users(ratings: DataFrame, min_ratings: int) -> DataFrame:
    """(user_id) of users with at least ``min_ratings`` ratings: the ones who get personalised rows."""
    return ratings.groupBy("user_id").agg(F.count("*").alias("n")).where(F.col("n") >= min_ratings).select("user_id")


# --- the task -------------------------------------------------------------------------------


def _stamp(df: DataFrame, run_id: str, version: int, generated_at: dt.datetime) -> DataFrame:
    # generated_at is time-zone aware: PySpark converts it as an instant, where a naive datetime
    # would be read in the driver's local time zone.
    return (
        df.withColumn("model_run_id", F.lit(run_id))
        .withColumn("model_version", F.lit(version).cast("bigint"))
        .withColumn("generated_at", F.lit(generated_at))
    )


def recommend(
    spark: SparkSession,
    namespace: Namespace,
    top_n: int = DEFAULTS.top_n,
    min_ratings: int = DEFAULTS.min_ratings,
    *,
    popular_min_count: int = DEFAULTS.popular_min_count,
    popular_damping: float = DEFAULTS.popular_damping,
    block_size: int = DEFAULTS.block_size,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> TaskResult:
    """Replace user_recommendations, popular_movies and similar_movies from the champion's serving model.

    The champion is what the gate (:mod:`promote`) last accepted, loaded by its MLflow alias; its
    serving factors are its ranking hyperparameters refitted on every rating.
    Users with fewer than ``min_ratings`` ratings get no personalised rows: the SQL lookup serves
    them, and users the model never saw, from popular_movies. Similar movies are limited to movies
    with at least ``popular_min_count`` ratings: the factors of rarely rated movies are mostly
    regularisation noise, and cosine ignores their small norm.
    """
    validate_top_n(top_n)
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, int) or min_ratings < 0:
        raise MovieLensAlsError(f"invalid min_ratings {min_ratings!r}: expected a non-negative integer")
    ratings = tables.require_table(spark, namespace, "ratings", "run `movielens-als land` first")
    movies = tables.require_table(spark, namespace, "movies", "run `movielens-als land` first")
    champion = models.champion_serving(spark, namespace)
    if champion is None:
        raise MovieLensAlsError(f"no champion model for {namespace}: run `movielens-als promote` after evaluate")
    run_id, version, model = champion.run_id, champion.version, champion.factors
    # What the tables are computed from: when nothing of it changed (a refused challenger), they are kept
    # as they are, same rows and same Delta version, instead of being written again.
    inputs = json.dumps({"model_version": version, "ratings_version": tables.table_version(spark, namespace, "ratings"),
                         "top_n": top_n, "min_ratings": min_ratings, "popular_min_count": popular_min_count,
                         "popular_damping": popular_damping}, sort_keys=True)  # fmt: skip
    served = [tables.last_commit_metadata(spark, namespace, spec.name) for spec in SERVING_TABLES]
    skipped = all(meta == inputs for meta in served)
    if not skipped:
        _write_serving_tables(
            spark,
            ratings,
            movies,
            model,
            run_id,
            version,
            inputs,
            top_n,
            min_ratings,
            popular_min_count,
            popular_damping,
            block_size,
            namespace,
        )

    warnings = record_health(spark, namespace, ratings, min_ratings, thresholds)
    counts = {spec.name: spark.table(namespace.table(spec.name)).count() for spec in SERVING_TABLES}
    return TaskResult(
        "recommend",
        rows=counts,
        details={
            "run_id": run_id,
            "model_version": version,
            "top_n": top_n,
            "min_ratings": min_ratings,
            "user_recommendations_version": tables.table_version(spark, namespace, USER_RECOMMENDATIONS.name),
            "unchanged": skipped,
        },
        headline="; ".join(
            ([f"serving tables kept: champion version {version} and the ratings are unchanged"] if skipped else [])
            + [f"warning: serving health: {w}" for w in warnings]
        )
        or None,
    )


def record_health(
    spark: SparkSession, namespace: Namespace, ratings: DataFrame, min_ratings: int, thresholds: Thresholds
) -> list[str]:
    """Append the serving_health row of the served user_recommendations version unless it has one; its warnings.

    Keyed by the Delta version, so a run that keeps the tables (a refused challenger) adds no row, and a
    re-run after a crash between the serving writes and this row adds the row it missed.
    """
    version = tables.table_version(spark, namespace, USER_RECOMMENDATIONS.name)
    if tables.table_exists(spark, namespace, SERVING_HEALTH.name):
        done = spark.table(namespace.table(SERVING_HEALTH.name))
        if done.where(F.col("user_recommendations_version") == version).limit(1).count():
            return []
    name = namespace.table(USER_RECOMMENDATIONS.name)
    previous_version = _previous_served_version(spark, name, version)
    previous = None if previous_version is None else spark.read.option("versionAsOf", previous_version).table(name)
    current = spark.read.option("versionAsOf", version).table(name)
    health = serving_health_fn(current, previous, ratings, min_ratings)
    row = {**health, "user_recommendations_version": version, "previous_version": previous_version,
           "checked_at": utc_now()}  # fmt: skip
    failpoint("recommend.health")
    tables.append(spark, namespace, SERVING_HEALTH, spark.createDataFrame([row], SERVING_HEALTH.schema_ddl))
    return alerts(health, thresholds)


def _previous_served_version(spark: SparkSession, name: str, version: int) -> int | None:
    """The latest earlier version of the table that held rows: what was served before ``version``."""
    history = spark.sql(f"DESCRIBE HISTORY {name}").where(F.col("version") < version)
    for row in history.orderBy(F.desc("version")).select("version", "operationMetrics").collect():
        written = (row["operationMetrics"] or {}).get("numOutputRows")
        if written is not None and int(written) > 0:
            return int(row["version"])
    return None


def _write_serving_tables(
    spark: SparkSession,
    ratings: DataFrame,
    movies: DataFrame,
    model: Factors,
    run_id: str,
    version: int,
    inputs: str,
    top_n: int,
    min_ratings: int,
    popular_min_count: int,
    popular_damping: float,
    block_size: int,
    namespace: Namespace,
) -> None:
    generated_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ratings = ratings.select("user_id", "movie_id", "rating").cache()
    try:
        users = model.users.join(active_users(ratings, min_ratings).withColumnRenamed("user_id", "id"), "id")
        popular = popular_movies_fn(ratings, movies, popular_min_count, popular_damping, depth=MAX_TOP_N)
        frequent = ratings.groupBy("movie_id").count().where(F.col("count") >= popular_min_count)
        similar = similar_movies_fn(model.items, top_n, candidates=frequent, block_size=block_size)
        recs = top_n_fn(users, model.items, ratings, top_n, block_size=block_size)
        # Each overwrite is one Delta commit: readers see the previous run's rows or this run's,
        # never a mix, and DESCRIBE HISTORY keeps the earlier versions.
        progress = Progress("recommend")
        steps = ((POPULAR_MOVIES, popular), (SIMILAR_MOVIES, similar), (USER_RECOMMENDATIONS, recs))
        for i, (spec, df) in enumerate(steps, 1):
            progress.update(f"table {i} of {len(steps)}: {spec.name}")
            failpoint(f"recommend.write_{spec.name}")
            tables.overwrite(spark, namespace, spec, _stamp(df, run_id, version, generated_at), metadata=inputs)
        progress.close()
    finally:
        ratings.unpersist()
