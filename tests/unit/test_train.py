"""Bias baseline math, grid parsing, test rows never reaching tuning, a full tiny training run."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_approx_df_equality

from movielens_als.errors import MovieLensAlsError
from movielens_als.grid import parse_grid
from movielens_als.rating_model import Blend, blend_weights_fn, fit_bias_baseline, fit_rating_model, predict_ratings_fn
from movielens_als.splits import split
from movielens_als.train import train, tuning_frames

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
    params = {"reg_user": 2.0, "reg_item": 2.0, "rank": 2, "reg_param": 0.1, "max_iter": 3}
    _, first = fit_rating_model(df, {**params, "passes": 1}, seed=7)
    second_baseline, _ = fit_rating_model(df, {**params, "passes": 2}, seed=7)
    factors = first.transform(df).withColumnRenamed("prediction", "f")
    expected = fit_bias_baseline(factors, 2.0, 2.0, offset="f")
    assert second_baseline.global_mean == pytest.approx(expected.global_mean)
    assert_approx_df_equality(
        second_baseline.user_bias, expected.user_bias, 1e-6, ignore_row_order=True, ignore_nullable=True
    )


def test_blend_weights_recover_an_exact_linear_blend_and_shrink_on_tiny_data(spark):
    rows = [(float(e), float(s), 0.5 + 0.8 * e + 0.3 * s) for e in range(1, 6) for s in range(-20, 21)] * 200
    df = spark.createDataFrame(rows, "_explicit DOUBLE, _implicit DOUBLE, rating DOUBLE")
    w = blend_weights_fn(df)  # 41000 rows against 100 pseudo-rows of the prior
    assert (w.intercept, w.explicit, w.implicit) == pytest.approx((0.5, 0.8, 0.3), abs=0.02)
    two = spark.createDataFrame([(3.0, 0.0, 3.5), (4.0, 1.0, 4.0)], "_explicit DOUBLE, _implicit DOUBLE, rating DOUBLE")
    tiny = blend_weights_fn(two)  # two rows cannot outweigh the prior: close to unblended
    assert (tiny.intercept, tiny.explicit, tiny.implicit) == pytest.approx((0.0, 1.0, 0.0), abs=0.05)
    assert blend_weights_fn(df.limit(0)) == Blend()


def test_parse_grid_defaults_and_errors():
    g = parse_grid(json.dumps({"ranking": {"rank": 8}}))
    assert g["ranking"]["rank"] == [8] and g["rating"]["rank"] and g["k"] == 10
    for bad, message in [
        ("{", "not valid JSON"),
        ('{"x": 1}', "unknown keys"),
        ('{"ranking": {"rank": [0]}}', ">= 1"),
        ('{"ranking": {"rank": [1.5]}}', "ints"),
        ('{"ranking": {"implicit_value": ["x"]}}', "implicit_value"),
        ('{"rating": {"alpha": [1]}}', "unknown rating parameters"),
    ]:
        with pytest.raises(MovieLensAlsError, match=message):
            parse_grid(bad)


def _write_ratings(spark, namespace, test_rating=None):
    t0 = dt.datetime(2020, 1, 1)
    rows = [(u, i, float(1 + (u + 2 * i) % 5), t0) for u in range(1, 16) for i in range(1, 9) if (u * i) % 4 != 1]
    df = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP")
    df.writeTo(namespace.table("ratings")).using("delta").createOrReplace()
    split(spark, namespace, "benchmark")
    if test_rating is not None:  # corrupt the test rows only
        spark.sql(f"UPDATE {namespace.table('splits')} SET rating = {test_rating} WHERE split = 'test'")


def test_tuning_frames_drop_test_rows(spark, namespace):
    _write_ratings(spark, namespace)
    splits_df = spark.table(namespace.table("splits"))
    fit, validation, full = tuning_frames(splits_df)
    test = splits_df.where("split = 'test'").select("user_id", "movie_id")
    for df in (fit, validation, full):
        assert df.join(test, ["user_id", "movie_id"]).count() == 0
    assert full.count() == splits_df.where("split != 'test'").count()


def test_train_ignores_test_rows_and_records_the_run(spark, namespace, storage):
    _write_ratings(spark, namespace)
    first = train(spark, namespace, storage, run_id="run_a", grid=TINY_GRID)
    # Wildly different test ratings must not change anything tuning sees.
    spark.sql(f"UPDATE {namespace.table('splits')} SET rating = 1000.0 WHERE split = 'test'")
    second = train(spark, namespace, storage, run_id="run_b", grid=TINY_GRID)
    runs = {r["run_id"]: r for r in spark.table(namespace.table("training_runs")).collect()}
    assert set(runs) == {"run_a", "run_b"}
    assert all(r["status"] == "succeeded" for r in runs.values())

    def rounded(value):  # scores may differ only in float summation order
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return round(value, 9) if isinstance(value, float) else value

    def scores(run):  # wall-clock seconds differ between runs
        return [rounded({k: v for k, v in m.items() if k != "seconds"}) for m in json.loads(run["validation_metrics"])]

    assert scores(runs["run_a"]) == scores(runs["run_b"])
    assert runs["run_a"]["ranking_hyperparams"] == runs["run_b"]["ranking_hyperparams"]
    assert first.details["validation_rmse"] == pytest.approx(second.details["validation_rmse"], abs=1e-9)
    assert runs["run_a"]["ratings_version"] is not None
    assert set(json.loads(runs["run_a"]["timings"])) == {
        "tune_rating",
        "tune_ranking",
        "blend",
        "refit",
        "serving_refit",
        "log_models",
    }
    assert len(json.loads(runs["run_a"]["validation_metrics"])) == 1 + 1 + 1 + 2  # bias, rating ALS, blend, 2 ranking
    with pytest.raises(MovieLensAlsError, match="already exists"):
        train(spark, namespace, storage, run_id="run_a", grid=TINY_GRID)


def test_train_without_splits_is_a_clear_error(spark, namespace, storage):
    with pytest.raises(MovieLensAlsError, match="movielens-als split"):
        train(spark, namespace, storage, grid=TINY_GRID)
