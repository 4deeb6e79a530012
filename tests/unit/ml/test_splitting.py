"""Split properties: disjoint, deterministic, per-item ratio, validation carved from train only."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from movielens_als.ml.splitting import chrono_split_fn, split_fn, stratified_split_fn
from tests.fixtures import T0, small_ratings


def test_stratified_counts_follow_round_half_even(spark):
    # movie 1: 1 rating, movie 2: 2, movie 3: 3, movie 4: 4 -> train 1, 2, 2, 3 (round(0.75 n), half to even)
    rows = [(u, m, 3.0, T0) for m in range(1, 5) for u in range(1, m + 1)]
    df = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP")
    out = stratified_split_fn(df, 0.75, 42, "movie_id")
    counts = out.groupBy("movie_id").agg(
        F.sum((F.col("split") == "train").cast("int")).alias("train"), F.count("*").alias("n")
    )
    expected = spark.createDataFrame([(1, 1, 1), (2, 2, 2), (3, 2, 3), (4, 3, 4)], "movie_id INT, train LONG, n LONG")
    assert_df_equality(counts, expected, ignore_row_order=True, ignore_nullable=True)


def test_chrono_puts_latest_quarter_in_test(spark):
    rows = [(1, m, 4.0, T0 + dt.timedelta(days=m)) for m in range(1, 5)]
    df = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP")
    out = chrono_split_fn(df, 0.75).select("movie_id", "split")
    expected = spark.createDataFrame(
        [(1, "train"), (2, "train"), (3, "train"), (4, "test")], "movie_id INT, split STRING"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("protocol", ["benchmark", "quickstart", "chrono"])
def test_split_is_a_deterministic_partition(spark, protocol):
    ratings = small_ratings(spark, n_items=12)  # chrono: 8 ratings a user leave 6 in train, 1 for validation
    a = split_fn(ratings, protocol)
    b = split_fn(ratings.repartition(3), protocol)  # partitioning must not matter
    assert_df_equality(a, b, ignore_row_order=True, ignore_nullable=True)
    assert a.count() == ratings.count() == a.select("user_id", "movie_id").distinct().count()
    assert {r[0] for r in a.select("split").distinct().collect()} == {"train", "validation", "test"}
    other_seed = split_fn(ratings, protocol, seed=7) if protocol != "chrono" else a
    if protocol != "chrono":
        assert other_seed.exceptAll(a).count() > 0


def test_benchmark_ratio_per_movie_and_validation_from_train(spark):
    ratings = small_ratings(spark, n_users=20, n_items=4)
    out = split_fn(ratings, "benchmark")
    per_movie = (
        out.groupBy("movie_id")
        .agg(
            F.count("*").alias("n"),
            F.sum((F.col("split") == "test").cast("int")).alias("test"),
            F.sum((F.col("split") == "validation").cast("int")).alias("validation"),
        )
        .collect()
    )
    for r in per_movie:
        train_n = r["n"] - r["test"]
        assert train_n == round(0.75 * r["n"])
        assert r["validation"] == train_n - round(0.9 * train_n)
