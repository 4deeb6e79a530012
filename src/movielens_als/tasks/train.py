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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from movielens_als.ids import new_run_id
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import ensure_checkpoint_dir
from movielens_als.ml import registry, retune
from movielens_als.ml.blend import Blend
from movielens_als.ml.factors import Factors
from movielens_als.ml.grid import grid_points, parse_grid
from movielens_als.ml.hyperparams import RankingParams, RatingParams
from movielens_als.ml.knn import fit_knn
from movielens_als.ml.models import TRAINING_RUNS, RunModels, validate_run_id
from movielens_als.ml.ranking_model import fit_ranking_model
from movielens_als.ml.rating_model import RatingModel, fit_rating_model
from movielens_als.ml.registry import RANKING_MODEL, RATING_MODEL, RECOMMENDER_MODEL
from movielens_als.ml.retune import Tuned
from movielens_als.ml.splitting import read_splits, tuning_frames
from movielens_als.ml.training_runs import RunRecord, claim_run
from movielens_als.ml.tuning import tune_blend, tune_ranking, tune_rating
from movielens_als.progress import Progress
from movielens_als.result import TaskResult
from movielens_als.serving.artifacts import recommender_params, save_recommender
from movielens_als.serving.model import SIGNATURE as RECOMMENDER_SIGNATURE
from movielens_als.serving.model import RecommenderPyfunc

log = logging.getLogger(__name__)
REFITS = 3  # rating and ranking on train + validation, ranking on every rating


@dataclass(frozen=True)
class Chosen:
    """The hyperparameters a run fits with: both models', the blend's, and the validation scores behind them."""

    rating: RatingParams
    ranking: RankingParams
    blend: Blend
    scores: list[dict]  # every grid point's; empty when an earlier run's choice is reused

    def validation(self, k: int) -> dict[str, float]:
        """The chosen points' validation scores (none when reused): the rating model's RMSE-best ALS point and
        the ranking point :func:`choose_ranking` took."""
        als = [s for s in self.scores if s.get("stage") == "als"]
        ranking = [s for s in self.scores if s["model"] == "ranking" and s["params"] == self.ranking.as_dict()]
        out = {}
        if als:
            best = min(als, key=lambda s: s["rmse"])
            out |= {"validation_rmse": best["rmse"], "validation_mae": best["mae"]}
        if ranking:
            out[f"validation_ndcg_at_{k}"] = ranking[0]["ndcg_at_k"]
        return out

    def recorded(self) -> dict[str, str]:
        """As ``training_runs`` holds them, from which a later run reuses them (:func:`retune.champion_tuning`)."""
        rating = self.rating.as_dict() | {"blend": self.blend.as_dict()}
        return {
            "rating_hyperparams": json.dumps(rating, sort_keys=True),
            "ranking_hyperparams": json.dumps(self.ranking.as_dict(), sort_keys=True),
        }


class Steps:
    """Train's named steps, each one's seconds (a step that fails is not timed), and progress fit by fit."""

    def __init__(self, fits: int):
        self.seconds: dict[str, float] = {}
        self.progress = Progress("train")
        self._fits, self._count = fits, itertools.count(1)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - started, 2)

    def fit(self, what: str) -> None:
        self.progress.update(f"{what}: fit {next(self._count)} of {self._fits}")


def search(fit: DataFrame, validation: DataFrame, grid: dict, steps: Steps) -> Chosen:
    """The validation search: the rating model, the ranking model, then the blend of both."""
    seed, k = grid["seed"], grid["k"]
    with steps.step("tune_rating"):
        rating, rating_scores, (baseline, model) = tune_rating(fit, validation, grid["rating"], seed, steps.fit)
    with steps.step("tune_ranking"):
        ranking, ranking_scores, implicit = tune_ranking(fit, validation, grid["ranking"], k, seed, steps.fit)
    with steps.step("blend"):
        rating, blend, blend_scores = tune_blend(fit, validation, grid["rating"], rating, baseline, model, implicit)
    return Chosen(rating, ranking, blend, rating_scores + blend_scores + ranking_scores)


def reused(tuned: Tuned) -> Chosen:
    """The hyperparameters an earlier run's search chose."""
    return Chosen(tuned.rating, tuned.ranking, tuned.blend, [])


