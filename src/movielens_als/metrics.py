"""Ranking and rating metrics as DataFrame code, used for tuning on the validation split.

The definitions are Spark MLlib ``RankingMetrics``' (the ones recommenders' SparkRankingEvaluation
reports) with binary relevance: every held-out item of a user is relevant. They are written with
DataFrame functions rather than ``RankingMetrics`` (an RDD API) so tuning also runs where RDDs
do not (Spark Connect, serverless), and without the optional ``recommenders`` extra.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def top_k_fn(scores: DataFrame, k: int, user: str = "user_id", item: str = "movie_id",
             score: str = "prediction") -> DataFrame:
    """The ``k`` best-scored items per user with their 1-based ``rank`` (ties broken by item id)."""
    w = Window.partitionBy(user).orderBy(F.col(score).desc(), F.col(item))
    return scores.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)


def ranking_metrics_fn(top_k: DataFrame, truth: DataFrame, k: int, user: str = "user_id",
                       item: str = "movie_id") -> dict[str, float]:
    """precision@k, recall@k, ndcg@k, map and map@k of ranked lists against held-out items.

    ``top_k``: (user, item, rank) with rank 1..k; ``truth``: (user, item) relevant pairs. Users with
    both a list and relevant items count, as in SparkRankingEvaluation. ``map`` divides the sum of
    precisions at hits by the number of relevant items, ``map_at_k`` by min(k, that number).
    """
    rel = truth.select(user, item).distinct()
    n_rel = rel.groupBy(user).agg(F.count(F.lit(1)).alias("n_rel"))
    listed = top_k.select(user, item, "rank").where(F.col("rank") <= k)
    users = listed.select(user).distinct().join(n_rel, user)
    hits = listed.join(rel, [user, item])
    # hits_before: hits ranked at or above this one, for precision at each hit.
    hw = Window.partitionBy(user).orderBy("rank").rowsBetween(Window.unboundedPreceding, 0)
    hits = hits.withColumn("hit_no", F.count(F.lit(1)).over(hw))
    per_hit = hits.groupBy(user).agg(
        F.count(F.lit(1)).alias("n_hit"),
        F.sum(1.0 / F.log2(F.col("rank") + 1.0)).alias("dcg"),
        F.sum(F.col("hit_no") / F.col("rank")).alias("ap_sum"),
    )
    ideal_n = F.least(F.col("n_rel"), F.lit(k))
    # IDCG = sum_{i=1..m} 1/log2(i+1), m = min(k, relevant); summed with a higher-order function.
    idcg = F.aggregate(F.sequence(F.lit(1), ideal_n), F.lit(0.0),
                       lambda acc, i: acc + 1.0 / F.log2(i.cast("double") + 1.0))
    per_user = users.join(per_hit, user, "left").fillna(0.0, ["n_hit", "dcg", "ap_sum"]).select(
        (F.col("n_hit") / k).alias("precision_at_k"),
        (F.col("n_hit") / F.col("n_rel")).alias("recall_at_k"),
        (F.col("dcg") / idcg).alias("ndcg_at_k"),
        (F.col("ap_sum") / F.col("n_rel")).alias("map"),
        (F.col("ap_sum") / ideal_n).alias("map_at_k"),
    )
    row = per_user.agg(*[F.avg(c).alias(c) for c in per_user.columns], F.count(F.lit(1)).alias("users")).first()
    if row["users"] == 0:
        return {c: 0.0 for c in per_user.columns} | {"users": 0}
    return row.asDict()


def rating_metrics_fn(pred: DataFrame, label: str = "rating", prediction: str = "prediction") -> dict[str, float]:
    """RMSE and MAE of predicted against true ratings."""
    err = F.col(prediction) - F.col(label)
    row = pred.agg(F.sqrt(F.avg(err * err)).alias("rmse"), F.avg(F.abs(err)).alias("mae"),
                   F.count(F.lit(1)).alias("n")).first()
    return row.asDict()
