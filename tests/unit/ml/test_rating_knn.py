"""The rating model's neighbour feature against hand-derived and dense numpy results, the 4-feature blend,
and the rating model with it saved, loaded and served by the pyfunc model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError
from movielens_als.ml.blend import Blend, NeighbourLists, knn_values
from movielens_als.ml.factors import Factors
from movielens_als.ml.hyperparams import RatingParams
from movielens_als.ml.ials import partition_keys
from movielens_als.ml.knn import KNN_BLOCKS, fit_knn, item_neighbours_fn, knn_feature_fn, user_blocks
from movielens_als.ml.pyfunc import RatingPyfunc
from movielens_als.ml.rating_model import (
    RatingModel,
    blend_weights_fn,
    fit_rating_model,
    predict_ratings_fn,
)
from tests.plans import physical_plan, plan_nodes

PAIRS = "user_id INT, movie_id INT"
ITEMS = {1: [1.0, 0.0], 2: [1.0, 1.0], 3: [0.0, 1.0], 4: [-1.0, -0.2], 5: [2.0, 0.3], 6: [0.0, 0.0]}


def _factors(spark, vectors: dict[int, list[float]]):
    return spark.createDataFrame(list(vectors.items()), "id INT, features ARRAY<FLOAT>")


def test_neighbours_are_the_top_k_positive_cosines_without_self(spark):
    got = item_neighbours_fn(_factors(spark, ITEMS), k=2, power=3.0)
    cos = {(1, 2): 1 / np.sqrt(2), (1, 5): 2 / np.hypot(2, 0.3), (2, 3): 1 / np.sqrt(2)}
    cos[(2, 5)] = 2.3 / (np.sqrt(2) * np.hypot(2, 0.3))
    cos[(3, 5)] = 0.3 / np.hypot(2, 0.3)
    # 1: 5 then 2; 2: 5 then 1 (3 ties 1, ids break it); 3: 2 then 5; 4: every cosine <= 0 (1, 2, 3, 5
    # negative, the zero vector 6 is 0): no neighbours; 5: 1 then 2; 6: zero vector, nothing positive.
    expected = [(1, 5), (1, 2), (2, 5), (2, 1), (3, 2), (3, 5), (5, 1), (5, 2)]
    rows = [(i, j, float(cos[(min(i, j), max(i, j))] ** 3)) for i, j in expected]
    want = spark.createDataFrame(rows, "movie_id INT, neighbour_id INT, similarity DOUBLE")
    assert_approx_df_equality(got, want, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_knn_feature_hand_derived(spark):
    neighbours = spark.createDataFrame(
        [(10, 20, 0.5), (10, 30, 0.25), (20, 10, 0.5)], "movie_id INT, neighbour_id INT, similarity DOUBLE"
    )
    residuals = spark.createDataFrame(
        [(1, 20, 1.0), (1, 30, 2.0), (2, 30, 0.8), (3, 10, 1.0)], "user_id INT, movie_id INT, residual DOUBLE"
    )
    pairs = spark.createDataFrame([(1, 10), (2, 10), (2, 10), (3, 20), (3, 30), (1, 20), (4, 10)], PAIRS)
    got = knn_feature_fn(pairs, neighbours, residuals)
    want = spark.createDataFrame(
        [
            (1, 10, (0.5 * 1.0 + 0.25 * 2.0) / (1 + 0.5 + 0.25)),
            (2, 10, 0.25 * 0.8 / (1 + 0.25)),  # only neighbour 30 rated: only its similarity counts
            (2, 10, 0.25 * 0.8 / (1 + 0.25)),  # a repeated pair keeps its rows
            (3, 20, 0.5 * 1.0 / (1 + 0.5)),
            (3, 30, 0.0),  # movie 30 has no neighbours
            (1, 20, 0.0),  # user 1 rated none of 20's neighbours
            (4, 10, 0.0),  # unknown user
        ],
        "user_id INT, movie_id INT, _knn DOUBLE",
    )
    assert_approx_df_equality(got, want, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_each_user_block_is_a_partition_of_its_own_that_adaptive_execution_keeps(spark):
    """The feature's pairs and residuals meet in ``KNN_BLOCKS`` partitions, block ``user mod B`` in partition
    ``user mod B``, with the session's adaptive execution on, and the cogroup shuffles each side once, into that
    layout (when it shuffled them itself, the blocks shared the session's few shuffle partitions)."""
    assert spark.conf.get("spark.sql.adaptive.enabled") == "true"
    keys = partition_keys(spark, KNN_BLOCKS)
    users = spark.range(0, 40 * KNN_BLOCKS).select(F.col("id").cast("int").alias("user_id"))
    placed = user_blocks(users, keys).select(F.spark_partition_id().alias("part"), "user_id").collect()
    assert len(placed) == 40 * KNN_BLOCKS
    assert {r["part"] for r in placed} == set(range(KNN_BLOCKS))
    assert all(r["part"] == r["user_id"] % KNN_BLOCKS for r in placed)

    neighbours = spark.createDataFrame([(10, 20, 0.5)], "movie_id INT, neighbour_id INT, similarity DOUBLE")
    residuals = spark.createDataFrame([(1, 20, 1.0)], "user_id INT, movie_id INT, residual DOUBLE")
    feature = knn_feature_fn(spark.createDataFrame([(1, 10)], PAIRS), neighbours, residuals)
    (cogroup,) = [n for n in plan_nodes(physical_plan(feature)) if n.nodeName() == "FlatMapCoGroupsInPandas"]
    for side in (cogroup.left(), cogroup.right()):
        (exchange,) = [n for n in plan_nodes(side) if n.nodeName() == "Exchange"]
        assert exchange.outputPartitioning().numPartitions() == KNN_BLOCKS


def test_the_numpy_core_both_paths_run_counts_a_rating_given_twice_twice():
    lists = NeighbourLists.of(np.array([20, 10, 10]), np.array([10, 30, 20]), np.array([0.5, 0.25, 0.5]))
    assert (lists.movies.tolist(), lists.indptr.tolist(), lists.neighbour.tolist()) == (
        [10, 20],
        [0, 2, 3],
        [20, 30, 10],
    )
    rated = (np.array([1, 1, 1]), np.array([20, 20, 30]), np.array([1.0, 3.0, 2.0]))  # (1, 20) rated twice
    got = knn_values(lists, np.array([1, 1, 5]), np.array([10, 99, 10]), *rated)
    # 0.5 * (1 + 3) + 0.25 * 2 over 1 + 2 * 0.5 + 0.25; movie 99 has no list; user 5 rated nothing
    assert got.tolist() == pytest.approx([(0.5 * 4.0 + 0.25 * 2.0) / (1 + 1.0 + 0.25), 0.0, 0.0], abs=1e-15)
    assert knn_values(NeighbourLists.of([], [], []), np.array([1]), np.array([10]), *rated).tolist() == [0.0]
    assert Blend(0.5, 2.0, 3.0, 4.0).combine(np.array([1.0]), np.array([10.0]), 100.0).tolist() == [432.5]


def _tiny_ratings(spark, n_users: int = 9, n_items: int = 7):
    rows = [(u, i, float(1 + (u * 3 + i * i) % 5)) for u in range(1, n_users + 1) for i in range(1, n_items + 1)]
    return spark.createDataFrame([r for r in rows if (r[0] + 2 * r[1]) % 3], "user_id INT, movie_id INT, rating DOUBLE")


def test_fit_knn_equals_the_dense_numpy_formula(spark):
    ratings = _tiny_ratings(spark)
    params = RatingParams(reg_user=2.0, reg_item=2.0, rank=2, reg_param=0.1, max_iter=2, passes=1)
    baseline, _ = fit_rating_model(ratings, params, seed=3)
    rng = np.random.default_rng(5)
    vectors = {i: rng.normal(size=3).round(3).tolist() for i in range(1, 8)}
    k, power = 3, 2.0
    knn = fit_knn(baseline, ratings, Factors(_factors(spark, {}), _factors(spark, vectors)), k, power)
    pairs = spark.createDataFrame([(u, i) for u in range(1, 11) for i in range(1, 8)], PAIRS)
    got = knn.transform(pairs)
    # Dense reference (issue 19's numpy research): S = top-k per row of max(cos, 0)^power, diagonal 0;
    # feature = (E S')[u, i] / ((B S')[u, i] + 1), E the residuals, B the rated indicator.
    y = np.array([vectors[i] for i in range(1, 8)], dtype=np.float32).astype(np.float64)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    s = np.maximum(y @ y.T, 0) ** power
    np.fill_diagonal(s, 0)
    s[np.arange(7)[:, None], np.argsort(-s, axis=1)[:, k:]] = 0
    mu = baseline.global_mean
    bu = dict(baseline.user_bias.collect())
    bi = dict(baseline.item_bias.collect())
    e, b = np.zeros((11, 7)), np.zeros((11, 7))
    for u, i, r in ratings.collect():
        e[u, i - 1], b[u, i - 1] = r - (mu + bu[u] + bi[i]), 1.0
    dense = (e @ s.T) / (b @ s.T + 1)
    rows = [(u, i, float(dense[u, i - 1])) for u in range(1, 11) for i in range(1, 8)]
    want = spark.createDataFrame(rows, "user_id INT, movie_id INT, _knn DOUBLE")
    assert_approx_df_equality(got, want, 1e-9, ignore_row_order=True, ignore_nullable=True)
    assert got.where("_knn != 0").count() > 20  # the fixture exercises the feature


def test_blend_weights_with_four_features_are_least_squares_with_the_prior(spark):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3)) + [3.5, 0.0, 0.0]
    y = 0.2 + 0.9 * x[:, 0] + 0.4 * x[:, 1] + 0.6 * x[:, 2] + rng.normal(scale=0.3, size=60)
    df = spark.createDataFrame(
        [tuple(map(float, (*row, t))) for row, t in zip(x, y, strict=True)],
        "_explicit DOUBLE, _implicit DOUBLE, _knn DOUBLE, rating DOUBLE",
    )
    design = np.column_stack([np.ones(60), x])
    lam = Blend.PRIOR_ROWS
    want = np.linalg.solve(design.T @ design + lam * np.eye(4), design.T @ y + lam * np.array([0, 1.0, 0, 0]))
    got = blend_weights_fn(df)
    assert (got.intercept, got.explicit, got.implicit, got.knn) == pytest.approx(tuple(want), abs=1e-9)


