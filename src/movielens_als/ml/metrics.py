"""Rating, ranking and beyond-accuracy metrics as DataFrame code: the same numbers on classic Spark and Spark Connect.

The definitions are those of Microsoft Recommenders' Spark evaluators (``SparkRatingEvaluation``,
``SparkRankingEvaluation`` with ``top_k`` relevancy, ``SparkDiversityEvaluation`` with
co-occurrence similarity), which build on RDD APIs (``RegressionMetrics``, ``RankingMetrics``)
that Spark Connect, serverless and standard-access compute do not have. The tests hold these
functions to the recommenders evaluators within 1e-9 on the same inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, PREDICTION, RANK, RATING, USER

RATING_METRICS = ("rmse", "mae", "rsquared", "exp_var")
RANKING_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map", "map_at_k")
DIVERSITY_METRICS = ("catalog_coverage", "distributional_coverage", "novelty", "diversity", "serendipity")


def rating_metrics_fn(pred: DataFrame, label: str = RATING, prediction: str = PREDICTION) -> dict[str, float]:
    """RMSE, MAE, R² (Spark's ``RegressionMetrics.r2``) and explained variance (``1 - var(error) / var(label)``)."""
    err = F.col(label).cast("double") - F.col(prediction).cast("double")
    row = pred.agg(
        F.sqrt(F.avg(err * err)).alias("rmse"),
        F.avg(F.abs(err)).alias("mae"),
        F.sum(err * err).alias("sse"),
        F.var_samp(F.col(label).cast("double")).alias("var_label"),
        F.var_samp(err).alias("var_err"),
        F.count(F.lit(1)).alias("n"),
    ).first()
    n, var_label = row["n"], row["var_label"]
    rsquared = 1 - row["sse"] / (var_label * (n - 1)) if var_label else float("nan")
    exp_var = 1 - row["var_err"] / var_label if var_label else float("-inf")
    return {"rmse": row["rmse"], "mae": row["mae"], "rsquared": rsquared, "exp_var": exp_var, "n": n}


def ranking_metrics_fn(
    top_k: DataFrame, truth: DataFrame, k: int, user: str = USER, item: str = ITEM
) -> dict[str, float]:
    """precision@k, recall@k, ndcg@k, map and map@k of ranked lists against held-out items.

    ``top_k``: (user, item, rank) with rank 1..k; ``truth``: (user, item) relevant pairs. Users with
    both a list and relevant items count, as in SparkRankingEvaluation. ``map`` divides the sum of
    precisions at hits by the number of relevant items, ``map_at_k`` by min(k, that number).
    """
    rel = truth.select(user, item).distinct()
    n_rel = rel.groupBy(user).agg(F.count(F.lit(1)).alias("n_rel"))
    listed = top_k.select(user, item, RANK).where(F.col(RANK) <= k)
    users = listed.select(user).distinct().join(n_rel, user)
    hits = listed.join(rel, [user, item])
    # hit_no: hits ranked at or above this one, for precision at each hit.
    hw = Window.partitionBy(user).orderBy(RANK).rowsBetween(Window.unboundedPreceding, 0)
    hits = hits.withColumn("hit_no", F.count(F.lit(1)).over(hw))
    per_hit = hits.groupBy(user).agg(
        F.count(F.lit(1)).alias("n_hit"),
        F.sum(1.0 / F.log2(F.col(RANK) + 1.0)).alias("dcg"),
        F.sum(F.col("hit_no") / F.col(RANK)).alias("ap_sum"),
    )
    ideal_n = F.least(F.col("n_rel"), F.lit(k))
    # IDCG = sum_{i=1..m} 1/log2(i+1), m = min(k, relevant); summed with a higher-order function.
    idcg = F.aggregate(
        F.sequence(F.lit(1), ideal_n), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i.cast("double") + 1.0)
    )
    per_user = (
        users.join(per_hit, user, "left")
        .fillna(0.0, ["n_hit", "dcg", "ap_sum"])
        .select(
            (F.col("n_hit") / k).alias("precision_at_k"),
            (F.col("n_hit") / F.col("n_rel")).alias("recall_at_k"),
            (F.col("dcg") / idcg).alias("ndcg_at_k"),
            (F.col("ap_sum") / F.col("n_rel")).alias("map"),
            (F.col("ap_sum") / ideal_n).alias("map_at_k"),
        )
    )
    row = per_user.agg(*[F.avg(c).alias(c) for c in per_user.columns], F.count(F.lit(1)).alias("users")).first()
    if row["users"] == 0:
        return dict.fromkeys(per_user.columns, 0.0) | {"users": 0}
    return row.asDict()


