"""Deterministic train / validation / test splits of ``ratings``, kept in the ``splits`` Delta table.

Protocols:

* ``benchmark``: Microsoft Recommenders' ``python_stratified_split`` (ratio 0.75, filter_by item,
  seed 42) done in Spark: per movie, a seeded shuffle puts ``round(0.75 * n)`` ratings (Python's
  round-half-even) in train and the rest in test.
* ``quickstart``: a random 0.75 / 0.25 split, seed 123, as in the recommenders ALS quick start.
* ``chrono``: per user, the latest 25% of ratings go to test.

The validation split is carved from train only, the same way as the protocol's test split but
with ratio 0.9 (10% of train), so the test rows never choose hyperparameters and tuning fits see
nine tenths of the training data: with 25% carved they saw 56% of all ratings, and ALS scales its
regularisation with each user's and movie's rating count, so choices made on so much less data
transferred poorly to the refit. Randomness comes from a hash of (seed, user, movie),
not ``rand()``: the result does not depend on partitioning, cluster size or run.
"""

from __future__ import annotations

from pyspark.sql import Column as SqlColumn
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from movielens_als import tables
from movielens_als.columns import ITEM, SPLIT, TIMESTAMP, USER
from movielens_als.config import PROTOCOLS, Protocol
from movielens_als.config import SPLIT as DEFAULTS
from movielens_als.errors import MovieLensAlsError
from movielens_als.faults import failpoint
from movielens_als.names import Namespace
from movielens_als.tables import Column, TableSpec
from movielens_als.task import TaskResult

SPLITS = TableSpec(
    "splits",
    "Train/validation/test assignment of every rating, per protocol (benchmark: stratified per movie 0.75, seed 42; "
    "quickstart: random 0.75, seed 123; chrono: latest 25% per user to test). validation is 10% of train, carved "
    "from train only the same way. "
    "Each split run replaces only its protocol's rows.",
    (
        Column("user_id", "INT", "User id"),
        Column("movie_id", "INT", "Movie id"),
        Column("rating", "DOUBLE", "Rating as in ratings"),
        Column("rated_at", "TIMESTAMP", "When the rating was given"),
        Column("protocol", "STRING", "benchmark, quickstart or chrono"),
        Column("split", "STRING", "train, validation (carved from train, for tuning) or test"),
        Column("seed", "INT", "Seed of the protocol's shuffles (NULL for chrono, which is not random)"),
        Column("ratings_version", "BIGINT", "Delta version of ratings the split was made from"),
    ),
)

TRAIN, VALIDATION, TEST = "train", "validation", "test"
RATIO = 0.75
VALIDATION_RATIO = 0.9  # share of train kept for tuning fits; the rest is validation


def _uniform(seed: int, salt: str) -> SqlColumn:
    """A deterministic pseudo-random number in [0, 1) per (seed, salt, user, movie)."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), F.col(USER), F.col(ITEM))
    return F.pmod(h, F.lit(1 << 30)).cast("double") / float(1 << 30)


def ordered_split_fn(
    df: DataFrame, ratio: float, by: str, order: list, labels: tuple[str, str] = (TRAIN, TEST)
) -> DataFrame:
    """Per group of ``by``, rows sorted by ``order``: the first ``round(ratio * n)`` get ``labels[0]``.

    ``round`` is half-to-even as in recommenders (``np.split`` at ``round(x * len)``), so a group with
    one row keeps it in ``labels[0]`` and one with two rows keeps both.
    """
    w = Window.partitionBy(by).orderBy(*order)
    n = F.count(F.lit(1)).over(Window.partitionBy(by))
    return (
        df.withColumn("_pos", F.row_number().over(w))
        .withColumn(SPLIT, F.when(F.col("_pos") <= F.bround(n * ratio, 0), labels[0]).otherwise(labels[1]))
        .drop("_pos")
    )


def stratified_split_fn(
    df: DataFrame, ratio: float, seed: int, by: str = ITEM, labels: tuple[str, str] = (TRAIN, TEST), salt: str = "test"
) -> DataFrame:
    """Per group of ``by``: a seeded shuffle, then the first ``round(ratio * n)`` rows get ``labels[0]``."""
    return ordered_split_fn(df, ratio, by, [_uniform(seed, salt), USER, ITEM], labels)


def random_split_fn(
    df: DataFrame, ratio: float, seed: int, labels: tuple[str, str] = (TRAIN, TEST), salt: str = "test"
) -> DataFrame:
    """Each row independently gets ``labels[0]`` with probability ``ratio``."""
    return df.withColumn(SPLIT, F.when(_uniform(seed, salt) < ratio, labels[0]).otherwise(labels[1]))


def chrono_split_fn(df: DataFrame, ratio: float, by: str = USER, labels: tuple[str, str] = (TRAIN, TEST)) -> DataFrame:
    """Per group of ``by``: the earliest ``round(ratio * n)`` ratings get ``labels[0]``, the latest the rest."""
    return ordered_split_fn(df, ratio, by, [TIMESTAMP, ITEM, USER], labels)


def split_fn(
    ratings: DataFrame,
    protocol: str,
    seed: int | None = None,
    ratio: float = RATIO,
    validation_ratio: float = VALIDATION_RATIO,
) -> DataFrame:
    """``ratings`` with a ``split`` column: test by the protocol, then validation carved from train the same way."""
    spec = _protocol(protocol)
    seed = spec.default_seed if seed is None else seed

    def once(df: DataFrame, labels: tuple[str, str], salt: str, ratio: float) -> DataFrame:
        if spec.kind == "stratified":
            return stratified_split_fn(df, ratio, seed, spec.by, labels, salt)
        if spec.kind == "random":
            return random_split_fn(df, ratio, seed, labels, salt)
        return chrono_split_fn(df, ratio, spec.by, labels)

    first = once(ratings, (TRAIN, TEST), "test", ratio).cache()
    test = first.where(F.col(SPLIT) == TEST)
    # Only train rows are split again: validation never sees a test row.
    train = once(first.where(F.col(SPLIT) == TRAIN).drop(SPLIT), (TRAIN, VALIDATION), "validation", validation_ratio)
    return train.unionByName(test)


def _protocol(protocol: str) -> Protocol:
    if protocol not in PROTOCOLS:
        raise MovieLensAlsError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def split(
    spark: SparkSession, namespace: Namespace, protocol: str = DEFAULTS.protocol, seed: int | None = DEFAULTS.seed
) -> TaskResult:
    """Split ``ratings`` by ``protocol`` and replace that protocol's rows of ``splits``."""
    spec = _protocol(protocol)
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


def read_splits(spark: SparkSession, namespace: Namespace, protocol: str) -> DataFrame:
    """The ``splits`` rows of one protocol; a clear error if ``split`` has not run for it."""
    _protocol(protocol)
    if not tables.table_exists(spark, namespace, SPLITS.name):
        raise MovieLensAlsError(
            f"no splits table in {namespace}: run `movielens-als split --protocol {protocol}` first"
        )
    df = spark.table(namespace.table(SPLITS.name)).where(F.col("protocol") == protocol)
    if df.limit(1).count() == 0:
        raise MovieLensAlsError(
            f"no {protocol} rows in {namespace}.splits: run `movielens-als split --protocol {protocol}`"
        )
    return df
