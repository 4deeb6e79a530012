"""Feedback: the ratings people give through the serving endpoint (or the app, which asks it) back into ``ratings``.

Model Serving logs every request in the endpoint's inference table (``<endpoint>_payload``; locally ``serve`` writes
the same columns). A request row with a ``user_id`` and ``movie_ids``/``ratings`` is that user's ratings at the
request's time. :func:`harvest` reads the requests since the last harvest (kept as the feedback table's own commit
metadata, with a grace window for rows logged late), checks them as landing checks a release (integer ids, a known
movie, the release's scale and step), adds the good ones to ``feedback`` keyed by (request, movie) - so a request
harvested twice counts once - and the bad ones to ``quarantine`` with their request id. :func:`merge_into_ratings`
then applies the latest rating of every (user, movie) in ``feedback`` to ``ratings`` in one Delta MERGE, the later
rating winning; nothing to change is no commit, and a release landed again gets its feedback back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RATING, TIMESTAMP, USER
from movielens_als.ids import utc_now
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import Column, TableSpec

FEEDBACK = TableSpec(
    "feedback",
    "Ratings people gave through the serving endpoint or the app, one row per (request, movie), merged into ratings.",
    (
        Column("user_id", "INT", "The request's user_id"),
        Column("movie_id", "INT", "A rated movie; every value is in movies"),
        Column("rating", "DOUBLE", "Stars, on the landed release's scale and step"),
        Column("rated_at", "TIMESTAMP", "When the request was received (UTC)"),
        Column("source", "STRING", "Where it came from: endpoint (the inference table of a serving endpoint)"),
        Column("request_id", "STRING", "The inference table's databricks_request_id"),
        Column("landed_at", "TIMESTAMP", "When the harvest added the row (UTC)"),
    ),
)
FEEDBACK_KIND = "feedback"  # quarantine.kind of a rejected feedback row
QUARANTINE_TABLE = "quarantine"
FEEDBACK_COMMIT = json.dumps({"feedback": True})  # userMetadata of quarantine appends of a harvest alone
GRACE = timedelta(minutes=10)  # rows logged up to this late behind the newest harvested one are still harvested
_RECORDS = "struct<dataframe_records: array<struct<user_id: string, movie_ids: array<string>, ratings: array<string>>>>"
_INT = r"^-?[0-9]+(\.0+)?$"


def ratings_fn(requests: DataFrame) -> DataFrame:
    """(request_id, rated_at, raw, user_raw, movie_raw, rating_raw) per rating a request carries with a user id.

    ``requests``: the inference table's rows. Values stay text so that a bad one is quarantined as sent.
    """
    records = requests.select(
        F.col("databricks_request_id").alias("request_id"),
        F.col("request_time").alias("rated_at"),
        F.posexplode(F.from_json("request", _RECORDS)["dataframe_records"]).alias("record_index", "record"),
    ).where(F.col("record.user_id").isNotNull() & (F.size(F.coalesce("record.movie_ids", F.array())) > 0))
    pairs = F.arrays_zip(F.col("record.movie_ids").alias("movie"), F.col("record.ratings").alias("rating"))
    return records.select(
        "request_id",
        "rated_at",
        F.to_json("record").alias("raw"),
        F.col("record.user_id").alias("user_raw"),
        F.explode(pairs).alias("pair"),
    ).select("request_id", "rated_at", "raw", "user_raw", F.col("pair.movie").alias("movie_raw"),
             F.col("pair.rating").alias("rating_raw"))  # fmt: skip


def check_fn(rows: DataFrame, movies: DataFrame, low: float, high: float, step: float) -> tuple[DataFrame, DataFrame]:
    """(good rows as FEEDBACK minus landed_at, bad rows with a reason): the checks land makes of a release's rows."""
    rating = F.col("rating_raw").cast("double")
    known = rows.join(
        movies.select(F.col(ITEM).alias("_movie")), F.col("movie_raw").cast("int") == F.col("_movie"), "left"
    )
    reason = (
        F.when(
            ~F.col("user_raw").rlike(_INT)
            | (F.col("user_raw").cast("double") < 1)
            | (F.col("user_raw").cast("double") >= 2**31),
            F.concat(F.lit("user_id "), "user_raw", F.lit(" is not a positive integer id")),
        )  # fmt: skip
        .when(
            F.col("movie_raw").isNull() | F.col("rating_raw").isNull(), F.lit("movie_ids and ratings differ in length")
        )
        .when(
            ~F.col("movie_raw").rlike(_INT), F.concat(F.lit("movie_id "), "movie_raw", F.lit(" is not an integer id"))
        )
        .when(F.col("_movie").isNull(), F.concat(F.lit("unknown movie_id "), "movie_raw"))
        .when(
            rating.isNull() | (rating < low) | (rating > high),
            F.concat(F.lit("rating "), "rating_raw", F.lit(f" outside the {low:g}-{high:g} scale")),
        )  # fmt: skip
        .when(
            F.pmod(rating - F.lit(low), F.lit(step)) != 0,
            F.concat(F.lit("rating "), "rating_raw", F.lit(f" not a multiple of {step:g}")),
        )  # fmt: skip
    )
    checked = known.withColumn("reason", reason)
    good = checked.where(F.col("reason").isNull()).select(
        F.col("user_raw").cast("double").cast("int").alias(USER),
        F.col("movie_raw").cast("double").cast("int").alias(ITEM),
        rating.alias(RATING),
        F.col("rated_at").alias(TIMESTAMP),
        F.lit("endpoint").alias("source"),
        "request_id",
    )
    # One request rating a movie twice: its last rating stands, as a release's later duplicate does.
    good = good.dropDuplicates(["request_id", ITEM])
    bad = checked.where(F.col("reason").isNotNull()).select("request_id", "raw", "reason")
    return good, bad


