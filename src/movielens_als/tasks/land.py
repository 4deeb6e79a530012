"""The land task: a MovieLens release into Delta tables, bad rows quarantined, nothing lost.

Order of work, so a failure never leaves a mix of old and new tables:
1. resolve and check the source (download, md5, zip integrity) and stage every file;
   archive-level faults stop here, before any table is touched;
2. validate in Spark, harvest the feedback logged since the last run into ``feedback``
   (:mod:`..ingest.feedback`), and replace ``quarantine`` with the release's and the feedback's rejected rows;
3. if too many rows were quarantined, log the run as failed and stop, good tables unchanged;
4. replace ``movies``, ``users`` and ``ratings`` (each one Delta commit of deterministic content, ratings the
   release with every feedback rating applied, the later one winning, so a re-run after a crash between two
   writes converges on the same state);
5. append the run to ``ingestion_runs``.
An unchanged release skips 2-4 but for the harvest, whose ratings go in with one MERGE (none when nothing changes).

The ratings commit (written last) records the source checksum and the versions the other landed
tables reached (``userMetadata``): when the same release is landed again by the same lander and
nothing has written those tables since, nothing is rewritten, so a scheduled run on an unchanged
release keeps every table, and what is served from it, at its Delta version. The feedback merge's ratings commit
carries the same record, and the commits a harvest adds to ``quarantine`` are tagged, so feedback never makes an
unchanged release look changed.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als import __version__
from movielens_als.errors import LandingError, QuarantineThresholdError
from movielens_als.faults import failpoint
from movielens_als.ids import new_run_id, utc_now
from movielens_als.ingest import feedback, staging, validation
from movielens_als.ingest.layouts import GENRES_100K, detect_layout
from movielens_als.ingest.sources import GROUPLENS_BASE_URL, resolve_source
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace, payload_table
from movielens_als.lakehouse.tables import Column, TableSpec
from movielens_als.result import TaskResult

log = logging.getLogger(__name__)

REJECTED, SUPERSEDED = "rejected", "superseded"

RATINGS = TableSpec(
    "ratings",
    "MovieLens ratings, one per (user_id, movie_id): duplicates keep the latest.",
    (
        Column("user_id", "INT", "MovieLens user id"),
        Column("movie_id", "INT", "MovieLens movie id; every value is in movies"),
        Column("rating", "DOUBLE", "stars: 1-5 (ml-100k, ml-1m) or 0.5-5 in half stars"),
        Column("rated_at", "TIMESTAMP", "when the rating was given (from the unix timestamp, UTC)"),
    ),
)
MOVIES = TableSpec(
    "movies",
    "MovieLens movies with parsed year and genres.",
    (
        Column("movie_id", "INT", "MovieLens movie id"),
        Column("title", "STRING", "title as published, with the year in parentheses"),
        Column("year", "INT", "release year from the title, else from release_date"),
        Column("release_date", "DATE", "theatrical release date (ml-100k only)"),
        Column("genres", "ARRAY<STRING>", "genre names; empty when none are listed"),
        Column("imdb_url", "STRING", "IMDb link (ml-100k only)"),
    ),
)
USERS = TableSpec(
    "users",
    "MovieLens user demographics (ml-100k, ml-1m; empty for releases without them).",
    (
        Column("user_id", "INT", "MovieLens user id"),
        Column("age", "INT", "age in years (ml-1m: the lower bound of the age group)"),
        Column("gender", "STRING", "M or F"),
        Column("occupation", "STRING", "occupation name"),
        Column("zip_code", "STRING", "zip code as given"),
    ),
)
QUARANTINE = TableSpec(
    "quarantine",
    "Source rows the latest land rejected or superseded, with the reason.",
    (
        Column("file", "STRING", "file inside the source archive or folder"),
        Column("line_number", "BIGINT", "1-based line number in that file"),
        Column("raw_line", "STRING", "the line as decoded"),
        Column("reason", "STRING", "why the row is not in its table"),
        Column(
            "kind",
            "STRING",
            "rejected (the row is invalid), superseded (a later rating of the same movie won) or feedback (a rating "
            "harvested from the inference table that failed the same checks)",
        ),
        Column("source_checksum", "STRING", "sha256 of the source, as in ingestion_runs.checksum"),
        Column("request_id", "STRING", "feedback rows: the inference table's request id"),
    ),
)
INGESTION_RUNS = TableSpec(
    "ingestion_runs",
    "One row per land run that got as far as validating rows.",
    (
        Column("run_id", "STRING", "id of the land run"),
        Column("dataset", "STRING", "release name, e.g. ml-100k"),
        Column("source", "STRING", "URL, zip or folder given"),
        Column("checksum", "STRING", "sha256 of the source zip or folder"),
        Column("rows_written", "MAP<STRING, BIGINT>", "rows per table written by this run"),
        Column("rows_quarantined", "BIGINT", "rows rejected by validation"),
        Column("duplicates_resolved", "BIGINT", "superseded duplicate (user_id, movie_id) ratings"),
        Column("started_at", "TIMESTAMP", "run start (UTC)"),
        Column("finished_at", "TIMESTAMP", "run end (UTC)"),
        Column("status", "STRING", "succeeded, unchanged (source already landed), or failed (reason in message)"),
        Column("message", "STRING", "failure reason, if any"),
    ),
)
# The tables one landing replaces, in write order: ratings last, its commit marks the release landed (_landed).
LANDED = (QUARANTINE, MOVIES, USERS, RATINGS)


def land(
    spark: SparkSession,
    namespace: Namespace,
    storage: Path,
    source: str | None = None,
    size: str = "100k",
    max_quarantine_fraction: float = 0.01,
    endpoint_name: str | None = None,
    *,
    base_url: str = GROUPLENS_BASE_URL,
) -> TaskResult:
    """Land one MovieLens release into ``namespace``; see the module docstring for the order of work."""
    if not 0.0 <= max_quarantine_fraction <= 1.0:
        raise LandingError(f"--max-quarantine-fraction must be between 0 and 1, got {max_quarantine_fraction}")
    run_id, started = new_run_id("land-"), utc_now()
    landing = storage / "landing"
    src = resolve_source(source, size, landing, base_url=base_url)
    members = src.members()
    layout = detect_layout(members, src.origin)
    checksum = src.checksum()
    source = {"source_checksum": checksum, "lander": __version__}
    base_row = {"run_id": run_id, "dataset": src.dataset, "source": src.origin, "checksum": checksum,
                "started_at": started}  # fmt: skip
    inference = payload_table(endpoint_name) if endpoint_name else None
    scale = (layout.rating_min, layout.rating_max, layout.rating_step)
    if _landed(spark, namespace, source):
        merged = _feedback(spark, namespace, inference, scale, source)
        return _unchanged(spark, namespace, base_row, merged)

    stage_dir = landing / "staged" / checksum[:16]
    staged: dict[str, DataFrame] = {}
    lines = 0
    for role, fmt in (("movies", layout.movies), ("users", layout.users), ("ratings", layout.ratings)):
        if fmt is None or fmt.name not in members:
            continue
        out = stage_dir / f"{fmt.name}.parquet"
        if role == "ratings":  # grows with the release: Spark reads it in parallel
            path = staging.local_copy(src, members[fmt.name], stage_dir / "extracted")
            result = staging.stage_lines(spark, path, members[fmt.name], fmt, out)
        else:
            result = staging.stage_file(src, members[fmt.name], fmt, out)
        lines += result.lines
        staged[role] = spark.read.parquet(str(result.path))
    failpoint("land.staged")
    genre_names = staging.read_genre_names(src, members) if layout.name == "100k" else GENRES_100K

    movies, bad_movies = validation.movies_fn(staged["movies"], layout, genre_names)
    users, bad_users = validation.users_fn(staged["users"], layout) if "users" in staged else (None, None)
    ratings, bad_ratings, superseded = validation.ratings_fn(staged["ratings"], layout, movies, users)

    rejected = bad_movies.unionByName(bad_ratings)
    if bad_users is not None:
        rejected = rejected.unionByName(bad_users)
    quarantine = (
        rejected.withColumn("kind", F.lit(REJECTED))
        .unionByName(superseded.withColumn("kind", F.lit(SUPERSEDED)))
        .withColumn("source_checksum", F.lit(checksum))
        .withColumn("request_id", F.lit(None).cast("string"))
    )
    # Feedback first, so that its rejected rows go into the one quarantine commit with the release's.
    harvested, rejected_feedback = _harvest(spark, namespace, inference, movies, scale)
    failpoint("land.harvested")
    kept = _feedback_quarantined(spark, namespace)
    if rejected_feedback is not None:
        kept = kept.unionByName(rejected_feedback)
    tables.overwrite(spark, namespace, QUARANTINE, quarantine.unionByName(kept))
    quarantined, duplicates = _quarantine_counts(spark, namespace)
    base_row.update(rows_quarantined=quarantined, duplicates_resolved=duplicates)
    if quarantined > max_quarantine_fraction * lines:
        message = (
            f"{src.dataset}: {quarantined} of {lines} rows quarantined ({quarantined / lines:.2%}), above the "
            f"{max_quarantine_fraction:.2%} limit; good tables left unchanged, see table quarantine"
        )
        _log_run(spark, namespace, base_row, {"quarantine": quarantined + duplicates}, "failed", message)
        raise QuarantineThresholdError(message)

    tables.overwrite(spark, namespace, MOVIES, movies)
    failpoint("land.wrote_movies")
    users_df = users if users is not None else spark.createDataFrame([], USERS.schema_ddl)
    tables.overwrite(spark, namespace, USERS, users_df)
    # The release and every feedback rating, the later one of a (user, movie) winning, in the one ratings commit.
    latest = feedback.latest_feedback(spark, namespace)
    merged = feedback.changes_fn(ratings, latest).count() if latest is not None else 0
    landed = feedback.apply_fn(ratings, latest) if merged else ratings
    tables.overwrite(spark, namespace, RATINGS, landed, json.dumps(_marker(spark, namespace, source), sort_keys=True))
    shutil.rmtree(stage_dir, ignore_errors=True)  # this release's staged copies, a killed run's included
    counts = {**harvested, "feedback_merged": merged}
    return _finish(spark, namespace, base_row, quarantined + duplicates, "succeeded", counts)


def _harvest(
    spark: SparkSession, namespace: Namespace, inference: str | None, movies: DataFrame, scale: tuple
) -> tuple[dict[str, int], DataFrame | None]:
    if not inference:
        return {}, None
    counts, rejected = feedback.harvest(spark, namespace, inference, movies, scale)
    return {f"feedback_{key}": value for key, value in counts.items()}, rejected


def _feedback(
    spark: SparkSession, namespace: Namespace, inference: str | None, scale: tuple, source: dict
) -> dict[str, int]:
    """On a release already landed: harvest, then merge what changes ratings, under the release's marker."""
    harvested, rejected = _harvest(spark, namespace, inference, spark.table(namespace.table(MOVIES.name)), scale)
    failpoint("land.harvested")
    if rejected is not None and harvested["feedback_quarantined"]:
        with feedback.commit_metadata(spark, feedback.FEEDBACK_COMMIT):  # tagged: the release stays landed
            tables.append(spark, namespace, QUARANTINE, rejected)
    marker = json.dumps(_marker(spark, namespace, source), sort_keys=True)
    return {**harvested, "feedback_merged": feedback.merge_into_ratings(spark, namespace, RATINGS, marker)}


