"""The one top-k path: exact per-row selection in numpy, and the blocked Spark ranking against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import types as T

from movielens_als.errors import MovieLensAlsError
from movielens_als.ml.topk import ROWS_PER_STEP, top_k_fn, top_k_indices, top_k_layout

INF = np.inf
FACTORS = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("features", T.ArrayType(T.FloatType()))])
RANKED = "left_id INT, right_id INT, score DOUBLE, rank INT"


def picked(scores, ids, k):
    rows, cols = top_k_indices(np.array(scores, dtype=float), np.array(ids), k)
    return [(int(r), int(ids[c])) for r, c in zip(rows, cols, strict=True)]


def test_top_k_indices_orders_by_score_then_right_id_and_skips_excluded():
    scores = [[1.0, 3.0, 2.0, 3.0], [-INF, 0.5, -INF, 0.7]]
    ids = [40, 30, 20, 10]
    assert picked(scores, ids, 2) == [(0, 10), (0, 30), (1, 10), (1, 30)]  # row 0: 3 at ids 30 and 10 tie


def test_top_k_indices_takes_every_tie_at_the_threshold_into_account():
    # argpartition may pick any of the tied 1.0 entries; the lowest ids must win.
    scores = [[1.0] * 6 + [2.0]]
    ids = [15, 11, 13, 12, 14, 16, 99]
    assert picked(scores, ids, 3) == [(0, 99), (0, 11), (0, 12)]


def test_top_k_indices_returns_fewer_rows_when_fewer_are_finite():
    scores = [[-INF, 2.0, -INF, -INF], [-INF, -INF, -INF, -INF], [4.0, 3.0, 2.0, 1.0]]
    assert picked(scores, [1, 2, 3, 4], 3) == [(0, 2), (2, 1), (2, 2), (2, 3)]
    assert picked([[1.0, -INF]], [5, 6], 5) == [(0, 5)]  # k above the column count


def brute_force(users, items, seen, k):
    out = []
    for u, uf in users:
        scores = sorted(
            (-float(np.float64(np.float32(uf)) @ np.float64(np.float32(f))), i) for i, f in items if (u, i) not in seen
        )
        out += [(u, i, -s, r + 1) for r, (s, i) in enumerate(scores[:k])]
    return out


def test_blocked_top_k_matches_brute_force_across_blocks_steps_and_long_histories(spark):
    rng = np.random.default_rng(11)
    n_users, n_items, k = ROWS_PER_STEP + 44, 23, 5  # one left block holds more rows than a scoring step
    users = [(u, rng.normal(size=3).round(3).tolist()) for u in range(1, n_users + 1)]
    items = [(i * 7, rng.normal(size=3).round(3).tolist()) for i in range(1, n_items + 1)]  # sparse ids
    seen = {(u, i * 7) for u in range(1, n_users + 1) for i in range(1, n_items + 1) if rng.random() < 0.3}
    # Users who rated more than the catalogue minus k, and one who rated everything.
    seen |= {(u, i * 7) for u in (3, 290) for i in range(1, n_items - 1)}
    seen |= {(7, i * 7) for i in range(1, n_items + 1)}
    excluded = spark.createDataFrame(sorted(seen), "left_id INT, right_id INT")
    left, right = spark.createDataFrame(users, FACTORS), spark.createDataFrame(items, FACTORS)
    result = top_k_fn(left, right, k, excluded=excluded, block_size=1000)  # one block pair, several steps
    expected = brute_force(users, items, seen, k)
    assert_approx_df_equality(
        result.orderBy("left_id", "rank"), spark.createDataFrame(expected, RANKED), 1e-9, ignore_nullable=True
    )
    # Blocks of 8: 3 x 3 block pairs for the first 20 users, merged across right blocks by the window.
    few = result.sparkSession.createDataFrame([r for r in expected if r[0] <= 20], RANKED)
    merged = top_k_fn(left.where("id <= 20"), right, k, excluded=excluded, block_size=8)
    assert_approx_df_equality(merged.orderBy("left_id", "rank"), few, 1e-9, ignore_nullable=True)
    assert result.where("left_id = 7").count() == 0
    assert 0 < result.where("left_id = 3").count() <= 2


def test_one_layout_serves_several_factor_sets_of_the_same_ids(spark):
    rng = np.random.default_rng(3)
    ids, k = range(1, 31), 4
    seen = {(u, i) for u in ids for i in ids if rng.random() < 0.3}
    excluded = spark.createDataFrame(sorted(seen), "left_id INT, right_id INT")
    layout = None
    for _ in range(2):  # two fits of the same users and items, as a tuning grid's points are
        users = [(u, rng.normal(size=3).round(3).tolist()) for u in ids]
        items = [(i, rng.normal(size=3).round(3).tolist()) for i in ids]
        left, right = spark.createDataFrame(users, FACTORS), spark.createDataFrame(items, FACTORS)
        layout = layout or top_k_layout(left.select("id"), right.select("id"), excluded, block_size=8, keep=True)
        result = top_k_fn(left, right, k, layout=layout)
        expected = spark.createDataFrame(brute_force(users, items, seen, k), RANKED)
        assert_approx_df_equality(result.orderBy("left_id", "rank"), expected, 1e-9, ignore_nullable=True)
    # Factors of other ids than the layout numbers would be masked at the wrong positions: refused.
    other = spark.createDataFrame([(u, [1.0, 0.0, 0.0]) for u in range(2, 32)], FACTORS)
    with pytest.raises(ValueError, match="layout numbers 30 left ids"):
        top_k_fn(other, right, k, layout=layout)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_top_k_rejects_a_k_that_is_not_a_positive_integer(spark, bad):
    f = spark.createDataFrame([(1, [1.0])], FACTORS)
    with pytest.raises(MovieLensAlsError, match="k must be a positive integer"):
        top_k_fn(f, f, bad)
