# Databricks notebook source
# MAGIC %md
# MAGIC # MovieLens: what the data looks like, and how the ALS models compare
# MAGIC
# MAGIC Reads the Delta tables the `movielens_als` job writes and plots what the seed analysis
# MAGIC looked at: the rating distribution, the long tail of ratings per user and per movie,
# MAGIC genres, activity over time, test metrics against the quick-start baseline, and a few
# MAGIC users' recommendations. Set the catalog and schema in the widgets (deployed in
# MAGIC development mode the schema is `dev_<user>_movielens`).
# MAGIC
# MAGIC Locally: `python jobs/notebooks/explore.py` after `make run` (tables in `spark_catalog.movielens`).

# COMMAND ----------

import os

import matplotlib

if "DATABRICKS_RUNTIME_VERSION" not in os.environ:
    matplotlib.use("Agg")  # no display locally: figures go to files
import matplotlib.pyplot as plt
from pyspark.sql import functions as F

try:
    dbutils.widgets.text("catalog", "main")  # noqa: F821 - defined in Databricks notebooks
    dbutils.widgets.text("schema", "movielens")  # noqa: F821
    catalog, schema = dbutils.widgets.get("catalog"), dbutils.widgets.get("schema")  # noqa: F821
except NameError:  # running as a plain script
    from movielens_als.spark import get_spark

    spark = get_spark()
    catalog = os.environ.get("MOVIELENS_ALS_CATALOG", "spark_catalog")
    schema = os.environ.get("MOVIELENS_ALS_SCHEMA", "movielens")

from movielens_als.names import Namespace

ns = Namespace(catalog, schema)  # validated and quoted: widget values end up in SQL
OUT = os.environ.get("MOVIELENS_ALS_FIGURES", "reports/explore")


def show(fig, name: str) -> None:
    """display() on Databricks, a PNG under reports/explore locally."""
    if "DATABRICKS_RUNTIME_VERSION" in os.environ:
        display(fig)  # noqa: F821
    else:
        os.makedirs(OUT, exist_ok=True)
        fig.savefig(f"{OUT}/{name}.png", dpi=110, bbox_inches="tight")
        print(f"wrote {OUT}/{name}.png")
    plt.close(fig)


def table_exists(name: str) -> bool:
    return spark.catalog.tableExists(f"{ns.catalog}.{ns.schema}.{name}")


ratings = spark.table(ns.table("ratings"))
movies = spark.table(ns.table("movies"))
print(f"{ratings.count():,} ratings by {ratings.select('user_id').distinct().count():,} users "
      f"on {ratings.select('movie_id').distinct().count():,} movies")

# COMMAND ----------

# MAGIC %md ## Ratings: distribution and long tail

# COMMAND ----------

dist = ratings.groupBy("rating").count().orderBy("rating").toPandas()
per_user = ratings.groupBy("user_id").count().toPandas()["count"]
per_movie = ratings.groupBy("movie_id").count().toPandas()["count"]

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].bar(dist["rating"].astype(str), dist["count"])
axes[0].set(title="Ratings by star value", xlabel="stars", ylabel="ratings")
axes[1].hist(per_user, bins=50, log=True)
axes[1].set(title="Ratings per user", xlabel="ratings", ylabel="users (log)")
axes[2].plot(sorted(per_movie, reverse=True))
axes[2].set(title="Ratings per movie, most rated first", xlabel="movie rank", ylabel="ratings", yscale="log")
show(fig, "ratings")

# COMMAND ----------

# MAGIC %md ## Genres and activity over time

# COMMAND ----------

genres = (movies.select("movie_id", F.explode("genres").alias("genre"))
          .join(ratings, "movie_id").groupBy("genre")
          .agg(F.count("*").alias("ratings"), F.avg("rating").alias("mean_rating"))
          .orderBy(F.desc("ratings")).toPandas())
monthly = (ratings.groupBy(F.date_trunc("month", "rated_at").alias("month")).count()
           .orderBy("month").toPandas())

fig, axes = plt.subplots(1, 2, figsize=(15, 4))
axes[0].barh(genres["genre"], genres["ratings"])
axes[0].invert_yaxis()
axes[0].set(title="Ratings per genre", xlabel="ratings")
axes[1].plot(monthly["month"], monthly["count"])
axes[1].set(title="Ratings per month", ylabel="ratings")
show(fig, "genres_time")

# COMMAND ----------

# MAGIC %md ## Test metrics against the baseline

# COMMAND ----------

if table_exists("model_metrics"):
    metrics = spark.table(ns.table("model_metrics"))
    latest = metrics.orderBy(F.desc("evaluated_at")).select("run_id").first()["run_id"]
    pdf = (metrics.where(F.col("run_id") == latest)
           .withColumn("name", F.when(F.col("k").isNull(), F.col("metric"))
                       .otherwise(F.concat_ws("@", "metric", F.col("k").cast("string"))))
           .toPandas().pivot_table(index="name", columns="model", values="value"))
    print(f"run {latest}")
    print(pdf.round(4).to_string())
    fig, ax = plt.subplots(figsize=(12, 5))
    pdf.plot.bar(ax=ax)
    ax.set(title=f"Test metrics of run {latest} against the baseline", ylabel="value")
    show(fig, "metrics")
else:
    print("model_metrics is not there yet: run the evaluate task")

# COMMAND ----------

# MAGIC %md ## A few users' recommendations

# COMMAND ----------

if table_exists("user_recommendations"):
    recs = spark.table(ns.table("user_recommendations"))
    users = [r["user_id"] for r in recs.select("user_id").distinct().orderBy("user_id").limit(3).collect()]
    sample = (recs.where(F.col("user_id").isin(users) & (F.col("rank") <= 10))
              .join(movies.select("movie_id", "title"), "movie_id", "left")
              .orderBy("user_id", "rank").select("user_id", "rank", "title", "score"))
    print(sample.toPandas().to_string(index=False))
else:
    print("user_recommendations is not there yet: run the recommend task")
