"""Metrics: hand-computed examples, and recommenders' Spark evaluators as the reference (1e-9, same inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from movielens_als.ml.metrics import (
    coverage_novelty_fn,
    diversity_serendipity_fn,
    ranking_metrics_fn,
    rating_metrics_fn,
    sample_users_fn,
)
from tests.optional import require


@pytest.fixture(scope="module")
def evaluation():
    """recommenders' Spark evaluators: the reference these metrics are held to (a dev dependency)."""
    return require("recommenders.evaluation.spark_evaluation", "the metrics' reference, in the dev extra")


def test_ranking_metrics_hand_computed(spark):
    # user 1: list [10, 20, 30], relevant {10, 30, 40}: hits at ranks 1 and 3.
    # user 2: list [50, 60, 70], relevant {60}: hit at rank 2.
    top = spark.createDataFrame(
        [(1, 10, 1), (1, 20, 2), (1, 30, 3), (2, 50, 1), (2, 60, 2), (2, 70, 3)], "user_id INT, movie_id INT, rank INT"
    )
    truth = spark.createDataFrame([(1, 10), (1, 30), (1, 40), (2, 60), (3, 99)], "user_id INT, movie_id INT")
    m = ranking_metrics_fn(top, truth, k=3)
    d = [1 / math.log2(i + 1) for i in range(1, 4)]
    assert m["users"] == 2  # user 3 has no list, as in SparkRankingEvaluation's inner join
    assert m["precision_at_k"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["recall_at_k"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["ndcg_at_k"] == pytest.approx(((d[0] + d[2]) / sum(d) + d[1] / d[0]) / 2)
    ap1 = 1 / 1 + 2 / 3
    assert m["map"] == pytest.approx((ap1 / 3 + (1 / 2) / 1) / 2)
    assert m["map_at_k"] == pytest.approx((ap1 / 3 + (1 / 2) / 1) / 2)


def test_ranking_metrics_match_recommenders(spark, evaluation):
    top = spark.createDataFrame(
        [(1, 10, 1, 0.9), (1, 20, 2, 0.8), (1, 30, 3, 0.7), (2, 50, 1, 0.9), (2, 60, 2, 0.5), (2, 70, 3, 0.1)],
        "user_id INT, movie_id INT, rank INT, prediction DOUBLE",
    )
    truth = spark.createDataFrame(
        [(1, 10, 5.0), (1, 30, 4.0), (1, 40, 3.0), (2, 60, 1.0)], "user_id INT, movie_id INT, rating DOUBLE"
    )
    ours = ranking_metrics_fn(top, truth, k=3)
    ev = evaluation.SparkRankingEvaluation(truth, top, k=3, col_user="user_id", col_item="movie_id")
    for name in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map", "map_at_k"):
        assert ours[name] == pytest.approx(getattr(ev, name)()), name


def test_rating_metrics_hand_computed(spark):
    df = spark.createDataFrame([(4.0, 3.0), (2.0, 4.0)], "rating DOUBLE, prediction DOUBLE")
    m = rating_metrics_fn(df)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert m["mae"] == pytest.approx(1.5)


def _random_ratings(seed: int, users: int, items: int, per_user: int):
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, items + 1) ** 0.8
    rows = []
    for u in range(1, users + 1):
        chosen = rng.choice(np.arange(1, items + 1), size=per_user, replace=False, p=popularity / popularity.sum())
        rows += [(u, int(i), float(rng.integers(1, 6))) for i in chosen]
    return rows


def test_rating_metrics_match_recommenders(spark, evaluation):
    rng = np.random.default_rng(3)
    rows = [(u, i, float(r), float(r + rng.normal(0, 0.8))) for u, i, r in _random_ratings(1, 30, 40, 12)]
    df = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, prediction DOUBLE")
    ours = rating_metrics_fn(df)
    ev = evaluation.SparkRatingEvaluation(
        df.select("user_id", "movie_id", "rating"),
        df.select("user_id", "movie_id", "prediction"),
        col_user="user_id",
        col_item="movie_id",
        col_rating="rating",
    )
    for name in ("rmse", "mae", "rsquared", "exp_var"):
        assert ours[name] == pytest.approx(getattr(ev, name)(), abs=1e-9), name


def _train_and_reco(spark, users=25, items=60):
    train = _random_ratings(5, users, items, 15)
    seen = {(u, i) for u, i, _ in train}
    rng = np.random.default_rng(9)
    reco = []
    for u in range(1, users + 1):
        unseen = [i for i in range(1, items + 1) if (u, i) not in seen]
        reco += [(u, int(i)) for i in rng.choice(unseen, size=10 if u % 7 else 1, replace=False)]
    reco += [(users + 1, 1), (users + 1, 2)]  # a user with recommendations but no training rows
    return (
        spark.createDataFrame(train, "user_id INT, movie_id INT, rating DOUBLE"),
        spark.createDataFrame(reco, "user_id INT, movie_id INT"),
    )


def test_diversity_metrics_match_recommenders_when_every_user_is_in_the_sample(spark, evaluation):
    train, reco = _train_and_reco(spark)
    ours = coverage_novelty_fn(train, reco) | diversity_serendipity_fn(train, reco, sample=1000)
    ev = evaluation.SparkDiversityEvaluation(train_df=train, reco_df=reco, col_user="user_id", col_item="movie_id")
    for name in ("catalog_coverage", "distributional_coverage", "novelty", "diversity", "serendipity"):
        assert ours[name] == pytest.approx(getattr(ev, name)(), abs=1e-9), name


def test_sampled_diversity_is_recommenders_on_the_sampled_users(spark, evaluation):
    train, reco = _train_and_reco(spark)
    sample = sample_users_fn(reco, 8)
    assert sample.count() == 8
    ours = diversity_serendipity_fn(train, reco, sample=8)
    ev = evaluation.SparkDiversityEvaluation(
        train_df=train.join(sample, "user_id"),
        reco_df=reco.join(sample, "user_id"),
        col_user="user_id",
        col_item="movie_id",
    )
    assert ours["diversity"] == pytest.approx(ev.diversity(), abs=1e-9)
    assert ours["serendipity"] == pytest.approx(ev.serendipity(), abs=1e-9)
