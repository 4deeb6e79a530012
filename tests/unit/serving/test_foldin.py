"""Fold-in against training: a training user's ratings folded in give back their trained factor and top-10, for
Spark's own ALS and for the ranking model's iALS with ``beta`` > 0."""

from __future__ import annotations

import numpy as np
import pytest

from movielens_als.ml.als import als_estimator
from movielens_als.ml.factors import Factors
from movielens_als.ml.hyperparams import RankingParams
from movielens_als.ml.implicit import gram
from movielens_als.ml.ranking_model import fit_ranking_model, implicit_frame
from movielens_als.serving.foldin import fold_in, top_n


def _ratings(spark, seed=7, users=60, movies=40):
    rng = np.random.default_rng(seed)
    rows = [
        (u, m, float(rng.integers(1, 6)))
        for u in range(1, users + 1)
        for m in range(1, movies + 1)
        if rng.random() < 0.25 + 0.5 * ((u + m) % 3 == 0)
    ]
    return rows, spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE")


def _matrix(factors):
    rows = sorted((r["id"], r["features"]) for r in factors.collect())
    return np.array([i for i, _ in rows]), np.array([f for _, f in rows], dtype=np.float32)


def _spark_als(df, params: RankingParams, seed):
    als = als_estimator(
        df.sparkSession,
        rank=params.rank,
        regParam=params.reg_param,
        alpha=params.alpha,
        maxIter=params.max_iter,
        implicitPrefs=True,
        ratingCol="value",
        seed=seed,
    )
    return Factors.of(als.fit(implicit_frame(df, params.implicit_value)))


@pytest.mark.parametrize(
    ("implicit_value", "beta", "fit"),
    [("rating", 0.0, _spark_als), ("one", 0.0, _spark_als), ("rating", 0.3, fit_ranking_model)],
)
def test_fold_in_of_a_training_users_ratings_is_their_factor_and_top_10(spark, implicit_value, beta, fit):
    rows, df = _ratings(spark)
    params = RankingParams(rank=6, reg_param=0.1, alpha=0.5, beta=beta, max_iter=8, implicit_value=implicit_value)
    model = fit(df, params, seed=3)
    user_ids, users = _matrix(model.users)
    item_ids, items = _matrix(model.items)
    item_gram = gram(items)
    beta_n = beta * len(rows) / len(user_ids)  # beta times the mean user's (positive) ratings
    worst, same_top = 0.0, 0
    for u, spark_vector in zip(user_ids, users, strict=True):
        mine = [(m, r) for uu, m, r in rows if uu == u]
        item_rows = np.searchsorted(item_ids, [m for m, _ in mine])
        values = np.array([r if implicit_value == "rating" else 1.0 for _, r in mine])
        vector = fold_in(items, item_gram, item_rows, values, params.alpha, params.reg_param, beta_n)
        worst = max(worst, float(np.abs(vector - spark_vector).max()))
        ours = top_n(items.astype(np.float64) @ vector, item_ids, item_rows, 10)
        theirs = top_n(items.astype(np.float64) @ spark_vector.astype(np.float64), item_ids, item_rows, 10)
        same_top += list(ours) == list(theirs)
    assert worst <= 1e-4
    assert same_top == len(user_ids)


def test_fold_in_solves_the_implicit_normal_equations_by_hand():
    # Two items, one rating of 2 on item 0, alpha 0.5, regParam 0.1: c1 = 1, lambda = 0.1 * 1.
    items = np.array([[1.0, 0.0], [1.0, 1.0]])
    a = items.T @ items + 1.0 * np.outer(items[0], items[0]) + 0.1 * np.eye(2)
    b = (1.0 + 1.0) * items[0]
    expected = np.linalg.solve(a, b)
    got = fold_in(items, gram(items), np.array([0]), np.array([2.0]), alpha=0.5, reg_param=0.1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_top_n_excludes_and_breaks_ties_by_id():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    ids = np.array([60, 50, 40, 30, 20, 10])
    # 30 and 50 tie at 0.9 (30 first); 50 excluded; then the 0.5 tie: 10, 40, 60 by id.
    assert ids[top_n(scores, ids, np.array([1]), 3)].tolist() == [30, 10, 40]
    assert ids[top_n(scores, ids, np.array([], dtype=int), 10)].tolist() == [30, 50, 10, 40, 60, 20]