def latest_fn(feedback: DataFrame) -> DataFrame:
    """The latest feedback rating of each (user, movie): later request time wins, then the larger request id."""
    order = Window.partitionBy(USER, ITEM).orderBy(F.desc(TIMESTAMP), F.desc("request_id"))
    return (
        feedback.withColumn("_n", F.row_number().over(order))
        .where(F.col("_n") == 1)
        .select(USER, ITEM, RATING, TIMESTAMP)
    )


def harvest(
    spark: SparkSession, namespace: Namespace, inference: str, movies: DataFrame, scale: tuple[float, float, float]
) -> tuple[dict[str, int], DataFrame | None]:
    """Add the ratings requested since the last harvest to ``feedback``; (counts, the rejected rows not yet in
    quarantine, in its columns, for the caller to write there: with the release's rows, or tagged on their own).

    ``movies``: the catalogue the ratings must name (the release being landed, or the landed one).
    """
    none = {"harvested": 0, "quarantined": 0}, None
    tables.ensure_table(spark, namespace, FEEDBACK)  # there from the first landing on, for the dashboard's page
    # Locally another process (``serve``) may have created the table since this session opened the lakehouse.
    if not tables.table_exists(spark, namespace, inference) and not tables.register_location(
        spark, namespace, inference
    ):
        return none
    mark = _mark(spark, namespace)
    requests = spark.table(namespace.table(inference))
    if mark is not None:
        requests = requests.where(F.col("request_time") > F.lit(mark - GRACE))
    newest = requests.agg(F.max("request_time")).first()[0]
    if newest is None:
        return none
    good, bad = check_fn(ratings_fn(requests), movies, *scale)
    rejected = _not_quarantined(spark, namespace, _quarantine_rows_fn(bad, inference))
    feedback = namespace.table(FEEDBACK.name)
    good.withColumn("landed_at", F.lit(utc_now())).createOrReplaceTempView("_feedback_new")
    with commit_metadata(spark, json.dumps({"harvested_through": str(newest)})):
        # Delta's MERGE answers with its own row counts: no count of the table before and after.
        merged = spark.sql(
            f"MERGE INTO {feedback} AS t USING _feedback_new AS s "
            "ON t.request_id = s.request_id AND t.movie_id = s.movie_id WHEN NOT MATCHED THEN INSERT *"
        ).first()
    return {"harvested": int(merged["num_inserted_rows"]), "quarantined": rejected.count()}, rejected


def latest_feedback(spark: SparkSession, namespace: Namespace) -> DataFrame | None:
    """:func:`latest_fn` of the feedback table, or None when there is none."""
    if not tables.table_exists(spark, namespace, FEEDBACK.name):
        return None
    return latest_fn(spark.table(namespace.table(FEEDBACK.name)))


