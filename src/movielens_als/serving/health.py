"""Serving health: how much what is served changed from one recommend run to the next, as one row per run.

Computed from two Delta versions of ``user_recommendations`` (this run's and the one before it, read by
time travel) and the ratings, so a job, a dashboard and an alert all read the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RANK, USER
from movielens_als.lakehouse.tables import Column, TableSpec

TOP_SHARE = 0.01  # "most popular": the top 1% most-rated movies

SERVING_HEALTH = TableSpec(
    "serving_health",
    "One row per recommend run that wrote new serving tables: this run's user_recommendations against the "
    "previous version (Delta time travel).",
    (
        Column("user_recommendations_version", "BIGINT", "Delta version of user_recommendations described", False),
        Column("previous_version", "BIGINT", "Delta version compared with (NULL: nothing was served before)"),
        Column("checked_at", "TIMESTAMP", "UTC time the row was computed"),
        Column("champion_version_before", "BIGINT", "Ranking model version served before (NULL: none)"),
        Column("champion_version_after", "BIGINT", "Ranking model version served now"),
        Column("users_served", "BIGINT", "Users with personalised rows"),
        Column("users_changed", "BIGINT", "Users whose ordered top-N differs from before (new users count)"),
        Column("churn", "DOUBLE", "users_changed / users_served"),
        Column("mean_overlap", "DOUBLE", "Mean over users served before and now of |old top-N & new top-N| / N"),
        Column("catalog_coverage", "DOUBLE", "Distinct movies served / distinct movies rated"),
        Column("previous_coverage", "DOUBLE", "catalog_coverage of the previous version"),
        Column("popular_share", "DOUBLE", "Share of served rows among the top 1% most-rated movies"),
        Column("fallback_users", "BIGINT", "Users with ratings but fewer than min_ratings: answered by popular_movies"),
        Column("score_p05", "DOUBLE", "5th percentile of the served scores"),
        Column("score_p50", "DOUBLE", "Median served score"),
        Column("score_p95", "DOUBLE", "95th percentile of the served scores"),
        Column("users_added", "BIGINT", "Users served now and not before: new in the ratings, feedback's new people"),
    ),
)


@dataclass(frozen=True)
class Thresholds:
    max_churn: float  # alert when more than this share of users got a different top-N
    max_coverage_drop: float  # alert when coverage falls by more than this (absolute)


def serving_health_fn(
    current: DataFrame, previous: DataFrame | None, ratings: DataFrame, min_ratings: int
) -> dict[str, float | int | None]:
    """The health figures of ``current`` (user_id, rank, movie_id, score, model_version) against ``previous``."""
    counts = ratings.groupBy(ITEM).agg(F.count(F.lit(1)).alias("n"))
    rated = counts.count()
    top = max(1, math.ceil(TOP_SHARE * rated))
    popular = counts.withColumn("_r", F.row_number().over(Window.orderBy(F.desc("n"), ITEM))).where(F.col("_r") <= top)
    row = (
        current.join(popular.select(ITEM, F.lit(1).alias("_popular")), ITEM, "left")
        .agg(
            F.countDistinct(USER).alias("users"),
            F.countDistinct(ITEM).alias("movies"),
            F.avg(F.coalesce("_popular", F.lit(0))).alias("popular_share"),
            F.percentile("score", [0.05, 0.5, 0.95]).alias("q"),
            F.max("model_version").alias("version"),
        )
        .first()
    )
    per_user = ratings.groupBy(USER).count()
    fallback = per_user.where(F.col("count") < min_ratings).count()
    out = {
        "users_served": row["users"],
        "catalog_coverage": row["movies"] / rated if rated else 0.0,
        "popular_share": row["popular_share"],
        "fallback_users": fallback,
        "score_p05": row["q"][0] if row["q"] else None,
        "score_p50": row["q"][1] if row["q"] else None,
        "score_p95": row["q"][2] if row["q"] else None,
        "champion_version_after": row["version"],
        "champion_version_before": None,
        "users_changed": None,
        "churn": None,
        "mean_overlap": None,
        "previous_coverage": None,
        "users_added": None,
    }
    if previous is None:
        return out
    lists = F.array_sort(F.collect_list(F.struct(RANK, ITEM)))
    new = current.groupBy(USER).agg(lists.alias("new"), F.collect_set(ITEM).alias("new_set"))
    old = previous.groupBy(USER).agg(lists.alias("old"), F.collect_set(ITEM).alias("old_set"))
    both = new.join(old, USER, "left")
    changed = both.agg(
        F.count_if(F.col("old").isNull() | (F.col("new") != F.col("old"))).alias("changed"),
        F.count_if(F.col("old").isNull()).alias("added"),
        F.avg(
            F.when(F.col("old").isNotNull(), F.size(F.array_intersect("new_set", "old_set")) / F.size("new_set"))
        ).alias("overlap"),
    ).first()
    before = previous.agg(F.countDistinct(ITEM).alias("movies"), F.max("model_version").alias("version")).first()
    out.update(
        users_changed=changed["changed"],
        users_added=changed["added"],
        churn=changed["changed"] / row["users"] if row["users"] else 0.0,
        mean_overlap=changed["overlap"],
        previous_coverage=before["movies"] / rated if rated else 0.0,
        champion_version_before=before["version"],
    )
    return out


def alerts(health: dict, thresholds: Thresholds) -> list[str]:
    """What is worth a warning: churn above, or a coverage drop beyond, the thresholds."""
    found = []
    if health["churn"] is not None and health["churn"] > thresholds.max_churn:
        found.append(f"churn {health['churn']:.3f} above {thresholds.max_churn}")
    if health["previous_coverage"] is not None:
        drop = health["previous_coverage"] - health["catalog_coverage"]
        if drop > thresholds.max_coverage_drop:
            found.append(f"catalogue coverage fell by {drop:.3f} (more than {thresholds.max_coverage_drop})")
    return found
