"""Tune on the validation split, refit on train + validation, save the models of a run.

Rating model: :mod:`rating_model` (bias baseline + residual ALS, blended with the ranking score and a knn feature).
Ranking model: :mod:`ranking_model` (implicit ALS). Hyperparameters and blend weights are chosen
on ``validation`` (carved from train by ``split``), never on ``test``: the rating model by RMSE,
the ranking model by nDCG@k over the same blocked top-k that serves. The bias regularisers are
chosen first (baseline RMSE), then the residual ALS grid with them.

Both models are refitted on train + validation, which ``evaluate`` scores on the protocol's test
split, and the ranking model once more on every rating with the same hyperparameters, which
``recommend`` serves: test rows are held out to measure, not withheld from users. The run is
tracked in MLflow and the models registered as ``challenger`` versions (:mod:`registry`).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import movielens_als
from movielens_als import interrupt
from movielens_als.columns import ITEM, RATING, SPLIT, USER
from movielens_als.config import TRAIN as DEFAULTS
from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.faults import failpoint
from movielens_als.ids import new_run_id, utc_now
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import ensure_checkpoint_dir
from movielens_als.ml import registry
from movielens_als.ml.factors import Factors
from movielens_als.ml.grid import grid_points, parse_grid
from movielens_als.ml.metrics import coverage_novelty_fn, ranking_metrics_fn, rating_metrics_fn
from movielens_als.ml.models import TRAINING_RUNS, RunModels, validate_run_id
from movielens_als.ml.ranking_model import fit_ranking_model, model_top_k
from movielens_als.ml.rating_model import (
    BiasBaseline,
    Blend,
    RatingModel,
    blend_features_fn,
    blend_weights_fn,
    blended_fn,
    fit_bias_baseline,
    fit_knn,
    fit_rating_model,
    predict_ratings_fn,
)
from movielens_als.ml.registry import RANKING_MODEL, RATING_MODEL, RECOMMENDER_MODEL
from movielens_als.ml.splitting import read_splits, tuning_frames
from movielens_als.processes import alive as owner_alive
from movielens_als.processes import owner_tag
from movielens_als.progress import Progress
from movielens_als.result import TaskResult
from movielens_als.serving.artifacts import recommender_params, save_recommender
from movielens_als.serving.model import SIGNATURE as RECOMMENDER_SIGNATURE
from movielens_als.serving.model import RecommenderPyfunc

log = logging.getLogger(__name__)
KNN_PARAMS = ["knn_k", "knn_power"]  # the rating model's neighbour feature, chosen with the blend
RATING_STAGES = (["reg_user", "reg_item"], ["rank", "reg_param", "max_iter", "passes"])
RANKING_PARAMS = ["rank", "reg_param", "alpha", "beta", "max_iter", "implicit_value"]
# Validation nDCG@10 differences below this are noise on ml-100k's 943 users (its standard error is about 0.005):
# among such near-ties the point covering more of the catalogue is chosen (issue 19: coverage must not fall).
NDCG_TIE = 0.002
REFITS = 3  # rating and ranking on train + validation, ranking on every rating


def tune_blend(
    fit: DataFrame,
    validation: DataFrame,
    grid: dict[str, list],
    baseline: BiasBaseline,
    model: Factors,
    implicit: Factors,
) -> tuple[dict, Blend, list[dict]]:
    """Choose the neighbour feature (``knn_k``, ``knn_power``) by the blend's RMSE on validation.

    In-sample (the weights are fitted on validation too), as issue 19's research chose them: four weights
    and a few points against every validation row. Returns the best point, its blend and every point's scores.
    """
    scores: list[dict] = []
    best, best_rmse, best_blend = None, float("inf"), None
    for point in grid_points(grid, KNN_PARAMS):
        knn = fit_knn(baseline, fit, implicit, point["knn_k"], point["knn_power"])
        # Weights and scores read the same features: the knn join over validation runs once per point.
        features = blend_features_fn(baseline, model, validation.select(USER, ITEM, RATING), implicit, knn).cache()
        blend = blend_weights_fn(features)
        m = rating_metrics_fn(blended_fn(features, blend, baseline))
        features.unpersist()
        params = {**point, **blend.as_dict()}
        scores.append({"model": "rating", "stage": "blend", "params": params, "rmse": m["rmse"], "mae": m["mae"]})
        log.info("rating blend %s: validation rmse %.4f (in-sample)", params, m["rmse"])
        if m["rmse"] < best_rmse:
            best, best_rmse, best_blend = point, m["rmse"], blend
    return best, best_blend, scores


def tune_rating(
    fit: DataFrame,
    validation: DataFrame,
    grid: dict[str, list],
    seed: int,
    on_fit: Callable[[str], None] = lambda _: None,
) -> tuple[dict, list[dict], tuple[BiasBaseline, Factors]]:
    """Choose bias regularisers by baseline RMSE, then the residual ALS by RMSE.

    Returns the best parameters, every point's scores and the best (baseline, model) fitted on ``fit``.
    """
    scores: list[dict] = []
    best_bias, best_rmse, first_pass = None, float("inf"), None
    bias_points = grid_points(grid, ["reg_user", "reg_item"])
    for i, point in enumerate(bias_points, 1):
        on_fit(f"bias grid point {i} of {len(bias_points)}")
        baseline = fit_bias_baseline(fit, point["reg_user"], point["reg_item"])
        m = rating_metrics_fn(predict_ratings_fn(baseline, None, validation))
        scores.append({"model": "rating", "stage": "bias", "params": point, "rmse": m["rmse"], "mae": m["mae"]})
        if m["rmse"] < best_rmse:
            best_bias, best_rmse, first_pass = point, m["rmse"], baseline
    best, best_rmse, best_fitted = None, float("inf"), None
    als_points = grid_points(grid, ["rank", "reg_param", "max_iter", "passes"])
    for i, point in enumerate(als_points, 1):
        on_fit(f"rating grid point {i} of {len(als_points)}")
        params = {**best_bias, **point}
        started = time.monotonic()
        baseline, model = fit_rating_model(fit, params, seed, first_pass)
        m = rating_metrics_fn(predict_ratings_fn(baseline, model, validation))
        scores.append(
            {
                "model": "rating",
                "stage": "als",
                "params": params,
                "rmse": m["rmse"],
                "mae": m["mae"],
                "seconds": round(time.monotonic() - started, 2),
            }
        )
        log.info("rating %s: validation rmse %.4f", params, m["rmse"])
        if m["rmse"] < best_rmse:
            best, best_rmse, best_fitted = params, m["rmse"], (baseline, model)
    return best, scores, best_fitted


def tune_ranking(
    fit: DataFrame,
    validation: DataFrame,
    grid: dict[str, list],
    k: int,
    seed: int,
    on_fit: Callable[[str], None] = lambda _: None,
) -> tuple[dict, list[dict], Factors]:
    """Choose the implicit ALS by validation nDCG@k, and among the points within ``NDCG_TIE`` of the best the one
    whose lists cover most of the catalogue; return (chosen, all scores, chosen model fitted on ``fit``)."""
    scores: list[dict] = []
    fitted: list[Factors] = []
    users = validation.select(USER).distinct()
    points = grid_points(grid, RANKING_PARAMS)
    for i, params in enumerate(points, 1):
        on_fit(f"ranking grid point {i} of {len(points)}")
        started = time.monotonic()
        model = fit_ranking_model(fit, params, seed)
        top = model_top_k(model, users, fit, k).cache()
        m = ranking_metrics_fn(top, validation, k) | coverage_novelty_fn(fit, top)
        top.unpersist()
        scores.append(
            {
                "model": "ranking",
                "params": params,
                **{n: m[n] for n in ("ndcg_at_k", "precision_at_k", "recall_at_k", "map", "map_at_k")},
                **{n: m[n] for n in ("catalog_coverage", "novelty")},
                "k": k,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
        fitted.append(model)
        log.info("ranking %s: validation ndcg@%d %.4f", params, k, m["ndcg_at_k"])
    return choose_ranking(scores, fitted)


def choose_ranking(scores: list[dict], fitted: list) -> tuple[dict, list[dict], Factors]:
    """(params, scores, model) of the grid point chosen: most catalogue coverage within ``NDCG_TIE`` of the best."""
    best = max(s["ndcg_at_k"] for s in scores)
    tied = [i for i, s in enumerate(scores) if s["ndcg_at_k"] >= best - NDCG_TIE]
    chosen = max(tied, key=lambda i: (scores[i]["catalog_coverage"], scores[i]["ndcg_at_k"]))
    return scores[chosen]["params"], scores, fitted[chosen]


def _write_run(spark: SparkSession, namespace: Namespace, row: dict[str, Any]) -> None:
    values = {c.name: row.get(c.name) for c in TRAINING_RUNS.columns}
    df = spark.createDataFrame([values], schema=TRAINING_RUNS.schema_ddl)
    tables.replace_where(spark, namespace, TRAINING_RUNS, df, F.col("run_id") == row["run_id"])


def _claim_run(spark: SparkSession, namespace: Namespace, run_id: str) -> None:
    """Check ``run_id`` may be trained, and mark ``running`` rows of dead processes failed, with the reason.

    A failed or killed attempt of the same run id (a job task retry) is trained again and its row
    replaced; a succeeded one, or one whose process still runs on this host, is an error. Rows of
    other hosts' processes are left alone unless they are this run id's.
    """
    if not tables.table_exists(spark, namespace, TRAINING_RUNS.name):
        return
    name = tables.ensure_table(spark, namespace, TRAINING_RUNS)  # adds `owner` to an older table
    running = spark.table(name).where((F.col("status") == "running") | (F.col("run_id") == run_id))
    rows = [
        (r.run_id, r.status, r.owner, owner_alive(r.owner))
        for r in running.select("run_id", "status", "owner").collect()
    ]
    for rid, status, owner, alive in rows:
        if rid == run_id and (status == "succeeded" or (status == "running" and alive)):
            state = "already exists" if status == "succeeded" else f"is being trained by {owner}"
            raise MovieLensAlsError(f"training run {run_id!r} {state} in {namespace}: pick another --run-id")
    dead = [rid for rid, status, _, alive in rows if status == "running" and (rid == run_id or alive is False)]
    if not dead:
        return
    ids = {f"id{i}": d for i, d in enumerate(dead)}
    spark.sql(
        f"UPDATE {name} SET status = 'failed', finished_at = :now, "
        "error = concat('process ', coalesce(owner, '?'), ' stopped while training (found by run ', :by, ')') "
        f"WHERE status = 'running' AND run_id IN ({', '.join(':' + k for k in ids)})",
        args={"now": utc_now(), "by": run_id, **ids},
    )
    registry.fail_runs(dead)


def train(
    spark: SparkSession,
    namespace: Namespace,
    storage: Path,
    protocol: str = DEFAULTS.protocol,
    run_id: str | None = None,
    grid: str | dict | None = DEFAULTS.grid,
) -> TaskResult:
    """Tune both models on validation, refit them, save them and log ``training_runs``."""
    grid = parse_grid(grid)
    run_id = validate_run_id(run_id) if run_id is not None else new_run_id()
    splits_df = read_splits(spark, namespace, protocol)
    _claim_run(spark, namespace, run_id)
    ensure_checkpoint_dir(spark, Path(storage))
    seed, k = grid["seed"], grid["k"]
    ratings_version = splits_df.select(F.max("ratings_version")).first()[0]
    row: dict[str, Any] = {
        "run_id": run_id,
        "protocol": protocol,
        "status": "running",
        "params": json.dumps(grid, sort_keys=True),
        "ratings_version": ratings_version,
        "started_at": utc_now(),
        "owner": owner_tag(),
    }
    _write_run(spark, namespace, row)
    timings: dict[str, float] = {}

    def timed(step: str, started: float) -> None:
        timings[step] = round(time.monotonic() - started, 2)

    progress = Progress("train")
    total = sum(len(grid_points(grid["rating"], names)) for names in RATING_STAGES)
    total += len(grid_points(grid["ranking"], RANKING_PARAMS)) + REFITS
    fits = itertools.count(1)

    def on_fit(what: str) -> None:
        progress.update(f"{what}: fit {next(fits)} of {total}")

    try:
        splits_df = splits_df.select(USER, ITEM, RATING, SPLIT).cache()
        fit, validation, full = tuning_frames(splits_df)
        if validation.limit(1).count() == 0:
            raise MovieLensAlsError(f"the {protocol} split has no validation rows: too few ratings to tune")

        t = time.monotonic()
        failpoint("train.tuning")
        rating_params, rating_scores, (fit_baseline, fit_rating) = tune_rating(
            fit, validation, grid["rating"], seed, on_fit
        )
        timed("tune_rating", t)
        t = time.monotonic()
        ranking_params, ranking_scores, fit_ranking = tune_ranking(fit, validation, grid["ranking"], k, seed, on_fit)
        timed("tune_ranking", t)
        t = time.monotonic()
        knn_params, blend, blend_scores = tune_blend(
            fit, validation, grid["rating"], fit_baseline, fit_rating, fit_ranking
        )
        rating_params = {**rating_params, **knn_params}
        rating_scores += blend_scores
        timed("blend", t)

        t = time.monotonic()
        on_fit("rating model on train + validation")
        baseline, rating_model = fit_rating_model(full, rating_params, seed)
        on_fit("ranking model on train + validation")
        ranking_model = fit_ranking_model(full, ranking_params, seed)
        # The final model's residuals are of train + validation: the ratings it was refitted on.
        knn = fit_knn(baseline, full, ranking_model, rating_params["knn_k"], rating_params["knn_power"])
        timed("refit", t)
        t = time.monotonic()
        every_rating = spark.read.option("versionAsOf", ratings_version).table(namespace.table("ratings"))
        on_fit("serving model on every rating")
        serving_model = fit_ranking_model(every_rating.select(USER, ITEM, RATING), ranking_params, seed)
        timed("serving_refit", t)
        # Titles for the answers; a ratings table landed without its catalogue answers with ids only.
        movies = spark.table(namespace.table("movies")) if tables.table_exists(spark, namespace, "movies") else None

        def save_recommender_model(folder: Path) -> None:
            params = recommender_params(ranking_params, run_id)
            ratings = every_rating.select(USER, ITEM, RATING)
            save_recommender(folder, serving_model, ratings, movies, params, Path(storage) / "tmp" / run_id)

        t = time.monotonic()
        progress.update("logging and registering the three models in MLflow")
        rating_hyperparams = json.dumps({**rating_params, "blend": blend.as_dict()}, sort_keys=True)
        scores = rating_scores + ranking_scores
        models = RunModels(
            run_id, 0, 0, ranking_model, serving_model, RatingModel(baseline, rating_model, ranking_model, blend, knn)
        )
        tracked = _track(
            namespace,
            run_id,
            protocol,
            ratings_version,
            grid,
            rating_params,
            ranking_params,
            blend,
            scores,
            timings,
            models,
            full,
            save_recommender_model,
            Path(storage) / "tmp" / run_id,
        )
        timed("log_models", t)
        failpoint("train.logged")
        row.update(
            status="succeeded",
            rating_hyperparams=rating_hyperparams,
            ranking_hyperparams=json.dumps(ranking_params, sort_keys=True),
            finished_at=utc_now(),
            timings=json.dumps(timings),
            validation_metrics=json.dumps(scores),
            **tracked,
        )
        _write_run(spark, namespace, row)
    except BaseException as exc:
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) or interrupt.requested() else first_line(exc)
        row.update(status="failed", finished_at=utc_now(), timings=json.dumps(timings), error=error[:2000])
        _write_run(spark, namespace, row)
        raise
    finally:
        progress.close()
        splits_df.unpersist()
    best_rating = min((s for s in rating_scores if s.get("stage") == "als"), key=lambda s: s["rmse"])
    best_ranking = max(ranking_scores, key=lambda s: s["ndcg_at_k"])
    return TaskResult(
        "train",
        rows={TRAINING_RUNS.name: 1},
        details={
            "run_id": run_id,
            "protocol": protocol,
            "grid_points": len(scores),
            "validation_rmse": round(best_rating["rmse"], 4),
            f"validation_ndcg@{k}": round(best_ranking["ndcg_at_k"], 4),
            "rating_hyperparams": row["rating_hyperparams"],
            "ranking_hyperparams": row["ranking_hyperparams"],
            "seconds": round(sum(timings.values()), 1),
        },
    )


def _track(
    namespace: Namespace,
    run_id: str,
    protocol: str,
    ratings_version: int,
    grid: dict,
    rating_params: dict,
    ranking_params: dict,
    blend: Blend,
    scores: list[dict],
    timings: dict,
    models: RunModels,
    rows: DataFrame,
    save_recommender_model: Callable[[Path], None],
    scratch: Path,
) -> dict[str, Any]:
    """One MLflow run: parameters, validation scores, timings and the three models, registered as challengers.

    ``scratch``: a folder Spark may stage ratings-sized files in (the rating model's residuals)."""
    best_rating = min((s for s in scores if s.get("stage") == "als"), key=lambda s: s["rmse"])
    best_ranking = max((s for s in scores if s["model"] == "ranking"), key=lambda s: s["ndcg_at_k"])
    tags = {"movielens_als.run_id": run_id, "protocol": protocol, "ratings_version": str(ratings_version)}
    example = rows.select(USER, ITEM).limit(5).toArrow().to_pandas().astype("int64")
    with registry.tracked_run(f"movielens-als-{run_id}", tags) as run:
        mlflow.log_params({f"rating.{n}": v for n, v in rating_params.items()})
        mlflow.log_params({f"rating.blend.{n}": v for n, v in blend.as_dict().items()})
        mlflow.log_params({f"ranking.{n}": v for n, v in ranking_params.items()})
        mlflow.log_dict(grid, "grid.json")
        mlflow.log_dict(scores, "validation_scores.json")
        mlflow.log_metrics(
            {
                "validation_rmse": best_rating["rmse"],
                "validation_mae": best_rating["mae"],
                f"validation_ndcg_at_{grid['k']}": best_ranking["ndcg_at_k"],
                **{f"seconds_{step}": s for step, s in timings.items()},
            }
        )

        def save_ranking(folder: Path) -> None:
            models.ranking.save(folder / "evaluation")
            models.serving.save(folder / "serving")

        ranking_version = registry.log_model(namespace, RANKING_MODEL, save_ranking, example)
        failpoint("train.logging")
        rating_version = registry.log_model(
            namespace, RATING_MODEL, lambda folder: models.rating.save(folder, scratch), example
        )
        request = pd.DataFrame({"user_id": [int(example[USER].iloc[0])], "n": [10]})
        recommender_version = registry.log_model(
            namespace, RECOMMENDER_MODEL, save_recommender_model, request, RecommenderPyfunc(), RECOMMENDER_SIGNATURE,
            code_paths=[str(Path(movielens_als.__file__).parent)],  # a serving endpoint has no wheel installed
        )  # fmt: skip
        versions = ((RANKING_MODEL, ranking_version), (RATING_MODEL, rating_version),
                    (RECOMMENDER_MODEL, recommender_version))  # fmt: skip
        for kind, version in versions:
            registry.tag_version(namespace, kind, version, tags)
    return {
        "mlflow_run_id": run.info.run_id,
        "ranking_model_version": ranking_version,
        "rating_model_version": rating_version,
        "recommender_model_version": recommender_version,
    }
