"""The popular-movies ranking: the cold-start answer of the serving tables and of the recommender endpoint."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.columns import ALL_GENRES
from movielens_als.errors import MovieLensAlsError


def popular_movies_fn(
    ratings: DataFrame,
    movies: DataFrame,
    min_count: int,
    damping: float,
    depth: int | None = None,
) -> DataFrame:
    """(genre, rank, movie_id, num_ratings, avg_rating, score): damped-average ranking, overall and per genre.

    score = (sum of ratings + damping * global mean) / (num_ratings + damping): a movie with few
    ratings is pulled towards the global mean, so two 5-star ratings do not top the chart. Movies
    with fewer than ``min_count`` ratings are left out. Genre 'All' is the overall ranking; ``depth`` keeps
    that many rows per genre (None: all).
    """
    if min_count < 1:
        raise MovieLensAlsError(f"min_count must be at least 1, got {min_count}")
    if damping < 0:
        raise MovieLensAlsError(f"damping must be non-negative, got {damping}")
    global_mean = ratings.agg(F.avg("rating").alias("global_mean"))
    per_movie = (
        ratings.groupBy("movie_id")
        .agg(F.count("*").alias("num_ratings"), F.sum("rating").alias("rating_sum"))
        .where(F.col("num_ratings") >= min_count)
        .crossJoin(global_mean)  # one row: attaches the global mean, not a cross product
        .select(
            "movie_id",
            "num_ratings",
            (F.col("rating_sum") / F.col("num_ratings")).alias("avg_rating"),
            (
                (F.col("rating_sum") + F.lit(float(damping)) * F.col("global_mean"))
                / (F.col("num_ratings") + F.lit(float(damping)))
            ).alias("score"),
        )
    )
    genres = movies.select("movie_id", F.explode_outer("genres").alias("genre")).where(F.col("genre").isNotNull())
    scoped = per_movie.withColumn("genre", F.lit(ALL_GENRES)).unionByName(per_movie.join(genres, "movie_id"))
    by_score = Window.partitionBy("genre").orderBy(F.col("score").desc(), F.col("movie_id").asc())
    ranked = scoped.withColumn("rank", F.row_number().over(by_score).cast("int"))
    if depth is not None:
        ranked = ranked.where(F.col("rank") <= depth)
    return ranked.select("genre", "rank", "movie_id", "num_ratings", "avg_rating", "score")
