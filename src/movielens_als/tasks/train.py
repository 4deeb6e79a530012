"""Tune on the validation split (or reuse the champion's choice), refit on train + validation, save a run's models.

Rating model: :mod:`rating_model` (bias baseline + residual ALS, blended with the ranking score and a knn feature).
Ranking model: :mod:`ranking_model` (implicit ALS). Hyperparameters and blend weights are chosen on ``validation``
by :mod:`tuning`, never on ``test``; :mod:`retune` decides whether this run searches at all (``--tune``).

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
from dataclasses import dataclass
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
from movielens_als.ml import registry, retune
from movielens_als.ml.factors import Factors
from movielens_als.ml.grid import grid_points, parse_grid
from movielens_als.ml.knn import fit_knn
from movielens_als.ml.models import TRAINING_RUNS, RunModels, validate_run_id
from movielens_als.ml.ranking_model import fit_ranking_model
from movielens_als.ml.rating_model import Blend, RatingModel, fit_rating_model
from movielens_als.ml.registry import RANKING_MODEL, RATING_MODEL, RECOMMENDER_MODEL
from movielens_als.ml.retune import Tuned
from movielens_als.ml.splitting import read_splits, tuning_frames
from movielens_als.ml.tuning import RANKING_PARAMS, RATING_STAGES, tune_blend, tune_ranking, tune_rating
from movielens_als.processes import alive as owner_alive
from movielens_als.processes import owner_tag
from movielens_als.progress import Progress
from movielens_als.result import TaskResult
from movielens_als.serving.artifacts import recommender_params, save_recommender
from movielens_als.serving.model import SIGNATURE as RECOMMENDER_SIGNATURE
from movielens_als.serving.model import RecommenderPyfunc

log = logging.getLogger(__name__)
REFITS = 3  # rating and ranking on train + validation, ranking on every rating


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


@dataclass(frozen=True)
class Chosen:
    """The hyperparameters a run fits with: both models', the blend's, and the validation scores behind them."""

    rating: dict  # with the neighbour feature (knn_k, knn_power)
    ranking: dict
    blend: Blend
    scores: list[dict]  # every grid point's; empty when an earlier run's choice is reused

    def validation(self, k: int) -> dict[str, float]:
        """The chosen points' validation scores (none when reused): the rating model's RMSE-best ALS point and
        the ranking point :func:`choose_ranking` took."""
        als = [s for s in self.scores if s.get("stage") == "als"]
        ranking = [s for s in self.scores if s["model"] == "ranking" and s["params"] == self.ranking]
        out = {}
        if als:
            best = min(als, key=lambda s: s["rmse"])
            out |= {"validation_rmse": best["rmse"], "validation_mae": best["mae"]}
        if ranking:
            out[f"validation_ndcg_at_{k}"] = ranking[0]["ndcg_at_k"]
        return out


def search(
    fit: DataFrame,
    validation: DataFrame,
    grid: dict,
    on_fit: Callable[[str], None],
    timed: Callable[[str, float], None],
) -> Chosen:
    """The validation search of both models and the blend."""
    seed, k = grid["seed"], grid["k"]
    t = time.monotonic()
    rating_params, rating_scores, (fit_baseline, fit_rating) = tune_rating(
        fit, validation, grid["rating"], seed, on_fit
    )
    timed("tune_rating", t)
    t = time.monotonic()
    ranking_params, ranking_scores, fit_ranking = tune_ranking(fit, validation, grid["ranking"], k, seed, on_fit)
    timed("tune_ranking", t)
    t = time.monotonic()
    knn_params, blend, blend_scores = tune_blend(fit, validation, grid["rating"], fit_baseline, fit_rating, fit_ranking)
    timed("blend", t)
    return Chosen({**rating_params, **knn_params}, ranking_params, blend, rating_scores + blend_scores + ranking_scores)


def reused(tuned: Tuned) -> Chosen:
    """The hyperparameters an earlier run's search chose."""
    rating = {n: v for n, v in tuned.rating.items() if n != "blend"}
    return Chosen(rating, dict(tuned.ranking), Blend(**tuned.rating.get("blend", {})), [])


