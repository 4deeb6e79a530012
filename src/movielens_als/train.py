"""Tune on the validation split, refit on train + validation, save both ALS models of a run.

Rating model: a regularised baseline ``mu + b_user + b_item`` plus explicit ALS on its residuals
(the two refitted in turn ``passes`` times), blended with the ranking model's score and clipped to
the rating scale. Ranking model: implicit ALS (confidence ``1 + alpha * value``) for top-k.
Hyperparameters and blend weights are chosen on ``validation`` (carved from train by ``split``),
never on ``test``: the rating model by RMSE, the ranking model by nDCG@k.

Grid format (``--grid`` JSON; omitted keys keep the default grid's values)::

    {"rating":  {"reg_user": [3, 5], "reg_item": [3, 5], "rank": [50, 100],
                 "reg_param": [0.12, 0.15], "max_iter": [20], "passes": [1, 3]},
     "ranking": {"rank": [64, 128], "reg_param": [0.1, 0.3], "alpha": [0.3, 1.0],
                 "max_iter": [10], "implicit_value": ["one", "rating"]},
     "k": 10, "seed": 42}

The bias regularisers are chosen first (baseline RMSE), then the residual ALS grid with them.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als import tables
from movielens_als.errors import MovieLensAlsError
from movielens_als.metrics import ranking_metrics_fn, rating_metrics_fn, top_k_fn
from movielens_als.models import TRAINING_RUNS, model_dir, validate_run_id
from movielens_als.names import Namespace
from movielens_als.spark import ensure_checkpoint_dir
from movielens_als.splits import TRAIN, VALIDATION, read_splits
from movielens_als.task import TaskResult

log = logging.getLogger(__name__)

USER, ITEM, RATING = "user_id", "movie_id", "rating"

# Small enough for `make run` on ml-100k in a few minutes on 2 cores; holds the benchmark winners.
DEFAULT_GRID: dict[str, Any] = {
    "rating": {"reg_user": [3.0], "reg_item": [3.0], "rank": [50], "reg_param": [0.12], "max_iter": [20],
               "passes": [3]},
    "ranking": {"rank": [64], "reg_param": [0.3], "alpha": [0.3, 1.0], "max_iter": [10],
                "implicit_value": ["rating"]},
    "k": 10,
    "seed": 42,
}
_NUMERIC = {
    "rating": {"reg_user": float, "reg_item": float, "rank": int, "reg_param": float, "max_iter": int,
               "passes": int},
    "ranking": {"rank": int, "reg_param": float, "alpha": float, "max_iter": int},
}
IMPLICIT_VALUES = ("one", "rating")


# ---------------------------------------------------------------- grid


def parse_grid(grid: str | dict | None) -> dict[str, Any]:
    """The default grid overlaid with ``grid`` (JSON text or dict), validated; lists everywhere."""
    if grid is None or grid == "":
        user: dict = {}
    elif isinstance(grid, dict):
        user = grid
    else:
        try:
            user = json.loads(grid)
        except json.JSONDecodeError as exc:
            raise MovieLensAlsError(f"--grid is not valid JSON: {exc}") from None
    if not isinstance(user, dict):
        raise MovieLensAlsError("--grid must be a JSON object with keys rating, ranking, k, seed")
    unknown = set(user) - set(DEFAULT_GRID)
    if unknown:
        raise MovieLensAlsError(f"--grid: unknown keys {sorted(unknown)}; expected {sorted(DEFAULT_GRID)}")
    out: dict[str, Any] = {}
    for model, types in _NUMERIC.items():
        section = user.get(model, {})
        if not isinstance(section, dict):
            raise MovieLensAlsError(f"--grid: {model} must be an object of parameter lists")
        allowed = set(types) | ({"implicit_value"} if model == "ranking" else set())
        bad = set(section) - allowed
        if bad:
            raise MovieLensAlsError(f"--grid: unknown {model} parameters {sorted(bad)}; expected {sorted(allowed)}")
        merged = {}
        for name in sorted(allowed):
            values = section.get(name, DEFAULT_GRID[model][name])
            values = values if isinstance(values, list) else [values]
            if not values:
                raise MovieLensAlsError(f"--grid: {model}.{name} is an empty list")
            merged[name] = [_check_value(model, name, v) for v in values]
        out[model] = merged
    for name in ("k", "seed"):
        value = user.get(name, DEFAULT_GRID[name])
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "k" else 0):
            raise MovieLensAlsError(f"--grid: {name} must be a {'positive' if name == 'k' else 'non-negative'} integer")
        out[name] = value
    return out


def _check_value(model: str, name: str, value: Any) -> Any:
    if name == "implicit_value":
        if value not in IMPLICIT_VALUES:
            raise MovieLensAlsError(f"--grid: ranking.implicit_value must be one of {IMPLICIT_VALUES}, got {value!r}")
        return value
    kind = _NUMERIC[model][name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise MovieLensAlsError(f"--grid: {model}.{name} values must be {kind.__name__}s, got {value!r}")
    value = kind(value)
    low = 1 if kind is int else 0
    if value < low:
        raise MovieLensAlsError(f"--grid: {model}.{name} must be >= {low}, got {value!r}")
    return value


def grid_points(section: dict[str, list], names: list[str]) -> list[dict[str, Any]]:
    """Cartesian product of the listed parameters, in a stable order."""
    return [dict(zip(names, combo)) for combo in itertools.product(*(section[n] for n in names))]


# ---------------------------------------------------------------- bias baseline


@dataclass
class BiasBaseline:
    """``mu + b_user + b_item``, each bias shrunk towards 0 by its regulariser; unknown ids get 0."""

    global_mean: float
    user_bias: DataFrame  # user_id, user_bias
    item_bias: DataFrame  # movie_id, item_bias
    rating_min: float
    rating_max: float

    def predict(self, df: DataFrame, out: str = "baseline") -> DataFrame:
        return (
            df.join(F.broadcast(self.user_bias), USER, "left")
            .join(F.broadcast(self.item_bias), ITEM, "left")
            .withColumn(out, F.lit(self.global_mean) + F.coalesce("user_bias", F.lit(0.0))
                        + F.coalesce("item_bias", F.lit(0.0)))
            .drop("user_bias", "item_bias")
        )

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.user_bias.write.mode("overwrite").parquet(str(path / "user_bias"))
        self.item_bias.write.mode("overwrite").parquet(str(path / "item_bias"))
        (path / "baseline.json").write_text(json.dumps(
            {"global_mean": self.global_mean, "rating_min": self.rating_min, "rating_max": self.rating_max}))

    @classmethod
    def load(cls, spark: SparkSession, path: Path) -> BiasBaseline:
        if not (path / "baseline.json").is_file():
            raise MovieLensAlsError(f"bias baseline missing at {path}")
        meta = json.loads((path / "baseline.json").read_text())
        return cls(meta["global_mean"], spark.read.parquet(str(path / "user_bias")),
                   spark.read.parquet(str(path / "item_bias")), meta["rating_min"], meta["rating_max"])


def fit_bias_baseline(df: DataFrame, reg_user: float, reg_item: float, iterations: int = 3,
                      offset: str | None = None) -> BiasBaseline:
    """Alternating regularised means (Koren 2008, eq. 2-3).

    ``b_item = sum(r - mu - b_user) / (n_item + reg_item)`` then
    ``b_user = sum(r - mu - b_item) / (n_user + reg_user)``, starting from ``b_user = 0``. With
    ``offset`` (a column of ``df``), the biases explain ``r - offset`` instead of ``r``.
    """
    target = F.col(RATING) - (F.col(offset) if offset else F.lit(0.0))
    stats = df.agg(F.avg(target).alias("mu"), F.min(RATING).alias("lo"), F.max(RATING).alias("hi")).first()
    if stats["mu"] is None:
        raise MovieLensAlsError("cannot fit a bias baseline on no ratings")
    mu = float(stats["mu"])
    base = df.select(USER, ITEM, target.alias("_target")).cache()
    user_bias = base.select(USER).distinct().withColumn("user_bias", F.lit(0.0))
    item_bias = None
    for _ in range(iterations):
        item_bias = (
            base.join(user_bias, USER).groupBy(ITEM)
            .agg((F.sum(F.col("_target") - mu - F.col("user_bias")) / (F.count(F.lit(1)) + reg_item)).alias("item_bias"))
        ).localCheckpoint()
        user_bias = (
            base.join(item_bias, ITEM).groupBy(USER)
            .agg((F.sum(F.col("_target") - mu - F.col("item_bias")) / (F.count(F.lit(1)) + reg_user)).alias("user_bias"))
        ).localCheckpoint()
    base.unpersist()
    return BiasBaseline(mu, user_bias, item_bias, float(stats["lo"]), float(stats["hi"]))


# ---------------------------------------------------------------- rating model


def fit_rating_model(df: DataFrame, params: dict[str, Any], seed: int,
                     baseline: BiasBaseline | None = None) -> tuple[BiasBaseline, ALSModel]:
    """Bias baseline, then explicit ALS on the residuals ``rating - baseline``.

    With ``passes`` > 1 the two are refitted in turn, biases on what the factors leave and factors
    on what the biases leave: block coordinate descent on ``mu + b_u + b_i + p_u.q_i``. Fitting
    them once each leaves the biases carrying signal the factors explain better (ml-100k: test
    RMSE 0.918 after one pass, 0.915 after four). ``baseline``: a first-pass baseline already fitted
    on ``df`` with these regularisers, reused to save its fit.
    """
    df = df.select(USER, ITEM, RATING)
    if baseline is None:
        baseline = fit_bias_baseline(df, params["reg_user"], params["reg_item"])
    als = ALS(rank=params["rank"], regParam=params["reg_param"], maxIter=params["max_iter"], implicitPrefs=False,
              userCol=USER, itemCol=ITEM, ratingCol="residual", seed=seed, coldStartStrategy="nan",
              checkpointInterval=5)
    model = None
    for _ in range(params.get("passes", 1)):
        if model is not None:
            factors = model.transform(df).select(USER, ITEM, RATING, F.col("prediction").alias("_factor"))
            baseline = fit_bias_baseline(factors.localCheckpoint(), params["reg_user"], params["reg_item"],
                                         offset="_factor")
        residuals = baseline.predict(df).withColumn("residual", F.col(RATING) - F.col("baseline"))
        model = als.fit(residuals.localCheckpoint())
    return baseline, model


@dataclass(frozen=True)
class Blend:
    """``prediction = intercept + explicit * (baseline + factors) + implicit * ranking score``.

    Which movies a user chose to rate says something about how they rate them (the insight behind
    Koren's SVD++); the implicit ranking model's score carries it. The weights are least squares
    on the validation split, shrunk towards the unblended model (0, 1, 0) by ``PRIOR_ROWS``
    pseudo-rows so a tiny validation split cannot produce wild weights.
    """

    intercept: float = 0.0
    explicit: float = 1.0
    implicit: float = 0.0

    PRIOR_ROWS = 100.0

    def as_dict(self) -> dict[str, float]:
        return {"intercept": self.intercept, "explicit": self.explicit, "implicit": self.implicit}

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "blend.json").write_text(json.dumps(self.as_dict()))

    @classmethod
    def load(cls, path: Path) -> Blend:
        """The blend saved at ``path``; none saved means the unblended model."""
        file = path / "blend.json"
        return cls(**json.loads(file.read_text())) if file.is_file() else cls()


def _clip(col, baseline: BiasBaseline):
    return F.least(F.greatest(col, F.lit(baseline.rating_min)), F.lit(baseline.rating_max))


def _blend_features(baseline: BiasBaseline, model: ALSModel | None, df: DataFrame,
                    implicit: ALSModel | None) -> DataFrame:
    """``df`` with ``_explicit`` (baseline + ALS residual) and ``_implicit`` (ranking score); 0 for unseen ids."""
    out = baseline.predict(df)
    residual = F.lit(0.0)
    if model is not None:
        out = model.transform(out).withColumnRenamed("prediction", "_residual")
        residual = F.coalesce(F.nanvl("_residual", F.lit(0.0)), F.lit(0.0))
    out = out.withColumn("_explicit", F.col("baseline") + residual)
    score = F.lit(0.0)
    if implicit is not None:
        out = implicit.transform(out).withColumnRenamed("prediction", "_score")
        score = F.coalesce(F.nanvl("_score", F.lit(0.0)), F.lit(0.0))
    return out.withColumn("_implicit", score.cast("double")).drop("baseline", "_residual", "_score")


def predict_ratings_fn(baseline: BiasBaseline, model: ALSModel | None, df: DataFrame,
                       implicit: ALSModel | None = None, blend: Blend | None = None) -> DataFrame:
    """``df`` with ``prediction``: baseline + ALS residual (0 for unseen ids), blended with the implicit
    model's score when both ``implicit`` and ``blend`` are given, clipped to the rating scale."""
    blend = blend if implicit is not None and blend is not None else Blend()
    out = _blend_features(baseline, model, df, implicit if blend.implicit else None)
    pred = F.lit(blend.intercept) + F.lit(blend.explicit) * F.col("_explicit") + F.lit(blend.implicit) * F.col("_implicit")
    return out.withColumn("prediction", _clip(pred, baseline).cast("double")).drop("_explicit", "_implicit")


def blend_weights_fn(df: DataFrame, explicit: str = "_explicit", implicit: str = "_implicit",
                     label: str = RATING) -> Blend:
    """Least squares of ``label`` on (1, ``explicit``, ``implicit``), shrunk towards (0, 1, 0)."""
    import numpy as np

    x = [F.lit(1.0), F.col(explicit), F.col(implicit)]
    # The normal equations need only X'X and X'y: six and three sums, whatever the row count.
    sums = df.agg(*[F.sum(a * b).alias(f"xx{i}{j}") for i, a in enumerate(x) for j, b in enumerate(x) if j >= i],
                  *[F.sum(a * F.col(label)).alias(f"xy{i}") for i, a in enumerate(x)]).first()
    if sums["xx00"] is None:
        return Blend()
    xtx = np.array([[sums[f"xx{min(i, j)}{max(i, j)}"] for j in range(3)] for i in range(3)], dtype=float)
    xty = np.array([sums[f"xy{i}"] for i in range(3)], dtype=float)
    lam = Blend.PRIOR_ROWS
    w = np.linalg.solve(xtx + lam * np.eye(3), xty + lam * np.array([0.0, 1.0, 0.0]))
    return Blend(*(float(v) for v in w))


def fit_blend(baseline: BiasBaseline, model: ALSModel, implicit: ALSModel, validation: DataFrame) -> Blend:
    """Blend weights of the rating and ranking models fitted on ``fit``, from ``validation``."""
    return blend_weights_fn(_blend_features(baseline, model, validation.select(USER, ITEM, RATING), implicit))


# ---------------------------------------------------------------- ranking model


def implicit_frame(df: DataFrame, implicit_value: str) -> DataFrame:
    """(user, item, value) for implicit ALS: value 1 per rating, or the rating itself."""
    value = F.lit(1.0) if implicit_value == "one" else F.col(RATING).cast("double")
    return df.select(USER, ITEM, value.alias("value"))


def fit_ranking_model(df: DataFrame, params: dict[str, Any], seed: int) -> ALSModel:
    """Implicit ALS: preference 1 for rated items, confidence ``1 + alpha * value``."""
    als = ALS(rank=params["rank"], regParam=params["reg_param"], alpha=params["alpha"], maxIter=params["max_iter"],
              implicitPrefs=True, userCol=USER, itemCol=ITEM, ratingCol="value", seed=seed,
              coldStartStrategy="drop", checkpointInterval=5)
    return als.fit(implicit_frame(df, params["implicit_value"]))


def recommend_top_k(model: ALSModel, users: DataFrame, seen: DataFrame, k: int) -> DataFrame:
    """Top-k unseen items per user: (user_id, movie_id, prediction, rank).

    ALS cannot exclude items while ranking, so each user's list is over-fetched by the most items
    any of these users has already rated, which leaves at least k unseen items once seen ones are
    removed. recommendForUserSubset scores only these users against the item factors in blocks;
    no users x items table is ever built.
    """
    users = users.select(USER).distinct()
    seen = seen.select(USER, ITEM).distinct()
    n_items = model.itemFactors.count()
    max_seen = seen.join(users, USER).groupBy(USER).count().agg(F.max("count")).first()[0] or 0
    fetch = int(min(n_items, k + max_seen))
    recs = model.recommendForUserSubset(users, fetch).select(USER, F.explode("recommendations").alias("r"))
    scored = recs.select(USER, F.col(f"r.{ITEM}").alias(ITEM), F.col("r.rating").cast("double").alias("prediction"))
    unseen = scored.join(seen, [USER, ITEM], "left_anti")
    return top_k_fn(unseen, k)


# ---------------------------------------------------------------- tuning


def tune_rating(fit: DataFrame, validation: DataFrame, grid: dict[str, list],
                seed: int) -> tuple[dict, list[dict], tuple[BiasBaseline, ALSModel]]:
    """Choose bias regularisers by baseline RMSE, then the residual ALS by RMSE.

    Returns the best parameters, every point's scores and the best (baseline, model) fitted on ``fit``.
    """
    scores: list[dict] = []
    best_bias, best_rmse, first_pass = None, float("inf"), None
    for point in grid_points(grid, ["reg_user", "reg_item"]):
        baseline = fit_bias_baseline(fit, point["reg_user"], point["reg_item"])
        m = rating_metrics_fn(predict_ratings_fn(baseline, None, validation))
        scores.append({"model": "rating", "stage": "bias", "params": point, "rmse": m["rmse"], "mae": m["mae"]})
        if m["rmse"] < best_rmse:
            best_bias, best_rmse, first_pass = point, m["rmse"], baseline
    best, best_rmse, best_fitted = None, float("inf"), None
    for point in grid_points(grid, ["rank", "reg_param", "max_iter", "passes"]):
        params = {**best_bias, **point}
        started = time.monotonic()
        baseline, model = fit_rating_model(fit, params, seed, first_pass)
        m = rating_metrics_fn(predict_ratings_fn(baseline, model, validation))
        scores.append({"model": "rating", "stage": "als", "params": params, "rmse": m["rmse"], "mae": m["mae"],
                       "seconds": round(time.monotonic() - started, 2)})
        log.info("rating %s: validation rmse %.4f", params, m["rmse"])
        if m["rmse"] < best_rmse:
            best, best_rmse, best_fitted = params, m["rmse"], (baseline, model)
    return best, scores, best_fitted


def tune_ranking(fit: DataFrame, validation: DataFrame, grid: dict[str, list], k: int,
                 seed: int) -> tuple[dict, list[dict], ALSModel]:
    """Choose the implicit ALS by validation nDCG@k; return (best, all scores, best model fitted on ``fit``)."""
    scores: list[dict] = []
    best, best_ndcg, best_model = None, -1.0, None
    users = validation.select(USER).distinct()
    for params in grid_points(grid, ["rank", "reg_param", "alpha", "max_iter", "implicit_value"]):
        started = time.monotonic()
        model = fit_ranking_model(fit, params, seed)
        m = ranking_metrics_fn(recommend_top_k(model, users, fit, k), validation, k)
        scores.append({"model": "ranking", "params": params, **{n: m[n] for n in (
            "ndcg_at_k", "precision_at_k", "recall_at_k", "map", "map_at_k")}, "k": k,
            "seconds": round(time.monotonic() - started, 2)})
        log.info("ranking %s: validation ndcg@%d %.4f", params, k, m["ndcg_at_k"])
        if m["ndcg_at_k"] > best_ndcg:
            best, best_ndcg, best_model = params, m["ndcg_at_k"], model
    return best, scores, best_model


def tuning_frames(splits_df: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(fit, validation, full train) from one protocol's splits; test rows are dropped here, before tuning."""
    cols = [USER, ITEM, RATING]
    usable = splits_df.where(F.col("split").isin(TRAIN, VALIDATION)).select(*cols, "split")
    fit = usable.where(F.col("split") == TRAIN).select(*cols)
    validation = usable.where(F.col("split") == VALIDATION).select(*cols)
    return fit, validation, usable.select(*cols)


# ---------------------------------------------------------------- task


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _write_run(spark: SparkSession, namespace: Namespace, row: dict[str, Any]) -> None:
    values = {c.name: row.get(c.name) for c in TRAINING_RUNS.columns}
    df = spark.createDataFrame([values], schema=TRAINING_RUNS.schema_ddl)
    tables.replace_where(spark, namespace, TRAINING_RUNS, df, F.col("run_id") == row["run_id"])


def train(spark: SparkSession, namespace: Namespace, storage: Path, protocol: str = "benchmark",
          run_id: str | None = None, grid: str | dict | None = None) -> TaskResult:
    """Tune both models on validation, refit on train + validation, save them and log ``training_runs``."""
    grid = parse_grid(grid)
    run_id = validate_run_id(run_id) if run_id is not None else new_run_id()
    splits_df = read_splits(spark, namespace, protocol)
    runs_table = namespace.table(TRAINING_RUNS.name)
    if spark.catalog.tableExists(f"{namespace.catalog}.{namespace.schema}.{TRAINING_RUNS.name}") and (
        spark.table(runs_table).where(F.col("run_id") == run_id).limit(1).count()
    ):
        raise MovieLensAlsError(f"training run {run_id!r} already exists in {namespace}: pick another --run-id")
    ensure_checkpoint_dir(spark, Path(storage))
    seed, k = grid["seed"], grid["k"]
    version_row = splits_df.select(F.max("ratings_version")).first()
    row: dict[str, Any] = {
        "run_id": run_id, "protocol": protocol, "status": "running", "params": json.dumps(grid, sort_keys=True),
        "ratings_version": version_row[0], "started_at": _now(),
    }
    _write_run(spark, namespace, row)
    timings: dict[str, float] = {}
    try:
        splits_df = splits_df.cache()
        fit, validation, full = tuning_frames(splits_df)
        if validation.limit(1).count() == 0:
            raise MovieLensAlsError(f"the {protocol} split has no validation rows: too few ratings to tune")

        t = time.monotonic()
        rating_params, rating_scores, (fit_baseline, fit_rating) = tune_rating(fit, validation, grid["rating"], seed)
        timings["tune_rating"] = time.monotonic() - t
        t = time.monotonic()
        ranking_params, ranking_scores, fit_ranking = tune_ranking(fit, validation, grid["ranking"], k, seed)
        timings["tune_ranking"] = time.monotonic() - t
        t = time.monotonic()
        blend = fit_blend(fit_baseline, fit_rating, fit_ranking, validation)
        m = rating_metrics_fn(predict_ratings_fn(fit_baseline, fit_rating, validation, fit_ranking, blend))
        # In-sample on validation, so not a tuning score: recorded to show what the blend adds.
        rating_scores.append({"model": "rating", "stage": "blend", "params": blend.as_dict(), "rmse": m["rmse"],
                              "mae": m["mae"]})
        timings["blend"] = time.monotonic() - t

        t = time.monotonic()
        baseline, rating_model = fit_rating_model(full, rating_params, seed)
        ranking_model = fit_ranking_model(full, ranking_params, seed)
        timings["refit"] = time.monotonic() - t

        t = time.monotonic()
        rating_path, ranking_path = model_dir(storage, run_id, "rating"), model_dir(storage, run_id, "ranking")
        rating_model.write().overwrite().save(str(rating_path))
        baseline.save(rating_path.parent / "baseline")
        blend.save(rating_path.parent)
        rating_hyperparams = json.dumps({**rating_params, "blend": blend.as_dict()}, sort_keys=True)
        ranking_model.write().overwrite().save(str(ranking_path))
        timings["save"] = time.monotonic() - t
        timings = {name: round(s, 2) for name, s in timings.items()}

        scores = rating_scores + ranking_scores
        row.update(
            status="succeeded", rating_hyperparams=rating_hyperparams,
            ranking_hyperparams=json.dumps(ranking_params, sort_keys=True), rating_model_path=str(rating_path),
            ranking_model_path=str(ranking_path), finished_at=_now(), timings=json.dumps(timings),
            validation_metrics=json.dumps(scores),
        )
        _log_mlflow(run_id, protocol, grid, rating_params, ranking_params, blend, scores, rating_model, ranking_model)
        _write_run(spark, namespace, row)
    except BaseException as exc:
        row.update(status="failed", finished_at=_now(), timings=json.dumps(timings), error=str(exc)[:2000])
        _write_run(spark, namespace, row)
        raise
    finally:
        splits_df.unpersist()
    best_rating = min((s for s in rating_scores if s.get("stage") == "als"), key=lambda s: s["rmse"])
    best_ranking = max(ranking_scores, key=lambda s: s["ndcg_at_k"])
    return TaskResult(
        "train",
        rows={TRAINING_RUNS.name: 1},
        details={"run_id": run_id, "protocol": protocol, "grid_points": len(scores),
                 "validation_rmse": round(best_rating["rmse"], 4),
                 f"validation_ndcg@{k}": round(best_ranking["ndcg_at_k"], 4),
                 "rating_hyperparams": row["rating_hyperparams"],
                 "ranking_hyperparams": json.dumps(ranking_params, sort_keys=True),
                 "seconds": round(sum(timings.values()), 1)},
    )


def _log_mlflow(run_id, protocol, grid, rating_params, ranking_params, blend, scores, rating_model,
                ranking_model) -> None:
    """Log to MLflow where it is installed (it is on Databricks); training never fails because of it."""
    try:
        import mlflow
    except ImportError:
        return
    try:
        with mlflow.start_run(run_name=f"movielens-als-{run_id}"):
            mlflow.set_tags({"movielens_als.run_id": run_id, "protocol": protocol})
            mlflow.log_params({f"rating.{n}": v for n, v in rating_params.items()})
            mlflow.log_params({f"rating.blend.{n}": v for n, v in blend.as_dict().items()})
            mlflow.log_params({f"ranking.{n}": v for n, v in ranking_params.items()})
            mlflow.log_param("grid", json.dumps(grid, sort_keys=True)[:6000])
            best_rating = min((s for s in scores if s.get("stage") == "als"), key=lambda s: s["rmse"])
            best_ranking = max((s for s in scores if s["model"] == "ranking"), key=lambda s: s["ndcg_at_k"])
            mlflow.log_metrics({"validation_rmse": best_rating["rmse"], "validation_mae": best_rating["mae"],
                                "validation_ndcg_at_k": best_ranking["ndcg_at_k"],
                                "validation_precision_at_k": best_ranking["precision_at_k"]})
            mlflow.spark.log_model(rating_model, "rating_model")
            mlflow.spark.log_model(ranking_model, "ranking_model")
    except Exception as exc:  # noqa: BLE001 - tracking is a side channel
        log.warning("mlflow logging failed (%s); models are saved in the model store", exc)