@pytest.fixture(scope="module")
def knn_model(spark):
    ratings = _tiny_ratings(spark)
    params = RatingParams(reg_user=2.0, reg_item=2.0, rank=2, reg_param=0.1, max_iter=2, passes=2)
    baseline, residual = fit_rating_model(ratings, params, seed=3)
    rng = np.random.default_rng(9)
    implicit = Factors(
        _factors(spark, {u: rng.normal(size=2).round(3).tolist() for u in range(1, 10)}),
        _factors(spark, {i: rng.normal(size=2).round(3).tolist() for i in range(1, 8)}),
    )
    knn = fit_knn(baseline, ratings, implicit, k=3, power=3.0)
    return RatingModel(baseline, residual, implicit, Blend(0.1, 0.9, 0.2, 0.7), knn)


def _pairs(spark):
    return spark.createDataFrame([(u, i) for u in (1, 2, 5, 9, 99) for i in (1, 3, 4, 7, 99)], PAIRS)


def test_rating_model_saved_and_loaded_predicts_the_same(spark, knn_model, tmp_path):
    pairs = _pairs(spark)
    before = knn_model.predict(pairs)
    for scratch in (None, tmp_path / "scratch"):  # through Arrow, and staged by Spark's own writer
        folder = tmp_path / f"model_{scratch is None}"
        knn_model.save(folder, scratch)
        after = RatingModel.load(spark, folder).predict(pairs)
        assert_approx_df_equality(after, before, 1e-12, ignore_row_order=True, ignore_nullable=True)
    without = RatingModel(knn_model.baseline, knn_model.residual, knn_model.implicit, Blend(0.1, 0.9, 0.2, 0.0))
    differs = before.join(without.predict(pairs).withColumnRenamed("prediction", "p0"), ["user_id", "movie_id"])
    assert differs.where("abs(prediction - p0) > 1e-6").count() > 5  # the knn term moves predictions
    with pytest.raises(MovieLensAlsError, match="knn weight"):
        predict_ratings_fn(knn_model.baseline, knn_model.residual, pairs, knn_model.implicit, knn_model.blend)


def test_pyfunc_predicts_like_spark_with_the_knn_term(spark, knn_model, tmp_path):
    knn_model.save(tmp_path, tmp_path / "scratch")
    model = RatingPyfunc()
    model.load_context(SimpleNamespace(artifacts={"model": str(tmp_path)}))
    spark_pred = knn_model.predict(_pairs(spark)).orderBy("user_id", "movie_id").toPandas()
    got = model.predict(None, spark_pred[["user_id", "movie_id"]].astype("int64"))
    assert np.allclose(got["prediction"], spark_pred["prediction"], atol=1e-9)
    empty = model.predict(
        None, pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "movie_id": pd.Series([], dtype="int64")})
    )
    assert len(empty) == 0