def _feedback_quarantined(spark: SparkSession, namespace: Namespace) -> DataFrame:
    """The feedback rows in quarantine: a new release replaces the release's rows, not these."""
    name = namespace.table(QUARANTINE.name)
    if not tables.table_exists(spark, namespace, QUARANTINE.name):
        return spark.createDataFrame([], QUARANTINE.schema_ddl)
    tables.ensure_table(spark, namespace, QUARANTINE)  # a table from before request_id gains the column
    return QUARANTINE.conform(spark.table(name).where(F.col("kind") == feedback.FEEDBACK_KIND))


def _marker(spark: SparkSession, namespace: Namespace, source: dict) -> dict:
    """What the ratings commit records: the release, and the versions the other landed tables are at after it."""
    return {
        **source,
        "versions": {spec.name: _landed_version(spark, namespace, spec.name) for spec in LANDED[:-1]},
    }


def _landed_version(spark: SparkSession, namespace: Namespace, name: str) -> int | None:
    """A table's latest version that a harvest did not write (its quarantine appends are tagged)."""
    if not tables.table_exists(spark, namespace, name):
        return None
    history = spark.sql(f"DESCRIBE HISTORY {namespace.table(name)} LIMIT 100").select("version", "userMetadata")
    for version, meta in history.collect():  # newest first
        if meta != feedback.FEEDBACK_COMMIT:
            return int(version)
    return None