def train(
    spark: SparkSession,
    namespace: Namespace,
    storage: Path,
    protocol: str = DEFAULTS.protocol,
    run_id: str | None = None,
    grid: str | dict | None = DEFAULTS.grid,
    tune: str = DEFAULTS.tune,
    retune_fraction: float = DEFAULTS.retune_fraction,
) -> TaskResult:
    """Tune both models on validation (or reuse the champion's choice, see :mod:`retune`), refit them, save them and
    log ``training_runs``."""
    grid = parse_grid(grid)
    if (
        isinstance(retune_fraction, bool)
        or not isinstance(retune_fraction, (int, float))
        or not 0 <= retune_fraction <= 1
    ):
        raise MovieLensAlsError(f"--retune-fraction must be a fraction between 0 and 1, got {retune_fraction!r}")
    run_id = validate_run_id(run_id) if run_id is not None else new_run_id()
    splits_df = read_splits(spark, namespace, protocol)
    _claim_run(spark, namespace, run_id)
    ensure_checkpoint_dir(spark, Path(storage))
    seed = grid["seed"]
    ratings_version = splits_df.select(F.max("ratings_version")).first()[0]
    plan = retune.decide(
        tune,
        retune.champion_tuning(spark, namespace) if tune != "always" else None,
        protocol,
        grid,
        retune.changed_fraction_fn(spark, namespace, ratings_version),
        retune_fraction,
    )
    log.info("train %s: %s", run_id, plan.reason)
    row: dict[str, Any] = {
        "run_id": run_id,
        "protocol": protocol,
        "status": "running",
        "params": json.dumps(grid, sort_keys=True),
        "ratings_version": ratings_version,
        "tuned_by": run_id if plan.tune else plan.reuse.run_id,
        "tuning": plan.reason,
        "started_at": utc_now(),
        "owner": owner_tag(),
    }
    _write_run(spark, namespace, row)
    timings: dict[str, float] = {}

    def timed(step: str, started: float) -> None:
        timings[step] = round(time.monotonic() - started, 2)

    progress = Progress("train")
    total = REFITS
    if plan.tune:
        total += sum(len(grid_points(grid["rating"], names)) for names in RATING_STAGES)
        total += len(grid_points(grid["ranking"], RANKING_PARAMS))
    fits = itertools.count(1)

    def on_fit(what: str) -> None:
        progress.update(f"{what}: fit {next(fits)} of {total}")

    try:
        splits_df = splits_df.select(USER, ITEM, RATING, SPLIT).cache()
        fit, validation, full = tuning_frames(splits_df)
        if plan.tune and validation.limit(1).count() == 0:
            raise MovieLensAlsError(f"the {protocol} split has no validation rows: too few ratings to tune")
        failpoint("train.tuning")
        chosen = search(fit, validation, grid, on_fit, timed) if plan.tune else reused(plan.reuse)
        rating_params, ranking_params = chosen.rating, chosen.ranking

        t = time.monotonic()
        on_fit("rating model on train + validation")
        baseline, rating_model = fit_rating_model(full, rating_params, seed)
        on_fit("ranking model on train + validation")
        # From scratch, not warm from the tuning fit: warm refits keep nDCG but cover less of the catalogue
        # (README, Results: "Warm refits").
        ranking_model = fit_ranking_model(full, ranking_params, seed)
        # The final model's residuals are of train + validation: the ratings it was refitted on.
        knn = fit_knn(baseline, full, ranking_model, rating_params["knn_k"], rating_params["knn_power"])
        timed("refit", t)
        t = time.monotonic()
        ratings_table = spark.read.option("versionAsOf", ratings_version).table(namespace.table("ratings"))
        every_rating = ratings_table.select(USER, ITEM, RATING)
        on_fit("serving model on every rating")
        serving_model = fit_ranking_model(every_rating, ranking_params, seed)
        timed("serving_refit", t)
        # Titles for the answers; a ratings table landed without its catalogue answers with ids only.
        movies = spark.table(namespace.table("movies")) if tables.table_exists(spark, namespace, "movies") else None

        def save_recommender_model(folder: Path) -> None:
            params = recommender_params(ranking_params, run_id)
            save_recommender(folder, serving_model, every_rating, movies, params, Path(storage) / "tmp" / run_id)

        t = time.monotonic()
        progress.update("logging and registering the three models in MLflow")
        rating_hyperparams = json.dumps({**rating_params, "blend": chosen.blend.as_dict()}, sort_keys=True)
        rating = RatingModel(baseline, rating_model, ranking_model, chosen.blend, knn)
        models = RunModels(run_id, 0, 0, ranking_model, rating)
        tags = {"movielens_als.run_id": run_id, "protocol": protocol, "ratings_version": str(ratings_version)}
        tags |= {"movielens_als.tuned_by": row["tuned_by"]}
        tracked = _track(
            namespace, run_id, grid, chosen, plan.reason, tags, timings, models, serving_model, full,
            save_recommender_model, Path(storage) / "tmp" / run_id,
        )  # fmt: skip
        timed("log_models", t)
        failpoint("train.logged")
        row.update(
            status="succeeded",
            rating_hyperparams=rating_hyperparams,
            ranking_hyperparams=json.dumps(ranking_params, sort_keys=True),
            finished_at=utc_now(),
            timings=json.dumps(timings),
            validation_metrics=json.dumps(chosen.scores),
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
    validation = chosen.validation(grid["k"])
    return TaskResult(
        "train",
        rows={TRAINING_RUNS.name: 1},
        details={
            "run_id": run_id,
            "protocol": protocol,
            "tuning": plan.reason,
            "grid_points": len(chosen.scores),
            **{name.replace("_at_", "@"): round(v, 4) for name, v in validation.items() if "mae" not in name},
            "rating_hyperparams": row["rating_hyperparams"],
            "ranking_hyperparams": row["ranking_hyperparams"],
            "seconds": round(sum(timings.values()), 1),
        },
        headline=f"tuning: {plan.reason}",
    )


def _track(
    namespace: Namespace,
    run_id: str,
    grid: dict,
    chosen: Chosen,
    tuning: str,
    tags: dict[str, str],
    timings: dict,
    models: RunModels,
    serving: Factors,
    rows: DataFrame,
    save_recommender_model: Callable[[Path], None],
    scratch: Path,
) -> dict[str, Any]:
    """One MLflow run: parameters, validation scores, timings and the three models, registered as challengers
    (``serving``: the ranking model refitted on every rating, saved beside ``models.ranking``).

    ``scratch``: a folder Spark may stage ratings-sized files in (the rating model's residuals)."""
    example = rows.select(USER, ITEM).limit(5).toArrow().to_pandas().astype("int64")
    with registry.tracked_run(f"movielens-als-{run_id}", tags | {"movielens_als.tuning": tuning}) as run:
        mlflow.log_params({f"rating.{n}": v for n, v in chosen.rating.items()})
        mlflow.log_params({f"rating.blend.{n}": v for n, v in chosen.blend.as_dict().items()})
        mlflow.log_params({f"ranking.{n}": v for n, v in chosen.ranking.items()})
        mlflow.log_dict(grid, "grid.json")
        mlflow.log_dict(chosen.scores, "validation_scores.json")
        mlflow.log_metrics(chosen.validation(grid["k"]) | {f"seconds_{step}": s for step, s in timings.items()})

        def save_ranking(folder: Path) -> None:
            models.ranking.save(folder / "evaluation")
            serving.save(folder / "serving")

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
