"""recommend: blocked top-N, popular fallback ranking, similar movies, and the task's Delta writes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse import tables
from movielens_als.ml import registry
from movielens_als.ml.factors import Factors
from movielens_als.ml.popular import popular_movies_fn
from movielens_als.tasks import recommend as rec

FACTORS = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("features", T.ArrayType(T.FloatType()))])
TOP_N = T.StructType(
    [
        T.StructField("user_id", T.IntegerType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("movie_id", T.IntegerType()),
        T.StructField("score", T.DoubleType()),
    ]
)
SIMILAR = T.StructType(
    [
        T.StructField("movie_id", T.IntegerType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("similar_movie_id", T.IntegerType()),
        T.StructField("similarity", T.DoubleType()),
    ]
)
POPULAR = T.StructType(
    [
        T.StructField("genre", T.StringType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("movie_id", T.IntegerType()),
        T.StructField("num_ratings", T.LongType()),
        T.StructField("avg_rating", T.DoubleType()),
        T.StructField("score", T.DoubleType()),
    ]
)
RATINGS = "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP"
MOVIES = "movie_id INT, title STRING, year INT, release_date DATE, genres ARRAY<STRING>, imdb_url STRING"


def factors(spark, rows):
    return spark.createDataFrame([(i, [float(x) for x in f]) for i, f in rows], FACTORS)


def seen_df(spark, pairs):
    return spark.createDataFrame(pairs, "user_id INT, movie_id INT")


def ordered(df, *cols):
    return df.orderBy(*cols)


# Exactly representable factors, so the expected scores are exact dot products.
USERS = [(1, [1, 0]), (2, [0, 1]), (3, [1, 1])]
ITEMS = [(10, [3, 0]), (11, [2, 1]), (12, [1, 2]), (13, [0, 3])]


def test_top_n_returns_best_unseen_items_per_user(spark):
    users = USERS + [(4, [1, 0]), (5, [0, 1])]
    seen = seen_df(
        spark, [(1, 10), (3, 11), (3, 12)] + [(4, i) for i in (10, 11, 12, 13)] + [(5, i) for i in (10, 11, 13)]
    )
    # block_size 2: several user and item blocks, so per-block top-k lists are merged.
    result = rec.top_n_fn(factors(spark, users), factors(spark, ITEMS), seen, 2, block_size=2)
    expected = spark.createDataFrame(
        [
            (1, 1, 11, 2.0),
            (1, 2, 12, 1.0),  # 10 (score 3) was rated by user 1
            (2, 1, 13, 3.0),
            (2, 2, 12, 2.0),
            (3, 1, 10, 3.0),
            (3, 2, 13, 3.0),  # 11 and 12 were rated; 10 and 13 tie: lower id first
            (5, 1, 12, 2.0),  # one unseen item left; user 4 rated everything
        ],
        TOP_N,
    )
    assert_df_equality(ordered(result, "user_id", "rank"), expected, ignore_nullable=True)


def test_top_n_breaks_score_ties_by_movie_id_within_and_across_blocks(spark):
    # block_size 4: items 20-23 form one block, 24-26 another whose three tied items exceed k = 2.
    items = [(26, [1, 1]), (25, [1, 1]), (24, [1, 1]), (21, [1, 1]), (23, [1, 1]), (22, [1, 1]), (20, [0, 1])]
    result = rec.top_n_fn(
        factors(spark, [(7, [1, 0])]), factors(spark, items), seen_df(spark, [(7, 21)]), 2, block_size=4
    )
    expected = spark.createDataFrame([(7, 1, 22, 1.0), (7, 2, 23, 1.0)], TOP_N)
    assert_df_equality(ordered(result, "rank"), expected, ignore_nullable=True)

    result = rec.top_n_fn(factors(spark, [(7, [1, 0])]), factors(spark, items[:3]), seen_df(spark, []), 2, block_size=4)
    expected = spark.createDataFrame([(7, 1, 24, 1.0), (7, 2, 25, 1.0)], TOP_N)
    assert_df_equality(ordered(result, "rank"), expected, ignore_nullable=True)


@pytest.mark.parametrize("bad", [0, 101, -1, 2.5, True])
def test_top_n_outside_1_to_100_is_rejected(spark, bad):
    with pytest.raises(MovieLensAlsError, match="top_n"):
        rec.top_n_fn(factors(spark, USERS), factors(spark, ITEMS), seen_df(spark, []), bad)


def test_top_n_matches_brute_force_on_random_factors(spark):
    rng = np.random.default_rng(7)
    users = [(u, rng.normal(size=4).round(3).tolist()) for u in range(1, 41)]
    items = [(i, rng.normal(size=4).round(3).tolist()) for i in range(1, 61)]
    seen = [(u, i) for u in range(1, 41) for i in rng.choice(np.arange(1, 61), size=8, replace=False).tolist()]
    u = np.array([np.float32(f) for _, f in users], dtype=np.float64)
    v = np.array([np.float32(f) for _, f in items], dtype=np.float64)
    scores = u @ v.T
    expected_rows = []
    for ui, (user_id, _) in enumerate(users):
        rated = {i for uu, i in seen if uu == user_id}
        cands = sorted(((-scores[ui, ii], item_id) for ii, (item_id, _) in enumerate(items) if item_id not in rated))
        expected_rows += [(user_id, r + 1, int(item_id), -float(s)) for r, (s, item_id) in enumerate(cands[:5])]
    result = rec.top_n_fn(factors(spark, users), factors(spark, items), seen_df(spark, seen), 5, block_size=16)
    assert_approx_df_equality(
        ordered(result, "user_id", "rank"), spark.createDataFrame(expected_rows, TOP_N), 1e-9, ignore_nullable=True
    )


def test_similar_movies_rank_by_cosine_excluding_self(spark):
    items = [(1, [1, 0]), (2, [2, 0.5]), (3, [0, 1]), (4, [1, 1]), (5, [-1, 0])]
    result = rec.similar_movies_fn(factors(spark, items), 2, block_size=2)
    c12 = float(2 / np.sqrt(4.25))
    c24 = float(2.5 / (np.sqrt(4.25) * np.sqrt(2)))
    c14 = float(1 / np.sqrt(2))
    c23 = float(0.5 / np.sqrt(4.25))
    expected = spark.createDataFrame(
        [
            (1, 1, 2, c12),
            (1, 2, 4, c14),
            (2, 1, 1, c12),
            (2, 2, 4, c24),
            (3, 1, 4, c14),
            (3, 2, 2, c23),
            (4, 1, 2, c24),
            (4, 2, 1, c14),  # cos(4,1) == cos(4,3): the lower id wins
            (5, 1, 3, 0.0),
            (5, 2, 4, -c14),
        ],
        SIMILAR,
    )
    assert_approx_df_equality(ordered(result, "movie_id", "rank"), expected, 1e-6, ignore_nullable=True)


def test_similar_movies_only_suggest_candidate_movies(spark):
    items = [(1, [1, 0]), (2, [2, 0.5]), (3, [0, 1]), (4, [1, 1])]
    candidates = spark.createDataFrame([(1,), (3,)], "movie_id INT")
    result = rec.similar_movies_fn(factors(spark, items), 1, candidates=candidates)
    expected = spark.createDataFrame(
        [
            (1, 1, 3, 0.0),
            (2, 1, 1, float(2 / np.sqrt(4.25))),
            (3, 1, 1, 0.0),
            (4, 1, 1, float(1 / np.sqrt(2))),
        ],
        SIMILAR,
    )
    assert_approx_df_equality(ordered(result, "movie_id"), expected, 1e-6, ignore_nullable=True)


def test_popular_movies_use_damped_average_with_minimum_count_overall_and_per_genre(spark):
    ratings = spark.createDataFrame(
        [(u, 1, 5.0) for u in (1, 2)]
        + [(u, 2, 4.0) for u in (1, 2, 3, 4)]
        + [(1, 3, 1.0), (2, 3, 2.0), (3, 3, 3.0)]
        + [(1, 4, 5.0)]
        + [(u, 5, 4.0) for u in (5, 6, 7, 8)],
        "user_id INT, movie_id INT, rating DOUBLE",
    )
    movies = spark.createDataFrame(
        [(1, ["Drama"]), (2, ["Drama", "Comedy"]), (3, ["Comedy"]), (4, ["Drama"]), (5, ["Comedy"])],
        "movie_id INT, genres ARRAY<STRING>",
    )
    result = popular_movies_fn(ratings, movies, min_count=2, damping=2.0)
    mean = 53 / 14  # all 14 ratings, including movie 4's single one
    s1, s2, s3 = (10 + 2 * mean) / 4, (16 + 2 * mean) / 6, (6 + 2 * mean) / 5
    expected = spark.createDataFrame(
        [
            ("All", 1, 1, 2, 5.0, s1),
            ("All", 2, 2, 4, 4.0, s2),
            ("All", 3, 5, 4, 4.0, s2),
            ("All", 4, 3, 3, 2.0, s3),
            ("Comedy", 1, 2, 4, 4.0, s2),
            ("Comedy", 2, 5, 4, 4.0, s2),
            ("Comedy", 3, 3, 3, 2.0, s3),
            ("Drama", 1, 1, 2, 5.0, s1),
            ("Drama", 2, 2, 4, 4.0, s2),
        ],
        POPULAR,
    )  # movie 4 (one rating) is below min_count; 2 and 5 tie: lower id first
    assert_approx_df_equality(ordered(result, "genre", "rank"), expected, 1e-9, ignore_nullable=True)


# --- the task, on a really trained tiny implicit ALS model ------------------------------------


def _land_tiny(spark, namespace):
    """Ratings of 6 users on 8 movies; user 6 has 2 ratings (below min_ratings=3)."""
    t0 = dt.datetime(2020, 1, 1)
    pattern = {1: [1, 2, 3, 4], 2: [1, 2, 5, 6], 3: [3, 4, 5, 7], 4: [1, 3, 6, 8], 5: [2, 4, 7, 8, 1], 6: [1, 2]}
    rows = [(u, m, float(1 + (u + m) % 5), t0) for u, ms in pattern.items() for m in ms]
    spark.createDataFrame(rows, RATINGS).writeTo(namespace.table("ratings")).using("delta").create()
    movies = [(m, f"Movie {m} (199{m})", 1990 + m, None, ["Drama"] if m % 2 else ["Comedy"], None) for m in range(1, 9)]
    spark.createDataFrame(movies, MOVIES).writeTo(namespace.table("movies")).using("delta").create()
    return rows


def _train_tiny(spark, namespace, ratings_rows, run_id="run1", rank=3):
    """A tiny implicit ALS model registered as the ranking champion, as train and promote would leave it."""
    from pyspark.ml.recommendation import ALS

    df = spark.createDataFrame([(u, m, r) for u, m, r, _ in ratings_rows], "user_id INT, movie_id INT, rating DOUBLE")
    model = ALS(
        userCol="user_id",
        itemCol="movie_id",
        ratingCol="rating",
        implicitPrefs=True,
        rank=rank,
        maxIter=3,
        regParam=0.1,
        seed=1,
        coldStartStrategy="drop",
    ).fit(df)
    factors = Factors.of(model)

    def save(folder):
        factors.save(folder / "evaluation")
        factors.save(folder / "serving")

    tags = {"movielens_als.run_id": run_id}
    with registry.tracked_run(run_id, tags):
        version = registry.log_model(namespace, "ranking", save, pd.DataFrame({"user_id": [1], "movie_id": [1]}))
    registry.tag_version(namespace, "ranking", version, tags)
    registry.set_alias(namespace, "ranking", registry.CHAMPION, version)
    return model


def _brute_force(model, ratings_rows, users, n):
    uf = {r.id: np.array(r.features, dtype=np.float32).astype(np.float64) for r in model.userFactors.collect()}
    itf = {r.id: np.array(r.features, dtype=np.float32).astype(np.float64) for r in model.itemFactors.collect()}
    out = []
    for u in sorted(users):
        rated = {m for uu, m, _, _ in ratings_rows if uu == u}
        cands = sorted((-float(uf[u] @ itf[i]), i) for i in itf if i not in rated)
        out += [(u, k + 1, i, -s) for k, (s, i) in enumerate(cands[:n])]
    return out


def test_recommend_writes_top_n_for_active_users_excluding_rated_movies(spark, namespace):
    rows = _land_tiny(spark, namespace)
    model = _train_tiny(spark, namespace, rows)
    result = rec.recommend(spark, namespace, top_n=3, min_ratings=3, popular_min_count=2, block_size=4)

    recs = spark.table(namespace.table("user_recommendations"))
    assert recs.columns == ["user_id", "rank", "movie_id", "score", "model_run_id", "model_version", "generated_at"]
    actual = recs.select("user_id", "rank", "movie_id", "score").orderBy("user_id", "rank")
    # The table's NOT NULL columns: chispa's approx comparison does not pass ignore_nullable on.
    expected = spark.createDataFrame(_brute_force(model, rows, [1, 2, 3, 4, 5], 3), actual.schema)  # user 6: too few
    assert_approx_df_equality(actual, expected, 1e-6)
    assert recs.select("model_run_id", "model_version", "generated_at").distinct().count() == 1
    assert (recs.first()["model_run_id"], recs.first()["model_version"]) == ("run1", result.details["model_version"])
    assert result.rows["user_recommendations"] == 15
    assert result.details["run_id"] == "run1"
    popular = spark.table(namespace.table("popular_movies"))
    assert popular.where("genre = 'All'").count() == 8  # every movie has >= 2 ratings
    similar = spark.table(namespace.table("similar_movies"))
    assert similar.where("movie_id = similar_movie_id").count() == 0
    assert similar.groupBy("movie_id").count().where("count != 3").count() == 0
    # Nothing it is computed from has changed: the served tables keep their rows and Delta versions.
    versions = {t: tables.table_version(spark, namespace, t) for t in ("user_recommendations", "similar_movies")}
    again = rec.recommend(spark, namespace, top_n=3, min_ratings=3, popular_min_count=2, block_size=4)
    assert again.details["unchanged"] is True
    assert {t: tables.table_version(spark, namespace, t) for t in versions} == versions
    assert not rec.recommend(spark, namespace, top_n=2, min_ratings=3, popular_min_count=2).details["unchanged"]


def test_serving_health_row_per_served_version_churn_after_a_new_champion_none_when_kept(spark, namespace):
    rows = _land_tiny(spark, namespace)
    _train_tiny(spark, namespace, rows)
    args = {"top_n": 3, "min_ratings": 3, "popular_min_count": 2, "block_size": 4}
    first = rec.recommend(spark, namespace, **args)
    _train_tiny(spark, namespace, rows, run_id="run2", rank=2)
    second = rec.recommend(spark, namespace, **args, thresholds=rec.Thresholds(max_churn=0.0, max_coverage_drop=1.0))
    kept = rec.recommend(spark, namespace, **args)
    health = spark.table(namespace.table("serving_health")).orderBy("user_recommendations_version").collect()
    assert len(health) == 2  # the run that kept the tables added no row
    one, two = health
    assert one["user_recommendations_version"] == first.details["user_recommendations_version"]
    assert (one["previous_version"], one["churn"], one["champion_version_before"]) == (None, None, None)
    assert two["previous_version"] == one["user_recommendations_version"]
    assert (two["champion_version_before"], two["champion_version_after"]) == (1, 2)
    assert two["users_served"] == 5 and two["fallback_users"] == 1  # user 6 has too few ratings
    assert 0 < two["users_changed"] <= 5 and two["churn"] == two["users_changed"] / 5
    assert second.headline.startswith("warning: serving health: churn")
    assert kept.details["unchanged"] and kept.headline.startswith("serving tables kept")


RECS = (
    "user_id INT, rank INT, movie_id INT, score DOUBLE, model_run_id STRING, model_version BIGINT, "
    "generated_at TIMESTAMP"
)


def test_recommend_rejects_bad_input_and_leaves_tables_unchanged(spark, namespace):
    _land_tiny(spark, namespace)
    previous = spark.createDataFrame([(1, 1, 3, 0.5, "run0", 1, dt.datetime(2020, 1, 1))], RECS)
    tables.overwrite(spark, namespace, rec.USER_RECOMMENDATIONS, previous)
    version = tables.table_version(spark, namespace, "user_recommendations")
    for bad in (0, 101):
        with pytest.raises(MovieLensAlsError, match="top_n"):
            rec.recommend(spark, namespace, top_n=bad)
    with pytest.raises(MovieLensAlsError, match="min_ratings"):
        rec.recommend(spark, namespace, min_ratings=-1)
    with pytest.raises(MovieLensAlsError, match="no champion model"):
        rec.recommend(spark, namespace)
    assert tables.table_version(spark, namespace, "user_recommendations") == version


def test_failure_mid_write_leaves_previous_recommendations_readable_and_unchanged(spark, namespace, monkeypatch):
    rows = _land_tiny(spark, namespace)
    _train_tiny(spark, namespace, rows)
    previous = spark.createDataFrame(
        [(1, 1, 5, 0.5, "run0", 1, dt.datetime(2020, 1, 1)), (5, 1, 3, 0.4, "run0", 1, dt.datetime(2020, 1, 1))], RECS
    )
    tables.overwrite(spark, namespace, rec.USER_RECOMMENDATIONS, previous)  # an earlier run's table
    name = namespace.table("user_recommendations")
    before = spark.table(name).orderBy("user_id", "rank").collect()
    version = tables.table_version(spark, namespace, "user_recommendations")

    real_top_n = rec.top_n_fn

    @F.udf("double")
    def fail_for_user_5(user_id, score):
        if user_id == 5:
            raise RuntimeError("injected failure while writing user_recommendations")
        return score

    def failing_top_n(*args, **kwargs):
        # Two partitions: the task holding other users can write its files before this one fails.
        out = real_top_n(*args, **kwargs).repartition(2, "user_id")
        return out.withColumn("score", fail_for_user_5("user_id", "score"))

    monkeypatch.setattr(rec, "top_n_fn", failing_top_n)
    with pytest.raises(Exception, match="injected failure"):
        rec.recommend(spark, namespace, top_n=3, min_ratings=3, popular_min_count=2)

    assert tables.table_version(spark, namespace, "user_recommendations") == version
    after = spark.table(name).orderBy("user_id", "rank")
    assert_df_equality(after, spark.createDataFrame(before, after.schema), ignore_nullable=True)
