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

from movielens_als.columns import ITEM, RATING, SPLIT, TIMESTAMP, USER
from movielens_als.config import PROTOCOLS, Protocol
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import Column, TableSpec

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
    spec = protocol_spec(protocol)
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


def protocol_spec(protocol: str) -> Protocol:
    if protocol not in PROTOCOLS:
        raise MovieLensAlsError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def read_splits(spark: SparkSession, namespace: Namespace, protocol: str) -> DataFrame:
    """The ``splits`` rows of one protocol; a clear error if ``split`` has not run for it."""
    protocol_spec(protocol)
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


def tuning_frames(splits_df: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(fit, validation, full train) from one protocol's splits; test rows are dropped here, before tuning."""
    cols = [USER, ITEM, RATING]
    usable = splits_df.where(F.col(SPLIT).isin(TRAIN, VALIDATION)).select(*cols, SPLIT)
    fit = usable.where(F.col(SPLIT) == TRAIN).select(*cols)
    validation = usable.where(F.col(SPLIT) == VALIDATION).select(*cols)
    return fit, validation, usable.select(*cols)


def test_frames(spark: SparkSession, namespace: Namespace, protocol: str) -> tuple[DataFrame, DataFrame]:
    """(train + validation, test) rows of a protocol, cached: every model is scored against the same two."""
    splits_df = read_splits(spark, namespace, protocol).select(USER, ITEM, RATING, SPLIT)
    train_df = splits_df.where(F.col(SPLIT).isin(TRAIN, VALIDATION)).select(USER, ITEM, RATING).cache()
    test = splits_df.where(F.col(SPLIT) == TEST).select(USER, ITEM, RATING).cache()
    if test.limit(1).count() == 0:
        raise MovieLensAlsError(f"the {protocol} split has no test rows")
    return train_df, test


def rows_fingerprint_fn(df: DataFrame) -> str:
    """A name for these (user, movie, rating) rows: their count and the XOR of their hashes, in one pass."""
    row = df.agg(
        F.count(F.lit(1)).alias("n"), F.bit_xor(F.xxhash64(USER, ITEM, F.col(RATING).cast("double"))).alias("x")
    ).first()
    return f"{row['n']}-{(row['x'] or 0) & 0xFFFFFFFFFFFFFFFF:016x}"


def split_fingerprint(train_rows: str, test_rows: str) -> str:
    """What :func:`test_frames` returned, named from its two :func:`rows_fingerprint_fn` values: metrics recorded
    under the same name scored the same rows."""
    return f"train {train_rows}, test {test_rows}"


def split_fingerprint_fn(train_df: DataFrame, test: DataFrame) -> str:
    return split_fingerprint(rows_fingerprint_fn(train_df), rows_fingerprint_fn(test))