def coverage_novelty_fn(train: DataFrame, reco: DataFrame) -> dict[str, float]:
    """Catalog coverage, distributional coverage (entropy of recommendation counts) and novelty, exact.

    All three only need per-movie counts, so one aggregation over (movie, train count, reco count)
    answers them: ``-sum p log2 p = log2 N - sum c log2 c / N`` and novelty
    ``sum c_i (log2 T - log2 t_i) / N`` over recommended movies seen in train (N recommendations,
    T train rows, c/t per-movie counts).
    """
    t = train.groupBy(ITEM).agg(F.count(F.lit(1)).alias("t"))
    c = reco.groupBy(ITEM).agg(F.count(F.lit(1)).alias("c"))
    row = (
        t.join(c, ITEM, "full")
        .agg(
            F.count("t").alias("train_items"),
            F.count("c").alias("reco_items"),
            F.sum("t").alias("T"),
            F.sum("c").alias("N"),
            F.sum(F.col("c") * F.log2("c")).alias("c_log_c"),
            F.sum(F.when(F.col("t").isNotNull(), F.col("c"))).alias("c_seen"),
            F.sum(F.when(F.col("t").isNotNull(), F.col("c") * F.log2("t"))).alias("c_log_t"),
        )
        .first()
    )
    n = row["N"] or 0
    if not n:
        return {"catalog_coverage": 0.0, "distributional_coverage": 0.0, "novelty": 0.0}
    return {
        "catalog_coverage": row["reco_items"] / row["train_items"],
        "distributional_coverage": math.log2(n) - row["c_log_c"] / n,
        "novelty": ((row["c_seen"] or 0) * math.log2(row["T"]) - (row["c_log_t"] or 0.0)) / n,
    }


def sample_users_fn(users: DataFrame, n: int, seed: int = 42) -> DataFrame:
    """At most ``n`` distinct users, chosen by a seeded hash: deterministic, independent of partitioning."""
    ranked = (
        users.select(USER)
        .distinct()
        .withColumn("_r", F.row_number().over(Window.orderBy(F.xxhash64(F.lit(seed), F.col(USER)), F.col(USER))))
    )
    return ranked.where(F.col("_r") <= n).select(USER)


def diversity_serendipity_fn(train: DataFrame, reco: DataFrame, sample: int) -> dict[str, float]:
    """Diversity and serendipity with co-occurrence cosine similarity, on a sample of at most ``sample`` users.

    recommenders computes the similarity of every pair of movies rated by one user, a self-join of
    the training set that grows with the square of the heaviest histories (a billion pairs for
    ml-25m's top user). Here both metrics are recommenders' definitions applied to the
    sub-population of sampled users (their recommendations, their training rows, and the
    co-occurrence counted among them): exact when there are no more users than ``sample``.
    The sample travels to one pandas task, never to the driver.
    """
    users = sample_users_fn(reco, sample)
    rows = (
        train.select(USER, ITEM)
        .join(users, USER)
        .withColumn("kind", F.lit("train"))
        .unionByName(reco.select(USER, ITEM).join(users, USER).withColumn("kind", F.lit("reco")))
    )
    out = (
        rows.groupBy(F.lit(0).alias("_g"))
        .applyInPandas(_diversity_pandas, "diversity DOUBLE, serendipity DOUBLE")
        .first()
    )
    if out is None:
        return {"diversity": float("nan"), "serendipity": float("nan")}
    return {"diversity": out["diversity"], "serendipity": out["serendipity"]}


