"""A training run's models as the tasks use them, and the SQL-queryable history of runs and metrics.

Each ``train`` registers two model versions in MLflow (:mod:`registry`): ``ranking`` holds the
implicit factors fitted without the test rows (``evaluation``, which ``evaluate`` and the gate
score) and the same hyperparameters refitted on every rating (``serving``, which ``recommend``
serves); ``rating`` holds the bias baseline, residual factors, blend and its own copy of the ranking
factors it blends in, so that each registered model loads on its own. ``training_runs`` records
each run with its MLflow run id and model versions; ``model_metrics`` holds one row per evaluated
metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import Column, TableSpec, table_exists
from movielens_als.ml.factors import Factors
from movielens_als.ml.rating_model import RatingModel
from movielens_als.ml.registry import CHAMPION, RANKING_MODEL, RATING_MODEL, download, version_by_alias

# Run ids become MLflow run names, tags and SQL string values: no separators, dots or quotes.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

TRAINING_RUNS = TableSpec(
    "training_runs",
    "One row per train run: params, chosen hyperparameters, timings and the ratings Delta version used.",
    (
        Column("run_id", "STRING", "Training run id (the job run id on Databricks)", nullable=False),
        Column("protocol", "STRING", "Split protocol trained on: benchmark, quickstart or chrono"),
        Column("status", "STRING", "running, succeeded or failed"),
        Column("params", "STRING", "JSON: the grid searched and fixed settings (seed, maxIter, ...)"),
        Column("rating_hyperparams", "STRING", "JSON: rating model hyperparameters chosen by validation RMSE"),
        Column("ranking_hyperparams", "STRING", "JSON: ranking model hyperparameters chosen by validation nDCG@10"),
        Column("ratings_version", "BIGINT", "Delta version of the ratings table when training started"),
        Column("tuned_by", "STRING", "Run whose validation search chose the hyperparameters (its own id if it tuned)"),
        Column("tuning", "STRING", "Why the run searched the grid or reused the champion's choice (--tune)"),
        Column("mlflow_run_id", "STRING", "MLflow run holding the parameters, scores and logged models"),
        Column("rating_model_version", "BIGINT", "Registered version of <catalog>.<schema>.movielens_als_rating"),
        Column("ranking_model_version", "BIGINT", "Registered version of <catalog>.<schema>.movielens_als_ranking"),
        Column(
            "recommender_model_version",
            "BIGINT",
            "Registered version of <catalog>.<schema>.movielens_als_recommender (what a serving endpoint answers with)",
        ),
        Column("started_at", "TIMESTAMP", "UTC start of the run"),
        Column("finished_at", "TIMESTAMP", "UTC end of the run"),
        Column("timings", "STRING", "JSON: seconds per step (tuning, refit, save)"),
        Column("validation_metrics", "STRING", "JSON: validation scores of every grid point"),
        Column("error", "STRING", "Error message when status is failed"),
        Column(
            "owner", "STRING", "host:pid:start of the process that ran it; a dead owner's running row is marked failed"
        ),
    ),
)

MODEL_METRICS = TableSpec(
    "model_metrics",
    "Test-split metrics per training run, model (rating, ranking, baseline) and protocol; appended by evaluate.",
    (
        Column("run_id", "STRING", "Training run evaluated", nullable=False),
        Column("model", "STRING", "rating, ranking or baseline (the recommenders quick-start ALS)"),
        Column("protocol", "STRING", "Split protocol of the test rows"),
        Column(
            "metric",
            "STRING",
            "rmse, mae, rsquared, exp_var, precision_at_k, recall_at_k, ndcg_at_k, map, "
            "map_at_k, catalog_coverage, distributional_coverage, novelty, diversity, "
            "serendipity",
        ),
        Column("k", "INT", "Cut-off for ranking and diversity metrics; NULL for rating metrics"),
        Column("value", "DOUBLE", "Metric value"),
        Column("evaluated_at", "TIMESTAMP", "UTC time of the evaluate run"),
        Column(
            "split_fingerprint",
            "STRING",
            "Count and hash of the train and test rows scored: equal values, same rows (promote reuses such figures)",
        ),
        Column(
            "diversity_users",
            "INT",
            "Users sampled for diversity and serendipity (evaluate reuses baseline and popular rows of the same "
            "split, k and sample)",
        ),
    ),
)


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is letters, digits, ``_`` and ``-`` (1-128, not starting with ``-``/``_``)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise MovieLensAlsError(f"invalid run id {run_id!r}: use letters, digits, '_' and '-' (at most 128)")
    return run_id


def resolve_run_id(spark: SparkSession, namespace: Namespace, run_id: str | None) -> str:
    """``run_id`` if it names a succeeded training run, else (when None) the latest succeeded one."""
    if run_id is not None:
        validate_run_id(run_id)
    if not table_exists(spark, namespace, TRAINING_RUNS.name):
        raise MovieLensAlsError(f"no training runs in {namespace}: run `movielens-als train` first")
    runs = spark.table(namespace.table(TRAINING_RUNS.name)).where(F.col("status") == "succeeded")
    if run_id is not None:
        if runs.where(F.col("run_id") == run_id).limit(1).count() == 0:
            raise MovieLensAlsError(f"no succeeded training run {run_id!r} in {namespace}.{TRAINING_RUNS.name}")
        return run_id
    latest = runs.orderBy(F.col("finished_at").desc(), F.col("run_id").desc()).select("run_id").first()
    if latest is None:
        raise MovieLensAlsError(f"no succeeded training run in {namespace}: run `movielens-als train` first")
    return latest["run_id"]


def run_info(spark: SparkSession, namespace: Namespace, run_id: str) -> dict:
    """The ``training_runs`` row of a run as a dict."""
    row = spark.table(namespace.table(TRAINING_RUNS.name)).where(F.col("run_id") == run_id).first()
    if row is None:
        raise MovieLensAlsError(f"no training run {run_id!r} in {namespace}.{TRAINING_RUNS.name}")
    return row.asDict()


@dataclass
class RunModels:
    """A run's models as Spark tables: what ``evaluate`` and the gate score."""

    run_id: str
    ranking_version: int
    rating_version: int
    ranking: Factors  # fitted without the test rows
    rating: RatingModel


