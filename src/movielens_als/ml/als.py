"""Spark ML ALS as both models use it: the columns, the block count, checkpointing, and its one known failure.

ALS cuts its lineage every ``checkpointInterval`` iterations only when the Spark context has a
checkpoint directory (``getCheckpointDir``); Spark Connect's ALS runs that same code on the
server, and a client cannot call ``setCheckpointDir``. Without one, each iteration deepens the
lineage a task deserialises recursively, and around 20 iterations the server's default thread
stack overflows (measured on a local Spark 4.0 Connect server: maxIter 20 fails with
``StackOverflowError``). So the checkpoint directory is server configuration: Spark 4.0's
``spark.checkpoint.dir``, set where the session starts (:mod:`spark`); a server without it gets
a one-line error naming the setting instead of a JVM trace.
"""

from __future__ import annotations

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession

from movielens_als.columns import ITEM, USER
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.spark import conf_value

CHECKPOINT_INTERVAL = 10  # each checkpoint writes the factors to disk: cut the lineage only as often as needed
PARALLELISM_CONF = "spark.default.parallelism"
DEFAULT_BLOCKS = 10  # Spark's own default, where the session does not say how parallel it is


def als_blocks(spark: SparkSession) -> int:
    """User and item blocks: one per task slot of a local session (more blocks only add tasks); Spark's default
    elsewhere."""
    value = conf_value(spark, PARALLELISM_CONF)
    return int(value) if value and value.isdigit() else DEFAULT_BLOCKS


def als_estimator(spark: SparkSession, **params) -> ALS:
    blocks = als_blocks(spark)
    return ALS(
        userCol=USER,
        itemCol=ITEM,
        checkpointInterval=CHECKPOINT_INTERVAL,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        **params,
    )


def fit_als(als: ALS, df: DataFrame) -> ALSModel:
    """``als.fit(df)``, with the lineage stack overflow of a server without a checkpoint dir as one clear error."""
    try:
        return als.fit(df)
    except Exception as exc:
        if "StackOverflowError" not in str(exc):
            raise
        raise MovieLensAlsError(
            f"ALS maxIter {als.getMaxIter()} overflowed the Spark server's stack: it has no checkpoint directory. "
            "Start the server (or cluster) with spark.checkpoint.dir set, or lower max_iter in --grid"
        ) from None
