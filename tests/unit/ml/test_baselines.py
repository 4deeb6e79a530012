"""evaluate's popularity baseline: each user's most rated unseen movies, against brute force."""

from __future__ import annotations

from collections import Counter

from chispa import assert_df_equality

from movielens_als.ml.baselines import popularity_top_k


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
