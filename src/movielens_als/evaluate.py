"""Evaluate a training run on its protocol's test split with recommenders' Spark evaluators.

Three models are scored in the same run: ``rating`` (bias + residual ALS), ``ranking`` (implicit
ALS) and ``baseline``, the recommenders quick-start configuration (explicit ALS rank 10, maxIter
15, regParam 0.05, seed 42) fitted on the same train rows, so every run shows its gain. Metrics
are appended to ``model_metrics``; seaborn plots go to ``storage/reports/<run_id>/``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als import tables
from movielens_als.errors import MovieLensAlsError
from movielens_als.models import MODEL_METRICS, load_rating_model, load_ranking_model, run_info
from movielens_als.names import Namespace
from movielens_als.spark import ensure_checkpoint_dir
from movielens_als.splits import TEST, TRAIN, VALIDATION, read_splits
from movielens_als.task import TaskResult
from movielens_als.train import ITEM, RATING, USER, predict_ratings_fn, recommend_top_k

log = logging.getLogger(__name__)

BASELINE_PARAMS = {"rank": 10, "maxIter": 15, "regParam": 0.05, "implicitPrefs": False,
                   "coldStartStrategy": "drop", "seed": 42}
RATING_METRICS = ("rmse", "mae", "rsquared", "exp_var")
RANKING_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map", "map_at_k")
DIVERSITY_METRICS = ("catalog_coverage", "distributional_coverage", "novelty", "diversity", "serendipity")


def _recommenders():
    try:
        from recommenders.evaluation import spark_evaluation
    except ImportError:
        raise MovieLensAlsError(
            "evaluate needs the optional extra: pip install 'movielens-als[evaluate]' (recommenders, seaborn)"
        ) from None
    return spark_evaluation


def fit_quickstart_baseline(train_df: DataFrame):
    """The recommenders quick-start ALS (explicit, rank 10, maxIter 15, regParam 0.05, seed 42)."""
    return ALS(userCol=USER, itemCol=ITEM, ratingCol=RATING, checkpointInterval=5, **BASELINE_PARAMS).fit(train_df)


def rating_metrics(test: DataFrame, pred: DataFrame) -> dict[str, float]:
    """RMSE, MAE, R² and explained variance from recommenders' SparkRatingEvaluation."""
    ev = _recommenders().SparkRatingEvaluation(test, pred, col_user=USER, col_item=ITEM, col_rating=RATING,
                                               col_prediction="prediction")
    return {name: float(getattr(ev, name)()) for name in RATING_METRICS}


def ranking_metrics(test: DataFrame, top_k: DataFrame, k: int) -> dict[str, float]:
    """precision@k, recall@k, nDCG@k, MAP, MAP@k from SparkRankingEvaluation (top_k relevancy)."""
    ev = _recommenders().SparkRankingEvaluation(
        test.select(USER, ITEM, RATING), top_k.select(USER, ITEM, "prediction"), k=k, relevancy_method="top_k",
        col_user=USER, col_item=ITEM, col_rating=RATING, col_prediction="prediction",
    )
    return {name: float(getattr(ev, name)()) for name in RANKING_METRICS}


def diversity_metrics(train_df: DataFrame, top_k: DataFrame) -> dict[str, float]:
    """Catalog and distributional coverage, novelty, diversity, serendipity (SparkDiversityEvaluation)."""
    ev = _recommenders().SparkDiversityEvaluation(train_df=train_df.select(USER, ITEM),
                                                  reco_df=top_k.select(USER, ITEM), col_user=USER, col_item=ITEM)
    return {name: float(getattr(ev, name)()) for name in DIVERSITY_METRICS}


def metric_rows(run_id: str, model: str, protocol: str, values: dict[str, float], k: int | None,
                evaluated_at: datetime) -> list[tuple]:
    return [(run_id, model, protocol, name, k, float(v), evaluated_at) for name, v in values.items()]


def evaluate(spark: SparkSession, namespace: Namespace, storage: Path, run_id: str | None = None,
             k: int = 10) -> TaskResult:
    """Score the run's rating, ranking and baseline models on the test split; append ``model_metrics``."""
    if not isinstance(k, int) or not 1 <= k <= 1000:
        raise MovieLensAlsError(f"--k must be an integer between 1 and 1000, got {k!r}")
    _recommenders()  # fail before any work when the optional extra is missing
    run_id, ranking_model = load_ranking_model(spark, namespace, storage, run_id)
    _, rating_model, baseline, blend = load_rating_model(spark, namespace, storage, run_id)
    info = run_info(spark, namespace, run_id)
    protocol = info["protocol"]
    ensure_checkpoint_dir(spark, Path(storage))

    splits_df = read_splits(spark, namespace, protocol).select(USER, ITEM, RATING, "split").cache()
    train_df = splits_df.where(F.col("split").isin(TRAIN, VALIDATION)).select(USER, ITEM, RATING).cache()
    test = splits_df.where(F.col("split") == TEST).select(USER, ITEM, RATING).cache()
    if test.limit(1).count() == 0:
        raise MovieLensAlsError(f"the {protocol} split has no test rows")
    users = test.select(USER).distinct()

    results: dict[str, dict[str, dict[str, float]]] = {}
    # Cached: four rating metrics and the plots each read the predictions (two ALS transforms and joins).
    rating_pred = predict_ratings_fn(baseline, rating_model, test, ranking_model, blend).cache()
    results["rating"] = {"rating": rating_metrics(test, rating_pred)}

    top = recommend_top_k(ranking_model, users, train_df, k).cache()
    results["ranking"] = {"ranking": ranking_metrics(test, top, k), "diversity": diversity_metrics(train_df, top)}

    # Baseline: its explicit predictions rank the same way (top-k unseen by predicted rating).
    quick = fit_quickstart_baseline(train_df)
    quick_pred = quick.transform(test).cache()  # coldStartStrategy drop, as in the quick start
    quick_top = recommend_top_k(quick, users, train_df, k).cache()
    results["baseline"] = {"rating": rating_metrics(test, quick_pred), "ranking": ranking_metrics(test, quick_top, k),
                           "diversity": diversity_metrics(train_df, quick_top)}

    evaluated_at = datetime.now(timezone.utc)
    rows = []
    for model, groups in results.items():
        for group, values in groups.items():
            rows += metric_rows(run_id, model, protocol, values, None if group == "rating" else k, evaluated_at)
    tables.append(spark, namespace, MODEL_METRICS, spark.createDataFrame(rows, schema=MODEL_METRICS.schema_ddl))

    report_dir = Path(storage) / "reports" / run_id
    plots: list[str] = []
    try:
        from movielens_als import plots as plotting

        plots = plotting.write_reports(report_dir, info, results, test, rating_pred, k)
    except ImportError as exc:
        log.warning("plots skipped: %s", exc)
    for df in (top, quick_top, rating_pred, quick_pred):
        df.unpersist()
    for df in (test, train_df, splits_df):
        df.unpersist()

    flat = {f"{m}.{n}": round(v, 4) for m, g in results.items() for vals in g.values() for n, v in vals.items()
            if n in ("rmse", "mae", "ndcg_at_k", "precision_at_k", "recall_at_k", "map")}
    return TaskResult("evaluate", rows={MODEL_METRICS.name: len(rows)},
                      details={"run_id": run_id, "protocol": protocol, "k": k, "reports": str(report_dir),
                               "plots": len(plots), **flat})
