"""The split task: deterministic train / validation / test rows of ``ratings`` into the ``splits`` table."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import SPLIT
from movielens_als.config import SPLIT as DEFAULTS
from movielens_als.errors import MovieLensAlsError
from movielens_als.faults import failpoint
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml.splitting import SPLITS, TEST, TRAIN, VALIDATION, protocol_spec, split_fn
from movielens_als.result import TaskResult


def split(
    spark: SparkSession, namespace: Namespace, protocol: str = DEFAULTS.protocol, seed: int | None = DEFAULTS.seed
) -> TaskResult:
    """Split ``ratings`` by ``protocol`` and replace that protocol's rows of ``splits``."""
    spec = protocol_spec(protocol)
    if spec.kind == "chrono" and seed is not None:
        raise MovieLensAlsError("the chrono protocol is not random: do not pass --seed")
    seed = spec.default_seed if seed is None else seed
    version = tables.table_version(spark, namespace, "ratings")
    if version is None:
        raise MovieLensAlsError(f"no ratings table in {namespace}: run `movielens-als land` first")
    ratings = spark.read.option("versionAsOf", version).table(namespace.table("ratings"))
    missing = {"user_id", "movie_id", "rating", "rated_at"} - set(ratings.columns)
    if missing:
        raise MovieLensAlsError(f"{namespace}.ratings lacks columns {sorted(missing)}")
    ratings = ratings.select("user_id", "movie_id", "rating", "rated_at")
    if ratings.limit(1).count() == 0:
        raise MovieLensAlsError(f"{namespace}.ratings is empty: nothing to split")

    out = (
        split_fn(ratings, protocol, seed)
        .withColumn("protocol", F.lit(protocol))
        .withColumn("seed", F.lit(seed).cast("int"))
        .withColumn("ratings_version", F.lit(version).cast("bigint"))
    )
    failpoint("split.write")
    tables.replace_where(spark, namespace, SPLITS, out, F.col("protocol") == protocol)
    counts = {
        r[SPLIT]: r["count"]
        for r in spark.table(namespace.table(SPLITS.name))
        .where(F.col("protocol") == protocol)
        .groupBy(SPLIT)
        .count()
        .collect()
    }
    return TaskResult(
        "split",
        rows={SPLITS.name: sum(counts.values())},
        details={
            "protocol": protocol,
            "seed": seed,
            "ratings_version": version,
            **{s: counts.get(s, 0) for s in (TRAIN, VALIDATION, TEST)},
        },
    )