_COLUMN_CHUNK = 8192  # movies per dense slice of the user x movie matrix


def _diversity_pandas(pdf: pd.DataFrame) -> pd.DataFrame:
    train, reco = pdf[pdf["kind"] == "train"], pdf[pdf["kind"] == "reco"]
    user_ids, u_train = np.unique(train[USER].to_numpy(), return_inverse=True)
    item_ids, i_train = np.unique(train[ITEM].to_numpy(), return_inverse=True)
    n_users = len(user_ids)
    counts = np.bincount(i_train, minlength=len(item_ids)).astype(np.float64)
    # Recommended movies are the columns of xr (train users x recommended movies, 1 = rated in train).
    r_items, r_col = np.unique(reco[ITEM].to_numpy(), return_inverse=True)
    col_of_item = np.full(len(item_ids), -1)
    pos = np.searchsorted(item_ids, r_items)
    in_train = pos < len(item_ids)
    in_train[in_train] = item_ids[pos[in_train]] == r_items[in_train]
    col_of_item[pos[in_train]] = np.flatnonzero(in_train)
    n_r = np.zeros(len(r_items))
    n_r[in_train] = counts[pos[in_train]]
    xr = np.zeros((n_users, len(r_items)))
    hit = col_of_item[i_train] >= 0
    xr[u_train[hit], col_of_item[i_train[hit]]] = 1.0

    def sim(cooc, n_a, n_b):
        denom = np.sqrt(n_a * n_b)
        return np.divide(cooc, denom, out=np.zeros_like(cooc), where=denom > 0)

    # Diversity: 1 - mean similarity over the pairs of a user's list.
    lists = pd.DataFrame({"u": reco[USER].to_numpy(), "c": r_col})
    pairs = lists.merge(lists, on="u")
    pairs = pairs[pairs["c_x"] < pairs["c_y"]]
    a, b = pairs["c_x"].to_numpy(), pairs["c_y"].to_numpy()
    cooc = np.concatenate(
        [np.empty(0)]
        + [
            (xr[:, a[s : s + _COLUMN_CHUNK]] * xr[:, b[s : s + _COLUMN_CHUNK]]).sum(axis=0)
            for s in range(0, len(a), _COLUMN_CHUNK)
        ]
    )
    per_user = pd.Series(1 - sim(cooc, n_r[a], n_r[b])).groupby(pairs["u"].to_numpy()).mean()
    diversity = float(per_user.mean()) if len(per_user) else float("nan")

    # Serendipity: mean over (u, i) of 1 - mean_{j in train_u} sim(i, j), users with train rows only,
    # using sum_j cooc(i, j) / sqrt(n_j) = sum_v X[v, i] W[u, v] with W = X diag(1 / sqrt(n)) X^T.
    w = np.zeros((n_users, n_users))
    for start in range(0, len(item_ids), _COLUMN_CHUNK):
        width = min(_COLUMN_CHUNK, len(item_ids) - start)
        in_chunk = (i_train >= start) & (i_train < start + width)
        x = np.zeros((n_users, width))
        x[u_train[in_chunk], i_train[in_chunk] - start] = 1.0
        w += (x / np.sqrt(counts[start : start + width])) @ x.T
    known = np.isin(reco[USER].to_numpy(), user_ids)
    r_user = np.searchsorted(user_ids, reco[USER].to_numpy()[known])
    cols = r_col[known]
    history = np.bincount(u_train, minlength=n_users).astype(np.float64)
    total = (w[r_user] * xr[:, cols].T).sum(axis=1)
    mean_sim = np.divide(total, np.sqrt(n_r[cols]) * history[r_user], out=np.zeros(len(r_user)), where=n_r[cols] > 0)
    per_user = pd.Series(1 - mean_sim).groupby(r_user).mean()
    serendipity = float(per_user.mean()) if len(per_user) else float("nan")
    return pd.DataFrame({"diversity": [diversity], "serendipity": [serendipity]})
