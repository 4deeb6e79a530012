"""Evaluate a training run on its protocol's test split, beside the recommenders quick-start baseline.

Four models are scored in the same run: ``rating`` (bias + residual ALS, blended), ``ranking``
(implicit ALS), ``baseline``, the recommenders quick-start configuration (explicit ALS rank 10,
maxIter 15, regParam 0.05, seed 42) fitted on the same train rows (once per split: the fit is kept in
``storage/baselines``), and ``popular``, each user's most rated unseen movies, so every run shows its gain
over both. Neither depends on the run: when an earlier evaluate recorded both for the same train and test rows, k
and diversity sample, their rows are copied instead of scored again.
Top-k lists come from the same blocked top-k that writes the serving table, and the metrics are
DataFrame code (:mod:`metrics`), so this runs on Spark Connect as on classic Spark. Metrics are
appended to ``model_metrics``; seaborn plots go to ``storage/reports/<run_id>/`` when the
``evaluate`` extra is installed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import PREDICTION, USER
from movielens_als.config import EVALUATE as DEFAULTS
from movielens_als.errors import MovieLensAlsError
from movielens_als.faults import failpoint
from movielens_als.ids import utc_now
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import ensure_checkpoint_dir
from movielens_als.ml.baselines import popularity_top_k, quickstart_factors
from movielens_als.ml.metrics import (
    coverage_novelty_fn,
    diversity_serendipity_fn,
    ranking_metrics_fn,
    rating_metrics_fn,
)
from movielens_als.ml.models import MODEL_METRICS, load_run_models, run_info
from movielens_als.ml.ranking_model import model_top_k
from movielens_als.ml.splitting import rows_fingerprint_fn, split_fingerprint, test_frames
from movielens_als.progress import Progress
from movielens_als.result import TaskResult

log = logging.getLogger(__name__)


RANKING_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map", "map_at_k")
BASELINES = ("baseline", "popular")  # the models whose figures depend on the split alone, not on the run


def ranking_and_diversity(
    top: DataFrame, test: DataFrame, train_df: DataFrame, k: int, diversity_users: int
) -> dict[str, dict[str, float]]:
    ranking = ranking_metrics_fn(top, test, k)
    diversity = coverage_novelty_fn(train_df, top) | diversity_serendipity_fn(train_df, top, diversity_users)
    return {"ranking": {n: ranking[n] for n in RANKING_METRICS}, "diversity": diversity}


def rating_group(pred: DataFrame) -> dict[str, float]:
    return {n: v for n, v in rating_metrics_fn(pred).items() if n != "n"}


def metric_rows(
    run_id: str,
    model: str,
    protocol: str,
    values: dict[str, float],
    k: int | None,
    evaluated_at: datetime,
    split_fingerprint: str,
    diversity_users: int,
) -> list[tuple]:
    return [
        (run_id, model, protocol, name, k, float(v), evaluated_at, split_fingerprint, diversity_users)
        for name, v in values.items()
    ]


def recorded_baselines(
    spark: SparkSession, namespace: Namespace, fingerprint: str, k: int, diversity_users: int
) -> tuple[str, dict[str, dict[str, dict[str, float]]]] | None:
    """(run id, figures grouped as evaluate groups them) of the latest evaluate that recorded ``baseline`` and
    ``popular`` for these train and test rows, ``k`` and diversity sample; None when none did."""
    if not tables.table_exists(spark, namespace, MODEL_METRICS.name):
        return None
    metrics = spark.table(namespace.table(MODEL_METRICS.name))
    if "diversity_users" not in metrics.columns:  # an older table gains the column at this evaluate's append
        return None
    same = (
        (F.col("split_fingerprint") == fingerprint)
        & F.col("model").isin(*BASELINES)
        & (F.col("diversity_users") == diversity_users)
        & (F.col("k").isNull() | (F.col("k") == k))
    )
    found: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    latest: dict[str, datetime] = {}
    for r in metrics.where(same).select("run_id", "model", "metric", "k", "value", "evaluated_at").collect():
        group = "rating" if r["k"] is None else "ranking" if r["metric"] in RANKING_METRICS else "diversity"
        found.setdefault(r["run_id"], {}).setdefault(r["model"], {}).setdefault(group, {})[r["metric"]] = r["value"]
        latest[r["run_id"]] = max(latest.get(r["run_id"], r["evaluated_at"]), r["evaluated_at"])
    complete = [
        run
        for run, models in found.items()
        if set(models) == set(BASELINES)
        and "rating" in models["baseline"]
        and all(
            set(models[m].get("ranking", {})) == set(RANKING_METRICS) and models[m].get("diversity") for m in BASELINES
        )
    ]
    if not complete:
        return None
    run = max(complete, key=lambda r: (latest[r], r))
    return run, found[run]


def evaluate(
    spark: SparkSession,
    namespace: Namespace,
    storage: Path,
    run_id: str | None = None,
    k: int = DEFAULTS.k,
    diversity_users: int = DEFAULTS.diversity_users,
) -> TaskResult:
    """Score the run's rating, ranking and baseline models on the test split; append ``model_metrics``."""
    for name, value, top in (("--k", k, 1000), ("--diversity-users", diversity_users, 1_000_000)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise MovieLensAlsError(f"{name} must be an integer between 1 and {top}, got {value!r}")
    models = load_run_models(spark, namespace, run_id)
    run_id = models.run_id
    info = run_info(spark, namespace, run_id)
    protocol = info["protocol"]
    ensure_checkpoint_dir(spark, Path(storage))
    train_df, test = test_frames(spark, namespace, protocol)
    users = test.select(USER).distinct()
    train_rows = rows_fingerprint_fn(train_df)  # names the split and the quick-start fit's cache entry
    fingerprint = split_fingerprint(train_rows, rows_fingerprint_fn(test))

    results: dict[str, dict[str, dict[str, float]]] = {}
    progress = Progress("evaluate")
    progress.update("model 1 of 4: rating")
    # Cached: the rating metrics and the plots both read the predictions (factor joins and the blend).
    rating_pred = models.rating.predict(test).cache()
    results["rating"] = {"rating": rating_group(rating_pred)}
    progress.update("model 2 of 4: ranking")
    top = model_top_k(models.ranking, users, train_df, k).cache()
    results["ranking"] = ranking_and_diversity(top, test, train_df, k, diversity_users)

    recorded = recorded_baselines(spark, namespace, fingerprint, k, diversity_users)
    cached: list[DataFrame] = []
    if recorded is not None:
        baselines_from, figures = recorded
        progress.update(f"models 3 and 4 of 4: quick-start baseline and popular, as run {baselines_from} scored them")
        results |= {model: figures[model] for model in BASELINES}
    else:
        baselines_from = run_id
        # The baseline's explicit predictions rank the same way: top-k unseen by predicted rating.
        progress.update("model 3 of 4: quick-start baseline")
        quick = quickstart_factors(train_df, Path(storage) / "baselines", train_rows)
        quick_pred = quick.transform(test).where(
            F.col(PREDICTION).isNotNull()
        )  # coldStartStrategy drop, as in the quick start
        quick_top = model_top_k(quick, users, train_df, k).cache()
        results["baseline"] = {
            "rating": rating_group(quick_pred),
            **ranking_and_diversity(quick_top, test, train_df, k, diversity_users),
        }
        progress.update("model 4 of 4: popular")
        popular_top = popularity_top_k(train_df, users, k).cache()
        results["popular"] = ranking_and_diversity(popular_top, test, train_df, k, diversity_users)
        cached = [quick_top, popular_top]

    evaluated_at = utc_now()
    rows = []
    for model, groups in results.items():
        for group, values in groups.items():
            k_or_none = None if group == "rating" else k
            rows += metric_rows(run_id, model, protocol, values, k_or_none, evaluated_at, fingerprint, diversity_users)
    failpoint("evaluate.scored")
    tables.append(spark, namespace, MODEL_METRICS, spark.createDataFrame(rows, schema=MODEL_METRICS.schema_ddl))

    report_dir = Path(storage) / "reports" / run_id
    progress.update("plots")
    plots = _write_plots(report_dir, info, results, test, rating_pred, k)
    progress.close()
    for df in (top, *cached, rating_pred, test, train_df):
        df.unpersist()
    flat = {
        f"{m}.{n}": round(v, 4)
        for m, g in results.items()
        for vals in g.values()
        for n, v in vals.items()
        if n in ("rmse", "mae", "ndcg_at_k", "precision_at_k", "recall_at_k", "map")
    }
    return TaskResult(
        "evaluate",
        rows={MODEL_METRICS.name: len(rows)},
        details={
            "run_id": run_id,
            "protocol": protocol,
            "k": k,
            "reports": str(report_dir),
            "plots": len(plots),
            "baselines_from": baselines_from,
            **flat,
        },
    )


def _write_plots(
    report_dir: Path, info: dict, results: dict, test: DataFrame, rating_pred: DataFrame, k: int
) -> list[str]:
    try:  # seaborn and matplotlib come with the optional `evaluate` extra
        from movielens_als.ml import plots
    except ImportError as exc:
        log.warning("plots skipped (pip install 'movielens-als[evaluate]'): %s", exc)
        return []
    return plots.write_reports(report_dir, info, results, test, rating_pred, k)