def _landed(spark: SparkSession, namespace: Namespace, source: dict) -> bool:
    """Whether the tables hold this release: the last ratings commit names it, and no other landed table has been
    written since (a landing of another release killed before its ratings write changes their versions)."""
    meta = tables.last_commit_metadata(spark, namespace, RATINGS.name)
    try:
        recorded = json.loads(meta) if meta else None
    except json.JSONDecodeError:
        return False
    return recorded == _marker(spark, namespace, source)


def _unchanged(spark: SparkSession, namespace: Namespace, base_row: dict, merged: dict[str, int]) -> TaskResult:
    """The release is already landed: log the run, rewrite nothing of it."""
    quarantined, duplicates = _quarantine_counts(spark, namespace)
    base_row = dict(base_row, rows_quarantined=quarantined, duplicates_resolved=duplicates)
    return _finish(spark, namespace, base_row, quarantined + duplicates, "unchanged", merged)


def _finish(
    spark: SparkSession, namespace: Namespace, base_row: dict, quarantine: int, status: str, merged: dict[str, int]
) -> TaskResult:
    written = {spec.name: spark.table(namespace.table(spec.name)).count() for spec in (RATINGS, MOVIES, USERS)}
    written["quarantine"] = quarantine
    written.update(merged)
    _log_run(spark, namespace, base_row, written, status, None)
    details = {"dataset": base_row["dataset"], "quarantined": base_row["rows_quarantined"],
               "duplicates_resolved": base_row["duplicates_resolved"], "run_id": base_row["run_id"],
               "unchanged": status == "unchanged"}  # fmt: skip
    headline = "release already landed (same checksum): tables kept" if status == "unchanged" else None
    return TaskResult("land", written, details, headline)


def _quarantine_counts(spark: SparkSession, namespace: Namespace) -> tuple[int, int]:
    """(rejected, superseded duplicate ratings) in the quarantine table just written."""
    row = (
        spark.table(namespace.table(QUARANTINE.name))
        .agg(
            F.count_if(F.col("kind") == REJECTED).alias("rejected"),
            F.count_if(F.col("kind") == SUPERSEDED).alias("duplicates"),
        )
        .first()
    )
    return int(row["rejected"]), int(row["duplicates"])


def _log_run(
    spark: SparkSession, namespace: Namespace, base: dict, written: dict[str, int], status: str, message: str | None
) -> None:
    row = dict(base, rows_written=written, finished_at=utc_now(), status=status, message=message)
    tables.append(spark, namespace, INGESTION_RUNS, spark.createDataFrame([row], INGESTION_RUNS.schema_ddl))
    log.info("land %s: %s", status, json.dumps(written))