def refit(full: DataFrame, chosen: Chosen, seed: int, steps: Steps) -> tuple[Factors, RatingModel]:
    """Both models on train + validation with the chosen hyperparameters: what ``evaluate`` scores on test."""
    steps.fit("rating model on train + validation")
    baseline, residual = fit_rating_model(full, chosen.rating, seed)
    steps.fit("ranking model on train + validation")
    # From scratch, not warm from the tuning fit: warm refits keep nDCG but cover less of the catalogue
    # (README, Results: "Warm refits").
    ranking = fit_ranking_model(full, chosen.ranking, seed)
    # The final model's residuals are of train + validation: the ratings it was refitted on.
    knn = fit_knn(baseline, full, ranking, chosen.rating.knn_k, chosen.rating.knn_power)
    return ranking, RatingModel(baseline, residual, ranking, chosen.blend, knn)


def fits_planned(grid: dict, plan: retune.Plan) -> int:
    searched = 0
    if plan.tune:
        searched += sum(len(grid_points(grid["rating"], names)) for names in (RatingParams.BIAS, RatingParams.ALS))
        searched += len(grid_points(grid["ranking"], RankingParams.names()))
    return searched + REFITS


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
    claim_run(spark, namespace, run_id)
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
    tuned_by = run_id if plan.tune else plan.reuse.run_id
    record = RunRecord(spark, namespace, run_id)
    record.start(
        protocol=protocol,
        params=json.dumps(grid, sort_keys=True),
        ratings_version=ratings_version,
        tuned_by=tuned_by,
        tuning=plan.reason,
    )
    steps = Steps(fits_planned(grid, plan))
    scratch = Path(storage) / "tmp" / run_id
    try:
        splits_df = splits_df.select(USER, ITEM, RATING, SPLIT).cache()
        fit, validation, full = tuning_frames(splits_df)
        if plan.tune and validation.limit(1).count() == 0:
            raise MovieLensAlsError(f"the {protocol} split has no validation rows: too few ratings to tune")
        failpoint("train.tuning")
        chosen = search(fit, validation, grid, steps) if plan.tune else reused(plan.reuse)
        log.info("train %s fits with %s", run_id, chosen.recorded())
        with steps.step("refit"):
            ranking_model, rating_model = refit(full, chosen, seed, steps)
        ratings_table = spark.read.option("versionAsOf", ratings_version).table(namespace.table("ratings"))
        every_rating = ratings_table.select(USER, ITEM, RATING)
        with steps.step("serving_refit"):
            steps.fit("serving model on every rating")
            serving_model = fit_ranking_model(every_rating, chosen.ranking, seed)
        # Titles for the answers; a ratings table landed without its catalogue answers with ids only.
        movies = spark.table(namespace.table("movies")) if tables.table_exists(spark, namespace, "movies") else None

        def save_recommender_model(folder: Path) -> None:
            params = recommender_params(chosen.ranking, run_id)
            save_recommender(folder, serving_model, every_rating, movies, params, scratch)

        with steps.step("log_models"):
            steps.progress.update("logging and registering the three models in MLflow")
            tags = {"movielens_als.run_id": run_id, "protocol": protocol, "ratings_version": str(ratings_version)}
            tracked = _track(
                namespace, run_id, grid, chosen, plan.reason, tags | {"movielens_als.tuned_by": tuned_by},
                steps.seconds, RunModels(run_id, 0, 0, ranking_model, rating_model), serving_model, full,
                save_recommender_model, scratch,
            )  # fmt: skip
        failpoint("train.logged")
        record.succeeded(
            **chosen.recorded(),
            timings=json.dumps(steps.seconds),
            validation_metrics=json.dumps(chosen.scores),
            **tracked,
        )
    except BaseException as exc:
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) or interrupt.requested() else first_line(exc)
        record.failed(error, timings=json.dumps(steps.seconds))
        raise
    finally:
        steps.progress.close()
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
            **chosen.recorded(),
            "seconds": round(sum(steps.seconds.values()), 1),
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
        mlflow.log_params({f"rating.{n}": v for n, v in chosen.rating.as_dict().items()})
        mlflow.log_params({f"rating.blend.{n}": v for n, v in chosen.blend.as_dict().items()})
        mlflow.log_params({f"ranking.{n}": v for n, v in chosen.ranking.as_dict().items()})
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
