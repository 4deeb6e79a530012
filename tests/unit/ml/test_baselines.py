"""evaluate's popularity baseline: each user's most rated unseen movies, against brute force."""

from __future__ import annotations

from collections import Counter

from chispa import assert_df_equality
from pyspark.sql import functions as F

from movielens_als.ml.baselines import fingerprint_fn, popularity_top_k, quickstart_factors
from movielens_als.ml.factors import Factors


def test_popularity_top_k_is_the_most_rated_unseen_movies_ties_by_id(spark):
    train = [(1, 10), (2, 10), (3, 10), (1, 20), (2, 20), (3, 30), (4, 30), (4, 40), (5, 50)]
    train += [(9, m) for m in (10, 20, 30, 40)]  # user 9 has seen all but one movie
    counts = Counter(m for _, m in train)
    order = sorted(counts, key=lambda m: (-counts[m], m))  # 10: 4 ratings; 20 and 30 tie at 3: lower id first
    users = [1, 4, 5, 9, 77]  # 77 has no history: the plain popularity list
    expected = []
    for u in users:
        unseen = [m for m in order if (u, m) not in set(train)][:2]
        expected += [(u, m, float(counts[m]), r + 1) for r, m in enumerate(unseen)]
    result = popularity_top_k(
        spark.createDataFrame(train, "user_id INT, movie_id INT"),
        spark.createDataFrame([(u,) for u in users], "user_id INT"),
        k=2,
    )
    assert_df_equality(
        result.orderBy("user_id", "rank"),
        spark.createDataFrame(expected, "user_id INT, movie_id INT, score DOUBLE, rank INT"),
        ignore_nullable=True,
    )


def test_the_quick_start_fit_is_kept_per_split_and_read_back_not_refitted(spark, tmp_path):
    rows = [(u, m, float(1 + (u + 2 * m) % 5)) for u in range(1, 9) for m in range(1, 7) if (u * m) % 3]
    train = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE")
    fitted = quickstart_factors(train, tmp_path)
    (folder,) = tmp_path.iterdir()  # one fit, renamed into place: no staging folder left
    assert folder.name == f"quickstart-{fingerprint_fn(train)}" and folder.name.startswith(f"quickstart-{len(rows)}-")
    assert_df_equality(
        Factors.load(spark, folder).items.orderBy("id"), fitted.items.orderBy("id"), ignore_nullable=True
    )
    # Zero the kept item factors: the same split is answered from the folder (zeros), not fitted again.
    zeros = fitted.items.select("id", F.transform("features", lambda x: x * 0.0).cast("array<float>").alias("features"))
    Factors(fitted.users, zeros).save(folder)
    again = quickstart_factors(train, tmp_path)
    assert {tuple(r["features"]) for r in again.items.collect()} == {(0.0,) * 10}
    # One rating changed is another split: fitted and kept beside the first.
    changed = spark.createDataFrame([(u, m, 5.0 if (u, m) == (1, 1) else r) for u, m, r in rows], train.schema)
    assert fingerprint_fn(changed) != fingerprint_fn(train)
    assert any(v != 0.0 for r in quickstart_factors(changed, tmp_path).items.collect() for v in r["features"])
    assert len(list(tmp_path.iterdir())) == 2
