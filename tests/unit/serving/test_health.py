"""serving_health figures against a hand computation on a small fixture."""

from __future__ import annotations

import pytest

from movielens_als.serving.health import Thresholds, alerts, serving_health_fn

RECS = "user_id INT, rank INT, movie_id INT, score DOUBLE, model_version BIGINT"


def test_serving_health_by_hand(spark):
    rated = {1: [1, 2, 3], 2: [1, 2, 4], 3: [1, 3], 4: [1, 2, 5], 5: [1]}  # movie counts 5, 3, 2, 1, 1
    ratings = spark.createDataFrame(
        [(u, m, 4.0) for u, movies in rated.items() for m in movies], "user_id INT, movie_id INT, rating DOUBLE"
    )
    previous = spark.createDataFrame(
        [(1, 1, 4, 0.9, 7), (1, 2, 5, 0.8, 7), (2, 1, 3, 0.9, 7), (2, 2, 5, 0.8, 7), (4, 1, 3, 0.9, 7),
         (4, 2, 4, 0.8, 7)], RECS,
    )  # fmt: skip
    scores = iter([0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    current = spark.createDataFrame(
        [(1, 1, 4, next(scores), 8), (1, 2, 5, next(scores), 8),  # same list
         (2, 1, 5, next(scores), 8), (2, 2, 3, next(scores), 8),  # same movies, new order
         (4, 1, 3, next(scores), 8), (4, 2, 1, next(scores), 8),  # half the movies new
         (6, 1, 1, next(scores), 8), (6, 2, 2, next(scores), 8)], RECS,  # a user new to the table
    )  # fmt: skip
    health = serving_health_fn(current, previous, ratings, min_ratings=3)
    assert health == {
        "users_served": 4,
        "users_changed": 3,
        "users_added": 1,  # user 6
        "churn": 0.75,
        "mean_overlap": pytest.approx((1 + 1 + 0.5) / 3),
        "catalog_coverage": 1.0,
        "previous_coverage": 0.6,
        "popular_share": 0.25,  # movie 1 is the top 1% (ceil(0.05) = 1 movie); served twice in 8 rows
        "fallback_users": 2,  # users 3 and 5 have fewer than 3 ratings
        "score_p05": pytest.approx(0.135),
        "score_p50": pytest.approx(0.45),
        "score_p95": pytest.approx(0.765),
        "champion_version_before": 7,
        "champion_version_after": 8,
    }
    assert alerts(health, Thresholds(max_churn=0.5, max_coverage_drop=0.1)) == ["churn 0.750 above 0.5"]
    assert alerts(health, Thresholds(max_churn=0.9, max_coverage_drop=0.1)) == []
    first = serving_health_fn(current, None, ratings, min_ratings=3)
    assert (first["users_changed"], first["churn"], first["champion_version_before"]) == (None, None, None)
    assert first["users_added"] is None
    assert alerts({**first, "catalog_coverage": 0.2, "previous_coverage": 0.9}, Thresholds(1.0, 0.5)) == [
        "catalogue coverage fell by 0.700 (more than 0.5)"
    ]
