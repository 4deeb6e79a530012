"""The validation grid search: which hyperparameters of each model, and which blend, a run's tuning chooses.

The rating model by RMSE (the bias regularisers first, by the baseline's RMSE, then the residual ALS with them),
the ranking model by nDCG@k over the same blocked top-k that serves, the blend and its neighbour feature by the
blend's RMSE. Every score is on ``validation`` (carved from train by ``split``), never on ``test``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyspark.sql import DataFrame

from movielens_als.columns import ITEM, RATING, USER
from movielens_als.ml.factors import Factors
from movielens_als.ml.grid import grid_points
from movielens_als.ml.hyperparams import RankingParams, RatingParams
from movielens_als.ml.ials import Blocked
from movielens_als.ml.knn import fit_knn
from movielens_als.ml.metrics import coverage_novelty_fn, ranking_metrics_fn, rating_metrics_fn
from movielens_als.ml.ranking_model import fit_ranking_model, model_layout, model_top_k, ranking_blocks
from movielens_als.ml.rating_model import (
    BiasBaseline,
    Blend,
    blend_features_fn,
    blend_weights_fn,
    blended_fn,
    fit_bias_baseline,
    fit_rating_model,
    predict_ratings_fn,
)

log = logging.getLogger(__name__)
# Validation nDCG@10 differences below this are noise on ml-100k's 943 users (its standard error is about 0.005):
# among such near-ties the point covering more of the catalogue is chosen, so coverage does not fall for noise.
NDCG_TIE = 0.002


def tune_blend(
    fit: DataFrame,
    validation: DataFrame,
    grid: dict[str, list],
    rating: RatingParams,
    baseline: BiasBaseline,
    model: Factors,
    implicit: Factors,
) -> tuple[RatingParams, Blend, list[dict]]:
    """Choose the neighbour feature (``knn_k``, ``knn_power``) by the blend's RMSE on validation.

    In-sample (the weights are fitted on validation too): four weights and a few points against every validation
    row. Returns ``rating`` with the best point's feature, its blend and every point's scores.
    """
    scores: list[dict] = []
    best, best_rmse, best_blend = None, float("inf"), None
    for point in grid_points(grid, RatingParams.KNN):
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
    return rating.with_knn(**best), best_blend, scores


def tune_rating(
    fit: DataFrame,
    validation: DataFrame,
    grid: dict[str, list],
    seed: int,
    on_fit: Callable[[str], None] = lambda _: None,
) -> tuple[RatingParams, list[dict], tuple[BiasBaseline, Factors]]:
    """Choose bias regularisers by baseline RMSE, then the residual ALS by RMSE.

    Returns the best parameters (without the neighbour feature: :func:`tune_blend`), every point's scores and the
    best (baseline, model) fitted on ``fit``.
    """
    scores: list[dict] = []
    best_bias, best_rmse, first_pass = None, float("inf"), None
    bias_points = grid_points(grid, RatingParams.BIAS)
    for i, point in enumerate(bias_points, 1):
        on_fit(f"bias grid point {i} of {len(bias_points)}")
        baseline = fit_bias_baseline(fit, point["reg_user"], point["reg_item"])
        m = rating_metrics_fn(predict_ratings_fn(baseline, None, validation))
        scores.append({"model": "rating", "stage": "bias", "params": point, "rmse": m["rmse"], "mae": m["mae"]})
        if m["rmse"] < best_rmse:
            best_bias, best_rmse, first_pass = point, m["rmse"], baseline
    best, best_rmse, best_fitted = None, float("inf"), None
    als_points = grid_points(grid, RatingParams.ALS)
    for i, point in enumerate(als_points, 1):
        on_fit(f"rating grid point {i} of {len(als_points)}")
        params = RatingParams(**best_bias, **point)
        started = time.monotonic()
        baseline, model = fit_rating_model(fit, params, seed, first_pass)
        m = rating_metrics_fn(predict_ratings_fn(baseline, model, validation))
        scores.append(
            {
                "model": "rating",
                "stage": "als",
                "params": params.as_dict(),
                "rmse": m["rmse"],
                "mae": m["mae"],
                "seconds": round(time.monotonic() - started, 2),
            }
        )
        log.info("rating %s: validation rmse %.4f", params.as_dict(), m["rmse"])
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
) -> tuple[RankingParams, list[dict], Factors]:
    """Choose the implicit ALS by validation nDCG@k, and among the points within ``NDCG_TIE`` of the best the one
    whose lists cover most of the catalogue; return (chosen, all scores, chosen model fitted on ``fit``).

    The points share what does not depend on them: the blocked ratings (per ``implicit_value``) and the top-k
    layout with its excluded pairs. A fit that can no longer be chosen is dropped as soon as it falls out of the tie.
    """
    scores: list[dict] = []
    fitted: list[Factors | None] = []
    users = validation.select(USER).distinct()
    points = [RankingParams(**p) for p in grid_points(grid, RankingParams.names())]
    blocked: dict[str, Blocked] = {}
    layout = None
    try:
        for i, params in enumerate(points, 1):
            on_fit(f"ranking grid point {i} of {len(points)}")
            started = time.monotonic()
            value = params.implicit_value
            if value not in blocked:
                blocked[value] = ranking_blocks(fit, value)
            model = fit_ranking_model(blocked[value], params, seed)
            if all(p.implicit_value != value for p in points[i:]):  # its last fit: freed before top-k needs memory
                blocked.pop(value).release()
            if layout is None and len(points) > 1:  # every point's fit has the ids of ``fit``
                layout = model_layout(model, users, fit)
            top = model_top_k(model, users, fit, k, layout=layout).cache()
            m = ranking_metrics_fn(top, validation, k) | coverage_novelty_fn(fit, top)
            top.unpersist()
            scores.append(
                {
                    "model": "ranking",
                    "params": params.as_dict(),
                    **{n: m[n] for n in ("ndcg_at_k", "precision_at_k", "recall_at_k", "map", "map_at_k")},
                    **{n: m[n] for n in ("catalog_coverage", "novelty")},
                    "k": k,
                    "seconds": round(time.monotonic() - started, 2),
                }
            )
            fitted.append(model)
            best = max(s["ndcg_at_k"] for s in scores)
            fitted = [f if s["ndcg_at_k"] >= best - NDCG_TIE else None for f, s in zip(fitted, scores, strict=True)]
            log.info("ranking %s: validation ndcg@%d %.4f", params.as_dict(), k, m["ndcg_at_k"])
    finally:
        for b in blocked.values():
            b.release()
    chosen = choose_ranking(scores)
    return points[chosen], scores, fitted[chosen]


def choose_ranking(scores: list[dict]) -> int:
    """The index of the grid point chosen: most catalogue coverage within ``NDCG_TIE`` of the best nDCG."""
    best = max(s["ndcg_at_k"] for s in scores)
    tied = [i for i, s in enumerate(scores) if s["ndcg_at_k"] >= best - NDCG_TIE]
    return max(tied, key=lambda i: (scores[i]["catalog_coverage"], scores[i]["ndcg_at_k"]))
