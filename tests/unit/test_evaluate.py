"""Metrics on hand-computed examples; evaluate appends model_metrics rows."""

from __future__ import annotations

import math

import pytest

from movielens_als.metrics import ranking_metrics_fn, rating_metrics_fn


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


def test_ranking_metrics_match_recommenders(spark):
    evaluation = pytest.importorskip("recommenders.evaluation.spark_evaluation")
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
