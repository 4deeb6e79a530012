"""The ranking grid point chosen among near-ties of the best validation nDCG, and scored as served."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from movielens_als.columns import USER
from movielens_als.ml.hyperparams import RankingParams
from movielens_als.ml.metrics import ranking_metrics_fn
from movielens_als.ml.ranking_model import fit_ranking_model, model_top_k
from movielens_als.ml.tuning import NDCG_TIE, choose_ranking, tune_ranking


def test_ranking_choice_takes_the_widest_coverage_among_near_ties_of_the_best_ndcg():
    def point(ndcg, coverage):
        return {"ndcg_at_k": ndcg, "catalog_coverage": coverage}

    # best, tied, worse: 0.290 is beyond the tie, so its coverage does not count
    assert choose_ranking([point(0.300, 0.20), point(0.300 - NDCG_TIE / 2, 0.30), point(0.290, 0.90)]) == 1
    assert choose_ranking([point(0.300, 0.20), point(0.300 - 2 * NDCG_TIE, 0.90)]) == 0
    assert choose_ranking([point(0.3, 0.25), point(0.301, 0.25)]) == 1  # equal coverage: the higher nDCG


def test_ranking_tuning_scores_each_point_as_its_own_fit_and_top_k_would(spark):
    rng = np.random.default_rng(8)
    rows = [(u, i, float(rng.integers(1, 6))) for u in range(1, 41) for i in range(1, 31) if rng.random() < 0.3]
    ratings = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE")
    holdout = F.rand(seed=4) < 0.2
    fit, validation = ratings.where(~holdout).cache(), ratings.where(holdout).cache()
    grid = {"rank": [4], "reg_param": [0.05, 0.5], "alpha": [0.6], "beta": [1.0], "max_iter": [2],
            "implicit_value": ["rating"]}  # fmt: skip
    params, scores, model = tune_ranking(fit, validation, grid, 5, 7)
    users = validation.select(USER).distinct()
    for point in scores:  # shared blocks and layout, against a fit and a top-k of their own
        alone = fit_ranking_model(fit, RankingParams.from_dict(point["params"]), 7)
        top = model_top_k(alone, users, fit, 5)
        assert point["ndcg_at_k"] == pytest.approx(ranking_metrics_fn(top, validation, 5)["ndcg_at_k"], abs=1e-12)
    assert model is not None and params.as_dict() in [p["params"] for p in scores]
