"""The model store: where a training run's ALS models live, and the run and metric tables.

A training run saves three Spark ML ``ALSModel`` directories under ``storage/models/<run_id>/``:
``rating`` (explicit ALS on residuals of a bias baseline, with the baseline and blend beside it)
and ``ranking`` (implicit ALS for top-k), both fitted without the test rows for ``evaluate``, and
``serving`` (the ranking model refitted on every rating) for ``recommend``. ``training_runs``
records each run; ``model_metrics`` holds one row per evaluated metric.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError
from movielens_als.names import Namespace
from movielens_als.rating_model import BiasBaseline, Blend
from movielens_als.tables import Column, TableSpec, table_exists

MODEL_KINDS = ("rating", "ranking", "serving")
# Run ids become directory names and SQL string values: no separators, dots or quotes.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

TRAINING_RUNS = TableSpec(
    "training_runs",
    "One row per train run: params, chosen hyperparameters, timings and the ratings Delta version used.",
    (
        Column("run_id", "STRING", "Training run id; models live under models/<run_id>/", nullable=False),
        Column("protocol", "STRING", "Split protocol trained on: benchmark, quickstart or chrono"),
        Column("status", "STRING", "running, succeeded or failed"),
        Column("params", "STRING", "JSON: the grid searched and fixed settings (seed, maxIter, ...)"),
        Column("rating_hyperparams", "STRING", "JSON: rating model hyperparameters chosen by validation RMSE"),
        Column("ranking_hyperparams", "STRING", "JSON: ranking model hyperparameters chosen by validation nDCG@10"),
        Column("ratings_version", "BIGINT", "Delta version of the ratings table when training started"),
        Column("rating_model_path", "STRING", "Directory of the saved rating ALSModel"),
        Column("ranking_model_path", "STRING", "Directory of the saved ranking (implicit) ALSModel"),
        Column("serving_model_path", "STRING", "Directory of the ranking model refitted on every rating (served)"),
        Column("started_at", "TIMESTAMP", "UTC start of the run"),
        Column("finished_at", "TIMESTAMP", "UTC end of the run"),
        Column("timings", "STRING", "JSON: seconds per step (tuning, refit, save)"),
        Column("validation_metrics", "STRING", "JSON: validation scores of every grid point"),
        Column("error", "STRING", "Error message when status is failed"),
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
    ),
)


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is letters, digits, ``_`` and ``-`` (1-128, not starting with ``-``/``_``)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise MovieLensAlsError(f"invalid run id {run_id!r}: use letters, digits, '_' and '-' (at most 128)")
    return run_id


def model_dir(storage: Path, run_id: str, kind: str) -> Path:
    """Directory of one saved model: ``storage/models/<run_id>/<kind>``."""
    if kind not in MODEL_KINDS:
        raise MovieLensAlsError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    validate_run_id(run_id)
    return Path(storage) / "models" / run_id / kind


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


def _load_als(path: Path, run_id: str, kind: str) -> ALSModel:
    if not path.is_dir():
        raise MovieLensAlsError(f"{kind} model of run {run_id!r} is missing at {path}")
    return ALSModel.load(str(path))


def load_ranking_model(
    spark: SparkSession, namespace: Namespace, storage: Path, run_id: str | None = None, kind: str = "ranking"
) -> tuple[str, ALSModel]:
    """``(run_id, ALSModel)`` of a run's implicit model (default: the latest succeeded run): ``ranking``,
    fitted without the test rows, or ``serving``, refitted on every rating."""
    run_id = resolve_run_id(spark, namespace, run_id)
    return run_id, _load_als(model_dir(storage, run_id, kind), run_id, kind)


def load_rating_model(spark: SparkSession, namespace: Namespace, storage: Path, run_id: str | None = None):
    """``(run_id, ALSModel, BiasBaseline, Blend)`` of the explicit rating model of a run.

    The blend adds the run's ranking model score (``load_ranking_model``) to the rating prediction.
    """
    run_id = resolve_run_id(spark, namespace, run_id)
    path = model_dir(storage, run_id, "rating")
    model = _load_als(path, run_id, "rating")
    return run_id, model, BiasBaseline.load(spark, path.parent / "baseline"), Blend.load(path.parent)
