"""An ALS model as data: its user and item factor tables, which is all that scoring needs.

Spark ML's ``ALSModel`` lives in the Spark server (a JVM object, or a Spark Connect ML cache
entry) and saves through Spark's own writers; the factor tables are plain rows, the same on
classic Spark and Spark Connect, small beside the ratings (one row per user and per movie), and
storable as Parquet in an MLflow model. ``transform`` is ALS's prediction, a dot product of the
two factor vectors, with NULL where either id is unknown (ALS's ``coldStartStrategy="nan"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, PREDICTION, USER


@dataclass
class Factors:
    users: DataFrame  # id INT, features ARRAY<FLOAT>
    items: DataFrame

    @classmethod
    def of(cls, model: ALSModel) -> Factors:
        return cls(model.userFactors, model.itemFactors)

    def transform(self, df: DataFrame, out: str = PREDICTION) -> DataFrame:
        """``df`` with ``out``: the dot product of its user's and movie's factors (NULL for an unknown id)."""
        users = self.users.select(F.col("id").alias(USER), F.col("features").alias("_u"))
        items = self.items.select(F.col("id").alias(ITEM), F.col("features").alias("_i"))
        products = F.zip_with("_u", "_i", lambda a, b: a.cast("double") * b.cast("double"))
        dot = F.aggregate(products, F.lit(0.0).cast("double"), lambda acc, x: acc + x)
        return df.join(users, USER, "left").join(items, ITEM, "left").withColumn(out, dot).drop("_u", "_i")

    def save(self, folder: Path) -> None:
        """``users.parquet`` and ``items.parquet`` in ``folder``: catalogue-sized tables, not ratings-sized."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, df in (("users", self.users), ("items", self.items)):
            write_parquet(
                df.select(F.col("id").cast("int"), F.col("features").cast("array<float>")), folder / f"{name}.parquet"
            )

    @classmethod
    def load(cls, spark: SparkSession, folder: Path) -> Factors:
        types = {"id": "int", "features": "array<float>"}
        return cls(
            read_parquet(spark, folder / "users.parquet", types), read_parquet(spark, folder / "items.parquet", types)
        )


def write_parquet(df: DataFrame, path: Path) -> None:
    """A catalogue-sized DataFrame as one local Parquet file. Through Arrow rather than pandas: Spark Connect's
    ``toPandas`` puts plan metrics in ``DataFrame.attrs``, which pandas cannot write as Parquet metadata."""
    pq.write_table(df.toArrow(), path)


def read_parquet(spark: SparkSession, path: Path, types: dict[str, str]) -> DataFrame:
    """A small local Parquet file as a DataFrame with these column types, sent through Arrow (classic and
    Spark Connect alike)."""
    return spark.createDataFrame(pq.read_table(path)).select(*[F.col(c).cast(t) for c, t in types.items()])