def load_version_models(
    spark: SparkSession, namespace: Namespace, run_id: str, ranking_version: int, rating_version: int
) -> RunModels:
    ranking_folder: Path = download(namespace, RANKING_MODEL, ranking_version)
    rating_folder: Path = download(namespace, RATING_MODEL, rating_version)
    # Not the serving factors beside them: nothing that scores a run reads them (``recommend`` reads the champion's).
    return RunModels(
        run_id,
        ranking_version,
        rating_version,
        Factors.load(spark, ranking_folder / "evaluation"),
        RatingModel.load(spark, rating_folder),
    )


def load_run_models(spark: SparkSession, namespace: Namespace, run_id: str | None = None) -> RunModels:
    """The models a training run registered (default: the latest succeeded run)."""
    run_id = resolve_run_id(spark, namespace, run_id)
    info = run_info(spark, namespace, run_id)
    return load_version_models(spark, namespace, run_id, info["ranking_model_version"], info["rating_model_version"])


def load_champion(spark: SparkSession, namespace: Namespace) -> RunModels | None:
    """The models the ``champion`` aliases point at, or None before any promotion."""
    ranking = version_by_alias(namespace, RANKING_MODEL, CHAMPION)
    rating = version_by_alias(namespace, RATING_MODEL, CHAMPION)
    if ranking is None or rating is None:
        return None
    run_id = ranking.tags.get("movielens_als.run_id", "")
    return load_version_models(spark, namespace, run_id, ranking.version, rating.version)


@dataclass
class Served:
    """The champion's serving factors, with the version and training run they come from."""

    run_id: str
    version: int
    factors: Factors


def champion_serving(spark: SparkSession, namespace: Namespace) -> Served | None:
    """What ``recommend`` serves: the serving factors of the ranking model's ``champion`` version."""
    ranking = version_by_alias(namespace, RANKING_MODEL, CHAMPION)
    if ranking is None:
        return None
    folder = download(namespace, RANKING_MODEL, ranking.version)
    return Served(
        ranking.tags.get("movielens_als.run_id", ""), ranking.version, Factors.load(spark, folder / "serving")
    )
