"""The rating model's pieces against hand-derived results: bias baseline, passes, blend."""

from __future__ import annotations

import dataclasses

import pytest
from chispa import assert_approx_df_equality

from movielens_als.ml.blend import Blend
from movielens_als.ml.hyperparams import RatingParams
from movielens_als.ml.rating_model import (
    blend_weights_fn,
    fit_bias_baseline,
    fit_rating_model,
    predict_ratings_fn,
)

TINY_GRID = {
    "rating": {"rank": [2], "reg_param": [0.1], "max_iter": [2], "passes": [1]},
    "ranking": {"rank": [2], "reg_param": [0.1, 1.0], "alpha": [1.0], "max_iter": [2]},
    "k": 3,
}


def test_bias_baseline_one_iteration_hand_computed(spark):
    df = spark.createDataFrame([(1, 10, 5.0), (1, 20, 3.0), (2, 10, 4.0)], "user_id INT, movie_id INT, rating DOUBLE")
    b = fit_bias_baseline(df, reg_user=1.0, reg_item=1.0, iterations=1)
    mu = 4.0
    # items first: b_10 = (1 + 0) / (2 + 1), b_20 = -1 / (1 + 1)
    b10, b20 = 1 / 3, -0.5
    # users: b_1 = ((5 - 4 - b10) + (3 - 4 - b20)) / (2 + 1), b_2 = (4 - 4 - b10) / (1 + 1)
    b1, b2 = ((1 - b10) + (-1 - b20)) / 3, (0 - b10) / 2
    assert b.global_mean == pytest.approx(mu)
    expected_items = spark.createDataFrame([(10, b10), (20, b20)], "movie_id INT, item_bias DOUBLE")
    expected_users = spark.createDataFrame([(1, b1), (2, b2)], "user_id INT, user_bias DOUBLE")
    assert_approx_df_equality(b.item_bias, expected_items, 1e-9, ignore_row_order=True, ignore_nullable=True)
    assert_approx_df_equality(b.user_bias, expected_users, 1e-9, ignore_row_order=True, ignore_nullable=True)
    # Predictions: unknown ids get 0 bias; clipped to the observed scale [3, 5].
    query = spark.createDataFrame([(1, 10), (9, 99)], "user_id INT, movie_id INT")
    pred = predict_ratings_fn(b, None, query).select("user_id", "movie_id", "prediction")
    expected = spark.createDataFrame(
        [(1, 10, mu + b1 + b10), (9, 99, mu)], "user_id INT, movie_id INT, prediction DOUBLE"
    )
    assert_approx_df_equality(pred, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_bias_baseline_with_offset_explains_what_the_offset_leaves(spark):
    df = spark.createDataFrame(
        [(1, 10, 5.0, 1.0), (1, 20, 3.0, -1.0), (2, 10, 4.0, 0.5)], "user_id INT, movie_id INT, rating DOUBLE, f DOUBLE"
    )
    b = fit_bias_baseline(df, reg_user=1.0, reg_item=1.0, iterations=1, offset="f")
    # targets r - f = 4, 4, 3.5: mu = 11.5 / 3; the rating scale still comes from the ratings
    mu = 11.5 / 3
    b10 = ((4 - mu) + (3.5 - mu)) / 3
    assert b.global_mean == pytest.approx(mu) and (b.rating_min, b.rating_max) == (3.0, 5.0)
    assert b.item_bias.where("movie_id = 10").first()["item_bias"] == pytest.approx(b10)


def test_second_pass_refits_biases_on_what_the_first_pass_factors_leave(spark):
    rows = [(u, i, float(1 + (u * 2 + i) % 5)) for u in range(1, 9) for i in range(1, 7) if (u + i) % 3]
    df = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE")
    params = RatingParams(reg_user=2.0, reg_item=2.0, rank=2, reg_param=0.1, max_iter=3, passes=1)
    _, first = fit_rating_model(df, params, seed=7)
    second_baseline, _ = fit_rating_model(df, dataclasses.replace(params, passes=2), seed=7)
    factors = first.transform(df).withColumnRenamed("prediction", "f")
    expected = fit_bias_baseline(factors, 2.0, 2.0, offset="f")
    assert second_baseline.global_mean == pytest.approx(expected.global_mean)
    assert_approx_df_equality(
        second_baseline.user_bias, expected.user_bias, 1e-6, ignore_row_order=True, ignore_nullable=True
    )


def test_blend_weights_recover_an_exact_linear_blend_and_shrink_on_tiny_data(spark):
    rows = [(float(e), float(s), 0.0, 0.5 + 0.8 * e + 0.3 * s) for e in range(1, 6) for s in range(-20, 21)] * 200
    df = spark.createDataFrame(rows, "_explicit DOUBLE, _implicit DOUBLE, _knn DOUBLE, rating DOUBLE")
    w = blend_weights_fn(df)  # 41000 rows against 100 pseudo-rows of the prior
    assert (w.intercept, w.explicit, w.implicit) == pytest.approx((0.5, 0.8, 0.3), abs=0.02)
    two = spark.createDataFrame(
        [(3.0, 0.0, 0.0, 3.5), (4.0, 1.0, 0.0, 4.0)], "_explicit DOUBLE, _implicit DOUBLE, _knn DOUBLE, rating DOUBLE"
    )
    tiny = blend_weights_fn(two)  # two rows cannot outweigh the prior: close to unblended
    assert (tiny.intercept, tiny.explicit, tiny.implicit) == pytest.approx((0.0, 1.0, 0.0), abs=0.05)
    assert blend_weights_fn(df.limit(0)) == Blend()