def changes_fn(ratings: DataFrame, latest: DataFrame) -> DataFrame:
    """The feedback ratings that change ``ratings``: a (user, movie) not rated there, or rated earlier."""
    joined = latest.alias("f").join(ratings.alias("r"), [USER, ITEM], "left")
    later = F.col("r.rating").isNull() | (F.col("f.rated_at") > F.col("r.rated_at"))
    return joined.where(later).select(
        USER, ITEM, F.col(f"f.{RATING}").alias(RATING), F.col(f"f.{TIMESTAMP}").alias(TIMESTAMP)
    )


def apply_fn(ratings: DataFrame, latest: DataFrame) -> DataFrame:
    """``ratings`` with the feedback applied: per (user, movie) the later rating of the two."""
    changes = changes_fn(ratings, latest)
    kept = ratings.join(changes.select(USER, ITEM), [USER, ITEM], "left_anti")
    return kept.unionByName(changes.select(*ratings.columns))


def merge_into_ratings(spark: SparkSession, namespace: Namespace, ratings: TableSpec, metadata: str | None) -> int:
    """Apply each (user, movie)'s latest feedback rating to the ratings table in one MERGE; the rows it changed.

    Nothing to change is no commit. ``metadata`` is kept in the commit (land's record of the release landed).
    """
    latest = latest_feedback(spark, namespace)
    if latest is None:
        return 0
    changes = changes_fn(spark.table(namespace.table(ratings.name)), latest)
    count = changes.count()
    if not count:
        return 0
    changes.createOrReplaceTempView("_feedback_changes")
    with commit_metadata(spark, metadata):
        spark.sql(
            f"MERGE INTO {namespace.table(ratings.name)} AS t USING _feedback_changes AS s "
            "ON t.user_id = s.user_id AND t.movie_id = s.movie_id "
            "WHEN MATCHED THEN UPDATE SET t.rating = s.rating, t.rated_at = s.rated_at "
            "WHEN NOT MATCHED THEN INSERT (user_id, movie_id, rating, rated_at) "
            "VALUES (s.user_id, s.movie_id, s.rating, s.rated_at)"
        )
    return count


def _mark(spark: SparkSession, namespace: Namespace) -> datetime | None:
    """The newest request time the last harvest saw, from the feedback table's commits (None: never harvested)."""
    history = spark.sql(f"DESCRIBE HISTORY {namespace.table(FEEDBACK.name)} LIMIT 20").select("userMetadata")
    for (meta,) in history.collect():  # newest first
        if meta and "harvested_through" in meta:
            return datetime.fromisoformat(json.loads(meta)["harvested_through"])
    return None


def _quarantine_rows_fn(bad: DataFrame, inference: str) -> DataFrame:
    """Rejected feedback in quarantine's columns: the request's record as its raw line, the request id beside it."""
    return bad.select(
        F.lit(inference).alias("file"), F.lit(None).cast("bigint").alias("line_number"), F.col("raw").alias("raw_line"),
        "reason", F.lit(FEEDBACK_KIND).alias("kind"), F.lit(None).cast("string").alias("source_checksum"), "request_id",
    ).dropDuplicates(["request_id", "raw_line", "reason"])  # fmt: skip


def _not_quarantined(spark: SparkSession, namespace: Namespace, rows: DataFrame) -> DataFrame:
    """``rows`` not in quarantine yet: a request harvested twice is quarantined once."""
    if not tables.table_exists(spark, namespace, QUARANTINE_TABLE):
        return rows
    there = spark.table(namespace.table(QUARANTINE_TABLE))
    if "request_id" not in there.columns:  # a quarantine from before feedback holds none
        return rows
    keys = ["request_id", "raw_line", "reason"]
    return rows.join(there.where(F.col("kind") == FEEDBACK_KIND).select(*keys), keys, "left_anti")


@contextmanager
def commit_metadata(spark: SparkSession, metadata: str | None) -> Iterator[None]:
    """Keep ``metadata`` in the block's Delta commits (``DESCRIBE HISTORY``'s ``userMetadata``)."""
    key = "spark.databricks.delta.commitInfo.userMetadata"
    if metadata is not None:
        spark.conf.set(key, metadata)
    try:
        yield
    finally:
        if metadata is not None:
            spark.conf.unset(key)
